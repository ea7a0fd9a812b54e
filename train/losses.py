"""The seed's spectral loss (MAE on the STFT) and SDR metric, backend-neutral.

``y_true``: target waveforms (B, S, samples); ``y_pred``: the network's output
(B, S, T, n_fft), real/imag interleaved per bin (see :mod:`train.model`).
"""

from __future__ import annotations

import keras
from keras import ops

from train.registry import PACKAGE
from train.stft import spectrogram_to_waveform, waveform_to_spectrogram

# Keeps SDR finite for silent targets and perfect estimates (the seed's epsilon).
SDR_EPSILON = 1e-8


def target_to_spectrogram(y_true, n_fft: int, hop_length: int):
    """(B, S, samples) waveforms -> (B, S, T, n_fft) as the network writes it."""
    n_sources, samples = y_true.shape[1], y_true.shape[2]
    spectrum = waveform_to_spectrogram(ops.reshape(y_true, (-1, samples)), n_fft, hop_length)
    frames = spectrum.shape[1]
    return ops.reshape(spectrum, (-1, n_sources, frames, n_fft))


def prediction_to_waveform(y_pred, n_fft: int, hop_length: int):
    """(B, S, T, n_fft) network output -> (B, S, (T - 1) * hop_length) waveforms."""
    n_sources, frames = y_pred.shape[1], y_pred.shape[2]
    # (B, S, T, 2F) -> (B S, T, F, 2): undo the real/imag interleaving
    spectrum = ops.reshape(y_pred, (-1, frames, n_fft // 2, 2))
    waveform = spectrogram_to_waveform(spectrum, n_fft, hop_length)
    return ops.reshape(waveform, (-1, n_sources, waveform.shape[-1]))


def spectral_mae(y_true, y_pred, n_fft: int, hop_length: int):
    """Mean absolute error between the targets' STFT and the prediction, per example (B,)."""
    difference = ops.absolute(target_to_spectrogram(y_true, n_fft, hop_length) - y_pred)
    return ops.mean(difference, axis=(1, 2, 3))


def sdr(y_true, y_pred, n_fft: int, hop_length: int):
    """Signal-to-distortion ratio in dB per example and source, (B, S)."""
    estimate = prediction_to_waveform(y_pred, n_fft, hop_length)
    signal = ops.sum(ops.square(y_true), axis=-1) + SDR_EPSILON
    distortion = ops.sum(ops.square(y_true - estimate), axis=-1) + SDR_EPSILON
    return 10.0 * ops.log10(signal / distortion)


@keras.saving.register_keras_serializable(package=PACKAGE)
class SpectralLoss(keras.losses.Loss):
    """The seed's ``spectral_loss``: MAE in the STFT domain."""

    def __init__(self, n_fft: int, hop_length: int, name: str = "spectral_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.n_fft = n_fft
        self.hop_length = hop_length

    def call(self, y_true, y_pred):
        return spectral_mae(y_true, y_pred, self.n_fft, self.hop_length)

    def get_config(self):
        return {**super().get_config(), "n_fft": self.n_fft, "hop_length": self.hop_length}


@keras.saving.register_keras_serializable(package=PACKAGE)
class SignalToDistortionRatio(keras.metrics.Mean):
    """The seed's ``sdr`` metric, averaged over examples and sources (logged as ``sdr``)."""

    def __init__(self, n_fft: int, hop_length: int, name: str = "sdr", **kwargs):
        super().__init__(name=name, **kwargs)
        self.n_fft = n_fft
        self.hop_length = hop_length

    def update_state(self, y_true, y_pred, sample_weight=None):
        values = sdr(y_true, y_pred, self.n_fft, self.hop_length)
        return super().update_state(values, sample_weight=sample_weight)

    def get_config(self):
        return {**super().get_config(), "n_fft": self.n_fft, "hop_length": self.hop_length}
