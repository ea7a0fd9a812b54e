"""Training examples from the rendered songs: a sung voice placed in a full-band stereo mix,
then one channel of it, as the model hears each channel of a stereo song live.

Per example (:meth:`FullBandMixer.example`), all drawn from the batch's generator:

1. a non-silent stereo chunk of a random rendered song (the accompaniment);
2. the voice: a mono vocals chunk of the training tracks through the produced recipe's vocal
   chain (:data:`VOCAL_CHAIN`: pitch shift, EQ, compression, distortion; its reverb is the
   stereo room below);
3. placed as records place a lead voice: panned near the centre (constant power, pan
   ``-PAN..+PAN``), in a short stereo room (pedalboard's reverb, p=``ROOM_P``);
4. scaled to a vocal-to-accompaniment level drawn from ``VOCAL_TO_BAND_DB`` (:func:`level_db`:
   RMS over both channels after a ``WEIGHTING_HZ`` high-pass, so bass and kick, which fill a
   band's RMS but not its loudness, weigh less);
5. one channel of both: left, right or mid ((L + R) / 2), at random;
6. both scaled by one gain so the mixture's peak is drawn from ``PEAK``.

The stems are returned; the mixture is their sum, so it always equals the targets' sum.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import audiomentations as aug
import numpy as np
from scipy.signal import butter, sosfilt

from stream_sep.errors import UserError
from stream_sep.models.contract import SAMPLE_RATE
from train.augment import Compressor, ProducedAugmenter, check_pitch_shift
from train.fullband.cache import BandSong, describe

PAN = 0.15  # -1 = left, +1 = right
ROOM_P = 0.8
VOCAL_TO_BAND_DB = (-3.0, 5.0)
WEIGHTING_HZ = 150.0
MAX_GAIN_DB = 25.0
PEAK = (0.3, 0.95)
CHANNELS = ("left", "right", "mid")
SILENCE_THRESHOLD = 0.01  # mean |x| of the stereo accompaniment chunk (the seed's threshold)
MAX_SILENT_RETRIES = 100
COMPRESSION_P = 0.7  # lead vocals on records are nearly always compressed


def vocal_chain(vocal_pitch_shift=None) -> list:
    """The produced recipe's vocal transforms without its mono reverb (the room here is
    stereo), with compression more often (p=``COMPRESSION_P``)."""
    low, high, pitch_p = (
        check_pitch_shift(vocal_pitch_shift) if vocal_pitch_shift else ProducedAugmenter.PITCH
    )
    eq = ProducedAugmenter.EQ_DB
    return [
        aug.PitchShift(min_semitones=low, max_semitones=high, p=pitch_p),
        aug.SevenBandParametricEQ(-eq, eq, p=ProducedAugmenter.EQ_P),
        Compressor(p=COMPRESSION_P),
        aug.TanhDistortion(0.1, 0.7, p=0.1),
    ]


def level_db(audio: np.ndarray, rate: int = SAMPLE_RATE) -> float:
    """The level the balance is set by: RMS in dB of ``audio`` (channels, samples) after a
    2nd-order Butterworth high-pass at ``WEIGHTING_HZ``."""
    sos = butter(2, WEIGHTING_HZ, "highpass", fs=rate, output="sos")
    filtered = sosfilt(sos, np.asarray(audio, np.float64), axis=-1)
    return float(10 * np.log10(np.mean(np.square(filtered)) + 1e-20))


def place_voice(voice: np.ndarray, rng: np.random.Generator, rate: int = SAMPLE_RATE) -> np.ndarray:
    """A mono voice (n,) panned near the centre in a short stereo room: (2, n) float32."""
    import pedalboard as pb

    angle = (rng.uniform(-PAN, PAN) + 1) * np.pi / 4
    stereo = np.stack([np.cos(angle) * voice, np.sin(angle) * voice]).astype(np.float32)
    if rng.uniform() < ROOM_P:
        room = pb.Reverb(
            room_size=rng.uniform(0.05, 0.35),
            damping=rng.uniform(0.3, 0.8),
            wet_level=rng.uniform(0.05, 0.25),
            dry_level=1.0,
            width=rng.uniform(0.5, 1.0),
        )
        stereo = room(stereo, rate)
    return np.ascontiguousarray(stereo, np.float32)


class FullBandMixer:
    """Makes full-band examples from rendered ``songs`` and mono vocals chunks."""

    def __init__(self, songs: Sequence[BandSong], vocal_pitch_shift=None):
        if not songs:
            raise UserError("no rendered full-band songs")
        self.songs = list(songs)
        self.description = describe(self.songs)
        self.chain = vocal_chain(vocal_pitch_shift)

    def example(
        self, voice: np.ndarray, rng: np.random.Generator, stems: Sequence[str]
    ) -> dict[str, np.ndarray]:
        """``voice`` (window,) float32 in a random band: stem name -> (window,) float32.

        ``stems`` are the dataset's: the voice is ``vocals``, the band the first other stem,
        and any further stems are silent.
        """
        band = self.band_chunk(len(voice), rng)
        vocals = place_voice(self.sing(voice, rng), rng)
        vocals = balance(vocals, band, rng)
        channel = CHANNELS[rng.integers(len(CHANNELS))]
        band, vocals = pick_channel(band, channel), pick_channel(vocals, channel)
        peak = float(np.max(np.abs(band + vocals)))
        gain = np.float32(rng.uniform(*PEAK) / peak) if peak > 0 else np.float32(1)
        return stems_of(stems, (vocals * gain).astype(np.float32), (band * gain).astype(np.float32))

    def band_chunk(self, frames: int, rng: np.random.Generator) -> np.ndarray:
        """A non-silent stereo chunk of a random song: (2, frames) float32."""
        for _ in range(MAX_SILENT_RETRIES):
            song = self.songs[rng.integers(len(self.songs))]
            start = int(rng.integers(max(song.length - frames, 0) + 1))
            chunk = song.read(start, frames)
            if np.mean(np.abs(chunk)) >= SILENCE_THRESHOLD:
                return chunk
        raise UserError(
            f"the rendered full-band songs were silent in {MAX_SILENT_RETRIES} random chunks"
        )

    def sing(self, voice: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The vocal chain on a mono chunk, polarity flipped with p=0.5: (n,) float32."""
        random.seed(int(rng.integers(2**31)))  # audiomentations draws from the global ones
        np.random.seed(int(rng.integers(2**31)))
        audio = np.ascontiguousarray(voice, np.float32) * np.float32(
            -1 if rng.uniform() < 0.5 else 1
        )
        for transform in self.chain:
            audio = transform(audio, sample_rate=SAMPLE_RATE)
        return audio.astype(np.float32, copy=False)


def balance(vocals: np.ndarray, band: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``vocals`` (2, n) scaled to a vocal-to-accompaniment level drawn from
    ``VOCAL_TO_BAND_DB`` (:func:`level_db`), the gain limited to +-``MAX_GAIN_DB``."""
    gain_db = np.clip(
        rng.uniform(*VOCAL_TO_BAND_DB) - (level_db(vocals) - level_db(band)),
        -MAX_GAIN_DB,
        MAX_GAIN_DB,
    )
    return (vocals * np.float32(10 ** (gain_db / 20))).astype(np.float32)


def pick_channel(stereo: np.ndarray, channel: str) -> np.ndarray:
    """(2, n) -> (n,): ``left``, ``right`` or ``mid`` ((L + R) / 2)."""
    if channel == "mid":
        return (stereo[0] + stereo[1]) * np.float32(0.5)
    return stereo[CHANNELS.index(channel)]


def stems_of(stems: Sequence[str], vocals: np.ndarray, band: np.ndarray) -> dict[str, np.ndarray]:
    others = [s for s in stems if s != "vocals"]
    if "vocals" not in stems or not others:
        raise UserError(f"full-band examples need a vocals stem and another, not {list(stems)}")
    return {
        s: vocals if s == "vocals" else band if s == others[0] else np.zeros_like(band)
        for s in stems
    }
