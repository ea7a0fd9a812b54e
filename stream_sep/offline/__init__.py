"""Separating whole signals and files offline: the library behind ``stream-sep separate``.

Files are streamed block by block, in memory of a block and a few windows rather than of the
song; each stem is written to a hidden file and renamed into place when complete. Stems are
exact floats (karaoke + vocals == the input within float32 rounding) unless a clip mode is
asked for. Any window the model fails on is an error: nothing is written then.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf

from stream_sep import atomic
from stream_sep.audio_files import FileReader, checked_audio_info
from stream_sep.dsp.finite import FiniteReader, replace_nonfinite
from stream_sep.engine import Separator
from stream_sep.engine.config import EngineConfig
from stream_sep.errors import AudioFileError, ModelError, UserError, typed_first_line
from stream_sep.offline.config import OfflinePlan
from stream_sep.offline.overlap_add import OverlapAddStream, separate_overlap_add

CLIP_MODES = ("none", "clamp", "rescale")
BLOCK_SECONDS = 1.0

log = logging.getLogger(__name__)


def output_folders(inputs: list[Path], outdir: Path) -> list[Path]:
    """The result folder of each input: ``outdir/<stem>``, or, if two inputs share a stem,
    ``outdir/<path from the inputs' common folder, suffix removed>`` for every input, the
    suffix kept where that still collides (song.wav and song.flac side by side). Refuses the
    same file given twice."""
    _refuse_repeated(inputs)
    stems = [path.stem for path in inputs]
    if len(set(stems)) == len(stems):
        return [outdir / stem for stem in stems]
    absolute = [Path(os.path.abspath(path)) for path in inputs]
    common = os.path.commonpath([path.parent for path in absolute])
    relative = [path.relative_to(common) for path in absolute]
    unsuffixed = [path.with_suffix("") for path in relative]
    return [
        outdir / (path if unsuffixed.count(name) > 1 else name)
        for path, name in zip(relative, unsuffixed, strict=True)
    ]


def _refuse_repeated(inputs: list[Path]) -> None:
    seen: dict[Path, Path] = {}
    for path in inputs:
        first = seen.setdefault(path.resolve(), path)
        if first is path:
            continue
        if first == path:
            raise UserError(f"input {str(path)!r} is given twice")
        raise UserError(f"inputs {str(first)!r} and {str(path)!r} are the same file")


def check_targets(folder: Path, stems, overwrite: bool) -> None:
    """Refuse to replace an existing stem without ``overwrite``, or anything not a file."""
    for stem in stems:
        target = folder / f"{stem}.wav"
        if os.path.isdir(target):
            raise AudioFileError(f"{str(target)!r} is a folder; it cannot be replaced by a stem")
        if os.path.lexists(target) and not overwrite:
            raise AudioFileError(f"{str(target)!r} already exists; pass --overwrite to replace it")


def check_writable(folder: Path) -> None:
    """Create ``folder`` and a hidden file in it, then remove both again: a folder that
    cannot take the stems is one line before the model loads, and leaves nothing behind."""
    created = _missing_folders(folder)
    try:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise AudioFileError(
                f"cannot create output folder {str(folder)!r}: {_reason(error, folder)}"
            ) from None
        try:
            atomic.hidden_sibling(folder / "probe").unlink()
        except OSError as error:
            raise AudioFileError(
                f"cannot write in output folder {str(folder)!r}: {_reason(error, folder)}"
            ) from None
    finally:
        _remove_empty(created)


def _missing_folders(folder: Path) -> list[Path]:
    """``folder`` and its ancestors that do not exist yet, deepest first."""
    return [path for path in (folder, *folder.parents) if not os.path.lexists(path)]


def _remove_empty(created: list[Path]) -> None:
    """Remove the folders of ``created`` (deepest first) that are still empty."""
    for directory in created:
        if directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()


def _reason(error: OSError, folder: Path) -> str:
    """Why ``error`` happened, in words: the OS's text, or the file in the folder's way."""
    for path in (folder, *folder.parents):
        if os.path.lexists(path):
            if not path.is_dir():
                return f"{str(path)!r} is a file, not a folder"
            break
    return error.strerror or str(error)


def check_clip_mode(clip_mode: str) -> None:
    if clip_mode not in CLIP_MODES:
        raise UserError(f"--clip-mode must be one of {', '.join(CLIP_MODES)}, got {clip_mode!r}")


def separate_file(
    model,
    path: Path,
    folder: Path,
    stems=("karaoke", "vocals"),
    progress=None,
    clip_mode: str = "none",
    plan: OfflinePlan | None = None,
    **options,
) -> float:
    """Separate an audio file block by block into ``folder/<stem>.wav``; returns its seconds.

    plan: how (:class:`~stream_sep.offline.config.OfflinePlan`; default the throughput plan
    with the engine's defaults); options: keywords replacing its fields
    (:meth:`OfflinePlan.of <stream_sep.offline.config.OfflinePlan.of>`).

    The same samples as :func:`separate_array` on the whole file, in memory proportional to
    a block and the engine's window rather than to the song: one reader feeds the engine,
    a second reads the same file ``latency`` samples behind it for the karaoke subtraction,
    and each stem is written to a hidden file renamed into place (replacing an older one)
    only when all is done; ``clip_mode="rescale"`` rescales that hidden file in a second
    pass, once its peak is known. Raises :class:`AudioFileError` for an unreadable file or
    a folder that cannot be written, and :class:`ModelError` if the model failed on any
    window; nothing is left behind then, not even an empty folder.
    """
    check_clip_mode(clip_mode)
    plan = OfflinePlan.of(plan, **options)
    rate, channels, frames = checked_audio_info(path)
    created = _missing_folders(folder)
    temporaries: dict[str, Path] = {}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for stem in stems:
            temporaries[stem] = atomic.hidden_sibling(folder / f"{stem}.wav")
        peaks = _separate_into(model, path, temporaries, clip_mode, progress, plan)
        if clip_mode == "rescale":
            for stem, temporary in temporaries.items():
                _divide_in_place(temporary, peaks[stem])
        for stem, temporary in temporaries.items():
            os.replace(temporary, folder / f"{stem}.wav")
    except (OSError, sf.LibsndfileError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        raise AudioFileError(f"cannot write stems to {str(folder)!r}: {reason}") from None
    finally:
        for temporary in temporaries.values():
            temporary.unlink(missing_ok=True)
        _remove_empty(created)  # a failed run leaves no empty folders behind either
    if progress is not None:
        progress.done()
    return frames / rate


def _separate_into(
    model, path: Path, temporaries: dict, clip_mode: str, progress, plan: OfflinePlan
) -> dict[str, float]:
    """Stream ``path`` through the chosen plan into one float WAV per stem (``temporaries``:
    {stem: path}); returns each stem's peak |sample| as written."""
    rate, channels, frames = checked_audio_info(path)
    with (
        FileReader(path) as ahead_file,
        FileReader(path) as behind_file,
        contextlib.ExitStack() as files,
    ):
        # Both readers replace non-finite samples alike: the karaoke subtraction stays exact.
        ahead = FiniteReader(ahead_file, channels, rate)
        behind = FiniteReader(behind_file, channels, rate)
        writers = {
            stem: files.enter_context(
                sf.SoundFile(str(temporary), "w", rate, channels, "FLOAT", format="WAV")
            )
            for stem, temporary in temporaries.items()
        }
        stems = _StemWriter(writers, behind, clip_mode)
        if not plan.like_live:
            stream = OverlapAddStream(model, rate, channels, plan.overlap_add)
            with _refusing_unrunnable(model, stream.model_channels, lambda: stream.windows_run):
                _stream_overlap_add(stream, ahead, frames, stems, progress)
        else:
            with _offline_engine(model, rate, channels, plan.engine) as engine:
                _stream_through(engine, ahead, frames, stems, progress)
        _report_replaced(path.name, ahead.replaced)
        return stems.peaks


def _report_replaced(name: str, count: int) -> None:
    """One line on stderr (the command's log) when non-finite input samples were replaced."""
    if count:
        log.warning("%s: %d NaN/Inf input samples replaced by silence", name, count)


class _StemWriter:
    """Writes aligned vocal blocks as stems: vocals as they are, karaoke as the input (read
    by ``behind`` in step) minus the vocals; clamps if asked and tracks each stem's peak."""

    def __init__(self, writers: dict, behind, clip_mode: str):
        self.writers, self.behind, self.clip_mode = writers, behind, clip_mode
        self.peaks = dict.fromkeys(writers, 0.0)

    def write(self, vocals: np.ndarray) -> None:
        """vocals (C, n): the estimate for the next n input samples."""
        dry = np.empty_like(vocals)
        self.behind.read_into(dry)
        for name, writer in self.writers.items():
            stem = dry - vocals if name == "karaoke" else vocals.copy()
            if self.clip_mode == "clamp":
                np.clip(stem, -1.0, 1.0, out=stem)
            self.peaks[name] = max(self.peaks[name], _peak(stem))
            writer.write(stem.T)


def _stream_overlap_add(stream, ahead, frames: int, stems: _StemWriter, progress) -> None:
    """Feed the file's ``frames`` samples through an :class:`OverlapAddStream`."""
    block = max(1, int(BLOCK_SECONDS * stream.sample_rate))
    source = np.zeros((stream.channels, block), np.float32)
    for start in range(0, frames, block):
        n = min(block, frames - start)
        ahead.read_into(source[:, :n])
        vocals = stream.process(source[:, :n])
        if vocals.shape[1]:
            stems.write(vocals)
        if progress is not None:
            progress(min(0.99, (start + n) / frames))
    rest = stream.finish()
    if rest.shape[1]:
        stems.write(rest)


def _stream_through(engine, ahead, frames: int, stems: _StemWriter, progress) -> None:
    """Feed ``frames`` samples plus the engine's latency of silence through the engine and
    write the aligned stems: output sample t + latency is the estimate for input sample t."""
    channels, rate, latency = engine.channels, engine.sample_rate, engine.latency_samples
    block = max(1, int(BLOCK_SECONDS * rate))
    source = np.zeros((channels, block), np.float32)
    vocals = np.zeros((channels, block), np.float32)
    total = frames + latency
    for start in range(0, total, block):
        n = min(block, total - start)
        ahead.read_into(source[:, :n])
        engine.process(source[:, :n], out=vocals[:, :n])
        skip = min(n, max(0, latency - start))  # outputs before input sample 0
        if n > skip:
            stems.write(vocals[:, skip:n])
        if progress is not None:
            progress(min(1.0, (start + n) / total))


def _peak(audio: np.ndarray) -> float:
    """max |sample| of (channels, n) float32 audio, without a temporary array."""
    return max(float(audio.max(initial=0.0)), -float(audio.min(initial=0.0)))


def _divide_in_place(path: Path, peak: float) -> None:
    """Divide a float WAV by ``peak`` if it exceeds 1, block by block: its peak becomes
    exactly 1.0 (float32 division never rounds x / peak above peak / peak)."""
    if peak <= 1.0:
        return
    divisor = np.float32(peak)
    with sf.SoundFile(str(path), "r+") as wav:
        block = max(1, int(BLOCK_SECONDS * wav.samplerate))
        while True:
            position = wav.tell()
            data = wav.read(block, dtype="float32", always_2d=True)
            if not len(data):
                break
            wav.seek(position)
            wav.write(data / divisor)


def separate_array(
    model,
    audio: np.ndarray,
    sample_rate: int,
    progress=None,
    clip_mode: str = "none",
    plan: OfflinePlan | None = None,
    **options,
) -> dict[str, np.ndarray]:
    """Separate a whole signal with ``plan`` (see :func:`estimate_vocals`).

    audio: (channels, samples) float32. Returns {"vocals": ..., "karaoke": ...}, each
    (channels, samples) float32, time-aligned with ``audio``. clip_mode "none": exact
    floats, karaoke + vocals == audio within float32 rounding, samples beyond 1 kept;
    "clamp": each sample clipped to [-1, 1]; "rescale": a stem whose peak exceeds 1
    divided by that peak. Raises :class:`ModelError` if the model failed on any window
    (see :func:`estimate_vocals`).
    """
    check_clip_mode(clip_mode)
    audio, replaced = replace_nonfinite(audio, sample_rate)
    _report_replaced("input", replaced)
    plan = OfflinePlan.of(plan, **options)
    vocals = estimate_vocals(model, audio, sample_rate, progress=progress, plan=plan)
    # What the engine's karaoke mode computes: the delayed input minus the estimate.
    karaoke = audio - vocals
    for stem in (vocals, karaoke):
        if clip_mode == "clamp":
            np.clip(stem, -1.0, 1.0, out=stem)
        elif clip_mode == "rescale" and (peak := _peak(stem)) > 1.0:
            np.divide(stem, np.float32(peak), out=stem)
    return {"vocals": vocals, "karaoke": karaoke}


def estimate_vocals(
    model,
    audio: np.ndarray,
    sample_rate: int,
    progress=None,
    warm_up: bool = True,
    plan: OfflinePlan | None = None,
    **options,
) -> np.ndarray:
    """The model's vocal estimate of ``audio``: (channels, samples) float32 -> the same
    shape, time-aligned, without the output guard.

    ``plan`` (an :class:`~stream_sep.offline.config.OfflinePlan`, with ``options`` as
    keywords replacing its fields): by default the throughput plan
    (:mod:`stream_sep.offline.overlap_add`: centred windows, overlap-add, one resampling each
    way); ``like_live``: the streaming engine with its config (hop, lookahead, crossfade,
    stereo, ...), whose samples equal a live run without deadline misses. Any window the model fails on raises :class:`ModelError` with
    the model's reason. warm_up (like_live): first refuse a model that cannot run at all.
    Non-finite input samples are replaced by silence first (:mod:`stream_sep.dsp.finite`).
    """
    plan = OfflinePlan.of(plan, **options)
    audio, replaced = replace_nonfinite(audio, sample_rate)
    _report_replaced("input", replaced)
    if not plan.like_live:
        rows = 1 if plan.stereo == "mid" else audio.shape[0]
        with _refusing_unrunnable(model, rows if warm_up else 0, lambda: 0):
            vocals = separate_overlap_add(
                model, audio, sample_rate, plan.overlap_add, progress=progress
            )
        if progress is not None:
            progress.done()
        return vocals
    channels, samples = audio.shape
    with _offline_engine(model, sample_rate, channels, plan.engine, warm_up) as engine:
        latency = engine.latency_samples
        padded = np.zeros((channels, samples + latency), np.float32)
        padded[:, :samples] = audio
        vocals = np.empty_like(padded)
        block = max(1, int(BLOCK_SECONDS * sample_rate))
        for start in range(0, padded.shape[1], block):
            engine.process(padded[:, start : start + block], out=vocals[:, start : start + block])
            if progress is not None:
                progress(min(1.0, (start + block) / padded.shape[1]))
    if progress is not None:
        progress.done()
    return np.ascontiguousarray(vocals[:, latency:])


@contextlib.contextmanager
def _refusing_unrunnable(model, rows: int, windows_done: Callable[[], int]):
    """Refuse a model that loads but cannot run, in one line, without a silent run up front.

    When the block raises :class:`ModelError` before any window succeeded
    (``windows_done()`` is 0), one silent ``(rows, window)`` batch is run: if the model
    cannot separate silence either, that is the refusal ("the model cannot separate a silent
    window: ..."); otherwise the block's own error stands. Stems are written to hidden files
    until the end, so either way nothing is left behind. rows 0: no silent check.
    """
    try:
        yield
    except ModelError:
        if rows and not windows_done():
            _refuse_unrunnable(model, rows)
        raise


def _refuse_unrunnable(model, rows: int) -> None:
    """Run one silent (rows, window) batch: a model that loads but cannot run is refused
    with one line."""
    silence = np.zeros((rows, model.contract.window_samples), np.float32)
    try:
        model.separate(silence)
    except Exception as error:  # any failure of the model is a refusal of that model
        raise ModelError(
            f"the model cannot separate a silent window: {typed_first_line(error)}"
        ) from None


@contextlib.contextmanager
def _offline_engine(
    model, sample_rate: int, channels: int, config: EngineConfig, warm_up: bool = True
):
    """A blocking, strict engine (vocals mode, no limiter) around ``model`` for whole files:
    live, a window the model fails on plays the dry mix; offline that would be a silent
    defect, so the first such window raises :class:`ModelError` with the model's reason.
    warm_up: refuse a model that cannot run at all with one line (a silent window through
    the engine's path, run only when the first window failed: no warm-up run offline)."""
    with Separator(
        model,
        sample_rate,
        channels,
        config,
        mode="vocals",
        blocking=True,
        strict=True,
        limit=False,
    ) as engine:
        try:
            yield engine
        except ModelError:
            if warm_up and not engine.stats.windows_run:
                engine.warm_up()
            raise
