"""Fitting the plan to the machine: measure the model's speed, then choose the settings.

The compute allowance ``D`` (the time a window's inference may take before its samples are
due) comes from the measured speed: ``D = min(hop, COMPUTE_MARGIN * t90 + COMPUTE_SLACK)``
with ``t90`` the 90th percentile of timed windows, so the latency shrinks on a fast machine.
``--latency auto`` then picks the hop (and, for stereo, whether to run both channels or only
the mid channel) with the lowest latency whose load (``t90 / hop``, plus the share of the
stages that run on every block: the key change, the microphone's reverb) stays at or below
``LOAD_CEILING``; ``--latency SECONDS`` picks the best-quality setting that fits and spends
the rest of the requested delay on lookahead, so the reported latency is exactly what was
asked. All choices are pure functions of the measured :class:`SpeedProfile`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence

import numpy as np

from stream_sep.engine.config import EngineConfig
from stream_sep.engine.plan import DEFAULT_CROSSFADE, WindowPlan
from stream_sep.engine.window import WindowRunner
from stream_sep.errors import UserError

# The start-up measurement times a few windows alone; live, beside the audio threads, windows
# ran about 5% slower on average and up to 1.9x the measured t90 now and then (bundled model,
# JACK dummy device, quiet 2-core VM, 2026-11-29). At 0.6 / 1.5 about 2% of windows missed
# their deadline (each a dry window: the voice back in karaoke for a hop); 0.5 / 2.0 leaves
# room for those spikes at about 0.1 s more latency.
LOAD_CEILING = 0.5  # inference time per window / hop
# A --latency target below what this start's measurement allows at the ceiling still runs
# when it fits at this load: two starts' measurements differ by a few percent, so the lowest
# latency one start names is accepted by the next (still below the 0.6 where windows missed).
ACCEPT_CEILING = 0.55
COMPUTE_MARGIN = 2.0  # compute allowance = margin x the 90th percentile window time + slack
COMPUTE_SLACK = 0.02  # seconds: thread wake-up and device-block jitter
AUTO_LOOKAHEAD = 0.05  # seconds of future context --latency auto gives the model (0.1 scored
# 0.02 dB better on four real songs, 0.08 dB on MIR-1K, at 0.05 s more latency)
AUTO_CROSSFADE = DEFAULT_CROSSFADE
GRID = 0.01  # hops and allowances are whole multiples of 10 ms
MIN_WINDOW_SHARE = 0.1  # the least CPU share the windows may be left by the other stages
MID_MIN_GAIN = 0.05  # auto takes the mid channel (one estimate for both sides) only if it
# lowers the latency by at least this many seconds: both channels keep the stereo image
TIMED_WINDOWS = 6
STAGE_SECONDS = 1.0  # audio a per-block stage is timed on at start-up
STAGE_WARM_UP_BLOCKS = 8


@dataclasses.dataclass(frozen=True)
class SpeedProfile:
    """Measured seconds per window: ``batch`` runs every channel, ``mid`` one channel."""

    batch: tuple[float, ...]
    mid: tuple[float, ...]

    def t90(self, stereo: str) -> float:
        times = self.batch if stereo == "batch" else self.mid
        return float(np.percentile(times, 90))


def typical(profiles: Sequence[SpeedProfile]) -> SpeedProfile:
    """The profile a plan is chosen from when several starts measured the same setting:
    per stereo handling, the median of the starts' 90th percentiles (one value each).
    One profile is returned as it is."""
    if not profiles:
        raise ValueError("no speed measurements")
    if len(profiles) == 1:
        return profiles[0]
    return SpeedProfile(
        (float(np.median([p.t90("batch") for p in profiles])),),
        (float(np.median([p.t90("mid") for p in profiles])),),
    )


@dataclasses.dataclass(frozen=True)
class Fit:
    """A chosen setting: engine options plus the numbers it was chosen from."""

    hop: float
    lookahead: float
    crossfade: float
    compute: float
    stereo: str
    window_seconds: float  # t90 of the chosen stereo handling
    latency: float
    stage_load: float = 0.0  # the per-block stages' share of the CPU (see choose)

    @property
    def load(self) -> float:
        """The whole plan's share of the CPU: windows plus the per-block stages."""
        return self.window_seconds / self.hop + self.stage_load

    def engine_options(self) -> dict:
        return {
            "hop": self.hop,
            "lookahead": self.lookahead,
            "crossfade": self.crossfade,
            "compute": self.compute,
            "stereo": self.stereo,
        }

    def applied(self, config: EngineConfig) -> EngineConfig:
        """``config`` with this plan: hop, lookahead, crossfade, compute and stereo."""
        return dataclasses.replace(config, **self.engine_options())


def measure(
    model,
    sample_rate: int,
    channels: int,
    runs: int = TIMED_WINDOWS,
    config: EngineConfig | None = None,
    **window_options,
) -> SpeedProfile:
    """Time ``runs`` windows of quiet noise through the engine's own window path (resampling,
    STFT, model, iSTFT) for both stereo handlings (one when mono), after one untimed run.
    config: the engine's config whose window options (post-filter, high band, denoise) are
    timed with the window; window_options: those options as keywords, replacing config's."""
    contract = model.contract
    edge = contract.n_fft // 4 / contract.sample_rate
    quarter = contract.window_seconds / 4  # any valid plan: the timing hardly depends on it
    plan = WindowPlan.build(
        contract, sample_rate, quarter, 2 * edge, min(quarter, DEFAULT_CROSSFADE)
    )
    config = EngineConfig.of(config, **window_options)
    runner = WindowRunner(
        model,
        plan,
        postfilter=config.postfilter,
        high_band_voice_removal=config.high_band_voice_removal,
        denoise=config.denoise,
    )
    audio = 0.01 * np.random.default_rng(0).standard_normal((channels, plan.window_samples))
    audio = audio.astype(np.float32)
    timings = {}
    for stereo in ("batch", "mid") if channels > 1 else ("batch",):
        runner.estimate(audio, stereo)
        timings[stereo] = tuple(_timed(runner, audio, stereo) for _ in range(runs))
    return SpeedProfile(timings["batch"], timings.get("mid", timings["batch"]))


def measure_stage(
    process, sample_rate: int, channels: int, block: int, seconds: float = STAGE_SECONDS
) -> float:
    """CPU share of a per-block stage: seconds spent in ``process(block, out)`` per second
    of audio, over ``seconds`` of quiet noise in ``block``-frame blocks after
    :data:`STAGE_WARM_UP_BLOCKS` untimed ones (process: (channels, block) float32 in, written
    into ``out`` of the same shape)."""
    noise = np.random.default_rng(1).standard_normal((channels, block)).astype(np.float32)
    audio, out = 0.01 * noise, np.zeros((channels, block), np.float32)
    for _ in range(STAGE_WARM_UP_BLOCKS):
        process(audio, out)
    blocks = max(1, int(round(seconds * sample_rate / block)))
    started = time.perf_counter()
    for _ in range(blocks):
        process(audio, out)
    return (time.perf_counter() - started) / (blocks * block / sample_rate)


def _timed(runner: WindowRunner, audio: np.ndarray, stereo: str) -> float:
    started = time.perf_counter()
    runner.estimate(audio, stereo)
    return time.perf_counter() - started


def compute_allowance(window_seconds: float, hop: float, block_seconds: float = 0.0) -> float:
    """Seconds a window may take: a margin over the measured time plus one device block
    (a window is handed over at the end of the block that completes it, and its first output
    sample is written by a later block's callback), never more than the hop."""
    needed = COMPUTE_MARGIN * window_seconds + COMPUTE_SLACK + block_seconds
    return min(hop, _ceil_grid(needed))


def choose(
    contract,
    sample_rate: int,
    channels: int,
    speed: SpeedProfile,
    target: float | None = None,
    stereo: str | None = None,
    block_seconds: float = 0.0,
    stage_load: float = 0.0,
    batch_within: float | None = None,
) -> Fit:
    """The setting for ``target`` seconds of latency, or the lowest latency (None).

    stereo: force 'batch' or 'mid' (None: either; 'mid' only when it is at least
    ``MID_MIN_GAIN`` seconds lower).
    block_seconds: the device's block (callback) duration: hop and allowance cover it.
    stage_load: CPU seconds per second of audio of the stages that run on every block
    besides the windows (key change, microphone reverb), measured at start-up: the windows
    get ``LOAD_CEILING - stage_load``, so the whole plan's load stays at the ceiling.
    batch_within: for the lowest latency (``target`` None), every channel through the model
    whenever that plan's latency is at most this many seconds, mid or not (one estimate for
    both sides loses the side part of the voice: about 2 dB on real songs).
    Raises :class:`UserError` naming the lowest latency possible (at the ceiling) when
    ``target`` is below it; a target that fits at :data:`ACCEPT_CEILING` runs.
    """
    check_stage_load(stage_load)
    options = [stereo] if stereo else (["batch", "mid"] if channels > 1 else ["batch"])

    def lowest(ceiling: float) -> list[Fit]:
        found = [
            _lowest(contract, sample_rate, speed, s, block_seconds, stage_load, ceiling)
            for s in options
        ]
        return [f for f in found if f is not None]

    fits = lowest(LOAD_CEILING)
    if not fits:
        raise UserError("this model's window is too short for any live setting on this machine")
    best = min(fits, key=lambda f: f.latency + (MID_MIN_GAIN if f.stereo == "mid" else 0.0))
    if target is None:
        batch = next((f for f in fits if f.stereo == "batch"), None)
        if batch is not None and batch_within is not None and batch.latency <= batch_within:
            return batch
        return best
    fitting = [f for f in fits if f.latency <= target + 1e-9]
    if not fitting:  # a latency an earlier start named: measurement noise is tolerated
        fitting = [f for f in lowest(ACCEPT_CEILING) if f.latency <= target + 1e-9]
    if not fitting:
        raise UserError(
            f"--latency must be at least {best.latency:.3f} s on this machine with this "
            f"model ({best.window_seconds:.3f} s per window, {best.stereo}), got {target:g}"
        )
    chosen = next((f for f in fitting if f.stereo == "batch"), fitting[0])
    return _stretch(contract, sample_rate, chosen, target)


def check_stage_load(stage_load: float) -> None:
    """One line when the per-block stages leave the windows less than
    :data:`MIN_WINDOW_SHARE` of the CPU."""
    if LOAD_CEILING - stage_load < MIN_WINDOW_SHARE:
        raise UserError(
            f"the stages beside the separation (key change, microphone reverb) take "
            f"{stage_load:.2f} of this machine's CPU, leaving less than {MIN_WINDOW_SHARE:g} of "
            f"the {LOAD_CEILING:g} ceiling for the model: leave one of them out"
        )


def _lowest(
    contract,
    rate: int,
    speed: SpeedProfile,
    stereo: str,
    block: float,
    stage_load: float = 0.0,
    ceiling: float = LOAD_CEILING,
) -> Fit | None:
    """The lowest-latency setting for one stereo handling, or None if none fits."""
    seconds = speed.t90(stereo)
    window_share = ceiling - stage_load
    hop = max(GRID, _ceil_grid(seconds / window_share), _ceil_grid(2 * block))
    crossfade = min(AUTO_CROSSFADE, hop)
    compute = compute_allowance(seconds, hop, block)
    edge = math.ceil(contract.n_fft // 4 * rate / contract.sample_rate) / rate
    lookahead = max(AUTO_LOOKAHEAD, edge)
    fit = Fit(hop, lookahead, crossfade, compute, stereo, seconds, 0.0, stage_load)
    try:
        plan = _plan(contract, rate, fit)
    except UserError:
        return None
    return dataclasses.replace(fit, latency=plan.latency_seconds)


def _stretch(contract, rate: int, fit: Fit, target: float) -> Fit:
    """Spend the slack up to ``target`` on lookahead (quality); exact in samples."""
    plan = _plan(contract, rate, fit)
    extra = int(round(target * rate)) - plan.latency_samples
    room = plan.support_start - plan.edge_samples  # lookahead the window can still give
    if extra > room:
        raise UserError(
            f"--latency must be at most {(plan.latency_samples + room) / rate:.3f} s for this "
            f"model's {contract.window_seconds:.3f} s window, got {target:g}"
        )
    lookahead = (plan.lookahead_samples + extra) / rate
    return dataclasses.replace(
        fit, lookahead=lookahead, latency=(plan.latency_samples + extra) / rate
    )


def _plan(contract, rate: int, fit: Fit) -> WindowPlan:
    return WindowPlan.build(contract, rate, fit.hop, fit.lookahead, fit.crossfade, fit.compute)


def _ceil_grid(seconds: float) -> float:
    return round(math.ceil(seconds / GRID - 1e-9) * GRID, 6)
