"""The seed's STFT and inverse STFT in ``keras.ops``: the spectrogram the core network reads
and writes (real/imag stacked, Nyquist bin dropped).

``frames = 1 + samples // hop_length``; ``n_bins = n_fft // 2``.
"""

from __future__ import annotations

from keras import ops


def waveform_to_spectrogram(waveform, n_fft: int, hop_length: int):
    """waveform: (N, samples) -> (N, frames, n_fft // 2, 2), as :class:`train.model.Spectrogram`."""
    real, imag = ops.stft(waveform, n_fft, hop_length, n_fft)
    spectrum = ops.stack([real, imag], axis=-1)
    return spectrum[:, :, :-1, :]


def spectrogram_to_waveform(spectrum, n_fft: int, hop_length: int):
    """spectrum: (N, frames, n_fft // 2, 2) -> (N, (frames - 1) * hop_length).

    The dropped Nyquist bin comes back as zeros on every backend (TensorFlow and JAX pad it
    implicitly; writing it out keeps the backends equal).
    """
    spectrum = ops.pad(spectrum, ((0, 0), (0, 0), (0, 1), (0, 0)))
    return ops.istft((spectrum[..., 0], spectrum[..., 1]), n_fft, hop_length, n_fft)
