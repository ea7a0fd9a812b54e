"""numpy STFT / iSTFT that equal Keras' ``ops.stft`` / ``ops.istft`` with the seed's settings.

Keras (TensorFlow backend) with ``window="hann"``, ``center=True``:

- ``stft``: reflect-pad ``n_fft // 2`` on both sides, frames every ``hop`` samples, periodic
  Hann window of ``n_fft``, real FFT of ``n_fft``.
- ``istft``: inverse real FFT per frame, multiply by the *synthesis* window
  ``hann / sum_k hann^2(n + k*hop)`` (TensorFlow's ``inverse_stft_window_fn``), overlap-add,
  then drop ``n_fft // 2`` samples at both ends. No per-sample normalisation at the edges,
  which is why the first and last ~512 samples of a window reconstruct imperfectly.

The network sees the spectrogram with the Nyquist bin dropped; on the way back the bin is
zero (Keras' irfft pads the missing bin with zeros).
"""

from __future__ import annotations

import functools
from typing import Protocol

import numpy as np
import scipy.fft
from numpy.lib.stride_tricks import sliding_window_view


class SpectralSettings(Protocol):
    """What the network's STFT needs of a model's contract
    (:class:`~stream_sep.models.contract.ModelContract` has it)."""

    n_fft: int
    hop_length: int

    @property
    def n_bins(self) -> int: ...


@functools.lru_cache(maxsize=8)
def analysis_window(n_fft: int) -> np.ndarray:
    """Periodic Hann window of length ``n_fft`` (float64)."""
    n = np.arange(n_fft)
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * n / n_fft)


@functools.lru_cache(maxsize=8)
def synthesis_window(n_fft: int, hop: int) -> np.ndarray:
    """TensorFlow's ``inverse_stft_window_fn``: the window over the summed squared overlaps."""
    window = analysis_window(n_fft)
    overlaps = -(-n_fft // hop)
    squared = np.zeros(overlaps * hop)
    squared[:n_fft] = window**2
    denominator = np.tile(squared.reshape(overlaps, hop).sum(axis=0), overlaps)[:n_fft]
    return window / denominator


@functools.lru_cache(maxsize=8)
def analysis_window32(n_fft: int) -> np.ndarray:
    """:func:`analysis_window` as float32 (read-only: it is shared)."""
    window = analysis_window(n_fft).astype(np.float32)
    window.flags.writeable = False
    return window


@functools.lru_cache(maxsize=8)
def synthesis_window32(n_fft: int, hop: int) -> np.ndarray:
    """:func:`synthesis_window` as float32 (read-only: it is shared)."""
    window = synthesis_window(n_fft, hop).astype(np.float32)
    window.flags.writeable = False
    return window


def stft(audio: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """Centred STFT of real audio.

    audio: (..., samples) float32. Returns (..., frames, n_fft // 2 + 1) complex64 with
    ``frames = 1 + samples // hop``.
    """
    audio = np.asarray(audio, np.float32)
    pad = [(0, 0)] * (audio.ndim - 1) + [(n_fft // 2, n_fft // 2)]
    padded = np.pad(audio, pad, mode="reflect")
    # (..., frames, n_fft) strided view: frame t starts at sample t * hop of the padded signal.
    frames = sliding_window_view(padded, n_fft, axis=-1)[..., ::hop, :]
    # scipy's real FFT in float32: several times faster than numpy's for this shape.
    return scipy.fft.rfft(frames * analysis_window32(n_fft), n=n_fft, axis=-1)


def istft(spectrum: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """Inverse of :func:`stft`.

    spectrum: (..., frames, n_bins) complex with n_bins <= n_fft // 2 + 1 (missing top bins
    are zeros, as in Keras' irfft). Returns (..., (frames - 1) * hop) float32.
    """
    spectrum = np.asarray(spectrum)
    if spectrum.dtype != np.complex64:
        spectrum = spectrum.astype(np.complex64)
    frames = scipy.fft.irfft(spectrum, n=n_fft, axis=-1)
    frames *= synthesis_window32(n_fft, hop)
    total = n_fft + hop * (frames.shape[-2] - 1)
    out = _overlap_add(frames, hop, total)
    half = n_fft // 2
    return np.ascontiguousarray(out[..., half : total - half])


def _overlap_add(frames: np.ndarray, hop: int, total: int) -> np.ndarray:
    """frames: (..., T, n_fft) float32 -> (..., total) float32, frame t added at t * hop."""
    n_frames, n_fft = frames.shape[-2:]
    lead = frames.shape[:-2]
    if n_fft % hop:
        out = np.zeros(lead + (total,), np.float32)
        for index in range(n_frames):
            out[..., index * hop : index * hop + n_fft] += frames[..., index, :]
        return out
    parts = n_fft // hop
    # Each frame is `parts` hop-long pieces; piece j of frame t lands on output slot t + j.
    slots = np.zeros(lead + (n_frames + parts - 1, hop), np.float32)
    pieces = frames.reshape(lead + (n_frames, parts, hop))
    for part in range(parts):
        slots[..., part : part + n_frames, :] += pieces[..., :, part, :]
    return slots.reshape(lead + (total,))


def to_network_input(
    audio: np.ndarray, contract: SpectralSettings, out: np.ndarray | None = None
) -> np.ndarray:
    """Mixture waveform -> the network's input.

    audio: (B, window_samples) float32. Returns (B, frames, n_fft // 2, 2) float32,
    real/imag, Nyquist bin dropped; written into ``out`` when given (same shape, float32).
    """
    spectrum = stft(audio, contract.n_fft, contract.hop_length)[..., : contract.n_bins]
    if out is None:
        out = np.empty(spectrum.shape + (2,), np.float32)
    # complex64 is (real, imag) float32 pairs: view `out` as complex and copy once.
    np.copyto(out.view(np.complex64)[..., 0], spectrum)
    return out


def from_network_output(output: np.ndarray, contract: SpectralSettings) -> np.ndarray:
    """The network's output -> source waveforms.

    output: (B, S, frames, 2F) float32 with real/imag interleaved per bin. Returns
    (B, S, window_samples) float32.
    """
    output = np.ascontiguousarray(output, np.float32)
    # (B, S, T, 2F) float32 -> (B, S, T, F) complex64: interleaved pairs are complex64's layout.
    spectrum = output.view(np.complex64)
    return istft(spectrum, contract.n_fft, contract.hop_length)
