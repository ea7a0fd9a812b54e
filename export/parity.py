"""Stage 4 of the export: the written file, loaded by the host, must sound like Keras.

:func:`verify` runs the host's own loader and STFT on :func:`parity_signal` and compares the
waveforms with Keras' (``ops.stft -> model -> ops.istft``) against :data:`TOLERANCES`, then
checks that full-scale signals (:func:`stress_signals`) give no NaN or Inf.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np

from export.errors import ExportFailed
from stream_sep.errors import UserError
from stream_sep.models.contract import ModelContract

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """Largest allowed ``max|host - keras| / max|keras|`` for the parity waveforms."""

    relative: float
    reason: str


# The one table of parity tolerances. The reference is Keras' float32 waveform path.
TOLERANCES: dict[str, Tolerance] = {
    "float32": Tolerance(
        relative=1e-4,
        reason=(
            "same float32 arithmetic in a different order (oneDNN vs onnxruntime kernels, "
            "numpy vs TensorFlow FFT): measured 1e-7..1e-5 of the peak; GroupNorm over a "
            "whole window sums ~10^5 values, so allow 10x the worst seen"
        ),
    ),
    "float16-weights": Tolerance(
        relative=5e-3,
        reason=(
            "float32 arithmetic on weights rounded to float16 (relative step 4.9e-4 per "
            "weight): measured 1.9e-4 of the peak on the bundled model; allow about 25x that"
        ),
    ),
    "float16": Tolerance(
        relative=2e-2,
        reason=(
            "float16 keeps 11 significant bits (relative step 4.9e-4 per op); errors add "
            "over ~100 layers of the full network: measured ~1e-3..5e-3 of the peak"
        ),
    ),
}


@dataclasses.dataclass(frozen=True)
class Parity:
    """How far the host's waveforms are from Keras' for the same chunk."""

    max_abs: float
    peak: float
    tolerance: Tolerance
    finite: bool

    @property
    def relative(self) -> float:
        """``max_abs`` over the peak of the Keras reference."""
        return self.max_abs / self.peak if self.peak > 0 else 0.0

    @property
    def passed(self) -> bool:
        return self.finite and self.relative <= self.tolerance.relative

    def describe(self) -> str:
        if not self.finite:
            return "the ONNX model's output holds NaN or Inf"
        return (
            f"max |onnx - keras| = {self.max_abs:.3g}, relative to the peak "
            f"{self.peak:.3g}: {self.relative:.3g} (tolerance {self.tolerance.relative:g})"
        )


def parity_signal(contract: ModelContract, batch: int = 2, seed: int = 0) -> np.ndarray:
    """A deterministic, loud, voice-like test chunk: (batch, window_samples) float32.

    Harmonic tones with vibrato (a sung note), a low bass line, white noise and a click,
    different per channel, peaking at 0.95 so float16 overflow would show.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(contract.window_samples) / contract.sample_rate
    channels = []
    for channel in range(batch):
        pitch = 220.0 * 2 ** (channel / 12) * (1 + 0.01 * np.sin(2 * np.pi * 5.5 * t))
        phase = 2 * np.pi * np.cumsum(pitch) / contract.sample_rate
        voice = sum(np.sin(k * phase) / k for k in range(1, 8))
        bass = 0.8 * np.sin(2 * np.pi * 55.0 * t)
        hiss = 0.1 * rng.standard_normal(t.size)
        click = np.zeros(t.size)
        click[t.size // 3 + channel] = 2.0
        channels.append(voice + bass + hiss + click)
    audio = np.stack(channels)
    return (0.95 * audio / np.abs(audio).max()).astype(np.float32)


def keras_waveforms(model, audio: np.ndarray, contract: ModelContract) -> np.ndarray:
    """The Keras reference: ``ops.stft -> core -> ops.istft``.

    model: the checkpoint's model, either the training model (waveform in, its own
    ``ops.stft`` inside) or the bare core network (spectrogram in).
    audio: (B, window_samples) float32. Returns (B, S, window_samples) float32.
    """
    from keras import ops

    n_fft, hop = contract.n_fft, contract.hop_length
    if len(model.inputs[0].shape) == 2:
        output = model(audio, training=False)
    else:
        real, imag = ops.stft(audio, n_fft, hop, n_fft)
        # (B, T, n_fft // 2 + 1) x2 -> (B, T, n_bins, 2): drop Nyquist, stack real/imag.
        spectrogram = ops.stack([real[..., :-1], imag[..., :-1]], axis=-1)
        output = model(spectrogram, training=False)
    batch, n_sources, frames, width = output.shape
    # (B, S, T, 2F) -> (B*S, T, F, 2): real/imag are interleaved per bin.
    pairs = ops.reshape(output, (batch * n_sources, frames, width // 2, 2))
    # The Nyquist bin was dropped: give it back as zero.
    pairs = ops.pad(pairs, ((0, 0), (0, 0), (0, 1), (0, 0)))
    waves = ops.istft((pairs[..., 0], pairs[..., 1]), n_fft, hop, n_fft)
    return np.asarray(ops.convert_to_numpy(waves)).reshape(batch, n_sources, -1)


def compare(host: np.ndarray, reference: np.ndarray, tolerance: Tolerance) -> Parity:
    finite = bool(np.isfinite(host).all())
    difference = np.abs(host.astype(np.float64) - reference.astype(np.float64))
    return Parity(
        max_abs=float(difference.max()) if finite else float("nan"),
        peak=float(np.abs(reference).max()),
        tolerance=tolerance,
        finite=finite,
    )


def verify(path: Path, model, precision: str) -> Parity:
    """Load ``path`` with the host, run the parity chunk, compare with Keras.

    Raises :class:`ExportFailed` if the host refuses the file or the parity fails.
    """
    from stream_sep.models.loading import load_model

    try:
        host_model = load_model(path, provider="cpu")
    except UserError as error:
        raise ExportFailed(f"the host cannot load the exported model: {error}") from None
    contract = host_model.contract
    audio = parity_signal(contract)
    host = host_model.separate(audio)
    reference = keras_waveforms(model, audio, contract)
    parity = compare(host, reference, TOLERANCES[precision])
    if parity.peak == 0:
        log.warning("the model outputs silence for the test chunk: the parity check is vacuous")
    if not parity.passed:
        raise ExportFailed(f"parity check failed ({precision}): {parity.describe()}")
    check_finite_when_loud(host_model)
    return parity


def stress_signals(contract: ModelContract) -> dict[str, np.ndarray]:
    """Full-scale signals that push activations hardest: name -> (window_samples,) float32."""
    t = np.arange(contract.window_samples) / contract.sample_rate
    rng = np.random.default_rng(1)
    signals = {
        "100 Hz sine": np.sin(2 * np.pi * 100.0 * t),
        "220 Hz square": np.sign(np.sin(2 * np.pi * 220.0 * t)),
        "clipped noise": np.clip(rng.standard_normal(t.size), -1.0, 1.0),
    }
    return {name: signal.astype(np.float32) for name, signal in signals.items()}


def check_finite_when_loud(host_model) -> None:
    """Raise :class:`ExportFailed` if any full-scale stress signal gives NaN or Inf."""
    signals = stress_signals(host_model.contract)
    output = host_model.separate(np.stack(list(signals.values())))
    for name, estimate in zip(signals, output, strict=True):
        if not np.isfinite(estimate).all():
            raise ExportFailed(f"the ONNX model outputs NaN or Inf for a full-scale {name}")
