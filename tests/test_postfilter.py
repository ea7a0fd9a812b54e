"""The Wiener post-filter: exact for a perfect estimate, finite on any input, the same in
every plan and block size, and a clear line when norbert is missing."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from stream_sep import evaluation
from stream_sep.dsp import postfilter
from stream_sep.dsp.postfilter import PostFilter
from stream_sep.engine import Separator
from stream_sep.errors import UserError
from stream_sep.evaluation import metrics
from stream_sep.models.loading import load_model
from stream_sep.offline.overlap_add import OverlapAddStream, separate_overlap_add
from stream_sep.settings import Settings
from tests.helpers import SMALL_WINDOW, gain_model, noise, small_contract, stream

RATE = 16000
KINDS = ("wiener", "wiener-em")
# Short-window plans for the small test models (0.48 s windows).
STREAMING = {"hop": 0.1, "lookahead": 0.05, "crossfade": 0.02}


def smooth_tone(frequency: float, seconds: float, rate: int = RATE) -> np.ndarray:
    """(samples,) float32 sine with half-second raised-cosine fades: its spectrum stays
    within a few Hz of ``frequency`` (no clicks that spread over all bins)."""
    samples = int(seconds * rate)
    t = np.arange(samples) / rate
    fade = np.ones(samples)
    ramp = np.sin(np.linspace(0.0, np.pi / 2, int(0.5 * rate))) ** 2
    fade[: ramp.size] = ramp
    fade[-ramp.size :] = ramp[::-1]
    return (0.4 * np.sin(2 * np.pi * frequency * t) * fade).astype(np.float32)


def disjoint_song(seconds: float = 3.0):
    """A voice at 3 kHz over a band at 300 Hz: sources apart in every STFT bin."""
    vocals, band = smooth_tone(3000.0, seconds), smooth_tone(300.0, seconds)
    return (vocals + band)[None], vocals[None], band[None]


def epsilon_limited_sdr(reference: np.ndarray) -> float:
    """The SDR of a perfect estimate: 10 log10((sum s^2 + eps) / eps)."""
    energy = float(np.sum(reference.astype(np.float64) ** 2))
    return 10 * np.log10((energy + metrics.EPSILON) / metrics.EPSILON)


@pytest.fixture(scope="module")
def high_pass_model(tmp_path_factory):
    """A model whose vocal estimate is the mixture's bins above 1.5 kHz: the perfect
    estimate of :func:`disjoint_song`'s voice. Its 1.92 s window leaves the post-filter's
    128 ms frames room between the support and the window's unreliable edges."""
    contract = small_contract(4 * SMALL_WINDOW)
    frequencies = np.arange(contract.n_bins) * RATE / contract.n_fft
    gain = (frequencies > 1500.0).astype(np.float32)
    path = gain_model(tmp_path_factory.mktemp("m") / "high.onnx", gain, contract)
    return load_model(str(path), "cpu")


@pytest.fixture(scope="module")
def half_model(tmp_path_factory):
    """Estimate = half the mixture: both sources everywhere, a real filtering job."""
    return load_model(str(gain_model(tmp_path_factory.mktemp("m") / "half.onnx", 0.5)), "cpu")


@pytest.mark.parametrize("kind", KINDS)
def test_a_perfect_estimate_stays_perfect(kind):
    mixture, vocals, _band = disjoint_song()
    filtered = PostFilter(kind).apply(vocals, mixture)
    limit = epsilon_limited_sdr(vocals)
    assert limit > 100.0
    assert metrics.sdr(vocals, filtered) > limit - 1.0


@pytest.mark.parametrize("kind", KINDS)
def test_evaluating_a_perfect_model_streaming_gives_the_epsilon_limit(high_pass_model, kind):
    mixture, vocals, band = disjoint_song()
    options = evaluation.engine_options(True, 0.25, 0.25, postfilter=kind)
    estimate = evaluation.estimate_vocals(high_pass_model, mixture, RATE, options)
    assert metrics.sdr(vocals, estimate) > epsilon_limited_sdr(vocals) - 1.0
    assert metrics.sdr(band, mixture - estimate) > epsilon_limited_sdr(band) - 1.0


@pytest.mark.parametrize("kind", KINDS)
def test_evaluating_a_perfect_model_offline_stays_near_perfect(high_pass_model, kind):
    """The overlap-add plan filters whole windows, their unreliable edges too (weighted
    next to nothing by the taper): within 20 dB of the epsilon limit, far beyond hearing."""
    mixture, vocals, band = disjoint_song()
    options = evaluation.engine_options(False, postfilter=kind)
    estimate = evaluation.estimate_vocals(high_pass_model, mixture, RATE, options)
    assert metrics.sdr(vocals, estimate) > epsilon_limited_sdr(vocals) - 20.0
    assert metrics.sdr(band, mixture - estimate) > epsilon_limited_sdr(band) - 20.0


@pytest.mark.parametrize("kind", KINDS)
def test_never_nan_on_silence_or_full_scale_input(kind):
    filter_ = PostFilter(kind)
    rng = np.random.default_rng(0)
    square = np.sign(rng.standard_normal((2, 8192))).astype(np.float32)  # full scale
    cases = {
        "silence": (np.zeros((2, 8192), np.float32), np.zeros((2, 8192), np.float32)),
        "full scale, estimate = mixture": (square, square),
        "full scale, estimate twice the mixture": (2 * square, square),
        "full scale, estimate silent": (np.zeros_like(square), square),
        "full-scale DC": (np.ones((1, 8192), np.float32), np.ones((1, 8192), np.float32)),
        "short": (square[:, :100], square[:, :100] * 0.5),
    }
    for name, (vocals, mixture) in cases.items():
        out = filter_.apply(vocals, mixture)
        assert out.shape == mixture.shape and out.dtype == np.float32, name
        assert np.isfinite(out).all(), name
    assert not PostFilter(kind).apply(*cases["silence"]).any()


@pytest.mark.parametrize("kind", KINDS)
def test_the_engine_stays_finite_and_exact_in_time_on_silence_and_full_scale(half_model, kind):
    rng = np.random.default_rng(1)
    audio = np.concatenate(
        [np.zeros((2, RATE)), np.sign(rng.standard_normal((2, 2 * RATE)))], axis=1
    ).astype(np.float32)
    outputs = []
    for blocks in (RATE // 10, [1, 127, 4096]):
        with Separator(
            half_model, RATE, 2, mode="vocals", blocking=True, postfilter=kind, **STREAMING
        ) as engine:
            outputs.append(stream(engine, audio, blocks))
            assert engine.stats.windows_run == engine.stats.windows_submitted > 0
            assert engine.stats.model_failures == 0
    assert np.isfinite(outputs[0]).all()
    assert np.array_equal(outputs[0], outputs[1])  # block-size invariant


def test_the_post_filter_moves_an_estimate_that_is_no_mask_of_the_mixture():
    mixture = noise(1, RATE, seed=3)
    vocals = 0.5 * mixture
    vocals[:, ::2] = 0.0  # every other sample dropped: no spectral mask of the mixture
    filtered = PostFilter("wiener").apply(vocals, mixture)
    assert np.isfinite(filtered).all()
    assert metrics.sdr(vocals, filtered) < 30.0  # it filtered, rather than passing it on


def test_overlap_add_with_the_post_filter_is_the_same_in_any_blocks(half_model):
    audio = noise(2, 3 * RATE, seed=4)
    whole = separate_overlap_add(half_model, audio, 44100, postfilter="wiener-em")
    stream_ = OverlapAddStream(half_model, 44100, 2, postfilter="wiener-em")
    parts = [stream_.process(audio[:, i : i + 999]) for i in range(0, audio.shape[1], 999)]
    parts.append(stream_.finish())
    assert np.array_equal(np.concatenate(parts, axis=1), whole)


def test_bad_names_and_a_missing_norbert_are_one_line(monkeypatch):
    with pytest.raises(UserError, match="--postfilter must be one of none, wiener, wiener-em"):
        Settings(postfilter="open-unmix")
    monkeypatch.setitem(sys.modules, "norbert", None)  # what an install without it sees
    with pytest.raises(UserError, match="pip install norbert, or run with --postfilter none"):
        Settings(postfilter="wiener")
    with pytest.raises(UserError, match="needs norbert"):
        PostFilter("wiener-em")
    assert not PostFilter("none").active  # no filter, no import


def test_importing_the_host_does_not_import_norbert():
    code = (
        "import sys, stream_sep, stream_sep.engine, stream_sep.offline.overlap_add, stream_sep.offline,"
        " stream_sep.settings, stream_sep.commands.separate, stream_sep.commands.evaluate;"
        "assert 'norbert' not in sys.modules, 'imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_options_reach_the_command_line(tmp_path, capsys):
    from stream_sep import cli

    wav = tmp_path / "in.wav"
    assert cli.main(["separate", str(wav), "-o", str(tmp_path), "--postfilter", "bogus"]) == 2
    error = capsys.readouterr().err
    assert "--postfilter" in error and "wiener-em" in error
    assert postfilter.POSTFILTERS == ("none", "wiener", "wiener-em")
