"""Augmentation recipes for the random-mix training set (``--augmentation``).

- ``none``: stems as read (``--no-augmentation``).
- ``seed``: the seed's per-stem augmentations (:class:`Augmenter`), the default.
- ``produced``: makes amateur karaoke vocals (MIR-1K) sound more like the vocals of produced
  music (:class:`ProducedAugmenter`): pitch shift, EQ, compression and reverb on the vocals,
  and the vocal level set against the accompaniment.

An augmenter is called once per mono chunk, ``augmenter(audio, stem, rng)`` with ``audio``
(window,) float32, and once per example, ``augmenter.balance(stems, rng)``, after the stems
are chosen (the mixture is their sum afterwards).
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import tempfile
from pathlib import Path

import audiomentations as aug
import numpy as np
import soundfile as sf
from audiomentations.core.transforms_interface import BaseWaveformTransform
from scipy.signal import lfilter

from stream_sep.errors import UserError
from stream_sep.models.contract import SAMPLE_RATE

log = logging.getLogger(__name__)

RECIPES = ("none", "seed", "produced")
DEFAULT_RECIPE = "seed"


def recipe_name(value: bool | str | None) -> str:
    """A recipe name from ``--augmentation`` (or a run saved before recipes: True/False)."""
    if value is True or value is None:
        return DEFAULT_RECIPE
    if value is False:
        return "none"
    if value not in RECIPES:
        raise UserError(f"--augmentation must be one of {', '.join(RECIPES)}, got {value!r}")
    return value


def make_augmenter(
    recipe: bool | str, sample_rate: int = SAMPLE_RATE, vocal_pitch_shift=None
) -> Augmenter | None:
    """The augmenter of a recipe; None for ``none``. ``vocal_pitch_shift`` (low semitones,
    high semitones, probability) replaces the recipe's own pitch shift of the vocals."""
    recipe = recipe_name(recipe)
    if recipe == "none":
        return None
    if recipe == "seed":
        return Augmenter(sample_rate, vocal_pitch_shift)
    return ProducedAugmenter(sample_rate, vocal_pitch_shift=vocal_pitch_shift)


def check_pitch_shift(value) -> tuple[float, float, float]:
    """``--vocal-pitch-shift LOW,HIGH,P`` checked: -12 <= LOW <= HIGH <= 12, 0 <= P <= 1."""
    if len(value) != 3:
        raise UserError(f"--vocal-pitch-shift takes LOW,HIGH,P (three numbers), got {value}")
    low, high, p = (float(number) for number in value)
    if not -12 <= low <= high <= 12 or not 0 <= p <= 1:
        raise UserError(
            "--vocal-pitch-shift must be LOW,HIGH,P with -12 <= LOW <= HIGH <= 12 semitones "
            f"and a probability P in [0, 1], got {low:g},{high:g},{p:g}"
        )
    return low, high, p


def _rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))


# ---------------------------------------------------------------- the seed's recipe


def level_and_polarity(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The seed's chunk-level changes, first in every recipe: a gain of 0.5-1.5, reversed
    (p=0.1), polarity flipped (p=0.5). (window,) -> (window,) contiguous float32.

    One loudness gain per chunk. (The seed draws a gain per *sample*, which multiplies the
    stem by white noise; a per-chunk gain is the loudness change it describes.)
    """
    audio = audio * np.float32(rng.uniform(0.5, 1.5))
    if rng.uniform() < 0.1:
        audio = audio[::-1]
    if rng.uniform() < 0.5:
        audio = -audio
    return np.ascontiguousarray(audio, dtype=np.float32)


class Augmenter:
    """The seed's per-stem augmentations (audiomentations), applied to one mono chunk;
    ``vocal_pitch_shift`` (low, high semitones, probability) replaces :data:`PITCH`."""

    PITCH = (-5.0, 5.0, 0.1)

    def __init__(self, sample_rate: int = SAMPLE_RATE, vocal_pitch_shift=None):
        self.sample_rate = sample_rate
        low, high, pitch_p = vocal_pitch_shift or self.PITCH
        self.vocals = [
            aug.PitchShift(min_semitones=low, max_semitones=high, p=pitch_p),
            aug.SevenBandParametricEQ(-9, 9, p=0.25),
            aug.TanhDistortion(0.1, 0.7, p=0.1),
        ]
        self.other = [aug.PitchShift(p=0.1), aug.AddGaussianNoise(p=0.1)]

    def __call__(self, audio: np.ndarray, stem: str, rng: np.random.Generator) -> np.ndarray:
        """(window,) float32 -> (window,) float32."""
        audio = level_and_polarity(audio, rng)
        for transform in self.vocals if stem == "vocals" else self.other:
            transform.randomize_parameters(audio, sample_rate=self.sample_rate)
            audio = transform(audio, sample_rate=self.sample_rate)
        return audio.astype(np.float32, copy=False)

    def balance(self, stems: dict[str, np.ndarray], rng: np.random.Generator) -> dict:
        """Per-example level changes between stems: none in the seed's recipe."""
        return stems


# ---------------------------------------------------------------- the produced recipe


class ProducedAugmenter(Augmenter):
    """Vocals as in produced music; every transform has its own probability.

    Per vocals chunk, after the seed's gain (0.5-1.5), reverse (p=0.1) and polarity (p=0.5):

    ==========================  ====  =================================================
    pitch shift                 0.3   +-2 semitones (signalsmith stretch)
    7-band parametric EQ        0.5   +-9 dB per band
    compression                 0.4   threshold 3-12 dB under the loud frames, ratio 2-4
    reverb                      0.5   one of 48 synthetic rooms, RT60 0.2-1.2 s, loudness kept
    tanh distortion             0.1   amount 0.1-0.7 (the seed's)
    ==========================  ====  =================================================

    Other stems get the seed's treatment. Per example (:meth:`balance`), with p=0.8 the
    vocals are scaled to a vocal-to-accompaniment ratio (RMS) drawn from -8..+4 dB, the gain
    limited to +-20 dB. Parameters come from ``rng`` alone (audiomentations' global
    generators are seeded from it), so a chunk and a generator state give one result.
    """

    PITCH = (-2.0, 2.0, 0.3)
    EQ_DB, EQ_P = 9.0, 0.5
    COMPRESSION_P = 0.4
    REVERB_P = 0.5
    VOCAL_TO_ACCOMPANIMENT_DB = (-8.0, 4.0)
    BALANCE_P = 0.8
    MAX_BALANCE_GAIN_DB = 20.0

    def __init__(
        self,
        sample_rate: int = SAMPLE_RATE,
        impulse_responses: Path | None = None,
        vocal_pitch_shift=None,
    ):
        super().__init__(sample_rate)
        rooms = impulse_responses or ensure_impulse_responses(sample_rate=sample_rate)
        low, high, pitch_p = vocal_pitch_shift or self.PITCH
        self.vocals = [
            aug.PitchShift(min_semitones=low, max_semitones=high, p=pitch_p),
            aug.SevenBandParametricEQ(-self.EQ_DB, self.EQ_DB, p=self.EQ_P),
            Compressor(p=self.COMPRESSION_P),
            Reverb(rooms, p=self.REVERB_P),
            aug.TanhDistortion(0.1, 0.7, p=0.1),
        ]

    def __call__(self, audio: np.ndarray, stem: str, rng: np.random.Generator) -> np.ndarray:
        random.seed(int(rng.integers(2**31)))
        np.random.seed(int(rng.integers(2**31)))
        audio = level_and_polarity(audio, rng)
        for transform in self.vocals if stem == "vocals" else self.other:
            audio = transform(audio, sample_rate=self.sample_rate)
        return audio.astype(np.float32, copy=False)

    def balance(self, stems: dict[str, np.ndarray], rng: np.random.Generator) -> dict:
        """Scale the vocals to a drawn vocal-to-accompaniment ratio (with p=0.8)."""
        if "vocals" not in stems or len(stems) < 2 or rng.uniform() >= self.BALANCE_P:
            return stems
        target_db = rng.uniform(*self.VOCAL_TO_ACCOMPANIMENT_DB)
        vocals = _rms(stems["vocals"])
        accompaniment = _rms(sum(a for s, a in stems.items() if s != "vocals"))
        if vocals < 1e-6 or accompaniment < 1e-6:
            return stems
        gain_db = np.clip(
            target_db - 20 * np.log10(vocals / accompaniment),
            -self.MAX_BALANCE_GAIN_DB,
            self.MAX_BALANCE_GAIN_DB,
        )
        gain = np.float32(10 ** (gain_db / 20))
        return {**stems, "vocals": (stems["vocals"] * gain).astype(np.float32)}


class Reverb(aug.ApplyImpulseResponse):
    """audiomentations' ApplyImpulseResponse at the input's loudness.

    The library scales the reverberant signal's peak to 0.5; this keeps the chunk's RMS
    instead, so the recipe's level changes stay where they were drawn.
    """

    def __init__(self, ir_path, p: float = 0.5):
        super().__init__(ir_path, p=p, leave_length_unchanged=True)

    def apply(self, samples: np.ndarray, sample_rate: int) -> np.ndarray:
        wet = super().apply(samples, sample_rate)
        level = _rms(wet)
        return (wet * np.float32(_rms(samples) / level if level > 0 else 0.0)).astype(np.float32)


class Compressor(BaseWaveformTransform):
    """pedalboard's compressor (JUCE's), its threshold set from the chunk itself.

    The threshold is 3-12 dB under the chunk's 95th-percentile level of 5 ms frames, so
    quiet and loud chunks are both compressed; ratio 2-4, attack 5 ms, release 50-200 ms;
    the chunk's RMS is restored afterwards (make-up gain). (audiomentations' Limiter needs
    the numpy-audio-limiter package and has no ratio.)
    """

    FRAME_SECONDS = 0.005
    ATTACK_MS = 5.0

    def randomize_parameters(self, samples: np.ndarray, sample_rate: int):
        super().randomize_parameters(samples, sample_rate)
        if self.parameters["should_apply"]:
            self.parameters["below_loud_db"] = random.uniform(3.0, 12.0)
            self.parameters["ratio"] = random.uniform(2.0, 4.0)
            self.parameters["release"] = random.uniform(0.05, 0.2)

    def apply(self, samples: np.ndarray, sample_rate: int) -> np.ndarray:
        """(n,) float32 -> (n,) float32 at the input's RMS."""
        import pedalboard

        hop = max(int(self.FRAME_SECONDS * sample_rate), 1)
        frames = -(-len(samples) // hop)
        padded = np.pad(samples, (0, frames * hop - len(samples)))
        level_db = 10 * np.log10(np.mean(np.square(padded.reshape(frames, hop)), axis=1) + 1e-12)
        compressor = pedalboard.Compressor(
            threshold_db=float(np.percentile(level_db, 95) - self.parameters["below_loud_db"]),
            ratio=float(self.parameters["ratio"]),
            attack_ms=self.ATTACK_MS,
            release_ms=float(self.parameters["release"] * 1000),
        )
        out = compressor(np.ascontiguousarray(samples, np.float32)[None, :], sample_rate)[0]
        level = _rms(out)
        return (out * (_rms(samples) / level if level > 0 else 0.0)).astype(np.float32)


# ---------------------------------------------------------------- synthetic rooms

IMPULSE_RESPONSES = 48
IMPULSE_RESPONSE_VERSION = 1
RT60_SECONDS = (0.2, 1.2)
PRE_DELAY_SECONDS = (0.005, 0.04)
DIRECT_TO_REVERB_DB = (-3.0, 10.0)
DAMPING_HZ = (2000.0, 7000.0)


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/stream-sep`` (``~/.cache/stream-sep``)."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "stream-sep"


def ensure_impulse_responses(
    cache_dir: Path | None = None, sample_rate: int = SAMPLE_RATE, count: int = IMPULSE_RESPONSES
) -> Path:
    """The folder of synthetic room impulse responses, written on first use.

    ``<cache>/impulse-responses-v<version>-<rate>-<count>/room-NN.wav`` (float32 wav), the
    same files for every run (seed 0). Written to a temporary folder and renamed into place,
    so a half-written set is never used.
    """
    folder = (cache_dir or default_cache_dir()) / (
        f"impulse-responses-v{IMPULSE_RESPONSE_VERSION}-{sample_rate}-{count}"
    )
    if folder.is_dir():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".rooms-", dir=folder.parent))
    try:
        rng = np.random.default_rng(0)
        for index in range(count):
            response = synthetic_impulse_response(rng, sample_rate)
            sf.write(staging / f"room-{index:02d}.wav", response, sample_rate, subtype="FLOAT")
        try:
            staging.rename(folder)
        except OSError:
            if not folder.is_dir():  # another process won the race: use its folder
                raise
        log.info("wrote %d synthetic room impulse responses to %s", count, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def synthetic_impulse_response(rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """A room: the direct sound (1.0 at t=0), a pre-delay, then low-pass filtered noise
    decaying by 60 dB over RT60; the tail's energy sits a drawn direct-to-reverberant
    ratio under the direct sound's. Returns (samples,) float32."""
    rt60 = rng.uniform(*RT60_SECONDS)
    delay = int(rng.uniform(*PRE_DELAY_SECONDS) * sample_rate)
    length = int(rt60 * sample_rate)
    t = np.arange(length) / sample_rate
    tail = rng.normal(0.0, 1.0, length) * 10 ** (-3 * t / rt60)
    pole = np.exp(-2 * np.pi * rng.uniform(*DAMPING_HZ) / sample_rate)
    tail = lfilter([1 - pole], [1, -pole], tail)
    ratio_db = rng.uniform(*DIRECT_TO_REVERB_DB)
    tail *= np.sqrt(10 ** (-ratio_db / 10) / np.sum(tail**2))
    response = np.zeros(delay + length, np.float32)
    response[0] = 1.0
    response[delay:] += tail.astype(np.float32)
    return response
