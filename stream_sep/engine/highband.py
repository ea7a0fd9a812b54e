"""The voice above the model's band: what a 16 kHz model cannot see at a 44.1 kHz stream.

The model separates the window resampled to its rate, so its vocal estimate has nothing
above the model's Nyquist frequency (8 kHz for the bundled model), and karaoke (the delayed
input minus the estimate) keeps every sibilant and breath above it. With a removal fraction
``a > 0`` the window's estimate gets a share of the stream's own high band added:

    estimate += a * r(t) * (x - up(down(x)))

- ``x - up(down(x))``: the stream-rate window minus its round trip through the model rate
  (the same soxr resampling and sample-aligned stretch as the estimate), which is exactly
  the part of the input the model never saw;
- ``r(t)`` in [0, 1]: how much of the top of the model's band the model called voice, per
  STFT frame: ``E_v / (E_v + E_a)`` with ``E_v`` the energy of the vocal estimate and
  ``E_a`` that of the mixture minus it, in the bins of :data:`RATIO_BAND` (fractions of the
  model's Nyquist, below the resampler's roll-off), interpolated linearly between frame
  centres to every stream sample.

So karaoke (input - estimate) keeps ``1 - a r(t)`` of the high band: where the model hears
voice just below its Nyquist, the band above it is attenuated; where it hears instruments
(cymbals, hats), it is kept. The vocals mode gains that band. All of it happens inside the
window, before the crossfade, so the engine's latency, alignment and block-size invariance
are those without it. It does nothing when the stream rate is not above the model's.
"""

from __future__ import annotations

import math

import numpy as np

from stream_sep.dsp import spectral
from stream_sep.engine.plan import WindowPlan
from stream_sep.errors import UserError

RATIO_BAND = (0.7, 0.9)  # of the model's Nyquist: 5.6-7.2 kHz for a 16 kHz model
RATIO_FFT = 512  # 32 ms at 16 kHz
RATIO_HOP = 128
SILENT_ENERGY = 1e-10  # frames quieter than this in the band are not voice (r = 0)


def check_removal(value) -> float:
    """A removal fraction in [0, 1], or one line naming the option."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise UserError(f"--high-band-voice-removal must be a number in [0, 1], got {value!r}")
    return float(value)


def is_active(removal: float, sample_rate: int, model_rate: int) -> bool:
    """Whether a removal fraction changes anything: only above the model's rate."""
    return removal > 0 and sample_rate > model_rate


def voice_ratio(
    vocals: np.ndarray, mixture: np.ndarray, positions: np.ndarray, first: int = 0
) -> np.ndarray:
    """vocals, mixture: (B, n) float32 at the model's rate, starting at model sample
    ``first``; positions: (P,) model-sample positions (same origin) -> (B, P) float64 r(t),
    interpolated linearly between STFT frame centres (constant beyond the outer ones)."""
    bins = _ratio_bins()
    voice = _band_energy(vocals, bins)
    rest = _band_energy(mixture - vocals, bins)
    total = voice + rest
    ratio = np.where(total > SILENT_ENERGY, voice / np.maximum(total, SILENT_ENERGY), 0.0)
    centres = first + RATIO_HOP * np.arange(ratio.shape[1])
    return np.stack([np.interp(positions, centres, row) for row in ratio])


def high_band_share(
    removal: float, audio: np.ndarray, low_band: np.ndarray, ratio: np.ndarray
) -> np.ndarray:
    """audio: (B, n) stream-rate input; low_band: (B, n) its round trip through the model
    rate; ratio: (B, n) r(t) at the same samples -> (B, n) float32, the part of the input
    above the model's band to add to the vocal estimate: ``removal * r * (audio - low)``."""
    return (removal * ratio * (audio - low_band)).astype(np.float32)


class HighBandVoice:
    """The high-band share of one streaming window's estimate (see the module docstring)."""

    def __init__(self, plan: WindowPlan, removal: float):
        self.plan, self.removal = plan, check_removal(removal)
        self.active = is_active(self.removal, plan.sample_rate, plan.model_rate)
        # Support samples in model-rate samples from the window's start.
        stream = plan.support_start + np.arange(plan.support_samples)
        self._support_in_model = stream * (plan.model_rate / plan.sample_rate)

    def voice_ratio(self, vocals: np.ndarray, mixture: np.ndarray, first: int) -> np.ndarray:
        """vocals, mixture: (B, n) float32 model-rate stretch starting at model sample
        ``first`` of the window -> (B, S) float64 r(t) at the support's stream samples."""
        return voice_ratio(vocals, mixture, self._support_in_model, first)

    def share(self, audio: np.ndarray, low_band: np.ndarray, ratio: np.ndarray) -> np.ndarray:
        """(B, S) arrays over the support -> (B, S) float32 (:func:`high_band_share`)."""
        return high_band_share(self.removal, audio, low_band, ratio)


def _ratio_bins() -> slice:
    """The STFT bins of :data:`RATIO_BAND`."""
    top = RATIO_FFT // 2
    low, high = (round(fraction * top) for fraction in RATIO_BAND)
    return slice(low, high + 1)


def _band_energy(audio: np.ndarray, bins: slice) -> np.ndarray:
    """(B, n) -> (B, frames) energy in ``bins`` of each centred STFT frame."""
    spectrum = spectral.stft(audio, RATIO_FFT, RATIO_HOP)[..., bins]
    return np.sum(spectrum.real**2 + spectrum.imag**2, axis=-1, dtype=np.float64)
