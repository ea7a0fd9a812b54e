"""``stream-sep separate``: the command over :mod:`stream_sep.offline` (argument parsing and
printing only).

Each input goes to ``OUTDIR/<stem>/`` (or, when stems collide, its path from the inputs'
common folder). Nothing is overwritten without ``--overwrite``, and an output folder that
cannot be written is refused before the model loads.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from stream_sep import offline, providers, settings
from stream_sep.audio_files import check_input_file, checked_audio_info
from stream_sep.errors import UserError
from stream_sep.inference import load_model

log = logging.getLogger(__name__)

OUTPUT_MODES = ("karaoke", "vocals", "both")


def add_arguments(parser) -> None:
    parser.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="audio files (any format soundfile reads)"
    )
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUTDIR",
        help=(
            "writes OUTDIR/<input stem>/{karaoke,vocals}.wav; if two inputs share a file stem "
            "(a/mixture.wav, b/mixture.wav), every input goes to OUTDIR/<its path from the "
            "inputs' common folder, suffix removed>/ instead (OUTDIR/a/mixture/, "
            "OUTDIR/b/mixture/), keeping the suffix where that still collides"
        ),
    )
    parser.add_argument(
        "--mode",
        default="both",
        help=f"which stems to write: {', '.join(OUTPUT_MODES)} (default both)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace stems that already exist (default: refuse, before any work, and change nothing)",
    )
    parser.add_argument(
        "--clip-mode",
        default="none",
        metavar="|".join(offline.CLIP_MODES),
        help=(
            "none: exact 32-bit float stems that sum back to the input; samples beyond 1.0 "
            "are kept, float WAV holds them; clamp: clip each sample to [-1, 1]; rescale: "
            "divide a stem whose peak exceeds 1.0 by that peak (default none)"
        ),
    )
    parser.add_argument(
        "--model", metavar="PATH", help="ONNX separation model (default: the bundled model)"
    )
    parser.add_argument(
        "--provider", default="auto", metavar="|".join(providers.CHOICES), help="default auto"
    )
    settings.add_arguments(parser)
    settings.add_quality_arguments(parser)
    parser.add_argument(
        "--like-live",
        action="store_true",
        help="run the live plan (hop, lookahead, crossfade) so the stems equal a live run; "
        "default: the throughput plan (centred overlap-add windows, several times faster; "
        "--hop/--lookahead/--crossfade apply only with --like-live)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    if args.mode not in OUTPUT_MODES:
        raise UserError(f"--mode must be one of {', '.join(OUTPUT_MODES)}, got {args.mode!r}")
    offline.check_clip_mode(args.clip_mode)
    inputs = [Path(p) for p in args.inputs]
    for path in inputs:
        check_input_file(path)
        checked_audio_info(path)
    outdir = Path(args.output)
    if outdir.exists() and not outdir.is_dir():
        raise UserError(f"-o/--output {str(outdir)!r} exists and is not a directory")
    stems = ("karaoke", "vocals") if args.mode == "both" else (args.mode,)
    folders = offline.output_folders(inputs, outdir)
    for folder in folders:  # every refusal comes before the model loads
        offline.check_targets(folder, stems, args.overwrite)
        offline.check_writable(folder)
    options = settings.from_args(args).engine_options()
    model = load_model(args.model, args.provider)
    log.info("model %s on %s", model.path, model.provider)
    for path, folder in zip(inputs, folders, strict=True):
        started = time.perf_counter()
        progress = None if args.quiet or not sys.stderr.isatty() else _Progress(path.name)
        seconds = offline.separate_file(
            model,
            path,
            folder,
            stems,
            progress=progress,
            clip_mode=args.clip_mode,
            like_live=args.like_live,
            **options,
        )
        if not args.quiet:
            took = time.perf_counter() - started
            print(
                f"{path.name}: {seconds:.1f} s separated in {took:.1f} s "
                f"({seconds / max(took, 1e-9):.1f}x real time) -> {folder}",
                file=sys.stderr,
            )
    return 0


class _Progress:
    """A one-line progress bar on stderr."""

    def __init__(self, name: str, width: int = 30):
        self.name, self.width = name, width

    def __call__(self, fraction: float) -> None:
        filled = int(fraction * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        print(f"\r{self.name} [{bar}] {fraction * 100:5.1f}%", end="", file=sys.stderr, flush=True)

    def done(self) -> None:
        print(file=sys.stderr)
