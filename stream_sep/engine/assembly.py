"""Builds the engine's parts for one stream from a model and an
:class:`~stream_sep.engine.config.EngineConfig`; the
:class:`~stream_sep.engine.separator.Separator` only composes what this returns.

The path of a block: :class:`~stream_sep.engine.timeline.Timeline` (input ring, hop
boundaries) -> :class:`~stream_sep.engine.scheduler.Scheduler` (windows to the
:class:`~stream_sep.engine.window.WindowRunner`, inline or on a worker, with
:class:`~stream_sep.engine.shedding.Shedding` live) -> :class:`~stream_sep.engine.mixer.Mixer`
(modes, ramps, fades, output guard) -> :class:`~stream_sep.engine.key.KeyStage`.
"""

from __future__ import annotations

import dataclasses

from stream_sep.dsp import safety
from stream_sep.engine.config import EngineConfig
from stream_sep.engine.health import EngineStats, Health
from stream_sep.engine.key import KeyStage
from stream_sep.engine.mixer import Mixer
from stream_sep.engine.plan import WindowPlan, check_channels, check_rate, seconds_to_samples
from stream_sep.engine.scheduler import Scheduler
from stream_sep.engine.shedding import Shedding
from stream_sep.engine.timeline import Timeline
from stream_sep.engine.window import WindowRunner


@dataclasses.dataclass
class Parts:
    """The engine of one stream, wired: ``timeline`` drives the others."""

    sample_rate: int
    channels: int
    plan: WindowPlan
    stats: EngineStats
    health: Health
    runner: WindowRunner
    shedding: Shedding | None
    scheduler: Scheduler
    limiter: safety.OutputGuard
    mixer: Mixer
    timeline: Timeline
    key: KeyStage


def assemble(model, sample_rate: int, channels: int, config: EngineConfig) -> Parts:
    """The parts for a stream of ``channels`` at ``sample_rate``; UserError (one line) for
    a rate, channel count or plan the engine cannot run."""
    sample_rate, channels = check_rate(sample_rate), check_channels(channels)
    plan = WindowPlan.build(
        model.contract, sample_rate, config.hop, config.lookahead, config.crossfade, config.compute
    )
    stats = EngineStats(hop_seconds=plan.hop_samples / sample_rate)
    health = Health(stats, int(config.max_consecutive_failures), not config.shedding)
    runner = WindowRunner(
        model,
        plan,
        config.stereo,
        config.postfilter,
        config.high_band_voice_removal,
        config.denoise,
    )
    shedding = _shedding(plan, channels, config)
    scheduler = Scheduler(
        runner,
        health,
        plan.crossfade_weights(),
        channels,
        threaded=not config.blocking,
        strict=config.strict and config.blocking,
        shedding=shedding,
    )
    # with stems, one guard over the music's and the vocals' channels together
    limiter = _guard(plan, 2 * channels if config.stems else channels, config)
    mixer = _mixer(plan, channels, config, limiter if config.limit else None)
    timeline = Timeline(plan, channels, scheduler, mixer, stats, config.stems)
    key_guard = (lambda: _guard(plan, channels, config)) if config.limit else (lambda: None)
    key = KeyStage(config.key, sample_rate, channels, key_guard)
    return Parts(sample_rate, channels, plan, stats, health, runner, shedding, scheduler,
                 limiter, mixer, timeline, key)  # fmt: skip


def _shedding(plan: WindowPlan, channels: int, config: EngineConfig) -> Shedding | None:
    if not config.shedding:
        return None
    allowance = plan.compute_samples / plan.sample_rate
    return Shedding(allowance, config.stereo, channels, config.stereo_cost, config.denoise)


def _guard(plan: WindowPlan, channels: int, config: EngineConfig) -> safety.OutputGuard:
    return safety.OutputGuard(
        channels, plan.sample_rate, config.ceiling_db, max_block=plan.hop_samples
    )


def _mixer(plan: WindowPlan, channels: int, config: EngineConfig, guard) -> Mixer:
    """Gain ramps of ``ramp_seconds``; a fade-in from where the delayed input first arrives;
    mode and vocal level set at once (no ramp from a previous state)."""
    rate = plan.sample_rate
    mixer = Mixer(
        channels,
        seconds_to_samples("ramp", config.ramp_seconds, rate),
        plan.latency_samples,
        seconds_to_samples("fade-in", config.fade_in_seconds, rate),
        guard,
    )
    mixer.set_targets(config.mode, config.vocal_level)
    mixer.apply_requests(0, immediate=True)
    return mixer
