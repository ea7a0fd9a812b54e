"""Separation measures against answers known in closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stream_sep.evaluation import metrics

RATE = 8000
# Tolerances, in dB:
EXACT = 1e-9  # closed-form SDR / SI-SDR: float64 sums, only rounding differs
NOISE_FRAMES = 0.1  # museval per 1-s frame of white noise: the frame's sample energy ratio
#                     differs from the expected one by ~1/sqrt(8000) -> ~0.05 dB


def _noise(shape, seed, scale=1.0) -> np.ndarray:
    return scale * np.random.default_rng(seed).standard_normal(shape)


def test_perfect_estimate_gives_the_epsilon_limited_sdr():
    reference = _noise((2, 4000), 0, 0.1)
    energy = np.sum(reference**2)
    expected = 10 * math.log10((energy + metrics.EPSILON) / metrics.EPSILON)
    assert metrics.sdr(reference, reference.copy()) == pytest.approx(expected, abs=EXACT)
    assert 80.0 < expected < 120.0  # finite and large, the MDX convention


@pytest.mark.parametrize("k", [0.25, 1.0, 3.0])
def test_mixture_as_estimate_gives_the_energy_ratio(k):
    """With estimate = v + a, the error is exactly a: SDR_v = 10 log10(|v|^2 / |a|^2)."""
    vocals = _noise((2, 6000), 1, 0.2)
    accompaniment = k * _noise((2, 6000), 2, 0.2)
    mixture = vocals + accompaniment
    v, a = np.sum(vocals**2), np.sum(accompaniment**2)
    expected = 10 * math.log10((v + metrics.EPSILON) / (a + metrics.EPSILON))
    assert metrics.sdr(vocals, mixture) == pytest.approx(expected, abs=EXACT)
    assert metrics.sdr(accompaniment, mixture) == pytest.approx(-expected, abs=1e-6)
    # The energies were drawn at ratio 1/k^2, so the answer is near -20 log10 k.
    assert expected == pytest.approx(-20 * math.log10(k), abs=0.2)


def test_sdr_sums_over_channels_before_the_ratio():
    reference = np.stack([_noise(3000, 3, 1.0), _noise(3000, 4, 0.01)])
    estimate = reference + np.stack([_noise(3000, 5, 0.1), _noise(3000, 6, 0.1)])
    signal = np.sum(reference**2)
    error = np.sum((reference - estimate) ** 2)
    expected = 10 * math.log10((signal + metrics.EPSILON) / (error + metrics.EPSILON))
    assert metrics.sdr(reference, estimate) == pytest.approx(expected, abs=EXACT)
    # A per-channel mean would have been dominated by the quiet channel's ~-20 dB.
    per_channel = [metrics.sdr(reference[i], estimate[i]) for i in range(2)]
    assert abs(np.mean(per_channel) - expected) > 5.0


def test_si_sdr_of_a_scaled_reference_plus_orthogonal_noise():
    reference = _noise(5000, 7, 0.3)
    noise = _noise(5000, 8, 0.05)
    noise -= np.dot(noise, reference) / np.dot(reference, reference) * reference  # orthogonal
    scale = 0.4
    estimate = scale * reference + noise
    target = scale**2 * np.dot(reference, reference)
    expected = 10 * math.log10(
        (target + metrics.EPSILON) / (np.dot(noise, noise) + metrics.EPSILON)
    )
    assert metrics.si_sdr(reference, estimate) == pytest.approx(expected, abs=1e-6)
    # Plain SDR charges the lost level as distortion; SI-SDR does not.
    assert metrics.sdr(reference, estimate) < expected - 3.0


def test_si_sdr_ignores_the_estimates_scale_and_is_epsilon_limited_when_perfect():
    reference = _noise((2, 3000), 9, 0.2)
    estimate = reference + _noise((2, 3000), 10, 0.1)
    assert metrics.si_sdr(reference, 5.0 * estimate) == pytest.approx(
        metrics.si_sdr(reference, estimate),
        abs=1e-6,  # eps breaks exact invariance
    )
    assert metrics.si_sdr(reference, 2.0 * reference) > 80.0
    assert metrics.sdr(reference, 2.0 * reference) == pytest.approx(0.0, abs=1e-6)


def test_shapes_must_match():
    with pytest.raises(ValueError, match="same shape"):
        metrics.sdr(np.zeros((2, 10)), np.zeros((1, 10)))


def test_museval_median_of_frames_matches_the_energy_ratio_of_stationary_noise():
    """museval's BSSEval v4 SDR of the mixture as estimate, for white noises whose power
    ratio is known, is that ratio in every 1-s frame, so the median is too."""
    vocals = _noise((2, 4 * RATE), 11, 0.1)
    accompaniment = _noise((2, 4 * RATE), 12, 0.2)
    value = metrics.museval_sdr(vocals, vocals + accompaniment, RATE)
    assert value == pytest.approx(10 * math.log10(0.1**2 / 0.2**2), abs=NOISE_FRAMES)


def test_museval_takes_the_median_over_frames_and_skips_silent_ones():
    """Three 1-s frames at SNR 20, 0 and 10 dB, and a silent one: the median is 10 dB."""
    reference = _noise((1, 4 * RATE), 13, 0.1)
    reference[:, 3 * RATE :] = 0.0
    noise = _noise((1, 4 * RATE), 14, 0.1)
    for frame, snr_db in enumerate([20.0, 0.0, 10.0, 0.0]):
        noise[:, frame * RATE : (frame + 1) * RATE] *= 10 ** (-snr_db / 20)
    value = metrics.museval_sdr(reference, reference + noise, RATE)
    assert value == pytest.approx(10.0, abs=0.3)


def test_museval_gives_nan_for_a_silent_estimate_instead_of_failing():
    reference = _noise((1, 2 * RATE), 15, 0.1)
    assert math.isnan(metrics.museval_sdr(reference, np.zeros_like(reference), RATE))
