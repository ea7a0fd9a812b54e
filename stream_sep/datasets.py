"""Datasets on disk: MUSDB18 (16 kHz wav), MUSDB18-HQ (44.1 kHz wav) and MIR-1K.

The one owner of these layouts: evaluation reads its clips here (:func:`find_clips`,
:func:`load_clip`), and training (``train/data.py``) finds its songs and clips with the same
functions, so both accept the same folders and treat them alike.

Layouts:

- ``musdb``: ``<root>/<split>/<song>/{drums,bass,other,vocals}.wav`` at 16 kHz (the seed's
  converted layout, which has no mixture file), optionally with ``mixture.wav``.
- ``musdb-hq``: the same layout at 44.1 kHz (MUSDB18-HQ as distributed has ``mixture.wav``).
- ``mir1k``: stereo ``.wav``/``.flac`` files anywhere under ``<root>`` (found recursively,
  sorted by path), channel 0 the accompaniment, channel 1 the singing voice, named
  ``<singer>_<song>_<clip>``.

The stems of one MUSDB song share one sample rate; stems at another rate than the one asked
for (the format's for evaluation, the model's for training) are resampled with soxr.

For MUSDB the accompaniment reference is drums + bass + other, and the mixture is
``mixture.wav`` when present, else the sum of the four stems. For MIR-1K the mixture is the
mono sum of the two channels, and the references are the two channels, mono.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import soundfile
import soxr

from stream_sep.errors import AudioFileError, UserError

log = logging.getLogger(__name__)

FORMATS = ("musdb", "musdb-hq", "mir1k")
SPLITS = ("train", "test")
MUSDB_STEMS = ("drums", "bass", "other", "vocals")
MUSDB_RATES = {"musdb": 16000, "musdb-hq": 44100}
MIR1K_STEMS = ("accompaniment", "vocals")
MIR1K_SUFFIXES = (".wav", ".flac")


@dataclasses.dataclass(frozen=True)
class ClipRef:
    """Where one clip lives on disk; :func:`load_clip` reads it."""

    name: str
    data_format: str
    path: Path  # the song folder (musdb) or the audio file (mir1k)


@dataclasses.dataclass(frozen=True)
class Clip:
    """One evaluation clip, all arrays (channels, samples) float32 at ``sample_rate``."""

    name: str
    sample_rate: int
    mixture: np.ndarray
    vocals: np.ndarray
    accompaniment: np.ndarray

    @property
    def channels(self) -> int:
        return self.mixture.shape[0]

    @property
    def seconds(self) -> float:
        return self.mixture.shape[1] / self.sample_rate


# ------------------------------------------------------------------------- audio files


def read_audio(path: Path) -> tuple[np.ndarray, int]:
    """Read an audio file as ((channels, samples) float32, sample_rate)."""
    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (soundfile.SoundFileError, RuntimeError, OSError) as error:
        raise AudioFileError(f"cannot read audio file {path}: {_reason(error)}") from error
    if data.shape[0] == 0:
        raise AudioFileError(f"audio file {path} has no samples")
    return np.ascontiguousarray(data.T), int(rate)


def audio_info(path: Path):
    """soundfile's header information (``samplerate``, ``frames``, ``channels``) of a file."""
    try:
        return soundfile.info(str(path))
    except (soundfile.SoundFileError, RuntimeError, OSError) as error:
        raise AudioFileError(f"cannot read audio file {path}: {_reason(error)}") from error


def _reason(error: Exception) -> str:
    return getattr(error, "error_string", None) or str(error)


def resample(audio: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    """(channels, samples) at ``rate`` -> (channels, samples') float32 at ``target_rate`` (soxr HQ)."""
    if rate == target_rate:
        return audio
    resampled = soxr.resample(audio.T, rate, target_rate, quality="HQ")
    return np.ascontiguousarray(resampled.T, dtype=np.float32)


# ------------------------------------------------------------------------------ layouts


def check_format(data_format: str) -> None:
    if data_format not in FORMATS:
        raise UserError(f"--format must be one of {', '.join(FORMATS)}, got {data_format!r}")


def musdb_songs(root: Path, split: str, data_format: str = "musdb") -> list[Path]:
    """The song folders of one split, ``<root>/<split>/<song>/``, sorted by name."""
    if split not in SPLITS:
        raise UserError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    folder = Path(root) / split
    if not folder.is_dir():
        raise UserError(
            f"no {split!r} folder in --data {str(root)!r}: --format {data_format} expects "
            f"<root>/{{train,test}}/<song>/{{{','.join(MUSDB_STEMS)}}}.wav"
        )
    songs = sorted(path for path in folder.iterdir() if path.is_dir())
    if not songs:
        raise UserError(f"no song folders in {str(folder)!r}")
    return songs


def musdb_stem_paths(song: Path, data_format: str, mixture: bool = False) -> dict[str, Path]:
    """``{stem: <song>/<stem>.wav}`` for the four stems (and ``mixture`` when asked and present).

    All four stems must exist; their sample rates must agree (see :func:`musdb_rate`).
    """
    missing = [stem for stem in MUSDB_STEMS if not (song / f"{stem}.wav").is_file()]
    if missing:
        raise AudioFileError(
            f"song folder {song} lacks {', '.join(s + '.wav' for s in missing)} "
            f"(--format {data_format} needs {', '.join(s + '.wav' for s in MUSDB_STEMS)})"
        )
    names = [*MUSDB_STEMS, *(["mixture"] if mixture else [])]
    return {name: song / f"{name}.wav" for name in names if (song / f"{name}.wav").is_file()}


def musdb_rate(song: Path, paths: dict[str, Path]) -> int:
    """The one sample rate of a song's files; :class:`AudioFileError` if they differ."""
    rates = {name: int(audio_info(path).samplerate) for name, path in paths.items()}
    if len(set(rates.values())) != 1:
        raise AudioFileError(f"stems in {song} differ in sample rate: {rates}")
    return next(iter(rates.values()))


def find_mir1k(root: Path) -> list[Path]:
    """Every ``.wav``/``.flac`` file under ``root`` (recursively), sorted by path."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"--data {str(root)!r} is not a directory")
    files = sorted(
        path for path in root.rglob("*") if path.suffix.lower() in MIR1K_SUFFIXES and path.is_file()
    )
    if not files:
        raise UserError(
            f"no .wav or .flac files in --data {str(root)!r} (--format mir1k expects stereo "
            "files <singer>_<song>_<clip>.wav|.flac in the folder or below it)"
        )
    return files


def mir1k_singer(name: str) -> str:
    """The singer of a MIR-1K clip name ``<singer>_<song>_<clip>``."""
    return name.split("_", 1)[0]


def mir1k_singers(root: str | Path) -> list[str]:
    """The singers of the MIR-1K clips under ``root``, sorted."""
    return sorted({mir1k_singer(path.stem) for path in find_mir1k(Path(root))})


@dataclasses.dataclass(frozen=True)
class Fold:
    """One cross-validation fold: the singers held out (evaluated) and those trained on."""

    index: int
    held_out: tuple[str, ...]
    training: tuple[str, ...]


def singer_folds(singers, held_out: int = 2) -> list[Fold]:
    """Rotating cross-validation folds over singers, whole singers on one side only.

    The distinct singers are sorted (case-insensitively, then by name); fold ``k`` holds
    out singers ``[k * held_out, (k + 1) * held_out)`` of that order and trains on all the
    others, so each singer is held out in exactly one fold and trained on in all the rest.
    When ``held_out`` does not divide the count, the last fold holds out the remainder.
    12 MIR-1K singers, 2 held out: 6 folds. Raises :class:`UserError` unless
    ``1 <= held_out < number of singers``.
    """
    names = sorted(set(singers), key=lambda name: (name.lower(), name))
    valid = isinstance(held_out, int) and not isinstance(held_out, bool)
    if not valid or not 1 <= held_out < len(names):
        raise UserError(
            f"singers held out per fold must be an integer from 1 to {len(names) - 1} "
            f"(there are {len(names)} singers), got {held_out!r}"
        )
    folds = []
    for index, first in enumerate(range(0, len(names), held_out)):
        out = tuple(names[first : first + held_out])
        folds.append(Fold(index, out, tuple(name for name in names if name not in out)))
    return folds


def read_mir1k(path: Path) -> tuple[dict[str, np.ndarray], int]:
    """One MIR-1K clip: ``({"accompaniment": (1, samples), "vocals": (1, samples)}, rate)``."""
    audio, rate = read_audio(path)
    if audio.shape[0] != 2:
        raise AudioFileError(
            f"{path} has {audio.shape[0]} channel(s); --format mir1k expects 2 "
            "(channel 0 accompaniment, channel 1 vocals)"
        )
    return {"accompaniment": audio[0:1], "vocals": audio[1:2]}, rate


# ---------------------------------------------------------------------- evaluation clips


def find_clips(
    root: str | Path,
    data_format: str,
    split: str | None = None,
    singers: list[str] | None = None,
    limit: int | None = None,
    every: int = 1,
) -> list[ClipRef]:
    """List the clips of a dataset folder, sorted: every ``every``-th one (a sample spread
    over all singers or songs), at most ``limit`` of them.

    split: ``train`` or ``test`` for the MUSDB formats (default ``test``); not for mir1k.
    singers: MIR-1K singer names to keep (the part of the file name before the first ``_``).
    """
    root = Path(root)
    if every < 1:
        raise UserError(f"--every must be a positive integer, got {every}")
    check_format(data_format)
    if not root.is_dir():
        raise UserError(f"--data {str(root)!r} is not a directory")
    if data_format == "mir1k":
        if split is not None:
            raise UserError(f"--split applies to the musdb formats only, got --split {split}")
        clips = _mir1k_clips(root, singers)
    else:
        if singers:
            raise UserError("--singers applies to --format mir1k only")
        songs = musdb_songs(root, split or "test", data_format)
        clips = [ClipRef(song.name, data_format, song) for song in songs]
    clips = clips[::every]
    return clips if limit is None else clips[:limit]


def _mir1k_clips(root: Path, singers: list[str] | None) -> list[ClipRef]:
    clips = [ClipRef(path.stem, "mir1k", path) for path in find_mir1k(root)]
    if not singers:
        return clips
    present = sorted({mir1k_singer(clip.name) for clip in clips})
    unknown = [singer for singer in singers if singer not in present]
    if unknown:
        raise UserError(
            f"--singers: no clips of {', '.join(map(repr, unknown))} in {str(root)!r}; "
            f"singers there: {', '.join(present)}"
        )
    return [clip for clip in clips if mir1k_singer(clip.name) in singers]


def load_clip(ref: ClipRef) -> Clip:
    """Read one clip into memory; bad files raise :class:`AudioFileError` naming the file."""
    if ref.data_format == "mir1k":
        return _load_mir1k(ref)
    return _load_musdb(ref)


def _load_mir1k(ref: ClipRef) -> Clip:
    stems, rate = read_mir1k(ref.path)
    accompaniment, vocals = stems["accompaniment"], stems["vocals"]
    return Clip(ref.name, rate, accompaniment + vocals, vocals, accompaniment)


def _load_musdb(ref: ClipRef) -> Clip:
    stems, rate = _read_matching(ref)
    accompaniment = stems["drums"] + stems["bass"] + stems["other"]
    mixture = stems.get("mixture", accompaniment + stems["vocals"])
    return Clip(ref.name, rate, mixture, stems["vocals"], accompaniment)


def _read_matching(ref: ClipRef) -> tuple[dict[str, np.ndarray], int]:
    """Read the song's stems (and mixture) at the format's rate; same channels, cut to the
    shortest."""
    paths = musdb_stem_paths(ref.path, ref.data_format, mixture=True)
    file_rate = musdb_rate(ref.path, paths)
    rate = MUSDB_RATES[ref.data_format]
    if file_rate != rate:
        log.info("%s: %d Hz files, resampled to %d Hz", ref.path, file_rate, rate)
    stems = {name: resample(read_audio(path)[0], file_rate, rate) for name, path in paths.items()}
    channels = {name: audio.shape[0] for name, audio in stems.items()}
    if len(set(channels.values())) != 1:
        raise AudioFileError(f"stems in {ref.path} differ in channel count: {channels}")
    lengths = {audio.shape[1] for audio in stems.values()}
    if len(lengths) > 1:
        log.warning("stems in %s differ in length; cutting to %d samples", ref.path, min(lengths))
    shortest = min(lengths)
    return {name: audio[:, :shortest] for name, audio in stems.items()}, rate
