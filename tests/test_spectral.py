"""The host's numpy STFT/iSTFT equals Keras' ops.stft/ops.istft with the seed's settings."""

from __future__ import annotations

import os

import numpy as np
import pytest

from stream_sep.dsp import spectral
from stream_sep.models.contract import HOP_LENGTH, N_FFT, WINDOW_SAMPLES, ModelContract

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
keras = pytest.importorskip("keras", reason="the train extra (keras) is needed to compare")
ops = keras.ops

# float32 FFTs of 2048 points: TensorFlow and numpy round differently; relative to the
# spectrum's peak (~30 here) the differences stay near float32 epsilon times log2(n_fft).
STFT_RELATIVE = 2e-6
ISTFT_ABSOLUTE = 2e-6


@pytest.fixture(scope="module")
def audio():
    rng = np.random.default_rng(0)
    return (0.3 * rng.standard_normal((2, WINDOW_SAMPLES))).astype(np.float32)


def test_stft_equals_keras(audio):
    real, imag = ops.stft(audio, N_FFT, HOP_LENGTH, N_FFT)
    expected = np.asarray(real) + 1j * np.asarray(imag)
    got = spectral.stft(audio, N_FFT, HOP_LENGTH)
    assert got.shape == expected.shape == (2, 128, 1025)
    assert np.max(np.abs(got - expected)) <= STFT_RELATIVE * np.max(np.abs(expected))


def test_istft_equals_keras_with_the_nyquist_bin_dropped(audio):
    spectrum = spectral.stft(audio, N_FFT, HOP_LENGTH)
    # The network never sees the Nyquist bin; Keras' irfft pads it back with zero.
    real = np.ascontiguousarray(spectrum.real[..., :-1])
    imag = np.ascontiguousarray(spectrum.imag[..., :-1])
    expected = np.asarray(ops.istft((real, imag), N_FFT, HOP_LENGTH, N_FFT))
    spectrum[..., -1] = 0
    got = spectral.istft(spectrum, N_FFT, HOP_LENGTH)
    assert got.shape == expected.shape == (2, WINDOW_SAMPLES)
    assert np.max(np.abs(got - expected)) <= ISTFT_ABSOLUTE


def test_network_round_trip_reconstructs_the_interior(audio):
    contract = ModelContract()
    network_input = spectral.to_network_input(audio, contract)
    assert network_input.shape == (2, 128, 1024, 2)
    # An identity network: (B, T, F, 2) -> (B, 1, T, 2F).
    output = network_input.reshape(2, 1, 128, 2048)
    back = spectral.from_network_output(output, contract)[:, 0]
    interior = slice(N_FFT, -N_FFT)
    # Only the dropped Nyquist bin is missing: a tiny error against the white-noise input.
    assert np.max(np.abs(back[:, interior] - audio[:, interior])) < 0.05 * np.abs(audio).max()
    assert np.sqrt(np.mean((back[:, interior] - audio[:, interior]) ** 2)) < 0.01
