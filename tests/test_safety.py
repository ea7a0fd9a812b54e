"""Hearing safety: the limiter, the NaN guard, fades at start and stop, on mode changes and on
fallback, and a property test that no input, block size, gain or mode gets past the ceiling."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_sep.dsp import safety
from stream_sep.dsp.safety import OutputGuard, db_to_gain
from stream_sep.engine import MODES, Separator
from stream_sep.models.loading import load_model
from tests.helpers import FAST_OPTIONS, gain_model, noise, sine, stream, voice_over_band

FAST = FAST_OPTIONS
CEILING = db_to_gain(safety.DEFAULT_CEILING_DB)
CEILING32 = float(np.float32(CEILING))  # the hard clip rounds the ceiling to float32

TOL = {
    # The guard's log-domain recursion restarts per piece: only float rounding differs.
    "guard_block_invariance": 1e-6,
    # Two float32 roundings of |x| <= 1 (a gain product).
    "gain": 1e-6,
    # The half model at the model rate on a low sine: STFT round trip error (test_engine).
    "half_sine": 2e-3,
}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Vocal estimate = gain * mixture for several gains: 0 (silent model), 0.5, 1 and 4 (a
    model that is far too loud, to push the output over the ceiling)."""
    folder = tmp_path_factory.mktemp("gains")
    return [load_model(gain_model(folder / f"g{g}.onnx", g)) for g in (0.0, 0.5, 1.0, 4.0)]


def _guard_stream(guard: OutputGuard, audio: np.ndarray, sizes) -> np.ndarray:
    out = audio.copy()
    position, index = 0, 0
    while position < out.shape[1]:
        size = sizes[index % len(sizes)]
        guard.process(out[:, position : position + size])
        position, index = position + size, index + 1
    return out


# ------------------------------------------------------------------ the limiter alone
def test_music_peaking_at_minus_3_dbfs_passes_bit_exact():
    rate = 48000
    mixture, _, _ = voice_over_band(3.0, rate, seed=1)
    music = mixture / np.abs(mixture).max() * db_to_gain(-3.0)
    audio = np.stack([music, music[::-1]]).astype(np.float32)
    guard = OutputGuard(2, rate)
    out = _guard_stream(guard, audio, [480, 1024, 77])
    assert np.array_equal(out, audio)
    assert guard.limited_blocks == 0 and guard.max_reduction_db == 0.0


def test_a_plus_6_db_burst_is_held_under_the_ceiling_and_released_in_100_ms():
    rate = 48000
    tone = sine(1000, 3.0, rate, amplitude=0.5)
    burst = slice(int(0.5 * rate), int(0.7 * rate))
    tone[burst] *= 4.0  # 0.5 -> 2.0: +6 dBFS, 7 dB over the ceiling
    audio = np.stack([tone, tone])
    guard = OutputGuard(2, rate)
    out = _guard_stream(guard, audio, [256, 4096, 31])
    assert np.abs(out).max() <= CEILING32
    # Held at the ceiling, not silenced: the burst's peaks come out just under it.
    assert np.abs(out[0, burst]).max() > 0.99 * CEILING
    # After the burst the gain reduction u = 1 - out/in decays as exp(-t / 100 ms).
    after = np.arange(burst.stop, int(1.4 * rate))
    loud = after[np.abs(tone[after]) > 0.3]  # where out/in is well defined
    reduction = 1.0 - out[0, loud] / tone[loud]
    seconds = (loud - burst.stop) / rate
    slope, _ = np.polyfit(seconds[reduction > 1e-3], np.log(reduction[reduction > 1e-3]), 1)
    assert -1.0 / slope == pytest.approx(safety.RELEASE_SECONDS, rel=0.05)
    # Before the burst nothing was touched. 1 s after it the reduction is 0.55 * e^-10 =
    # 2.5e-5 (0.0002 dB); once it is below 1e-7 (ln(0.55 / 1e-7) * 100 ms = 1.55 s) the gain
    # is exactly 1 again.
    assert np.array_equal(out[:, : burst.start], audio[:, : burst.start])
    settled = burst.stop + rate
    assert np.max(np.abs(out[:, settled:] - audio[:, settled:])) < 0.5 * 3e-5
    assert np.array_equal(out[:, int(2.4 * rate) :], audio[:, int(2.4 * rate) :])


def test_the_guard_does_not_depend_on_block_size():
    rate = 16000
    audio = noise(2, 3 * rate, seed=4, amplitude=0.5)
    audio[:, 9000:9400] *= 6.0
    reference = _guard_stream(OutputGuard(2, rate), audio, [audio.shape[1]])
    sizes = list(np.random.default_rng(1).integers(1, 20000, 60))
    for blocks in ([1], [7], [8192], [8193], sizes):
        out = _guard_stream(OutputGuard(2, rate, max_block=4096), audio, blocks)
        assert np.max(np.abs(out - reference)) <= TOL["guard_block_invariance"]
    assert np.abs(reference).max() <= CEILING32


def test_nan_and_inf_never_reach_the_output():
    guard = OutputGuard(2, 16000)
    block = noise(2, 1000, seed=2, amplitude=0.3)
    block[0, 10] = np.nan
    block[1, 20] = np.inf
    block[1, 30] = -np.inf
    guard.process(block)
    assert np.isfinite(block).all() and np.abs(block).max() <= CEILING32
    assert block[0, 10] == 0.0
    assert guard.nonfinite_samples == 3


def test_the_ceiling_is_configurable_and_refuses_nonsense():
    guard = OutputGuard(1, 16000, ceiling_db=-6.0)
    block = np.full((1, 100), 0.9, np.float32)
    guard.process(block)
    assert np.abs(block).max() <= np.float32(db_to_gain(-6.0))
    for bad in (3.0, float("nan"), -100.0):
        with pytest.raises(ValueError, match="ceiling must be in"):
            OutputGuard(1, 16000, ceiling_db=bad)


# ------------------------------------------------------------------ fades in the engine
def _delayed(audio: np.ndarray, latency: int) -> np.ndarray:
    delayed = np.zeros_like(audio)
    delayed[:, latency:] = audio[:, :-latency]
    return delayed


def test_fade_in_starts_where_the_delayed_signal_arrives(half):
    rate = 16000
    audio = noise(2, 2 * rate, seed=6, amplitude=0.1)
    engine = Separator(half, rate, 2, mode="bypass", blocking=True, **FAST)
    latency, fade = engine.latency_samples, int(0.05 * rate)
    expected_gain = np.clip((np.arange(audio.shape[1]) - latency) / fade, 0.0, 1.0)
    expected = _delayed(audio, latency) * expected_gain
    for sizes in ([audio.shape[1]], [1, 333], [4096]):
        engine.reset()  # re-arms the fade-in
        out = stream(engine, audio, sizes)
        assert np.max(np.abs(out - expected)) <= TOL["gain"]
    assert not out[:, : latency + 1].any()
    assert np.array_equal(out[:, latency + fade :], audio[:, fade:-latency])


def test_offline_engines_without_the_guard_have_no_fade_in(half):
    """separate/evaluate pass limit=False: their files start at the first sample."""
    audio = noise(1, 16000, seed=3, amplitude=0.1)
    engine = Separator(half, 16000, 1, mode="bypass", blocking=True, limit=False, **FAST)
    out = engine.process(audio)
    assert np.array_equal(out, _delayed(audio, engine.latency_samples))


def test_fade_out_reaches_silence_and_says_so(half):
    rate = 16000
    audio = noise(2, 2 * rate, seed=7, amplitude=0.1)
    engine = Separator(half, rate, 2, mode="bypass", blocking=True, **FAST)
    latency = engine.latency_samples
    out = np.zeros_like(audio)
    cut = rate  # one second in
    out[:, :cut] = stream(engine, audio[:, :cut], 500)
    assert not engine.faded_out
    engine.fade_out(0.03)
    assert not engine.faded_out  # applied by the next block
    fade = int(0.03 * rate)
    out[:, cut : cut + 100] = engine.process(audio[:, cut : cut + 100])
    assert not engine.faded_out
    out[:, cut + 100 :] = stream(engine, audio[:, cut + 100 :], 500)
    assert engine.faded_out
    index = np.arange(audio.shape[1])
    gain = np.clip(1.0 - (index - cut) / fade, 0.0, 1.0)
    gain *= np.clip((index - latency) / (0.05 * rate), 0.0, 1.0)  # the start fade-in
    expected = _delayed(audio, latency) * gain
    assert np.max(np.abs(out - expected)) <= TOL["gain"]
    assert not out[:, cut + fade :].any()
    assert out[:, cut - 1].any()


def test_fade_out_during_the_fade_in_has_no_step(half):
    rate = 16000
    audio = np.full((1, rate), 0.5, np.float32)
    engine = Separator(half, rate, 1, mode="bypass", blocking=True, **FAST)
    latency = engine.latency_samples
    first = engine.process(audio[:, : latency + 400])  # halfway into the 800-sample fade-in
    engine.fade_out(0.05)
    second = engine.process(audio[:, latency + 400 :])
    out = np.concatenate([first, second], axis=1)[0]
    assert out.max() == pytest.approx(0.25, abs=1e-3)
    assert np.abs(np.diff(out)).max() <= 0.5 / 800 * 1.01
    assert engine.faded_out and out[-1] == 0.0


def test_fade_back_in_after_a_gap_starts_from_silence_without_a_step(half):
    """A reopened device stream: the music comes back ramped up from 0, then exact."""
    rate = 16000
    audio = np.full((1, 2 * rate), 0.5, np.float32)
    engine = Separator(half, rate, 1, mode="bypass", blocking=True, **FAST)
    cut = rate  # well after the start's fade-in
    first = stream(engine, audio[:, :cut], 500)
    assert first[0, -1] == pytest.approx(0.5)
    engine.fade_back_in(0.02)
    second = stream(engine, audio[:, cut:], 500)
    fade = int(0.02 * rate)
    expected = 0.5 * np.clip(np.arange(second.shape[1]) / fade, 0.0, 1.0)
    assert second[0, 0] == 0.0  # from silence, at the first sample after the gap
    assert np.max(np.abs(second[0] - expected)) <= TOL["gain"]
    assert np.abs(np.diff(second[0])).max() <= 0.5 / fade * 1.01
    assert np.array_equal(second[:, fade:], audio[:, cut + fade :])
    assert not engine.faded_out


@pytest.fixture(scope="module")
def low_band(tmp_path_factory):
    """A model whose vocals are the spectrum below 500 Hz: every mode sounds different."""
    bins = np.arange(1024)
    gains = (bins < 64).astype(np.float32)
    return load_model(gain_model(tmp_path_factory.mktemp("m") / "low.onnx", gains))


@pytest.mark.parametrize("first", MODES)
@pytest.mark.parametrize("second", MODES)
def test_every_mode_change_is_a_50_ms_linear_crossfade(low_band, first, second):
    """Every gain in the mix is linear in the ramp's progress, so a switch at sample ``cut``
    must give exactly (1 - t) * (all in first mode) + t * (all in second mode), with t going
    0 -> 1 over the 50 ms ramp: never a jump, never a different path."""
    rate = 16000
    audio = (sine(200, 2.0, rate, 0.4) + sine(3000, 2.0, rate, 0.4))[None]
    before = Separator(low_band, rate, 1, mode=first, blocking=True, **FAST).process(audio)
    after = Separator(low_band, rate, 1, mode=second, blocking=True, **FAST).process(audio)
    engine = Separator(low_band, rate, 1, mode=first, blocking=True, **FAST)
    cut = rate
    head = engine.process(audio[:, :cut])
    engine.set_mode(second)
    switched = np.concatenate([head, engine.process(audio[:, cut:])], axis=1)
    progress = np.clip((np.arange(audio.shape[1]) - cut) / (0.05 * rate), 0.0, 1.0)
    expected = before + progress * (after - before)
    assert np.max(np.abs(switched - expected)) <= 1e-5
    assert engine.mode == second
    if first != second:  # the modes really differ: the test would see a jump
        assert np.abs(after - before)[:, cut:].max() > 0.2


def test_a_failed_window_fades_to_the_dry_signal_over_the_crossfade(half):
    """Karaoke with the half model is 0.5 * dry where windows arrive and dry where one
    failed; in between, the raised-cosine crossfade weights, exactly."""
    failing = {8, 9, 15}

    class FailsSome:
        contract = half.contract

        def __init__(self):
            self.calls = 0

        def separate(self, audio):
            self.calls += 1
            if self.calls in failing:
                raise RuntimeError("injected")
            return half.separate(audio)

    rate = 16000
    audio = sine(250, 2.5, rate, amplitude=0.5)[None]
    engine = Separator(FailsSome(), rate, 1, mode="karaoke", blocking=True, **FAST)
    out = engine.process(audio)
    hop, support = engine.hop_samples, engine.support_samples
    crossfade = engine.crossfade_samples
    weights = np.ones(support)
    phase = (np.arange(crossfade) + 0.5) / crossfade * (np.pi / 2)
    weights[:crossfade], weights[hop:] = np.sin(phase) ** 2, np.cos(phase) ** 2
    # Window k (model call k, the first window ends at one hop) covers output samples
    # [k*hop + compute, k*hop + compute + support).
    coverage = np.zeros(audio.shape[1])
    for k in range(1, audio.shape[1] // hop + 1):
        if k not in failing:
            first = k * hop + engine.compute_samples
            span = coverage[first : first + support]
            span += weights[: span.shape[0]]
    expected = _delayed(audio, engine.latency_samples)[0] * (1.0 - 0.5 * coverage)
    body = slice(engine.latency_samples + 2 * hop, None)
    assert np.max(np.abs(out[0, body] - expected[body])) < TOL["half_sine"]
    assert engine.stats.model_failures == engine.stats.fallback_windows == len(failing)
    assert np.abs(np.diff(out[0])).max() < 2 * np.pi * 250 * 0.5 / rate * 1.2


def test_crossfade_below_the_minimum_is_refused(half):
    from stream_sep.errors import UserError

    with pytest.raises(UserError, match="--crossfade must be a number of seconds >= 0.005"):
        Separator(half, 16000, 1, blocking=True, hop=0.1, lookahead=0.05, crossfade=0.0)


# ------------------------------------------------------------------ property-based
_blocks = st.lists(st.integers(1, 5000), min_size=1, max_size=12)


@st.composite
def _audio(draw):
    channels = draw(st.integers(1, 2))
    samples = draw(st.integers(1, 30000))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    level = draw(st.sampled_from([0.0, 1e-3, 0.3, 1.0, 4.0, 1e4]))
    audio = (level * rng.standard_normal((channels, samples))).astype(np.float32)
    audio += np.float32(draw(st.sampled_from([0.0, 0.5, -1.0])))  # DC offsets
    bad = draw(st.integers(0, 20))
    where = rng.integers(0, audio.size, bad)
    audio.reshape(-1)[where] = rng.choice([np.nan, np.inf, -np.inf], bad)
    return audio


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    audio=_audio(),
    blocks=_blocks,
    mode=st.sampled_from(MODES),
    # Not st.floats: loading a CPU model sets denormals-as-zero on this thread (providers.py),
    # and hypothesis refuses to draw floats then.
    level=st.one_of(st.none(), st.integers(0, 200).map(lambda hundredths: hundredths / 100)),
    model_index=st.integers(0, 3),
    rate=st.sampled_from([16000, 44100]),
)
def test_output_is_finite_within_the_ceiling_and_the_right_length(
    models, audio, blocks, mode, level, model_index, rate
):
    engine = Separator(models[model_index], rate, audio.shape[0], mode=mode, blocking=True, **FAST)
    if level is not None:
        engine.set_vocal_level(level)
    out = stream(engine, audio, blocks)
    assert out.shape == audio.shape and out.dtype == np.float32
    assert np.isfinite(out).all()
    assert np.abs(out).max(initial=0.0) <= CEILING32
    assert not out[:, : engine.latency_samples + 1].any()  # silent until the fade-in
    assert engine.stats.nonfinite_input_samples == np.count_nonzero(~np.isfinite(audio))
