"""The live host assembled: from what was asked (:class:`LiveConfig`) to a finished run.

:class:`LiveHost` checks everything that can be checked without the model first (the
microphone's options, the bundled model, the route and its feedback guard, the microphone),
so a mistake is one line before anything loads; :meth:`LiveHost.run` then loads the model,
warms it up, fits the plan to this machine (:func:`fitted_config`), builds the
:class:`~stream_sep.engine.Separator` and the :class:`~stream_sep.live.session.LiveSession`
and streams until a stop. The ``stream-sep`` command and :func:`stream_sep.live.run.live`
both run it; neither repeats any of it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading

from stream_sep import engine as engine_module
from stream_sep.engine import fitting
from stream_sep.engine.config import EngineConfig
from stream_sep.engine.key import KeyShift
from stream_sep.engine.plan import WindowPlan
from stream_sep.errors import UserError
from stream_sep.live import keys, room, speed_history
from stream_sep.live.events import LiveEvents
from stream_sep.live.route import plan_route, resolve_mic
from stream_sep.live.session import LiveSession, SessionOptions
from stream_sep.models.bundled import bundled_live_model_path, bundled_model_path
from stream_sep.models.loading import load_model
from stream_sep.settings import Settings

log = logging.getLogger(__name__)

SETTLE_SECONDS = 10.0  # how long a run waits for a model call still running at its end
ASSUMED_DEVICE_BLOCK = 1024  # frames, for fitting the plan when the device chooses its block
# --latency auto takes the bundled live variant when the bundled model's plan is longer:
AUTO_TARGET = 0.6  # seconds
PROBE_KEY = 2  # semitones: the key change is timed shifting (at 0 it only copies)


@dataclasses.dataclass(frozen=True)
class LiveConfig:
    """One live run as asked: the values of the ``stream-sep`` live options, checked.

    input/output: a device (index, part of its name, 'mic'/'headphones'), a file or
    'system[:NAME]', as ``--input``/``--output``; mode, vocal_level, key: the engine's start
    values; model: a path or shelf name (None: the bundled model); settings: the plan and
    window options (``latency='auto'`` fits the plan to this machine); samplerate, channels:
    None for the route's choice; blocksize: device frames per callback (0: the device's
    choice); duration: seconds (None: until stopped or the input file ends); mic: a capture
    device mixed into the output at mic_level (default 1) with mic_reverb (default 0).
    stems: the music and the vocals apart (4 device channels, or two .wav files) instead
    of one mix; mode 'karaoke' only, no vocal_level, key or mic (:func:`check_stems_options`).
    """

    input: str = "mic"
    output: str = "headphones"
    mode: str = "karaoke"
    vocal_level: float | None = None
    key: int | None = None
    model: str | os.PathLike | None = None
    provider: str = "auto"
    settings: Settings = Settings(latency="auto")
    samplerate: int | None = None
    blocksize: int = 0
    channels: int | None = None
    duration: float | None = None
    mic: str | None = None
    mic_level: float | None = None
    mic_reverb: float | None = None
    panel: bool = False
    allow_feedback: bool = False
    stems: bool = False


def check_stems_options(config: LiveConfig) -> None:
    """--stems plays the music and the vocals apart: the options that shape one mix are
    refused beside it, in one line naming the first such option."""
    if not config.stems:
        return
    why = "the music and the vocals play apart, to be mixed where they arrive"
    if config.mode != "karaoke":
        raise UserError(f"--mode {config.mode} does not apply to --stems: {why}")
    if config.vocal_level is not None:
        raise UserError(f"--vocal-level {config.vocal_level:g} does not apply to --stems: {why}")
    if config.key is not None:
        raise UserError(
            f"--key {config.key} does not apply to --stems: the key change shifts one mixed output"
        )
    if config.mic is not None:
        raise UserError(
            f"--mic {config.mic} does not apply to --stems: the microphone joins one mixed "
            "output; record it where the stems arrive"
        )


def check_mic_options(mic: str | None, level: float | None, reverb: float | None) -> None:
    """The microphone's options need the microphone: refused without ``--mic``."""
    if mic is not None:
        return
    for option, value in (("--mic-level", level), ("--mic-reverb", reverb)):
        if value is not None:
            raise UserError(f"{option} {value:g} needs --mic DEVICE (the microphone it applies to)")


def fitted_config(
    model,
    rate: int,
    channels: int,
    chosen: Settings,
    blocksize: int = 0,
    key_delay: float = 0.0,
    stages: dict | None = None,
    batch_within: float | None = None,
) -> tuple[EngineConfig, str | None]:
    """The engine's config for this machine, and the line saying how the plan was chosen (None
    without ``--latency``). With ``--latency`` the plan is chosen from the model's speed
    (this start's measurement with the last starts', :mod:`stream_sep.live.speed_history`)
    and the per-block ``stages``' CPU share, and the engine sheds work under overload; with
    explicit --hop/--lookahead/--crossfade those are used as given (one hop of compute).
    key_delay: seconds the key stage adds, taken from a --latency SECONDS target.
    stages: name -> ``process(block, out)`` of each stage that runs on every block besides
    the windows (the key change), timed here at the device's block.
    batch_within: ``--latency auto`` runs every channel when that plan is this short
    (:func:`stream_sep.engine.fitting.choose`)."""
    if not chosen.fitted:
        return chosen.engine_config(), None
    config = chosen.engine_config()
    measured = fitting.measure(model, rate, channels, config=config)
    history_key = speed_history.key_of(model, rate, channels, chosen.window_options())
    speed_history.remember(history_key, measured)
    starts = speed_history.recent(history_key) or [measured]
    speed = fitting.typical(starts)
    target = None if chosen.latency == "auto" else chosen.latency
    if target is not None and key_delay:
        if target <= key_delay:
            raise UserError(
                f"--latency {target:g} is shorter than the key change's own delay "
                f"({key_delay:.3f} s): ask for more, or leave out --key"
            )
        target -= key_delay
    block_frames = blocksize or ASSUMED_DEVICE_BLOCK
    stage_loads = {
        name: fitting.measure_stage(process, rate, channels, block_frames)
        for name, process in (stages or {}).items()
    }
    stage_load = sum(stage_loads.values())
    fit = fitting.choose(
        model.contract, rate, channels, speed, target, chosen.stereo, block_frames / rate,
        stage_load, batch_within,
    )  # fmt: skip
    stereo_cost = speed.t90("batch") / max(speed.t90("mid"), 1e-6)
    fitted = dataclasses.replace(fit.applied(config), shed=True, stereo_cost=stereo_cost)
    return fitted, plan_line(fit, len(starts), stage_loads)


def auto_choice(full: tuple, live: tuple) -> tuple:
    """Of two fitted models ``(model, config, line, latency, stereo)``, the one ``--latency
    auto`` runs: within :data:`AUTO_TARGET`, every channel before the mid channel, then the
    full window; else the lower latency."""
    within = [fit for fit in (full, live) if fit[3] <= AUTO_TARGET]
    for fit in within:
        if fit[4] == "batch":
            return fit
    if within:
        return within[0]
    return min((full, live), key=lambda fit: fit[3])


def plan_latency(model, rate: int, config: EngineConfig) -> float:
    """Seconds of algorithmic latency of the engine ``config`` with ``model``."""
    plan = WindowPlan.build(
        model.contract, rate, config.hop, config.lookahead, config.crossfade, config.compute
    )
    return plan.latency_seconds


def plan_line(fit: fitting.Fit, starts: int, stage_loads: dict[str, float]) -> str:
    """Why this plan: the model's time per window, the load against the ceiling, the stages."""
    where = "this start" if starts == 1 else f"median of the last {starts} starts here"
    stages = "".join(f", {name} {load:.3f}" for name, load in stage_loads.items())
    channel = "the mid channel" if fit.stereo == "mid" else "every channel"
    return (
        f"plan: hop {fit.hop:.2f} s on {channel}; the model takes {fit.window_seconds:.3f} s "
        f"per window (90th percentile, {where}); load {fit.load:.2f} of the "
        f"{fitting.LOAD_CEILING:g} ceiling (windows {fit.load - fit.stage_load:.2f}{stages})"
    )


class LiveHost:
    """One live run of ``config``, reported to ``events``.

    The constructor checks the route, the microphone and the bundled model (UserError,
    DeviceError or AudioFileError: one line, nothing loaded, nothing written). :meth:`run`
    does the rest and returns 0, or 1 when the stream, the model or the input file failed;
    :meth:`stop` ends it from any thread. ``session``: the session once built (None before),
    kept after the run for its summary.
    """

    def __init__(self, config: LiveConfig, events: LiveEvents | None = None):
        self.config = config
        self.events = events if events is not None else LiveEvents()
        check_mic_options(config.mic, config.mic_level, config.mic_reverb)
        check_stems_options(config)
        if config.model is None:
            bundled_model_path()  # no bundled model: say so before touching any device
        self.route = plan_route(
            config.input,
            config.output,
            samplerate=config.samplerate,
            channels=config.channels,
            allow_feedback=config.allow_feedback,
            stems=config.stems,
        )
        self.mic = None
        if config.mic is not None:
            level = 1.0 if config.mic_level is None else config.mic_level
            reverb = 0.0 if config.mic_reverb is None else config.mic_reverb
            self.mic = resolve_mic(
                config.mic, self.route, config.output, level, reverb, config.allow_feedback
            )
        # Rubber Band's fixed delay; also the one line saying how to install it, if missing.
        # and a shifter at a shifting key, timed at start-up as one of the plan's stages.
        self.key_delay, self.key_probe = 0.0, None
        if config.key is not None:
            self.key_probe = KeyShift(self.route.rate, self.route.channels, key=PROBE_KEY)
            self.key_delay = self.key_probe.latency_seconds
        # the microphone's room runs on a thread of its own, beside the windows: timed too
        self.room_probe = None
        if self.mic is not None and (config.mic_reverb or 0.0) > 0:
            board = room.reverb(config.mic_reverb, self.route.rate)
            rate = self.route.rate

            def reverb_block(block, out) -> None:
                board.process(block[:1], rate, block.shape[1], False)

            self.room_probe = reverb_block
        self.session: LiveSession | None = None
        self._stopped = threading.Event()

    def run(self, reader: keys.KeyReader | None = None) -> int:
        """Load, fit, build and stream until a stop; reader: the terminal's keys, or None."""
        config, route = self.config, self.route
        model, fitted, line = self._fitted_model()
        if line is not None:
            self.events.note(line)
        separator = self._separator(model, fitted)
        try:
            options = SessionOptions(config.blocksize, config.duration, config.panel)
            self.session = LiveSession(model, separator, route, options, self.mic, self.events)
            if self._stopped.is_set():
                self.session.stop()
            return self.session.run(reader)
        finally:
            separator.close()
            if not separator.settle(SETTLE_SECONDS):
                log.warning(
                    "the model is still running after %.0f s; exiting anyway", SETTLE_SECONDS
                )

    def stop(self) -> None:
        """End the run at its next tick (before it streams: as soon as it does)."""
        self._stopped.set()
        if self.session is not None:
            self.session.stop()

    def _fitted_model(self) -> tuple:
        """The model and its engine config. Without ``--model``, the bundled model, unless
        its plan cannot meet ``--latency`` SECONDS, or (auto) a plan of the live variant
        within :data:`AUTO_TARGET` is better: every channel through the model before one
        estimate for both sides (the mid channel loses about 2 dB on real songs), then the
        full window; the choice is said in one line."""
        config = self.config
        live_path = None
        if config.model is None and config.settings.fitted:
            live_path = bundled_live_model_path()
        try:
            full = self._fit(load_model(config.model, config.provider))
        except UserError as refused:
            if live_path is None:
                raise
            # the full-window model cannot meet --latency SECONDS: the live variant may (or
            # it refuses, naming its own lowest latency, the lowest of the two)
            live = self._fit(load_model(live_path, config.provider))
            self.events.note(
                f"model {live[0].path.name}: the full-window model cannot meet "
                f"--latency {config.settings.latency:g} here ({refused})"
            )
            return live[:3]
        if live_path is None or config.settings.latency != "auto":
            return full[:3]
        if full[4] == "batch" and full[3] <= AUTO_TARGET:
            return full[:3]
        live = self._fit(load_model(live_path, config.provider))
        chosen = auto_choice(full, live)
        if chosen is live:
            self.events.note(
                f"model {live_path.name}: --latency auto aims at {AUTO_TARGET:g} s or less, "
                f"every channel through the model where it can; the full-window model's plan "
                f"here is {full[3]:.3f} s ({full[4]}), the live variant's {live[3]:.3f} s "
                f"({live[4]})"
            )
        return chosen[:3]

    def _fit(self, model) -> tuple:
        """(model, engine config, plan line, latency, stereo): the model warmed up, its plan
        fitted."""
        config, route = self.config, self.route
        model.warm_up(batch=1 if config.settings.stereo == "mid" else route.channels)
        stages = {}
        if self.key_probe is not None:
            stages["key change"] = self.key_probe.process
        if self.room_probe is not None:
            stages["microphone reverb"] = self.room_probe
        fitted, line = fitted_config(
            model,
            route.rate,
            route.channels,
            config.settings,
            config.blocksize,
            self.key_delay,
            stages,
            AUTO_TARGET,
        )
        return model, fitted, line, plan_latency(model, route.rate, fitted), fitted.stereo

    def _separator(self, model, fitted: EngineConfig) -> engine_module.Separator:
        """The engine for the route with the fitted config."""
        config, route = self.config, self.route
        return engine_module.Separator(
            model,
            route.rate,
            route.channels,
            mode=config.mode,
            vocal_level=config.vocal_level,
            blocking=False,
            key=config.key,
            stems=config.stems,
            config=fitted,
        )
