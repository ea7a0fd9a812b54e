"""Training data: MUSDB18 (16 kHz wav), MUSDB18-HQ (44.1 kHz wav) and MIR-1K tracks, and the
seed's random-mix training set.

The layouts are :mod:`stream_sep.evaluation.datasets`' (the same folders evaluation reads); this module
holds them as *tracks*: one song or clip as a set of mono stems at the model's sample rate
that sum to the mixture. MUSDB tracks have ``drums, bass, other, vocals``; MIR-1K clips have
``accompaniment`` (channel 0) and ``vocals`` (channel 1).
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import soundfile as sf

from stream_sep.errors import UserError
from stream_sep.evaluation import datasets
from stream_sep.models.contract import SAMPLE_RATE
from train.augment import Augmenter, make_augmenter, recipe_name  # noqa: F401 - Augmenter re-exported

log = logging.getLogger(__name__)

FORMATS = datasets.FORMATS
# The seed rejects chunks quieter than this mean absolute amplitude.
SILENCE_THRESHOLD = 0.01
# The seed retries a silent chunk without limit; we give up after this many draws.
MAX_SILENT_RETRIES = 100


class Track:
    """One song: mono float32 stems at ``SAMPLE_RATE``, read in chunks."""

    name: str
    stems: tuple[str, ...]
    length: int

    def read(self, stem: str, start: int, frames: int) -> np.ndarray:
        """``frames`` samples of ``stem`` from ``start``, zero-padded past the end: (frames,)."""
        raise NotImplementedError


class MemoryTrack(Track):
    """A track held in RAM (MIR-1K clips are short; preloading keeps a step cheap)."""

    def __init__(self, name: str, stems: dict[str, np.ndarray]):
        self.name = name
        self.stems = tuple(stems)
        self.length = _common_length(name, {k: len(v) for k, v in stems.items()})
        self.audio = {
            k: np.ascontiguousarray(v[: self.length], dtype=np.float32) for k, v in stems.items()
        }

    def read(self, stem: str, start: int, frames: int) -> np.ndarray:
        chunk = self.audio[stem][start : start + frames]
        return np.pad(chunk, (0, frames - len(chunk)))


class WavTrack(Track):
    """A MUSDB song directory, one file per stem, read from disk and resampled per chunk."""

    def __init__(self, name: str, paths: dict[str, Path], file_rate: int):
        self.name = name
        self.stems = tuple(paths)
        self.paths = paths
        self.file_rate = file_rate
        frames = {stem: datasets.audio_info(path).frames for stem, path in paths.items()}
        file_length = _common_length(name, frames)
        self.length = int(file_length * SAMPLE_RATE // self.file_rate)

    def read(self, stem: str, start: int, frames: int) -> np.ndarray:
        ratio = self.file_rate / SAMPLE_RATE
        file_start = int(start * ratio)
        # a few extra samples so the resampler's output covers ``frames``
        file_frames = math.ceil(frames * ratio) + (64 if ratio != 1 else 0)
        audio, _ = sf.read(
            self.paths[stem], file_frames, file_start, dtype="float32", always_2d=True
        )
        mono = audio.mean(axis=1)
        mono = datasets.resample(mono[np.newaxis], self.file_rate, SAMPLE_RATE)[0, :frames]
        return np.pad(mono, (0, frames - len(mono))).astype(np.float32)


def _common_length(name: str, lengths: dict[str, int]) -> int:
    """The shortest stem's length, with a warning when stems differ (the seed's rule)."""
    if len(set(lengths.values())) > 1:
        log.warning("%s has stems of different lengths %s; using the shortest", name, lengths)
    return min(lengths.values())


# ---------------------------------------------------------------- dataset readers


def load_musdb(root: Path, split: str, data_format: str = "musdb") -> list[Track]:
    """``<root>/<split>/<song>/{drums,bass,other,vocals}.wav`` (MUSDB18 wav or MUSDB18-HQ)."""
    tracks = []
    for song in datasets.musdb_songs(Path(root), split, data_format):
        paths = datasets.musdb_stem_paths(song, data_format)
        tracks.append(WavTrack(song.name, paths, datasets.musdb_rate(song, paths)))
    return tracks


def mir1k_singer(path: Path) -> str:
    """The singer of a MIR-1K clip: ``<singer>_<song>_<clip>.wav`` -> ``singer``."""
    return datasets.mir1k_singer(path.stem)


def load_mir1k_clip(path: Path) -> MemoryTrack:
    """A MIR-1K clip at ``SAMPLE_RATE`` (resampled with soxr when the file has another rate)."""
    stems, rate = datasets.read_mir1k(path)
    return MemoryTrack(
        path.stem,
        {stem: datasets.resample(audio, rate, SAMPLE_RATE)[0] for stem, audio in stems.items()},
    )


def split_mir1k(
    files: Sequence[Path], val_singers: Sequence[str] | None, val_split: float, seed: int
) -> tuple[list[Path], list[Path]]:
    """Hold out whole singers: the named ones, or a ``val_split`` share chosen with ``seed``."""
    singers = sorted({mir1k_singer(p) for p in files})
    if val_singers:
        unknown = sorted(set(val_singers) - set(singers))
        if unknown:
            raise UserError(
                f"--val-singers: unknown singer(s) {', '.join(unknown)}; the data has {', '.join(singers)}"
            )
        held_out = set(val_singers)
    else:
        count = max(1, round(val_split * len(singers))) if val_split > 0 else 0
        held_out = set(random.Random(seed).sample(singers, count))
    train = [p for p in files if mir1k_singer(p) not in held_out]
    val = [p for p in files if mir1k_singer(p) in held_out]
    if not train:
        raise UserError("no training clips left after holding out the validation singers")
    return train, val


def load_tracks(
    data: Path,
    fmt: str,
    val_singers: Sequence[str] | None = None,
    val_split: float = 0.15,
    seed: int = 0,
) -> tuple[list[Track], list[Track], dict]:
    """Training and validation tracks of a dataset, and a description for config.json."""
    datasets.check_format(fmt)
    data = Path(data)
    if not data.is_dir():
        raise UserError(f"--data {data}: not a directory")
    if fmt in ("musdb", "musdb-hq"):
        train, val = load_musdb(data, "train", fmt), load_musdb(data, "test", fmt)
        return train, val, {"train_songs": len(train), "val_songs": len(val)}
    train_files, val_files = split_mir1k(datasets.find_mir1k(data), val_singers, val_split, seed)
    train = [load_mir1k_clip(p) for p in train_files]
    val = [load_mir1k_clip(p) for p in val_files]
    info = {
        "val_singers": sorted({mir1k_singer(p) for p in val_files}),
        "train_clips": len(train),
        "val_clips": len(val),
    }
    return train, val, info


# ---------------------------------------------------------------- the seed's dataset


class RandomMixDataset(keras.utils.PyDataset):
    """The seed's training set: every batch is a fresh random mix.

    Each stem comes from a random track at a random offset (silent chunks are drawn again),
    is augmented, and sometimes mixed up with a second chunk of the same stem; the mixture is
    the sum of the stems. With ``original_pairs_fraction`` > 0 that share of the examples are
    instead the aligned stems of one track (a real mixture).

    ``augmentation`` is a recipe of :mod:`train.augment` (``none``, ``seed``, ``produced``);
    True and False (the flag of runs saved before recipes) mean ``seed`` and ``none``;
    ``vocal_pitch_shift`` (low, high semitones, probability) replaces its vocals' pitch shift.
    With a ``fullband`` mixer (:class:`train.fullband.mix.FullBandMixer`), a share
    ``fullband_share`` of the examples are instead a vocals chunk of the tracks in a rendered
    full-band song (vocals as the only source); with a ``multitrack`` mixer
    (:class:`train.multitrack.MultitrackMixer`), a share ``multitrack_share`` are real songs'
    stems (vocals as the only source).

    Batches: x (batch_size, window) float32 mixtures, y (batch_size, n_sources, window).
    """

    def __init__(
        self,
        tracks: Sequence[Track],
        sources: Sequence[str],
        batch_size: int,
        window: int,
        batches_per_epoch: int,
        augmentation: bool | str = True,
        original_pairs_fraction: float = 0.0,
        seed: int = 0,
        vocal_pitch_shift=None,
        fullband=None,
        fullband_share: float = 0.0,
        multitrack=None,
        multitrack_share: float = 0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not tracks:
            raise UserError("the training split has no tracks")
        self.tracks = list(tracks)
        self.stems = self.tracks[0].stems
        missing = [s for s in sources if s not in self.stems]
        if missing:
            raise UserError(
                f"sources {missing} are not stems of the data ({', '.join(self.stems)})"
            )
        self.sources = tuple(sources)
        self.batch_size = batch_size
        self.window = window
        self.batches_per_epoch = batches_per_epoch
        self.augmentation = recipe_name(augmentation)
        self.original_pairs_fraction = original_pairs_fraction
        self.seed = seed
        self.epoch = 0
        self.augmenter = make_augmenter(self.augmentation, vocal_pitch_shift=vocal_pitch_shift)
        self.fullband = fullband
        self.fullband_share = fullband_share if fullband is not None else 0.0
        self.multitrack = multitrack
        self.multitrack_share = multitrack_share if multitrack is not None else 0.0
        if self.fullband_share + self.multitrack_share > 0 and self.sources != ("vocals",):
            raise UserError(
                "full-band and multitrack examples train the vocals alone; "
                f"--sources is {','.join(sources)}"
            )

    def __len__(self) -> int:
        return self.batches_per_epoch

    def on_epoch_end(self) -> None:
        self.epoch += 1

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, self.epoch, int(index or 0)])
        # audiomentations draws from the global generators; seed them from this batch
        random.seed(int(rng.integers(2**31)))
        np.random.seed(int(rng.integers(2**31)))
        examples = [self.example(rng) for _ in range(self.batch_size)]
        mixtures = np.stack([sum(stems.values()) for stems in examples]).astype(np.float32)
        targets = np.stack([[stems[s] for s in self.sources] for stems in examples])
        return mixtures, targets.astype(np.float32)

    def example(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """One training example: stem name -> (window,) float32."""
        draw = rng.uniform() if self.fullband_share + self.multitrack_share > 0 else 1.0
        if draw < self.fullband_share:
            return self.fullband.example(self.plain_chunk("vocals", rng), rng, self.stems)
        if draw < self.fullband_share + self.multitrack_share:
            return self.multitrack.example(self.window, rng, self.stems)
        if rng.uniform() < self.original_pairs_fraction:
            stems = self.original_pair(rng)
        else:
            stems = {}
            for stem in self.stems:
                chunks = [self.random_chunk(stem, rng)]
                if self.augmenter:
                    chunks += [
                        self.random_chunk(stem, rng) for p in (0.2, 0.02) if rng.uniform() < p
                    ]
                stems[stem] = np.mean(chunks, axis=0, dtype=np.float32)
        return self.augmenter.balance(stems, rng) if self.augmenter else stems

    def random_chunk(self, stem: str, rng: np.random.Generator) -> np.ndarray:
        """A non-silent, augmented chunk of ``stem`` from a random track: (window,)."""
        return self.augment(self.plain_chunk(stem, rng), stem, rng)

    def plain_chunk(self, stem: str, rng: np.random.Generator) -> np.ndarray:
        """A non-silent chunk of ``stem`` from a random track, as read: (window,)."""
        for _ in range(MAX_SILENT_RETRIES):
            track = self.tracks[rng.integers(len(self.tracks))]
            chunk = track.read(stem, self.random_start(track, rng), self.window)
            if np.mean(np.abs(chunk)) >= SILENCE_THRESHOLD:
                return chunk
        raise UserError(
            f"stem '{stem}' was silent (mean |x| < {SILENCE_THRESHOLD}) in {MAX_SILENT_RETRIES} "
            f"random chunks of {len(self.tracks)} track(s); is it silent everywhere in the data?"
        )

    def original_pair(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """All stems of one track at one offset (a real mixture), each augmented."""
        for _ in range(MAX_SILENT_RETRIES):
            track = self.tracks[rng.integers(len(self.tracks))]
            start = self.random_start(track, rng)
            stems = {s: track.read(s, start, self.window) for s in self.stems}
            if all(np.mean(np.abs(stems[s])) >= SILENCE_THRESHOLD for s in self.sources):
                return {s: self.augment(a, s, rng) for s, a in stems.items()}
        raise UserError(
            f"sources {', '.join(self.sources)} were silent in {MAX_SILENT_RETRIES} random chunks"
        )

    def random_start(self, track: Track, rng: np.random.Generator) -> int:
        return int(rng.integers(max(track.length - self.window, 0) + 1))

    def augment(self, chunk: np.ndarray, stem: str, rng: np.random.Generator) -> np.ndarray:
        return self.augmenter(chunk, stem, rng) if self.augmenter else chunk


def fixed_examples(
    tracks: Sequence[Track], sources: Sequence[str], window: int, count: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A fixed validation set: ``count`` aligned, unaugmented chunks of real mixtures.

    Tracks are visited in a shuffled order; chunks whose sources are silent are skipped.
    Returns x (count, window) and y (count, n_sources, window) float32.
    """
    if not tracks:
        raise UserError("the validation split has no tracks")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(tracks))
    mixtures, targets = [], []
    for attempt in range(count * MAX_SILENT_RETRIES):
        track = tracks[order[attempt % len(tracks)]]
        start = int(rng.integers(max(track.length - window, 0) + 1))
        stems = {s: track.read(s, start, window) for s in track.stems}
        if any(np.mean(np.abs(stems[s])) < SILENCE_THRESHOLD for s in sources):
            continue
        mixtures.append(sum(stems.values()))
        targets.append([stems[s] for s in sources])
        if len(mixtures) == count:
            break
    if not mixtures:
        raise UserError(f"every validation chunk has silent {', '.join(sources)}")
    return np.stack(mixtures).astype(np.float32), np.asarray(targets, dtype=np.float32)
