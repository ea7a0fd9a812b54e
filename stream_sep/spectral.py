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

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from stream_sep.contract import ModelContract


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


def stft(audio: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """Centred STFT of real audio.

    audio: (..., samples) float32. Returns (..., frames, n_fft // 2 + 1) complex64 with
    ``frames = 1 + samples // hop``.
    """
    pad = [(0, 0)] * (audio.ndim - 1) + [(n_fft // 2, n_fft // 2)]
    padded = np.pad(audio, pad, mode="reflect")
    frames = sliding_window_view(padded, n_fft, axis=-1)[..., ::hop, :]
    window = analysis_window(n_fft).astype(np.float32)
    return np.fft.rfft(frames * window, n=n_fft, axis=-1).astype(np.complex64)


def istft(spectrum: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """Inverse of :func:`stft`.

    spectrum: (..., frames, n_fft // 2 + 1) complex. Returns (..., (frames - 1) * hop)
    float32.
    """
    frames = np.fft.irfft(spectrum, n=n_fft, axis=-1)
    frames *= synthesis_window(n_fft, hop)
    n_frames = frames.shape[-2]
    total = n_fft + hop * (n_frames - 1)
    out = np.zeros(frames.shape[:-2] + (total,), dtype=np.float64)
    for index in range(n_frames):
        out[..., index * hop : index * hop + n_fft] += frames[..., index, :]
    half = n_fft // 2
    return out[..., half : total - half].astype(np.float32)


def to_network_input(audio: np.ndarray, contract: ModelContract) -> np.ndarray:
    """Mixture waveform -> the network's input.

    audio: (B, window_samples) float32. Returns (B, frames, n_fft // 2, 2) float32,
    real/imag, Nyquist bin dropped.
    """
    spectrum = stft(audio, contract.n_fft, contract.hop_length)[..., : contract.n_bins]
    return np.stack([spectrum.real, spectrum.imag], axis=-1)


def from_network_output(output: np.ndarray, contract: ModelContract) -> np.ndarray:
    """The network's output -> source waveforms.

    output: (B, S, frames, 2F) float32 with real/imag interleaved per bin. Returns
    (B, S, window_samples) float32.
    """
    batch, n_sources, n_frames, width = output.shape
    # (B, S, T, 2F) -> (B, S, T, F, 2): the last axis interleaves real and imag of each bin.
    pairs = output.reshape(batch, n_sources, n_frames, width // 2, 2)
    spectrum = np.zeros((batch, n_sources, n_frames, width // 2 + 1), dtype=np.complex64)
    spectrum[..., :-1].real = pairs[..., 0]
    spectrum[..., :-1].imag = pairs[..., 1]
    return istft(spectrum, contract.n_fft, contract.hop_length)
