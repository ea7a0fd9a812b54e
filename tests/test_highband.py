"""High-band voice removal: karaoke above the model's band, without moving a sample."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile

from stream_sep import cli
from stream_sep.engine import Separator
from stream_sep.engine.highband import RATIO_BAND, voice_ratio
from stream_sep.errors import UserError
from stream_sep.models.loading import load_model
from stream_sep.offline.overlap_add import OverlapAddStream, separate_overlap_add
from stream_sep.settings import Settings
from tests.helpers import band_noise, full_band_song, gain_model, noise, small_contract, stream

RATE = 44100
PLAN = {"hop": 0.1, "lookahead": 0.05, "crossfade": 0.02}  # fits the 0.48 s test window


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """identity: the estimate is the whole mixture (all voice, r = 1); silent: nothing is
    voice (r = 0); top: voice only in the top of the model's band."""
    folder = tmp_path_factory.mktemp("m")
    contract = small_contract()
    frequencies = np.arange(contract.n_bins) / contract.n_fft * contract.sample_rate
    top = (frequencies >= 0.6 * contract.sample_rate / 2).astype(np.float32)
    return {
        "identity": load_model(str(gain_model(folder / "one.onnx", 1.0)), "cpu"),
        "silent": load_model(str(gain_model(folder / "zero.onnx", 0.0)), "cpu"),
        "top": load_model(str(gain_model(folder / "top.onnx", top, contract)), "cpu"),
    }


def karaoke(model, audio, removal, blocks=4410, rate=RATE, stereo="batch"):
    """The engine's karaoke output with its delay removed: (C, n - latency)."""
    with Separator(
        model,
        rate,
        audio.shape[0],
        mode="karaoke",
        blocking=True,
        limit=False,
        stereo=stereo,
        high_band_voice_removal=removal,
        **PLAN,
    ) as engine:
        out = stream(engine, audio, blocks)
        latency = engine.latency_samples
    return out[:, latency:], audio[:, : audio.shape[1] - latency]


def energy_above(audio: np.ndarray, hertz: float, rate: int = RATE) -> float:
    spectrum = np.fft.rfft(audio.astype(np.float64), axis=-1)
    frequencies = np.fft.rfftfreq(audio.shape[-1], 1.0 / rate)
    return float(np.sum(np.abs(spectrum[..., frequencies > hertz]) ** 2))


def test_where_the_model_hears_only_voice_karaoke_removes_the_band_above_it(models):
    audio = noise(2, 2 * RATE, seed=1, amplitude=0.1)
    steady = slice(RATE // 2, None)  # after the first windows have arrived
    kept, _dry = karaoke(models["identity"], audio, 0.0)
    removed, _dry = karaoke(models["identity"], audio, 1.0)
    # Without the option the model's band goes and everything above 8 kHz stays ...
    above = energy_above(kept[:, steady], 8500.0)
    assert above > 0.4 * energy_above(audio[:, steady], 8500.0)
    # ... with it the estimate is the whole input: karaoke is silent at every frequency.
    assert np.sqrt(np.mean(removed[:, steady] ** 2)) < 1e-5 * np.sqrt(np.mean(audio**2))


def test_where_the_model_hears_no_voice_nothing_changes(models):
    audio = noise(1, RATE, seed=2, amplitude=0.1)
    with_option, _ = karaoke(models["silent"], audio, 1.0)
    without, _ = karaoke(models["silent"], audio, 0.0)
    assert np.array_equal(with_option, without)


def test_half_removal_keeps_half_the_band(models):
    audio = noise(1, 2 * RATE, seed=3, amplitude=0.1)
    steady = slice(RATE // 2, None)
    half, dry = karaoke(models["identity"], audio, 0.5)
    ratio = energy_above(half[:, steady], 9000.0) / energy_above(dry[:, steady], 9000.0)
    assert ratio == pytest.approx(0.25, rel=0.05)  # half the amplitude, a quarter of the energy


@pytest.mark.parametrize("stereo", ["batch", "mid"])
def test_the_same_samples_in_any_blocks_and_the_same_latency(models, stereo):
    audio = noise(2, int(1.5 * RATE), seed=4, amplitude=0.2)
    outputs, latencies = [], set()
    for blocks in (1024, [1, 333, 4096, 64]):
        with Separator(
            models["top"],
            RATE,
            2,
            mode="karaoke",
            blocking=True,
            limit=False,
            stereo=stereo,
            high_band_voice_removal=1.0,
            **PLAN,
        ) as engine:
            outputs.append(stream(engine, audio, blocks))
            latencies.add(engine.latency_samples)
    assert np.array_equal(outputs[0], outputs[1])
    with Separator(models["top"], RATE, 2, **PLAN) as plain:
        assert latencies == {plain.latency_samples}


def test_an_impulse_comes_out_where_it_went_in(models):
    """The removed band is subtracted in time: the impulse's high band cancels at its own
    sample, not a sample early or late."""
    audio = np.zeros((1, RATE), np.float32)
    audio[0, RATE // 2] = 0.5
    out, dry = karaoke(models["identity"], audio, 1.0)
    assert np.max(np.abs(out)) < 1e-5  # all of it removed, at every frequency


def test_at_the_model_rate_there_is_no_band_above_it(models):
    audio = noise(1, 16000, seed=5)
    with_option, _ = karaoke(models["identity"], audio, 1.0, rate=16000)
    without, _ = karaoke(models["identity"], audio, 0.0, rate=16000)
    assert np.array_equal(with_option, without)


def test_the_voice_ratio_reads_the_top_of_the_models_band():
    rate, samples = 16000, 16000
    rng = np.random.default_rng(0)
    top = band_noise(samples, rate, *(f * rate / 2 for f in RATIO_BAND), rng)[None]
    low = band_noise(samples, rate, 200.0, 3000.0, rng)[None]
    mixture = (0.1 * (top + low)).astype(np.float32)
    positions = np.arange(2000, 14000)
    voice_on_top = voice_ratio((0.1 * top).astype(np.float32), mixture, positions)
    voice_below = voice_ratio((0.1 * low).astype(np.float32), mixture, positions)
    assert voice_on_top.min() > 0.95
    assert voice_below.max() < 0.05
    silent = voice_ratio(np.zeros_like(mixture), np.zeros_like(mixture), positions)
    assert not silent.any()


def test_overlap_add_removes_the_band_too_in_any_blocks(models):
    audio = noise(2, 3 * RATE, seed=6, amplitude=0.1)
    inner = slice(RATE // 4, -RATE // 4)
    estimate = separate_overlap_add(models["identity"], audio, RATE, high_band_voice_removal=1.0)
    rest = audio - estimate
    # soxr's passband ripple on the resampled ratio leaves about 1e-3 of the band
    assert np.sqrt(np.mean(rest[:, inner] ** 2)) < 1e-3 * np.sqrt(np.mean(audio**2))
    stream_ = OverlapAddStream(models["identity"], RATE, 2, high_band_voice_removal=1.0)
    parts = [stream_.process(audio[:, i : i + 777]) for i in range(0, audio.shape[1], 777)]
    parts.append(stream_.finish())
    assert np.array_equal(np.concatenate(parts, axis=1), estimate)
    plain = separate_overlap_add(models["silent"], audio, RATE, high_band_voice_removal=1.0)
    assert not plain.any()


def test_full_band_song_has_voice_and_instruments_above_8_khz():
    mixture, vocals, band = full_band_song(4.0, RATE, seed=0)
    assert np.allclose(mixture, vocals + band)
    for stem in (vocals, band):
        share = energy_above(stem[None], 8000.0) / energy_above(stem[None], 0.0)
        assert 0.01 < share < 0.2


def test_bad_values_are_one_line(tmp_path, capsys):
    for value in (-0.1, 1.5, float("nan"), "1"):
        with pytest.raises(
            UserError, match=r"--high-band-voice-removal must be a number in \[0, 1\]"
        ):
            Settings(high_band_voice_removal=value)
    wav = tmp_path / "in.wav"
    soundfile.write(wav, np.zeros((4410, 2), np.float32), RATE)
    args = ["separate", str(wav), "-o", str(tmp_path), "--high-band-voice-removal", "2"]
    assert cli.main(args) == 2
    assert (
        "--high-band-voice-removal must be a number in [0, 1], got 2\n" in capsys.readouterr().err
    )
