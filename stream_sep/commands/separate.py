"""``stream-sep separate``: the command over :mod:`stream_sep.offline` and
:mod:`stream_sep.batch` (argument parsing and printing only).

Files alone: each input goes to ``OUTDIR/<stem>/`` (or, when stems collide, its path from
the inputs' common folder), one after another; nothing is overwritten without
``--overwrite``, and an output folder that cannot be written is refused before the model
loads. A folder among the inputs, or ``--recursive``, ``--jobs`` or ``--ray``, makes it a
batch job (docs/batch.md): songs found under the folders, separated in parallel, resumable
through a manifest in OUTDIR, a bad song recorded and skipped (exit status 1), not fatal.

Files alone end with one line: files, seconds of audio, the wall time since the process
started (imports and model load included) and its real-time factor. The batch runner and
its process pools are imported only for a batch job.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from stream_sep import offline, options, settings
from stream_sep.audio_files import check_input_file, checked_audio_info
from stream_sep.errors import UserError
from stream_sep.models.loading import load_model

if TYPE_CHECKING:
    from stream_sep.batch import JobReport

log = logging.getLogger(__name__)

OUTPUT_MODES = ("karaoke", "vocals", "both")


def add_arguments(parser) -> None:
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="DIR_OR_FILE",
        help="audio files (any format soundfile reads) or folders of them (a batch job)",
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
        type=options.choice("mode", OUTPUT_MODES),
        metavar=options.listing(OUTPUT_MODES),
        help="which stems to write (default both)",
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
    options.add_model_arguments(parser)
    settings.add_arguments(parser)
    settings.add_quality_arguments(parser, "separate")
    settings.add_options(parser, "separate", settings.OFFLINE_FIELDS)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    batch = parser.add_argument_group(
        "batch jobs",
        "a folder among the inputs, or any option below, makes a batch job: songs keep their "
        "folders under OUTDIR, a manifest there lets a rerun skip what is done, a bad song "
        "is recorded and the job goes on (exit status 1); see docs/batch.md",
    )
    batch.add_argument(
        "--recursive", action="store_true", help="also search the folders' subfolders"
    )
    batch.add_argument(
        "--jobs",
        type=int,
        metavar="N",
        help="worker processes, each loading the model once (default: one per core, or one "
        "on a GPU); with --ray, the most songs in flight on the cluster (default its CPUs)",
    )
    batch.add_argument(
        "--ray",
        metavar="ADDRESS|auto",
        help="run the songs on a Ray cluster (pip install stream-sep[cluster]): HOST:PORT "
        "of its head, ray://HOST:PORT (Ray Client), or auto: the cluster in RAY_ADDRESS, else "
        "one started on this machine with 'ray start', else a local one for the job. A "
        "cluster with token authentication needs RAY_AUTH_MODE=token and its token "
        "(RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH) here. Songs, OUTDIR and the model must be at "
        "the same paths on every node",
    )


def run(args) -> int:
    if args.mode not in OUTPUT_MODES:
        raise UserError(f"--mode must be one of {', '.join(OUTPUT_MODES)}, got {args.mode!r}")
    offline.check_clip_mode(args.clip_mode)
    inputs = [Path(p) for p in args.inputs]
    if _is_batch(args, inputs):
        return _run_batch(args, inputs)
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
    plan = _offline_plan(args)
    model = load_model(args.model, args.provider)
    log.info("model %s on %s", model.path, model.provider)
    audio_seconds = 0.0
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
            plan=plan,
        )
        audio_seconds += seconds
        if not args.quiet:
            took = time.perf_counter() - started
            print(
                f"{path.name}: {seconds:.1f} s separated in {took:.1f} s "
                f"({seconds / max(took, 1e-9):.1f}x real time) -> {folder}",
                file=sys.stderr,
            )
    if not args.quiet:
        wall = time.perf_counter() - getattr(args, "_started", started)
        print(final_line(len(inputs), audio_seconds, wall), file=sys.stderr)
    return 0


def final_line(files: int, audio_seconds: float, wall_seconds: float) -> str:
    """'separated 1 file (120.0 s of audio) in 9.4 s, 0.078 x real time including
    start-up': the real-time factor is wall / audio seconds (below 1: faster than real time)."""
    factor = wall_seconds / max(audio_seconds, 1e-9)
    return (
        f"separated {_count(files, 'file')} ({audio_seconds:.1f} s of audio) in "
        f"{wall_seconds:.1f} s, {factor:.3f} x real time including start-up"
    )


def _offline_plan(args) -> offline.OfflinePlan:
    """The plan :func:`stream_sep.offline.separate_file` runs for each song."""
    return settings.from_args(args).offline_plan(args.like_live, args.batch_windows)


def _is_batch(args, inputs: list[Path]) -> bool:
    options = (args.recursive, args.jobs is not None, args.ray is not None)
    return any(options) or any(path.is_dir() for path in inputs)


def _run_batch(args, inputs: list[Path]) -> int:
    from stream_sep.batch import BatchRequest, run_job  # process pools: batch jobs only

    request = BatchRequest(
        inputs=inputs,
        outdir=Path(args.output),
        recursive=args.recursive,
        jobs=args.jobs,
        ray=args.ray,
        stems=("karaoke", "vocals") if args.mode == "both" else (args.mode,),
        clip_mode=args.clip_mode,
        plan=_offline_plan(args),
        model=args.model,
        provider=args.provider,
        overwrite=args.overwrite,
    )
    report = run_job(request, quiet=args.quiet)
    if not args.quiet:
        for line in _summary(report):
            print(line, file=sys.stderr)
    failures = report.failures
    if failures:
        print(f"{len(failures)} of {_count(report.songs, 'song')} failed:", file=sys.stderr)
        for key, reason in failures:
            print(f"  {key}: {reason}", file=sys.stderr)
    return report.exit_status


def _summary(report: JobReport) -> list[str]:
    """What the job did, in a few lines (failures are listed by the caller)."""
    before = len(report.done_before)
    if not report.results:
        unchanged = len(report.failed_before)
        return [
            f"nothing to do: {_count(before, 'song')} already done with this model and "
            f"settings" + (f"; {unchanged} failed before and are unchanged" if unchanged else "")
        ]
    audio, took = report.audio_seconds, report.wall_seconds
    lines = []
    if report.separated:
        lines.append(
            f"separated {_count(len(report.separated), 'song')} ({_duration(audio)} of audio) "
            f"in {_duration(took)}: {audio / max(took, 1e-9):.1f}x real time {report.workers}"
        )
    loads = report.model_loads
    if loads:
        times = "once per worker" if set(loads.values()) == {1} else f"{sum(loads.values())} times"
        lines.append(f"the model was loaded {times} ({_count(len(loads), 'worker process')})")
    if before:
        lines.append(f"{_count(before, 'song')} done before skipped")
    return lines


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 'es' if noun.endswith('s') else 's'}"


def _duration(seconds: float) -> str:
    if seconds < 600:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min" if seconds < 6 * 3600 else f"{seconds / 3600:.2f} h"


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
