"""The streaming engine: exact latency, block-size invariance, modes, crossfades, misses."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from stream_sep.engine import Separator
from stream_sep.errors import UserError
from tests.helpers import FAST_OPTIONS, impulse, noise, sine, stream

# Settings that fit the helpers' 0.48 s test window and keep streams short. No start fade-in
# here, so outputs can be compared with the input from the first delayed sample (the fades
# are tested in test_safety.py).
FAST = {**FAST_OPTIONS, "fade_in": 0.0}

# Tolerances, and why each is what it is.
TOL = {
    # Same windows, same arithmetic, only the block partition differs: bit-exact.
    "block_invariance": 0.0,
    # karaoke + vocals vs delayed input: two float32 roundings of |x| <= ~1.
    "sum_to_input": 1e-6,
    # Identity model at the model rate: dropping the Nyquist bin and the iSTFT's float32
    # overlap-add leave ~1e-2 on white noise, far less on band-limited audio.
    "identity_sine": 2e-3,
}


def _random_sizes(seed: int, count: int = 200) -> list[int]:
    return list(np.random.default_rng(seed).integers(1, 3000, count))


@pytest.mark.parametrize("rate", [16000, 44100, 48000])
@pytest.mark.parametrize("channels", [1, 2])
def test_impulse_comes_out_exactly_latency_samples_late(identity, rate, channels):
    engine = Separator(identity, rate, channels, mode="vocals", blocking=True, **FAST)
    at = int(0.3 * rate)
    audio = impulse(channels, int(1.2 * rate), at)
    for sizes in ([65], [441], [512], [8193], _random_sizes(rate + channels)):
        engine.reset()
        out = stream(engine, audio, sizes)
        for channel in range(channels):
            assert int(np.argmax(np.abs(out[channel]))) == at + engine.latency_samples
        # The peak keeps the impulse's polarity and the band-limited height.
        assert out[0, at + engine.latency_samples] > 0.2


def test_impulse_latency_with_block_size_one(identity):
    engine = Separator(identity, 16000, 1, mode="vocals", blocking=True, **FAST)
    audio = impulse(1, 8000, 1000)
    out = stream(engine, audio, 1)
    assert int(np.argmax(np.abs(out[0]))) == 1000 + engine.latency_samples
    assert out[0, 1000 + engine.latency_samples] == pytest.approx(0.8, abs=0.02)


def test_latency_is_the_sum_of_its_parts(identity):
    engine = Separator(identity, 48000, 2, hop=0.1, lookahead=0.05, crossfade=0.02)
    parts = engine.latency_breakdown
    assert parts == pytest.approx(
        {"lookahead": 0.05, "hop": 0.1, "crossfade": 0.02, "compute": 0.1}
    )
    assert engine.latency_samples == round(sum(parts.values()) * 48000)
    engine.close()


@pytest.mark.parametrize("rate", [16000, 44100])
@pytest.mark.parametrize("mode", ["karaoke", "vocals"])
def test_any_block_sizes_give_the_samples_of_one_shot_processing(half, rate, mode):
    audio = noise(2, int(1.5 * rate), seed=3)
    reference = Separator(half, rate, 2, mode=mode, blocking=True, **FAST).process(audio)
    engine = Separator(half, rate, 2, mode=mode, blocking=True, **FAST)
    for sizes in ([1024], [7], [8193], _random_sizes(7)):
        engine.reset()
        assert np.max(np.abs(stream(engine, audio, sizes) - reference)) <= TOL["block_invariance"]


def test_live_worker_without_misses_equals_offline(half):
    rate = 48000
    audio = noise(2, 2 * rate, seed=5)
    offline = Separator(half, rate, 2, blocking=True, **FAST).process(audio)
    with Separator(half, rate, 2, blocking=False, **FAST) as live:
        out = np.zeros_like(audio)
        block = 960
        for start in range(0, audio.shape[1], block):
            live.process(audio[:, start : start + block], out=out[:, start : start + block])
            _wait_until_ready(live, start + block)
        assert live.stats.deadline_misses == 0
        assert live.stats.windows_run == live.stats.windows_submitted
    assert np.max(np.abs(out - offline)) <= TOL["block_invariance"]


def _wait_until_ready(engine, position, timeout=5.0):
    """Pace like an audio device: give the worker time for each submitted window."""
    deadline = time.monotonic() + timeout
    while engine.stats.windows_run + engine.stats.model_failures < position // engine.hop_samples:
        if time.monotonic() > deadline:
            raise AssertionError("worker did not finish a window in 5 s")
        time.sleep(0.001)


def test_karaoke_plus_vocals_is_the_delayed_input(half):
    rate = 44100
    audio = noise(2, int(1.5 * rate), seed=9)
    vocals = Separator(half, rate, 2, mode="vocals", blocking=True, **FAST).process(audio)
    karaoke = Separator(half, rate, 2, mode="karaoke", blocking=True, **FAST).process(audio)
    latency = Separator(half, rate, 2, blocking=True, **FAST).latency_samples
    delayed = np.zeros_like(audio)
    delayed[:, latency:] = audio[:, :-latency]
    assert np.max(np.abs(karaoke + vocals - delayed)) <= TOL["sum_to_input"]


def test_known_model_gives_known_vocals_at_the_model_rate(half):
    rate = 16000
    audio = np.stack([sine(440, 1.5, rate), sine(660, 1.5, rate)])
    engine = Separator(half, rate, 2, mode="vocals", blocking=True, **FAST)
    out = engine.process(audio)
    latency = engine.latency_samples
    assert np.max(np.abs(out[:, latency:] - 0.5 * audio[:, :-latency])) <= TOL["identity_sine"]


@pytest.mark.parametrize("level", [0.0, 0.3, 1.0, 1.5])
def test_vocal_level_mixes_accompaniment_and_vocals(half, level):
    rate = 16000
    audio = noise(1, rate, seed=2, amplitude=0.1)  # stays below the limiter's ceiling
    vocals = Separator(half, rate, 1, mode="vocals", blocking=True, **FAST).process(audio)
    karaoke = Separator(half, rate, 1, mode="karaoke", blocking=True, **FAST).process(audio)
    mixed = Separator(half, rate, 1, vocal_level=level, blocking=True, **FAST).process(audio)
    assert np.max(np.abs(mixed - (karaoke + level * vocals))) <= TOL["sum_to_input"]


def test_bypass_is_exactly_the_delayed_input(half):
    audio = noise(2, 20000, seed=4)
    engine = Separator(half, 16000, 2, mode="bypass", blocking=True, **FAST)
    out = engine.process(audio)
    assert np.array_equal(out[:, engine.latency_samples :], audio[:, : -engine.latency_samples])


def test_changing_the_vocal_level_mid_stream_has_no_step(half):
    rate = 16000
    audio = sine(220, 2.0, rate, amplitude=0.8)[None]
    engine = Separator(half, rate, 1, mode="karaoke", blocking=True, **FAST)
    out = np.zeros_like(audio)
    out[:, :16000] = engine.process(audio[:, :16000])
    engine.set_vocal_level(1.0)
    out[:, 16000:] = engine.process(audio[:, 16000:])
    # A 220 Hz sine at 0.8 moves at most 2*pi*220*0.8/16000 = 0.069 per sample; the ramp
    # adds at most 0.4 (the level step) * 0.8 / 800 samples. Bound with margin:
    steps = np.abs(np.diff(out[0]))
    assert steps.max() < 0.075


def test_mode_switch_ramps_instead_of_jumping(half):
    audio = sine(330, 2.0, 16000, amplitude=0.8)[None]
    engine = Separator(half, 16000, 1, mode="karaoke", blocking=True, **FAST)
    first = engine.process(audio[:, :16000])
    engine.set_mode("bypass")
    second = engine.process(audio[:, 16000:])
    steps = np.abs(np.diff(np.concatenate([first, second], axis=1)[0]))
    assert steps.max() < 2 * np.pi * 330 * 0.8 / 16000 * 1.1
    assert engine.mode == "bypass"


def test_constant_gain_model_has_no_discontinuity_at_window_joins(half):
    rate = 16000
    audio = sine(250, 2.0, rate, amplitude=0.5)[None]
    engine = Separator(half, rate, 1, mode="vocals", blocking=True, **FAST)
    out = engine.process(audio)[0, engine.latency_samples :]
    expected = 0.5 * audio[0, : out.shape[0]]
    joins = np.arange(engine.hop_samples, out.shape[0], engine.hop_samples)
    assert np.max(np.abs(out - expected)) < TOL["identity_sine"]
    assert np.abs(np.diff(out)).max() < 2 * np.pi * 250 * 0.25 / rate * 1.1
    assert len(joins) > 10


class SlowModel:
    """Wraps a real model and sleeps before some windows (deadline misses on purpose)."""

    def __init__(self, model, delay: float, every: int = 1):
        self.model, self.contract = model, model.contract
        self.delay, self.every, self.calls = delay, every, 0

    def separate(self, audio):
        self.calls += 1
        if self.calls % self.every == 0:
            time.sleep(self.delay)
        return self.model.separate(audio)


def test_slow_model_misses_are_counted_and_filled_with_the_dry_signal(half):
    rate = 16000
    audio = sine(300, 4.0, rate, amplitude=0.5)[None]
    model = SlowModel(half, delay=0.3, every=3)
    out = np.zeros_like(audio)
    with Separator(model, rate, 1, mode="karaoke", blocking=False, **FAST) as engine:
        block = 160  # 10 ms, paced at real time
        started = time.monotonic()
        for start in range(0, audio.shape[1], block):
            engine.process(audio[:, start : start + block], out=out[:, start : start + block])
            ahead = start / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
        stats = engine.stats
        latency = engine.latency_samples
    assert stats.deadline_misses > 0
    assert stats.windows_run > stats.deadline_misses
    body = out[0, latency + rate // 2 :]
    # No gaps: karaoke of a pure "vocal" is 0.5*x in time and x during fallback: never silence.
    envelope = np.abs(body).reshape(-1, 160).max(axis=1)
    assert envelope.min() > 0.2
    assert np.abs(np.diff(out[0])).max() < 2 * np.pi * 300 * 0.5 / rate * 1.2


def test_failing_model_counts_failures_and_keeps_streaming(half):
    class Failing:
        contract = half.contract

        def separate(self, audio):
            raise RuntimeError("boom")

    engine = Separator(Failing(), 16000, 1, blocking=True, **FAST)
    audio = sine(200, 1.0, 16000)[None]
    out = engine.process(audio)
    assert engine.stats.model_failures == engine.stats.windows_submitted > 0
    assert np.array_equal(out[0, engine.latency_samples :], audio[0, : -engine.latency_samples])


def test_nan_and_inf_input_are_silenced_and_counted(half):
    audio = noise(2, 16000, seed=1)
    audio[0, 100:110] = np.nan
    audio[1, 500] = np.inf
    engine = Separator(half, 16000, 2, blocking=True, **FAST)
    out = engine.process(audio)
    assert np.isfinite(out).all()
    assert engine.stats.nonfinite_input_samples == 11


def test_mid_mode_runs_one_batch(half):
    calls = []

    class Recording:
        contract = half.contract

        def separate(self, audio):
            calls.append(audio.shape)
            return half.separate(audio)

    engine = Separator(Recording(), 16000, 2, stereo="mid", mode="vocals", blocking=True, **FAST)
    audio = np.stack([sine(440, 1.0, 16000)] * 2)
    out = engine.process(audio)
    assert {shape[0] for shape in calls} == {1}
    latency = engine.latency_samples
    assert np.max(np.abs(out[:, latency:] - 0.5 * audio[:, :-latency])) < TOL["identity_sine"]


@pytest.mark.parametrize(
    "options, message",
    [
        ({"hop": 0}, "--hop"),
        ({"lookahead": 0.0}, "--lookahead must be at least"),
        ({"crossfade": 0.2}, "--crossfade must be at most the hop"),
        ({"hop": 0.3, "lookahead": 0.2}, "hop + lookahead + crossfade must be at most"),
        ({"mode": "loud"}, "--mode must be one of karaoke, vocals, bypass"),
        ({"vocal_level": 3.0}, "--vocal-level must be a number in [0, 2]"),
        ({"stereo": "side"}, "--stereo must be one of batch, mid"),
    ],
)
def test_bad_settings_are_user_errors(half, options, message):
    settings = {**FAST, **options}
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("+", r"\+")):
        Separator(half, 16000, 1, blocking=True, **settings)


def test_process_never_waits_for_a_hung_model(half):
    release = threading.Event()

    class Hung:
        contract = half.contract

        def separate(self, audio):
            release.wait(10)
            return half.separate(audio)

    with Separator(Hung(), 16000, 1, blocking=False, **FAST) as engine:
        audio = noise(1, 16000 * 3, seed=8)
        started = time.monotonic()
        out = stream(engine, audio, 512)
        took = time.monotonic() - started
        release.set()
    assert took < 5.0  # 3 s of audio processed without waiting on the hung worker
    assert engine.stats.deadline_misses + engine.stats.windows_skipped >= 20
    assert np.array_equal(out[0, engine.latency_samples :], audio[0, : -engine.latency_samples])
