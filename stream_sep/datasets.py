"""Readers of evaluation data on disk: MUSDB18 (16 kHz wav), MUSDB18-HQ (44.1 kHz wav), MIR-1K.

The host's own small readers (``train/`` has its own; ``stream_sep`` never imports it).

Layouts:

- ``musdb``: ``<root>/<split>/<song>/{drums,bass,other,vocals}.wav`` at 16 kHz (the seed's
  converted layout, which has no mixture file), optionally with ``mixture.wav``.
- ``musdb-hq``: the same layout at 44.1 kHz (MUSDB18-HQ as distributed has ``mixture.wav``).
- ``mir1k``: stereo ``.wav``/``.flac`` files directly in ``<root>``, channel 0 the
  accompaniment, channel 1 the singing voice, named ``<singer>_<song>_<clip>``.

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

from stream_sep.errors import AudioFileError, UserError

log = logging.getLogger(__name__)

FORMATS = ("musdb", "musdb-hq", "mir1k")
SPLITS = ("train", "test")
MUSDB_STEMS = ("drums", "bass", "other", "vocals")
MUSDB_RATES = {"musdb": 16000, "musdb-hq": 44100}
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


def read_audio(path: Path) -> tuple[np.ndarray, int]:
    """Read an audio file as ((channels, samples) float32, sample_rate)."""
    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (soundfile.SoundFileError, RuntimeError, OSError) as error:
        reason = getattr(error, "error_string", None) or str(error)
        raise AudioFileError(f"cannot read audio file {path}: {reason}") from error
    if data.shape[0] == 0:
        raise AudioFileError(f"audio file {path} has no samples")
    return np.ascontiguousarray(data.T), int(rate)


def find_clips(
    root: str | Path,
    data_format: str,
    split: str | None = None,
    singers: list[str] | None = None,
    limit: int | None = None,
    every: int = 1,
) -> list[ClipRef]:
    """List the clips of a dataset folder, sorted by name: every ``every``-th one (a sample
    spread over all singers or songs), at most ``limit`` of them.

    split: ``train`` or ``test`` for the MUSDB formats (default ``test``); not for mir1k.
    singers: MIR-1K singer names to keep (the part of the file name before the first ``_``).
    """
    root = Path(root)
    if every < 1:
        raise UserError(f"--every must be a positive integer, got {every}")
    if data_format not in FORMATS:
        raise UserError(f"--format must be one of {', '.join(FORMATS)}, got {data_format!r}")
    if not root.is_dir():
        raise UserError(f"--data {str(root)!r} is not a directory")
    if data_format == "mir1k":
        if split is not None:
            raise UserError(f"--split applies to the musdb formats only, got --split {split}")
        clips = _find_mir1k(root, singers)
    else:
        if singers:
            raise UserError("--singers applies to --format mir1k only")
        clips = _find_musdb(root, data_format, split or "test")
    clips = clips[::every]
    return clips if limit is None else clips[:limit]


def _find_musdb(root: Path, data_format: str, split: str) -> list[ClipRef]:
    if split not in SPLITS:
        raise UserError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    folder = root / split
    if not folder.is_dir():
        raise UserError(
            f"no {split!r} folder in --data {str(root)!r}: --format {data_format} expects "
            f"<root>/{{train,test}}/<song>/{{{','.join(MUSDB_STEMS)}}}.wav"
        )
    songs = sorted(path for path in folder.iterdir() if path.is_dir())
    if not songs:
        raise UserError(f"no song folders in {str(folder)!r}")
    return [ClipRef(song.name, data_format, song) for song in songs]


def _find_mir1k(root: Path, singers: list[str] | None) -> list[ClipRef]:
    files = sorted(
        path for path in root.iterdir() if path.is_file() and path.suffix.lower() in MIR1K_SUFFIXES
    )
    if not files:
        raise UserError(
            f"no .wav or .flac files in --data {str(root)!r} (--format mir1k expects stereo "
            "files <singer>_<song>_<clip>.wav|.flac directly in the folder)"
        )
    clips = [ClipRef(path.stem, "mir1k", path) for path in files]
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


def mir1k_singer(name: str) -> str:
    """The singer of a MIR-1K clip name ``<singer>_<song>_<clip>``."""
    return name.split("_", 1)[0]


def load_clip(ref: ClipRef) -> Clip:
    """Read one clip into memory; bad files raise :class:`AudioFileError` naming the file."""
    if ref.data_format == "mir1k":
        return _load_mir1k(ref)
    return _load_musdb(ref)


def _load_mir1k(ref: ClipRef) -> Clip:
    audio, rate = read_audio(ref.path)
    if audio.shape[0] != 2:
        raise AudioFileError(
            f"{ref.path} has {audio.shape[0]} channel(s); --format mir1k expects 2 "
            "(channel 0 accompaniment, channel 1 vocals)"
        )
    accompaniment, vocals = audio[0:1], audio[1:2]
    return Clip(ref.name, rate, accompaniment + vocals, vocals, accompaniment)


def _load_musdb(ref: ClipRef) -> Clip:
    missing = [stem for stem in MUSDB_STEMS if not (ref.path / f"{stem}.wav").is_file()]
    if missing:
        raise AudioFileError(
            f"song folder {ref.path} lacks {', '.join(s + '.wav' for s in missing)} "
            f"(--format {ref.data_format} needs {', '.join(s + '.wav' for s in MUSDB_STEMS)})"
        )
    names = list(MUSDB_STEMS)
    if (ref.path / "mixture.wav").is_file():
        names.append("mixture")
    stems, rate = _read_matching(ref, names)
    accompaniment = stems["drums"] + stems["bass"] + stems["other"]
    mixture = stems.get("mixture", accompaniment + stems["vocals"])
    return Clip(ref.name, rate, mixture, stems["vocals"], accompaniment)


def _read_matching(ref: ClipRef, names: list[str]) -> tuple[dict[str, np.ndarray], int]:
    """Read ``<song>/<name>.wav`` for each name; same rate and channels, cut to the shortest."""
    expected_rate = MUSDB_RATES[ref.data_format]
    stems = {}
    for name in names:
        path = ref.path / f"{name}.wav"
        audio, rate = read_audio(path)
        if rate != expected_rate:
            other = "musdb-hq" if ref.data_format == "musdb" else "musdb"
            raise AudioFileError(
                f"{path} is {rate} Hz; --format {ref.data_format} expects {expected_rate} Hz"
                + (f" (try --format {other})" if rate == MUSDB_RATES[other] else "")
            )
        stems[name] = audio
    channels = {name: audio.shape[0] for name, audio in stems.items()}
    if len(set(channels.values())) != 1:
        raise AudioFileError(f"stems in {ref.path} differ in channel count: {channels}")
    lengths = {audio.shape[1] for audio in stems.values()}
    if len(lengths) > 1:
        log.warning("stems in %s differ in length; cutting to %d samples", ref.path, min(lengths))
    shortest = min(lengths)
    return {name: audio[:, :shortest] for name, audio in stems.items()}, expected_rate
