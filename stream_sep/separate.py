"""``stream-sep separate``: the streaming engine, offline, on files.

The engine runs with ``blocking=True``: every window is computed before its output is
needed, so the result equals a live run without deadline misses. The latency is removed,
so each output is time-aligned with its input, same length, rate and channels.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from stream_sep import atomic, options, providers, safety
from stream_sep import engine as engine_module
from stream_sep.errors import AudioFileError, ModelError, UserError
from stream_sep.inference import load_model

log = logging.getLogger(__name__)

OUTPUT_MODES = ("karaoke", "vocals", "both")
_BLOCK_SECONDS = 1.0


def add_arguments(parser) -> None:
    parser.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="audio files (any format soundfile reads)"
    )
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUTDIR",
        help="writes OUTDIR/<input stem>/{karaoke,vocals}.wav",
    )
    parser.add_argument(
        "--mode",
        default="both",
        type=options.choice("mode", OUTPUT_MODES),
        metavar=options.listing(OUTPUT_MODES),
        help="which stems to write (default both)",
    )
    add_engine_arguments(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def add_engine_arguments(parser) -> None:
    """Options shared by every command that runs the engine."""
    parser.add_argument(
        "--model", metavar="PATH", help="ONNX separation model (default: the bundled model)"
    )
    parser.add_argument(
        "--provider",
        default="auto",
        type=options.choice("provider", providers.CHOICES),
        metavar=options.listing(providers.CHOICES),
        help="where the model runs; auto: the first of tensorrt, cuda, cpu that starts "
        "(default auto)",
    )
    parser.add_argument(
        "--hop",
        type=options.seconds("hop", 0.0, inclusive=False),
        default=0.5,
        metavar="SECONDS",
        help="time between windows, > 0 (default 0.5)",
    )
    parser.add_argument(
        "--lookahead",
        type=options.seconds("lookahead", 0.0),
        default=0.25,
        metavar="SECONDS",
        help="future context after the last sample emitted (default 0.25)",
    )
    parser.add_argument(
        "--crossfade",
        type=options.seconds("crossfade", engine_module.MIN_CROSSFADE_SECONDS),
        default=0.064,
        metavar="SECONDS",
        help=f"blend between windows, {engine_module.MIN_CROSSFADE_SECONDS:g} to --hop "
        "(default 0.064)",
    )
    parser.add_argument(
        "--stereo",
        default="batch",
        type=options.choice("stereo", engine_module.STEREO_CHOICES),
        metavar=options.listing(engine_module.STEREO_CHOICES),
        help="batch: both channels through the model; mid: the mid channel only, half the "
        "compute (default batch)",
    )


def engine_options(args) -> dict:
    return {
        "hop": args.hop,
        "lookahead": args.lookahead,
        "crossfade": args.crossfade,
        "stereo": args.stereo,
    }


def run(args) -> int:
    if args.mode not in OUTPUT_MODES:
        raise UserError(f"--mode must be one of {', '.join(OUTPUT_MODES)}, got {args.mode!r}")
    inputs = [Path(p) for p in args.inputs]
    for path in inputs:
        _check_readable(path)
        _audio_info(path)
    outdir = Path(args.output)
    if outdir.exists() and not outdir.is_dir():
        raise UserError(f"-o/--output {str(outdir)!r} exists and is not a directory")
    model = load_model(args.model, args.provider)
    log.info("model %s on %s", model.path, model.provider)
    stems = ("karaoke", "vocals") if args.mode == "both" else (args.mode,)
    for path in inputs:
        started = time.perf_counter()
        progress = None if args.quiet or not sys.stderr.isatty() else _Progress(path.name)
        seconds = separate_file(
            model, path, outdir / path.stem, stems, progress=progress, **engine_options(args)
        )
        if not args.quiet:
            took = time.perf_counter() - started
            print(
                f"{path.name}: {seconds:.1f} s separated in {took:.1f} s "
                f"({seconds / max(took, 1e-9):.1f}x real time) -> {outdir / path.stem}",
                file=sys.stderr,
            )
    return 0


def separate_file(
    model, path: Path, folder: Path, stems=("karaoke", "vocals"), progress=None, **options
) -> float:
    """Separate an audio file block by block into ``folder/<stem>.wav``; returns its seconds.

    The same samples as :func:`separate_array` on the whole file, in memory proportional to
    a block and the engine's window rather than to the song: one reader feeds the engine,
    a second reads the same file ``latency`` samples behind it for the karaoke subtraction,
    and each stem is written to a hidden file renamed into place only when all is done.
    Raises :class:`AudioFileError` for an unreadable file and :class:`ModelError` if the
    model failed on any window; nothing is left behind then.
    """
    rate, channels, frames = _audio_info(path)
    created = [d for d in (folder, *folder.parents) if not d.exists()]  # deepest first
    folder.mkdir(parents=True, exist_ok=True)
    temporaries = {stem: atomic.hidden_sibling(folder / f"{stem}.wav") for stem in stems}
    try:
        with (
            _offline_engine(model, rate, channels, **options) as engine,
            _FileReader(path) as ahead,
            _FileReader(path) as behind,
            contextlib.ExitStack() as files,
        ):
            writers = {
                stem: files.enter_context(
                    sf.SoundFile(str(temporary), "w", rate, channels, "FLOAT", format="WAV")
                )
                for stem, temporary in temporaries.items()
            }
            guards = {stem: safety.OutputGuard(channels, rate) for stem in stems}
            _stream_through(engine, ahead, behind, frames, writers, guards, progress)
        for stem, temporary in temporaries.items():
            os.replace(temporary, folder / f"{stem}.wav")
    finally:
        for temporary in temporaries.values():
            temporary.unlink(missing_ok=True)
        for directory in created:  # a failed run leaves no empty folders behind either
            if directory.is_dir() and not any(directory.iterdir()):
                directory.rmdir()
    if progress is not None:
        progress.done()
    return frames / rate


def _stream_through(engine, ahead, behind, frames: int, writers, guards, progress) -> None:
    """Feed ``frames`` samples plus the engine's latency of silence through the engine and
    write the aligned stems: output sample t + latency is the estimate for input sample t."""
    channels, rate, latency = engine.channels, engine.sample_rate, engine.latency_samples
    block = max(1, int(_BLOCK_SECONDS * rate))
    source = np.zeros((channels, block), np.float32)
    vocals = np.zeros((channels, block), np.float32)
    dry = np.zeros((channels, block), np.float32)
    stem = np.zeros((channels, block), np.float32)
    total = frames + latency
    for start in range(0, total, block):
        n = min(block, total - start)
        ahead.read_into(source[:, :n])
        engine.process(source[:, :n], out=vocals[:, :n])
        skip = min(n, max(0, latency - start))  # outputs before input sample 0
        kept = n - skip
        if kept == 0:
            continue
        behind.read_into(dry[:, :kept])
        for name, writer in writers.items():
            np.copyto(stem[:, :kept], vocals[:, skip:n])
            if name == "karaoke":  # what the engine's karaoke mode computes
                np.subtract(dry[:, :kept], stem[:, :kept], out=stem[:, :kept])
            guards[name].process(stem[:, :kept])
            writer.write(stem[:, :kept].T)
        if progress is not None:
            progress(min(1.0, (start + n) / total))


class _FileReader:
    """Sequential (channels, n) float32 reads of an audio file, silence past its end; a
    file that breaks mid-way raises :class:`AudioFileError`."""

    def __init__(self, path: Path):
        self.path = path
        self._handle = None

    def __enter__(self):
        try:
            self._handle = sf.SoundFile(str(self.path))
        except (sf.LibsndfileError, RuntimeError, OSError) as error:
            raise AudioFileError(f"cannot read audio file {str(self.path)!r}: {error}") from None
        return self

    def __exit__(self, *exc):
        self._handle.close()

    def read_into(self, out: np.ndarray) -> None:
        try:
            data = self._handle.read(out.shape[1], dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as error:
            raise AudioFileError(
                f"cannot read audio file {str(self.path)!r} past "
                f"{self._handle.tell() / self._handle.samplerate:.1f} s: {error}"
            ) from None
        got = data.shape[0]
        out[:, :got] = data.T
        out[:, got:] = 0.0


def audio_file_info(path: Path) -> tuple[int, int, int]:
    """(rate, channels, frames) of an input file, refusing one that cannot be read or is
    empty with one line naming it."""
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as error:
        raise AudioFileError(f"cannot read audio file {str(path)!r}: {error}") from None
    if info.frames <= 0:
        raise AudioFileError(f"audio file {str(path)!r} holds no samples")
    return int(info.samplerate), int(info.channels), int(info.frames)


def _audio_info(path: Path) -> tuple[int, int, int]:
    """:func:`audio_file_info`, also refusing more channels than the engine separates."""
    rate, channels, frames = audio_file_info(path)
    if channels > engine_module.MAX_CHANNELS:
        raise AudioFileError(
            f"audio file {str(path)!r} has {channels} channels; at most "
            f"{engine_module.MAX_CHANNELS} are supported"
        )
    return rate, channels, frames


def separate_array(
    model, audio: np.ndarray, sample_rate: int, progress=None, **options
) -> dict[str, np.ndarray]:
    """Separate a whole signal with the streaming engine, for listening.

    audio: (channels, samples) float32. Returns {"vocals": ..., "karaoke": ...}, each
    (channels, samples) float32, time-aligned with ``audio`` and passed through the output
    guard that the live path applies. Raises :class:`ModelError` if the model failed on any
    window (see :func:`estimate_vocals`).
    """
    vocals = estimate_vocals(model, audio, sample_rate, progress=progress, **options)
    # What the engine's karaoke mode computes: the delayed input minus the estimate.
    karaoke = audio - vocals
    for stem in (vocals, karaoke):
        safety.OutputGuard(audio.shape[0], sample_rate).process(stem)
    return {"vocals": vocals, "karaoke": karaoke}


def estimate_vocals(
    model, audio: np.ndarray, sample_rate: int, progress=None, warm_up: bool = True, **options
) -> np.ndarray:
    """The model's vocal estimate of ``audio`` through the engine: (channels, samples) float32
    -> the same shape, time-aligned (the engine's delay is removed), without the output guard.

    Live, a window the model fails on (an exception, NaN/Inf, a wrong shape) plays the dry
    mix so the music goes on; in a file that would be a silent defect, so here any failed
    window raises :class:`ModelError` with the model's reason and nothing is returned.
    warm_up: first run one silent window, refusing a model that cannot run at all.
    """
    channels, samples = audio.shape
    with _offline_engine(model, sample_rate, channels, warm_up, **options) as engine:
        latency = engine.latency_samples
        padded = np.zeros((channels, samples + latency), np.float32)
        padded[:, :samples] = audio
        vocals = np.empty_like(padded)
        block = max(1, int(_BLOCK_SECONDS * sample_rate))
        for start in range(0, padded.shape[1], block):
            engine.process(padded[:, start : start + block], out=vocals[:, start : start + block])
            if progress is not None:
                progress(min(1.0, (start + block) / padded.shape[1]))
    if progress is not None:
        progress.done()
    return np.ascontiguousarray(vocals[:, latency:])


@contextlib.contextmanager
def _offline_engine(model, sample_rate: int, channels: int, warm_up: bool = True, **options):
    """A blocking engine (vocals mode, no limiter) around ``model`` for whole files.

    Live, a window the model fails on plays the dry mix; offline that would be a silent
    defect, so leaving the block normally raises :class:`ModelError` with the model's
    reason if any window failed. warm_up: first refuse a model that cannot run at all.
    """
    recorder = _FailureRecorder(model)
    with engine_module.Separator(
        recorder, sample_rate, channels, mode="vocals", blocking=True, limit=False, **options
    ) as engine:
        if warm_up:
            engine.warm_up()
        yield engine
    failures, windows = engine.stats.model_failures, engine.stats.windows_submitted
    if failures:
        raise ModelError(
            f"the model failed on {failures} of {windows} window(s){recorder.reason()}"
        )


class _FailureRecorder:
    """A model wrapper that remembers the first exception ``separate`` raised, so that the
    reason for a failed window can be reported after the engine has absorbed it."""

    def __init__(self, model):
        self.model = model
        self.contract = model.contract
        self.error: BaseException | None = None

    def separate(self, audio: np.ndarray) -> np.ndarray:
        try:
            return self.model.separate(audio)
        except Exception as error:
            self.error = self.error or error
            raise

    def reason(self) -> str:
        """': <first line of the error>', or why a window failed without one."""
        if self.error is None:
            return " (it returned an estimate of the wrong shape, or NaN/Inf)"
        return f": {(str(self.error) or type(self.error).__name__).splitlines()[0]}"


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise AudioFileError(f"input file {str(path)!r} does not exist")
    if not path.is_file():
        raise AudioFileError(f"input {str(path)!r} is not a file")


def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Read any soundfile-readable file -> ((channels, samples) float32, rate)."""
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as error:
        raise AudioFileError(f"cannot read audio file {str(path)!r}: {error}") from None
    if data.shape[0] == 0:
        raise AudioFileError(f"audio file {str(path)!r} holds no samples")
    if data.shape[1] > engine_module.MAX_CHANNELS:
        raise AudioFileError(
            f"audio file {str(path)!r} has {data.shape[1]} channels; at most {engine_module.MAX_CHANNELS} are supported"
        )
    return np.ascontiguousarray(data.T), int(rate)


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
