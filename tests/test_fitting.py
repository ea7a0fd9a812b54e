"""The plan as a value, the compute allowance from measured speed, --latency choices, and
graceful overload (shedding) in the live engine."""

import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from stream_sep.engine import Separator, WindowPlan, fitting
from stream_sep.engine.fitting import SpeedProfile
from stream_sep.engine.shedding import (
    CALM_WINDOWS,
    CONFIGURED,
    MID,
    UP,
    WITHOUT_DENOISE,
    Shedding,
)
from stream_sep.errors import UserError
from stream_sep.live import status
from stream_sep.models.contract import ModelContract
from tests.helpers import noise

CONTRACT = ModelContract()  # 16 kHz, 65,024-sample (4.064 s) window, n_fft 1024


def profile(batch: float, mid: float) -> SpeedProfile:
    return SpeedProfile((batch,) * 6, (mid,) * 6)


def test_a_plan_needs_no_model_and_states_every_term():
    plan = WindowPlan.build(CONTRACT, 48000, hop=0.5, lookahead=0.25, crossfade=0.064)
    assert plan.latency_samples == 63072  # the README: 1.314 s (63,072 samples) at 48 kHz
    assert plan.breakdown == {"lookahead": 0.25, "hop": 0.5, "crossfade": 0.064, "compute": 0.5}
    faster = WindowPlan.build(CONTRACT, 48000, 0.5, 0.25, 0.064, compute=0.2)
    assert faster.latency_samples == plan.latency_samples - int(0.3 * 48000)


def test_the_compute_allowance_never_exceeds_the_hop():
    with pytest.raises(UserError, match="compute allowance must be at most the hop"):
        WindowPlan.build(CONTRACT, 16000, 0.2, 0.1, 0.02, compute=0.3)
    assert fitting.compute_allowance(window_seconds=5.0, hop=0.4) == 0.4
    assert fitting.compute_allowance(window_seconds=0.1, hop=1.0) == pytest.approx(
        0.22
    )  # 2x + 20 ms


def test_auto_takes_the_lowest_latency_within_the_load_ceiling():
    fit = fitting.choose(CONTRACT, 48000, 2, profile(batch=0.30, mid=0.15))
    assert fit.stereo == "mid"  # half the compute, so a shorter hop
    assert fit.load <= fitting.LOAD_CEILING
    assert fit.compute <= fit.hop
    plan = WindowPlan.build(
        CONTRACT, 48000, **{k: v for k, v in fit.engine_options().items() if k != "stereo"}
    )
    assert fit.latency == plan.latency_seconds
    # hop 0.15 / 0.5; allowance 2 x 0.15 + 0.02 s, never more than the hop
    assert fit.latency == pytest.approx(fitting.AUTO_LOOKAHEAD + 0.30 + 0.064 + 0.30)
    mono = fitting.choose(CONTRACT, 48000, 1, profile(batch=0.15, mid=0.15))
    assert mono.stereo == "batch" and mono.latency == pytest.approx(fit.latency)


def test_a_slower_model_gets_a_longer_hop_and_a_longer_latency():
    fast = fitting.choose(CONTRACT, 44100, 2, profile(0.2, 0.1))
    slow = fitting.choose(CONTRACT, 44100, 2, profile(0.8, 0.4))
    assert slow.hop > fast.hop and slow.latency > fast.latency
    assert slow.load <= fitting.LOAD_CEILING


def test_an_asked_latency_is_met_exactly_with_the_slack_spent_on_lookahead():
    fit = fitting.choose(CONTRACT, 48000, 2, profile(0.2, 0.1), target=1.0)
    assert fit.latency == 1.0 and fit.stereo == "batch"
    options = {k: v for k, v in fit.engine_options().items() if k != "stereo"}
    assert WindowPlan.build(CONTRACT, 48000, **options).latency_samples == int(1.0 * 48000)
    assert fit.lookahead > fitting.AUTO_LOOKAHEAD


def test_a_latency_below_what_the_machine_can_do_names_the_lowest():
    lowest = fitting.choose(CONTRACT, 48000, 2, profile(0.6, 0.3)).latency
    with pytest.raises(UserError) as caught:
        fitting.choose(CONTRACT, 48000, 2, profile(0.6, 0.3), target=0.5)
    message = str(caught.value)
    assert message.startswith(f"--latency must be at least {lowest:.3f} s on this machine")
    assert message.endswith("got 0.5") and "\n" not in message


def test_speed_is_measured_on_the_real_window_path(half):
    class Slow:
        contract = half.contract

        def separate(self, audio):
            time.sleep(0.05 * audio.shape[0])
            return half.separate(audio)

    speed = fitting.measure(Slow(), 48000, 2, runs=3)
    assert len(speed.batch) == len(speed.mid) == 3
    assert min(speed.batch) >= 0.1 and min(speed.mid) >= 0.05
    fit = fitting.choose(half.contract, 48000, 2, speed)
    assert fit.hop >= speed.t90(fit.stereo) / fitting.LOAD_CEILING - 1e-9


class SlowPhase:
    """Wraps a model: between ``start`` and ``stop`` seconds after creation, each call sleeps
    ``per_channel`` seconds per batch row (another program took the CPU)."""

    def __init__(self, model, start: float, stop: float, per_channel: float):
        self.model, self.contract = model, model.contract
        self.start, self.stop, self.per_channel = start, stop, per_channel
        self.born = time.monotonic()
        self.batches = []

    def separate(self, audio):
        age = time.monotonic() - self.born
        self.batches.append(audio.shape[0])
        if self.start <= age < self.stop:
            time.sleep(self.per_channel * audio.shape[0])
        return self.model.separate(audio)


def _paced(engine, audio, block):
    out = np.zeros_like(audio)
    started = time.monotonic()
    for first in range(0, audio.shape[1], block):
        engine.process(audio[:, first : first + block], out=out[:, first : first + block])
        ahead = (first + block) / engine.sample_rate - (time.monotonic() - started)
        if ahead > 0:
            time.sleep(ahead)
    return out


def test_overload_sheds_to_the_mid_channel_keeps_the_latency_and_recovers(half):
    """Both channels cost 0.3 s in the slow phase (allowance 0.2 s), the mid channel 0.15 s."""
    rate, seconds = 16000, 9.0
    model = SlowPhase(half, start=2.0, stop=4.5, per_channel=0.15)
    mono = noise(1, int(seconds * rate), seed=3, amplitude=0.2)
    audio = np.repeat(mono, 2, axis=0)  # identical channels: mid == each channel
    settings = {"hop": 0.2, "lookahead": 0.05, "crossfade": 0.02, "compute": 0.2}
    with Separator(model, rate, 2, shed=True, mode="karaoke", fade_in=0.0, **settings) as engine:
        out = _paced(engine, audio, 320)
        latency, shedding, stats = engine.latency_samples, engine.shedding, engine.stats
        assert not engine.failed
    assert shedding.switches >= 1 and shedding.mid_windows > 0
    assert not shedding.on_mid  # recovered once the machine was free
    assert model.batches[-1] == 2  # back on both channels at the end
    # Time-aligned throughout: the half model's karaoke is 0.5 x the delayed input where a
    # window was used, the dry input where one was shed or missed, a blend in crossfades.
    delayed = np.zeros_like(audio)
    delayed[:, latency:] = audio[:, :-latency]
    out, delayed = out[:, latency:], delayed[:, latency:]
    # out = delayed * (1 - 0.5 c) with c in [0, 1]: between 0.5 x delayed and delayed.
    tolerance = 0.01  # the half model itself is within 0.0034 of 0.5 x its input here
    low, high = np.minimum(0.5 * delayed, delayed), np.maximum(0.5 * delayed, delayed)
    between = (out >= low - tolerance) & (out <= high + tolerance)
    assert between.all()
    separated = np.abs(out - 0.5 * delayed) < tolerance
    assert separated.mean() > 0.8  # most of the run was separated, slow phase included
    assert stats.fallback_windows == stats.deadline_misses + shedding.dropped + (
        stats.windows_skipped
    )


def test_the_shedding_ladder_drops_the_denoise_pass_before_the_second_channel():
    """Cheapest loss first: without the sign-inverted pass (about +0.06 dB), then the mid
    channel; back up one step at a time once the step above is predicted to fit."""
    allowance = 1.0
    shedding = Shedding(allowance, "batch", channels=2, ratio=2.0, denoise=True)
    assert shedding.ladder == [CONFIGURED, WITHOUT_DENOISE, MID]
    assert shedding.way_for_next() is None
    shedding.observe(None, 0.9)  # above UP (0.8) of the allowance: one step down
    assert shedding.way_for_next() is WITHOUT_DENOISE and not shedding.on_mid
    shedding.observe(None, 0.9)  # a window started before the step says nothing more
    assert shedding.way_for_next() is WITHOUT_DENOISE
    shedding.observe(WITHOUT_DENOISE, 0.85)  # still too slow without the pass: mid channel
    assert shedding.way_for_next() is MID and shedding.on_mid
    assert shedding.switches == 2
    for _ in range(CALM_WINDOWS - 1):
        shedding.observe(MID, 0.2)  # both channels predicted 0.4 < DOWN (0.65): calm
        assert shedding.way_for_next() is MID
    shedding.observe(MID, 0.2)
    assert shedding.way_for_next() is WITHOUT_DENOISE  # one step up, not two
    # the running average starts from the prediction (0.4, with the pass 0.8): a few
    # windows bring it down before the calm ones count
    windows, way = 0, WITHOUT_DENOISE
    while way is not None and windows < 30:
        shedding.observe(WITHOUT_DENOISE, 0.2)
        windows, way = windows + 1, shedding.way_for_next()
    assert CALM_WINDOWS < windows < 30 and shedding.step == 0
    assert shedding.without_denoise_windows == 2 + windows
    assert shedding.mid_windows == CALM_WINDOWS
    assert shedding.shed == shedding.without_denoise_windows + shedding.mid_windows


def test_after_a_burst_the_stream_returns_to_both_channels_at_its_start_up_speed():
    """--latency auto plans the configured way's 90th percentile at about half the allowance
    (LOAD_CEILING 0.5, allowance = hop), and live windows run a little slower than the
    start-up measured (about 5% on average). Once a burst of load has passed, both channels
    predicted at that speed must count as calm, or the stream stays on the mid channel for
    the rest of the run."""
    allowance, t90_batch, ratio = 1.0, 0.49, 1.8
    shedding = Shedding(allowance, "batch", channels=2, ratio=ratio)
    shedding.observe(None, 0.9)  # the burst: above UP, down to the mid channel
    assert shedding.on_mid
    mid_again = 1.05 * t90_batch / ratio  # the machine as quiet as at start-up, mean +5%
    for _ in range(CALM_WINDOWS):
        shedding.way_for_next()
        shedding.observe(MID, mid_again)
    assert shedding.step == 0 and shedding.way_for_next() is None
    assert UP * allowance > mid_again * ratio  # and it stays there: below UP


@pytest.mark.parametrize(
    ("stereo", "channels", "denoise", "ladder"),
    [
        ("batch", 2, False, [CONFIGURED, MID]),
        ("mid", 2, True, [CONFIGURED, WITHOUT_DENOISE]),
        ("batch", 1, True, [CONFIGURED, WITHOUT_DENOISE]),
        ("batch", 1, False, [CONFIGURED]),
    ],
)
def test_the_ladder_has_only_the_steps_the_configuration_can_take(
    stereo, channels, denoise, ladder
):
    shedding = Shedding(1.0, stereo, channels, denoise=denoise)
    assert shedding.ladder == ladder
    for _ in range(3):
        shedding.observe(None, 5.0)
    assert shedding.step == len(ladder) - 1  # never past the cheapest step


def test_overload_with_denoise_sheds_its_pass_first_and_keeps_both_channels(half):
    """With --denoise a window is a batch of 4 rows (2 channels, and each sign-inverted):
    0.24 s in the slow phase against an allowance of 0.2 s; without the pass 2 rows, 0.12 s,
    within it, so the stream never needs the mid channel."""
    rate, seconds = 16000, 8.0
    model = SlowPhase(half, start=2.0, stop=4.5, per_channel=0.06)
    audio = noise(2, int(seconds * rate), seed=6, amplitude=0.2)
    settings = {"hop": 0.2, "lookahead": 0.05, "crossfade": 0.02, "compute": 0.2}
    with Separator(
        model, rate, 2, shed=True, denoise=True, mode="vocals", fade_in=0.0, **settings
    ) as engine:
        out = _paced(engine, audio, 320)
        latency, shedding, stats = engine.latency_samples, engine.shedding, engine.stats
        assert not engine.failed
    assert shedding.switches >= 1 and shedding.without_denoise_windows > 0
    assert shedding.mid_windows == 0 and 1 not in model.batches  # both channels throughout
    assert 2 in model.batches and model.batches[-1] == 4  # recovered: the pass is back
    device = SimpleNamespace(frames=audio.shape[1], xruns=0, muted_blocks=0)
    overload = next(
        line
        for line in status.summary_lines(engine, device, seconds, "end of input", [])
        if line.startswith("overload:")
    )
    assert f"{shedding.without_denoise_windows} run without the denoise pass, " in overload
    assert "0 run on the mid channel only" in overload
    # the half model is linear: with or without the pass its vocals are 0.5 x the input
    delayed = audio[:, : audio.shape[1] - latency]
    separated = np.abs(out[:, latency:] - 0.5 * delayed) < 0.01
    assert separated.mean() > 0.8
    assert stats.fallback_windows == stats.deadline_misses + shedding.dropped + (
        stats.windows_skipped
    )


def test_shedding_never_stops_a_slow_stream_but_a_hung_model_still_does(half):
    class Hung:
        contract = half.contract

        def __init__(self):
            self.release = threading.Event()

        def separate(self, audio):
            self.release.wait(10)
            return half.separate(audio)

    settings = {"hop": 0.1, "lookahead": 0.05, "crossfade": 0.02}
    slow = SlowPhase(half, start=0.0, stop=99.0, per_channel=0.2)
    with Separator(slow, 16000, 1, shed=True, **settings) as engine:
        _paced(engine, noise(1, 32000, seed=4), 320)
        assert not engine.failed and engine.stats.fallback_windows > 8
    hung = Hung()
    engine = Separator(hung, 16000, 1, shed=True, **settings)
    try:
        _paced(engine, noise(1, 32000, seed=5), 320)
        assert engine.failed and engine.failure_kind == "hung"
    finally:
        hung.release.set()
        engine.close()


def test_the_plan_covers_the_device_block():
    """A fast model on 1024-frame JACK blocks at 48 kHz: a window is handed over at the end of
    the block that completes it and read out by a later callback, so the allowance holds a
    block beyond the compute time, and the hop is at least two blocks."""
    block = 1024 / 48000
    fit = fitting.choose(CONTRACT, 48000, 2, profile(0.004, 0.002), block_seconds=block)
    assert fit.compute >= fitting.COMPUTE_MARGIN * 0.004 + fitting.COMPUTE_SLACK + block - 1e-9
    assert fit.hop >= 2 * block
    unblocked = fitting.choose(CONTRACT, 48000, 2, profile(0.004, 0.002))
    assert fit.latency > unblocked.latency


def test_the_per_block_stages_share_the_ceiling_with_the_windows():
    speed = profile(0.2, 0.1)
    alone = fitting.choose(CONTRACT, 48000, 1, speed)
    with_key = fitting.choose(CONTRACT, 48000, 1, speed, stage_load=0.2)
    # the windows get 0.5 - 0.2 of the CPU: a longer hop, a higher latency, the same ceiling
    assert with_key.hop >= 0.2 / (fitting.LOAD_CEILING - 0.2) - 1e-9 > alone.hop
    assert with_key.latency > alone.latency
    assert with_key.load == pytest.approx(0.2 / with_key.hop + 0.2)
    assert with_key.load <= fitting.LOAD_CEILING + 1e-9
    # a target below what the stages leave possible names the lowest with them counted
    with pytest.raises(UserError, match=f"at least {with_key.latency:.3f} s"):
        fitting.choose(CONTRACT, 48000, 1, speed, alone.latency, stage_load=0.2)
    with pytest.raises(UserError, match="take 0.45 of this machine's CPU"):
        fitting.choose(CONTRACT, 48000, 1, speed, stage_load=0.45)


def test_a_stage_is_timed_per_second_of_audio():
    calls = []

    def busy(block, out):
        calls.append(block.shape)
        out[:] = block
        time.sleep(0.002)

    share = fitting.measure_stage(busy, 48000, 2, 1024, seconds=0.5)
    # at least 0.002 s per 1024-frame block of 48 kHz audio (21.3 ms): 0.094 of real time
    assert share >= 0.09
    assert len(calls) == fitting.STAGE_WARM_UP_BLOCKS + round(0.5 * 48000 / 1024)
    assert set(calls) == {(2, 1024)}


def test_the_lowest_latency_named_runs_when_the_next_start_measures_a_little_slower():
    first = profile(0.2, 0.1)
    with pytest.raises(UserError, match=r"at least (\d+\.\d+) s") as refused:
        fitting.choose(CONTRACT, 48000, 1, first, 0.1)
    lowest = float(str(refused.value).split("at least ")[1].split(" s")[0])
    assert lowest == fitting.choose(CONTRACT, 48000, 1, first).latency
    # 8% slower next time: still accepted, the load above the ceiling but within tolerance
    slower = fitting.choose(CONTRACT, 48000, 1, profile(0.216, 0.108), lowest)
    assert slower.latency == pytest.approx(lowest)
    assert fitting.LOAD_CEILING < slower.load <= fitting.ACCEPT_CEILING + 1e-9
    # 25% slower: refused, naming the new lowest
    with pytest.raises(UserError, match="--latency must be at least"):
        fitting.choose(CONTRACT, 48000, 1, profile(0.25, 0.125), lowest)


def test_auto_runs_every_channel_when_that_plan_is_within_the_bound():
    speed = profile(0.2, 0.1)  # the mid channel costs half
    lowest = fitting.choose(CONTRACT, 48000, 2, speed)
    assert lowest.stereo == "mid"
    both = fitting.choose(CONTRACT, 48000, 2, speed, batch_within=2.0)
    assert both.stereo == "batch" and both.latency > lowest.latency
    # beyond the bound the lowest latency wins, mid or not
    assert fitting.choose(CONTRACT, 48000, 2, speed, batch_within=0.5).stereo == "mid"
    # a forced choice and mono streams are as before
    assert fitting.choose(CONTRACT, 48000, 2, speed, stereo="mid", batch_within=2.0).stereo == "mid"
    assert fitting.choose(CONTRACT, 48000, 1, speed, batch_within=2.0).stereo == "batch"
