"""Datasets on disk: MUSDB18 (16 kHz wav), MUSDB18-HQ (44.1 kHz wav), MIR-1K, and folders of
songs with their stems in any audio format.

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
- ``stems`` (evaluation only): ``<root>/<song>/`` holding ``vocals`` and either
  ``accompaniment`` or ``drums``, ``bass`` and ``other``, plus ``mixture`` optionally, each in
  any format soundfile reads (``vocals.wav``, ``vocals.flac``, ``vocals.mp3`` ...), at the
  song's own rate, which all its files share; every file of a song must have the same length
  and channel count. A song that breaks this raises :class:`AudioFileError` naming the file,
  so that an evaluation can skip it and go on.

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

FORMATS = ("musdb", "musdb-hq", "mir1k")  # the layouts training reads too
EVALUATION_FORMATS = (*FORMATS, "stems")
SPLITS = ("train", "test")
MUSDB_STEMS = ("drums", "bass", "other", "vocals")
MUSDB_RATES = {"musdb": 16000, "musdb-hq": 44100}
MIR1K_STEMS = ("accompaniment", "vocals")
MIR1K_SUFFIXES = (".wav", ".flac")
SONG_PARTS = ("drums", "bass", "other")  # stems format: their sum is the accompaniment
SONG_FILES = ("vocals", "accompaniment", *SONG_PARTS, "mixture")
SUM_OF_STEMS = "sum of stems"


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
    # stems format: where the mixture came from, "file" or SUM_OF_STEMS; None for the others
    mixture_source: str | None = None

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
    if data_format not in EVALUATION_FORMATS:
        raise UserError(
            f"--format must be one of {', '.join(EVALUATION_FORMATS)}, got {data_format!r}"
        )


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


# ---------------------------------------------------------------------- songs with stems


def stems_songs(root: Path) -> list[Path]:
    """The song folders of a stems dataset: the folders directly in ``root``, sorted by name
    (hidden ones left out)."""
    songs = sorted(
        path for path in Path(root).iterdir() if path.is_dir() and not path.name.startswith(".")
    )
    if not songs:
        raise UserError(
            f"no song folders in --data {str(root)!r} (--format stems expects "
            "<DIR>/<song>/{vocals,accompaniment}.<ext> or vocals, drums, bass, other)"
        )
    return songs


def song_files(song: Path, mix_from_stems: bool = False) -> dict[str, Path]:
    """``{name: path}`` of the files a stems song is scored from: ``vocals``, then
    ``accompaniment`` or ``drums``, ``bass``, ``other``, then ``mixture`` when the folder has
    one and ``mix_from_stems`` is false. A file's name without its extension says what it
    holds (case ignored); other files are not read. :class:`AudioFileError` when the folder
    lacks vocals or the accompaniment, or holds two files for one stem."""
    found: dict[str, list[Path]] = {}
    for path in sorted(song.iterdir()):
        name = path.stem.lower()
        if path.is_file() and not path.name.startswith(".") and name in SONG_FILES:
            found.setdefault(name, []).append(path)
    for name, paths in found.items():
        if len(paths) > 1:
            listed = ", ".join(path.name for path in paths)
            raise AudioFileError(f"{song}: {len(paths)} {name} files ({listed}); keep one")
    expected = "vocals.<ext> and accompaniment.<ext> (or drums, bass and other)"
    if "vocals" not in found:
        raise AudioFileError(f"{song}: no vocals file; a song folder needs {expected}")
    names = ["vocals"]
    if "accompaniment" in found:
        names.append("accompaniment")
    else:
        missing = [part for part in SONG_PARTS if part not in found]
        if missing:
            raise AudioFileError(
                f"{song}: no accompaniment file and no {', '.join(missing)} file; "
                f"a song folder needs {expected}"
            )
        names += SONG_PARTS
    if "mixture" in found and not mix_from_stems:
        names.append("mixture")
    return {name: found[name][0] for name in names}


def check_song_headers(paths: dict[str, Path]) -> None:
    """Refuse a song whose files differ in sample rate, channel count or length, from their
    headers (no decoding): :class:`AudioFileError` naming the first file that differs from
    the vocals."""
    infos = {name: audio_info(path) for name, path in paths.items()}
    first = infos["vocals"]
    for name, info in infos.items():
        _check_alike(
            paths[name],
            paths["vocals"],
            (int(info.samplerate), int(first.samplerate)),
            (info.channels, first.channels),
            (info.frames, first.frames),
        )


def _check_alike(path: Path, vocals: Path, rates, channels, lengths) -> None:
    """Each argument after the paths: (this file's value, the vocals' value)."""
    if rates[0] != rates[1]:
        raise AudioFileError(
            f"{path}: {rates[0]} Hz, but {vocals.name} is at {rates[1]} Hz "
            "(the files of one song must share one sample rate)"
        )
    if channels[0] != channels[1]:
        raise AudioFileError(
            f"{path}: {channels[0]} channel(s), but {vocals.name} has {channels[1]} "
            "(the files of one song must have the same channel count)"
        )
    if lengths[0] != lengths[1]:
        hint = " (or pass --mix-from-stems)" if path.stem.lower() == "mixture" else ""
        raise AudioFileError(
            f"{path}: {lengths[0]} samples, but {vocals.name} has {lengths[1]} "
            f"(the files of one song must have the same length){hint}"
        )


def read_song(song: Path, mix_from_stems: bool = False) -> Clip:
    """One stems song at its own rate: vocals, accompaniment (the file, or drums + bass +
    other) and mixture (the file, or vocals + accompaniment when there is none or
    ``mix_from_stems``). Arrays (channels, samples) float32. :class:`AudioFileError` naming
    the file for anything that makes the song unscorable."""
    paths = song_files(song, mix_from_stems)
    check_song_headers(paths)
    audio, rates = {}, {}
    for name, path in paths.items():
        audio[name], rates[name] = read_audio(path)
        if not np.isfinite(audio[name]).all():
            raise AudioFileError(f"{path}: has NaN or Inf samples")
    first = audio["vocals"]
    for name, stem in audio.items():  # decoded lengths can differ from a header's
        _check_alike(
            paths[name],
            paths["vocals"],
            (rates[name], rates["vocals"]),
            (stem.shape[0], first.shape[0]),
            (stem.shape[1], first.shape[1]),
        )
    if "accompaniment" in audio:
        accompaniment = audio["accompaniment"]
    else:
        accompaniment = audio["drums"] + audio["bass"] + audio["other"]
    vocals = audio["vocals"]
    if "mixture" in audio:
        mixture, source = audio["mixture"], "file"
    else:
        mixture, source = vocals + accompaniment, SUM_OF_STEMS
    return Clip(song.name, rates["vocals"], mixture, vocals, accompaniment, source)


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

    split: ``train`` or ``test`` for the MUSDB formats (default ``test``); not for mir1k or
    stems. singers: MIR-1K singer names to keep (the part of the file name before the first
    ``_``).
    """
    root = Path(root)
    if every < 1:
        raise UserError(f"--every must be a positive integer, got {every}")
    check_format(data_format)
    if not root.is_dir():
        raise UserError(f"--data {str(root)!r} is not a directory")
    if data_format in ("mir1k", "stems") and split is not None:
        raise UserError(f"--split applies to the musdb formats only, got --split {split}")
    if data_format == "mir1k":
        clips = _mir1k_clips(root, singers)
    elif data_format == "stems":
        if singers:
            raise UserError("--singers applies to --format mir1k only")
        clips = [ClipRef(song.name, data_format, song) for song in stems_songs(root)]
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


def load_clip(ref: ClipRef, mix_from_stems: bool = False) -> Clip:
    """Read one clip into memory; bad files raise :class:`AudioFileError` naming the file.
    mix_from_stems (stems format): the mixture is the sum of the stems even where the song
    has a mixture file."""
    if ref.data_format == "mir1k":
        return _load_mir1k(ref)
    if ref.data_format == "stems":
        return read_song(ref.path, mix_from_stems)
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
