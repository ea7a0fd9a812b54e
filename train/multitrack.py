"""Training examples from real multitrack songs: produced records with their true vocal stem.

The songs are folders in the layout ``stream-sep evaluate --format stems`` reads
(:func:`stream_sep.evaluation.datasets.read_song`): ``vocals`` plus ``accompaniment`` (or
``drums``, ``bass``, ``other``) in any format soundfile decodes. They are read once, resampled
to the model's rate and kept in memory in stereo, so a run should name a modest set of songs
(``--multitrack-songs``); a held-out song is one left out of that list.

Per example (:meth:`MultitrackMixer.example`), all drawn from the batch's generator:

1. with probability :data:`OWN_PAIR_P`, one song's own vocals and accompaniment at one
   offset (the record as it was mixed), its vocal level moved by up to
   +-:data:`OWN_LEVEL_DB`; otherwise a vocals chunk of one song over an accompaniment chunk
   of another (or of the same song elsewhere), balanced to a level drawn from
   :data:`train.fullband.mix.VOCAL_TO_BAND_DB`, the voice's polarity flipped with p=0.5;
2. one channel of both: left, right or mid, at random;
3. both scaled by one gain so the mixture's peak is drawn from
   :data:`train.fullband.mix.PEAK`.

Chunks whose vocals are silent (mean ``|x|`` under :data:`VOCAL_SILENCE`, measured on the
stereo chunk) are drawn again. The mixture is the sum of the returned stems.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stream_sep.errors import AudioFileError, UserError
from stream_sep.evaluation import datasets
from stream_sep.models.contract import SAMPLE_RATE
from train.fullband.mix import CHANNELS, PEAK, balance, pick_channel, stems_of

OWN_PAIR_P = 0.5
OWN_LEVEL_DB = 3.0
VOCAL_SILENCE = 0.005  # a sung phrase, not a breath: real vocal stems rest between phrases
MAX_SILENT_RETRIES = 100


@dataclass(frozen=True)
class StemSong:
    """One song at the model's rate: vocals and accompaniment, each (2, n) float32."""

    name: str
    vocals: np.ndarray
    accompaniment: np.ndarray

    @property
    def length(self) -> int:
        return self.vocals.shape[1]

    def chunk(self, stem: str, start: int, frames: int) -> np.ndarray:
        """(2, frames) float32 of ``stem`` from ``start``, zero-padded past the end."""
        audio = self.vocals if stem == "vocals" else self.accompaniment
        piece = audio[:, start : start + frames]
        return np.pad(piece, ((0, 0), (0, frames - piece.shape[1])))


def _stereo(audio: np.ndarray) -> np.ndarray:
    """(C, n) -> (2, n): mono duplicated, more than two channels refused by the caller."""
    return np.repeat(audio, 2, axis=0) if audio.shape[0] == 1 else audio[:2]


def read_stem_song(folder: Path) -> StemSong:
    """A stems-layout song folder at ``SAMPLE_RATE`` (soxr), stereo.
    :class:`UserError` naming the file when the song cannot be used."""
    try:
        clip = datasets.read_song(folder, mix_from_stems=True)
    except AudioFileError as error:
        raise UserError(f"--multitrack: {error}") from None
    if clip.vocals.shape[0] > 2:
        raise UserError(f"--multitrack: {folder} has {clip.vocals.shape[0]} channels; use 1 or 2")
    vocals, accompaniment = (
        _stereo(datasets.resample(audio, clip.sample_rate, SAMPLE_RATE)).astype(np.float32)
        for audio in (clip.vocals, clip.accompaniment)
    )
    return StemSong(folder.name, vocals, accompaniment)


def load_stem_songs(root: Path, names: Sequence[str] | None = None) -> list[StemSong]:
    """The songs in ``root`` (every folder, or those named in ``names``, by folder name)."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"--multitrack {str(root)!r}: not a directory")
    folders = {folder.name: folder for folder in datasets.stems_songs(root)}
    if names:
        unknown = [name for name in names if name not in folders]
        if unknown:
            raise UserError(
                f"--multitrack-songs: no song folder named {', '.join(map(repr, unknown))} in "
                f"{str(root)!r} (songs: {', '.join(sorted(folders))})"
            )
        chosen = [folders[name] for name in names]
    else:
        chosen = list(folders.values())
    return [read_stem_song(folder) for folder in chosen]


def describe(songs: Sequence[StemSong]) -> dict:
    """What a run records about its multitrack songs (names and seconds)."""
    return {
        "songs": [song.name for song in songs],
        "seconds": round(sum(song.length for song in songs) / SAMPLE_RATE, 1),
    }


class MultitrackMixer:
    """Makes training examples from real multitrack ``songs``."""

    def __init__(self, songs: Sequence[StemSong]):
        if not songs:
            raise UserError("--multitrack: no songs to train on")
        self.songs = list(songs)
        self.description = describe(self.songs)

    def example(
        self, frames: int, rng: np.random.Generator, stems: Sequence[str]
    ) -> dict[str, np.ndarray]:
        """One example of ``frames`` samples: stem name -> (frames,) float32 (the dataset's
        ``stems``: the voice is ``vocals``, the band the first other stem)."""
        song, start = self.vocal_chunk_position(frames, rng)
        vocals = song.chunk("vocals", start, frames)
        if rng.uniform() < OWN_PAIR_P:
            band = song.chunk("accompaniment", start, frames)
            vocals = vocals * np.float32(10 ** (rng.uniform(-OWN_LEVEL_DB, OWN_LEVEL_DB) / 20))
        else:
            other = self.songs[rng.integers(len(self.songs))]
            band = other.chunk("accompaniment", self.random_start(other, frames, rng), frames)
            sign = np.float32(-1 if rng.uniform() < 0.5 else 1)
            vocals = balance(vocals * sign, band, rng)
        channel = CHANNELS[rng.integers(len(CHANNELS))]
        band, vocals = pick_channel(band, channel), pick_channel(vocals, channel)
        peak = float(np.max(np.abs(band + vocals)))
        gain = np.float32(rng.uniform(*PEAK) / peak) if peak > 0 else np.float32(1)
        return stems_of(stems, (vocals * gain).astype(np.float32), (band * gain).astype(np.float32))

    def vocal_chunk_position(self, frames: int, rng: np.random.Generator) -> tuple[StemSong, int]:
        """A random song and offset where its vocals are not silent."""
        for _ in range(MAX_SILENT_RETRIES):
            song = self.songs[rng.integers(len(self.songs))]
            start = self.random_start(song, frames, rng)
            if np.mean(np.abs(song.chunk("vocals", start, frames))) >= VOCAL_SILENCE:
                return song, start
        raise UserError(
            f"--multitrack: the vocals were silent in {MAX_SILENT_RETRIES} random chunks of "
            f"{len(self.songs)} song(s)"
        )

    @staticmethod
    def random_start(song: StemSong, frames: int, rng: np.random.Generator) -> int:
        return int(rng.integers(max(song.length - frames, 0) + 1))
