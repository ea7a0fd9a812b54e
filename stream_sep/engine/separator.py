"""The streaming separator: composes the plan, the delay ring, the scheduler and the mixer.

Safety (see docs/reliability.md): the mix is multiplied by an output gain that fades in over
``fade_in`` seconds from ``latency_samples`` (where the delayed signal first arrives) and fades
out on :meth:`Separator.fade_out`, then passes the :class:`~stream_sep.safety.OutputGuard`
(peak limiter, NaN guard, hard clip at the ceiling). A window that raises, returns the wrong
shape or NaN/Inf, or is late plays the dry signal; ``max_consecutive_failures`` such windows
in a row latch :attr:`Separator.failed` with a :attr:`Separator.failure_reason`.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from stream_sep import safety
from stream_sep.engine.health import EngineStats, Health
from stream_sep.engine.key import KeyStage
from stream_sep.engine.mixer import Mixer
from stream_sep.engine.plan import (
    DEFAULT_CROSSFADE,
    DEFAULT_HOP,
    DEFAULT_LOOKAHEAD,
    WindowPlan,
    check_channels,
    check_rate,
    seconds_to_samples,
)
from stream_sep.engine.scheduler import Scheduler
from stream_sep.engine.shedding import Shedding
from stream_sep.engine.timeline import Timeline
from stream_sep.engine.window import STEREO_CHOICES, WindowRunner
from stream_sep.errors import ModelError, UserError, typed_first_line

log = logging.getLogger(__name__)

DEFAULT_FADE_SECONDS = 0.05
DEFAULT_MAX_CONSECUTIVE_FAILURES = 8


class Separator:
    """Streaming vocal separation with a fixed, exactly reported delay.

    ``process(block)`` takes ``(channels, n)`` float32 blocks of any size ``n`` and returns
    ``(channels, n)``; output sample ``j`` corresponds to input sample ``j - latency_samples``
    (see :mod:`stream_sep.engine.plan` for the arithmetic). blocking: run each window inline
    (offline) instead of on a worker thread; strict (with blocking): a window the model fails
    on raises :class:`~stream_sep.errors.ModelError` instead of playing the dry signal.
    shed (live): shed work under overload instead of missing deadlines, and never stop for
    slowness (:mod:`stream_sep.engine.shedding`); ``stereo_cost`` is the measured time of a
    both-channel window over a mid-channel one. compute: the compute allowance in seconds
    (default one hop; :mod:`stream_sep.engine.fitting` sizes it from measured speed).
    postfilter, high_band_voice_removal: per-window quality options of
    :class:`~stream_sep.engine.window.WindowRunner` (default off).
    key: None (no key change: nothing added to the path) or semitones in -6..+6: the output
    goes through a :class:`~stream_sep.engine.key.KeyShift` whose fixed delay is part of
    ``latency_samples`` whatever the key (0 = that delay only, bit-exact), then through a
    second output guard; :meth:`set_key` changes it live.
    """

    def __init__(
        self,
        model,
        sample_rate: int,
        channels: int,
        *,
        hop: float = DEFAULT_HOP,
        lookahead: float = DEFAULT_LOOKAHEAD,
        crossfade: float = DEFAULT_CROSSFADE,
        compute: float | None = None,
        mode: str = "karaoke",
        vocal_level: float | None = None,
        stereo: str = "batch",
        postfilter: str = "none",
        high_band_voice_removal: float = 0.0,
        blocking: bool = False,
        strict: bool = False,
        shed: bool = False,
        stereo_cost: float = 2.0,
        ramp_seconds: float = 0.05,
        ceiling_db: float = safety.DEFAULT_CEILING_DB,
        limit: bool = True,
        fade_in: float | None = None,
        max_consecutive_failures: int = DEFAULT_MAX_CONSECUTIVE_FAILURES,
        key: int | None = None,
    ):
        self.model, self.contract = model, model.contract
        self.sample_rate = check_rate(sample_rate)
        self.channels = check_channels(channels)
        if stereo not in STEREO_CHOICES:
            raise UserError(f"--stereo must be one of {', '.join(STEREO_CHOICES)}, got {stereo!r}")
        self.stereo, self.blocking = stereo, bool(blocking)
        self.plan = plan = WindowPlan.build(
            self.contract, self.sample_rate, hop, lookahead, crossfade, compute
        )
        self.stats = EngineStats(hop_seconds=plan.hop_samples / self.sample_rate)
        shed = shed and not self.blocking
        self._health = Health(self.stats, _check_failures(max_consecutive_failures), not shed)
        self._runner = WindowRunner(model, plan, stereo, postfilter, high_band_voice_removal)
        self._weights = plan.crossfade_weights()
        allowance = plan.compute_samples / self.sample_rate
        self.shedding = Shedding(allowance, stereo, self.channels, stereo_cost) if shed else None
        self._scheduler = Scheduler(
            self._runner,
            self._health,
            self._weights,
            self.channels,
            threaded=not self.blocking,
            strict=strict and self.blocking,
            shedding=self.shedding,
        )
        self.limiter = safety.OutputGuard(
            self.channels, self.sample_rate, ceiling_db, max_block=plan.hop_samples
        )
        self._mixer = _mixer_for(self.plan, ramp_seconds, fade_in, self.limiter if limit else None)
        self._timeline = Timeline(plan, self.channels, self._scheduler, self._mixer, self.stats)
        self._mixer.set_targets(mode, vocal_level)
        self._mixer.apply_requests(0, immediate=True)
        guard = (
            (  # the key stage's own guard (after the shifter), for a guarded engine
                lambda: safety.OutputGuard(
                    self.channels, self.sample_rate, ceiling_db, max_block=plan.hop_samples
                )
            )
            if limit
            else (lambda: None)
        )
        self._key = KeyStage(key, self.sample_rate, self.channels, guard)
        self.key_shift = self._key.shift
        if self.sample_rate != self.contract.sample_rate:
            log.info(
                "stream at %d Hz, model at %d Hz: resampling with soxr",
                self.sample_rate,
                self.contract.sample_rate,
            )

    # ------------------------------------------------------------------ plan and state
    def __getattr__(self, name: str):
        """The plan's sample counts (hop_samples, latency_samples, ...) read as attributes."""
        if name.endswith("_samples") and name != "plan":
            return getattr(self.__dict__["plan"], name)
        raise AttributeError(name)

    @property
    def latency_samples(self) -> int:
        """Output sample j presents input sample j - latency_samples: the plan's latency plus
        the key stage's fixed delay (when there is one)."""
        return self.plan.latency_samples + self._key.latency_samples

    @property
    def latency_seconds(self) -> float:
        return self.latency_samples / self.sample_rate

    @property
    def latency_breakdown(self) -> dict[str, float]:
        """Each term of the latency in seconds; ``key`` when there is a key stage."""
        return {**self.plan.breakdown, **self._key.terms()}

    @property
    def key(self) -> int | None:
        return self._key.key

    @property
    def mode(self) -> str:
        return self._mixer.mode

    @property
    def vocal_level(self) -> float:
        return self._mixer.vocal_level

    @property
    def failed(self) -> bool:
        """True once ``max_consecutive_failures`` windows in a row had no usable estimate
        (the model raised, returned garbage, hung or cannot keep up). Latched: the stream
        goes on with the dry signal; a live host should fade out and stop."""
        return self._health.failure is not None

    @property
    def failure_reason(self) -> str:
        """One line saying why :attr:`failed` is set; empty while it is not."""
        return self._health.describe()

    @property
    def failure_kind(self) -> str:
        """'' while healthy; 'errors', 'hung' (no call returned) or 'slow' once failed."""
        return self._health.failure_kind

    @property
    def faded_out(self) -> bool:
        """True once a :meth:`fade_out` has finished: every further output sample is 0."""
        return self._mixer.faded_out(self._timeline.position - self._key.latency_samples)

    @property
    def queued_jobs(self) -> int:
        return self._scheduler.queued_jobs

    # ------------------------------------------------------------------ controls
    def set_mode(self, mode: str) -> None:
        """karaoke, vocals or bypass; applied click-free from the next block."""
        self._mixer.set_targets(mode, None)

    def set_vocal_level(self, level: float) -> None:
        """Karaoke with the vocals at ``level`` (0 = none, 1 = original); switches to karaoke."""
        self._mixer.set_targets("karaoke", level)

    def set_key(self, key: int) -> None:
        """Shift by ``key`` semitones (-6..+6), click-free; the latency stays. UserError
        when the engine was made without a key stage (``key=None``)."""
        self._key.set_key(key)

    def fade_out(self, seconds: float = DEFAULT_FADE_SECONDS) -> None:
        """Ramp the output to silence over ``seconds``, starting at the next block. Keep
        calling :meth:`process` until :attr:`faded_out`, then close the stream."""
        self._mixer.request_fade_out(seconds_to_samples("fade-out", seconds, self.sample_rate))

    def warm_up(self) -> float:
        """Run one silent window through the worker's path (resampling, batch size, shape and
        NaN checks) before streaming; returns the seconds taken. Raises :class:`ModelError`
        with one line if the model cannot separate it."""
        started = time.perf_counter()
        try:
            self._runner.estimate(np.zeros((self.channels, self.window_samples), np.float32))
        except Exception as error:  # any failure of the model is a refusal of that model
            raise ModelError(
                f"the model cannot separate a silent window: {typed_first_line(error)}"
            ) from None
        return time.perf_counter() - started

    # ------------------------------------------------------------------ streaming
    def process(self, block: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """block: (channels, n) float32 -> (channels, n) float32, delayed by latency_samples."""
        if block.ndim != 2 or block.shape[0] != self.channels:
            raise ValueError(f"block must be ({self.channels}, n), got {block.shape}")
        if out is None:
            out = np.empty(block.shape, np.float32)
        self._timeline.process(block, out)
        self._key.process(out)
        return out

    def reset(self) -> None:
        """Forget the stream: silence history, counters kept, worker results discarded."""
        self._scheduler.reset()
        self._timeline.reset()
        self._health.reset_streak()
        self._mixer.reset()
        self._key.reset()

    def close(self) -> None:
        """Stop the worker thread (a hung model call is left behind, not waited for)."""
        self._scheduler.close()

    def settle(self, timeout: float = 10.0) -> bool:
        """After :meth:`close`: wait up to ``timeout`` s for a model call still running."""
        return self._scheduler.settle(timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _mixer_for(plan, ramp_seconds: float, fade_in: float | None, guard) -> Mixer:
    """The mixer of a plan: gain ramps of ``ramp_seconds``, a fade-in from where the delayed
    input first arrives (default: a short one when guarded, none for offline callers)."""
    rate = plan.sample_rate
    if fade_in is None:
        fade_in = DEFAULT_FADE_SECONDS if guard is not None else 0.0
    return Mixer(
        plan.hop_samples,
        seconds_to_samples("ramp", ramp_seconds, rate),
        plan.latency_samples,
        seconds_to_samples("fade-in", fade_in, rate),
        guard,
    )


def _check_failures(count) -> int:
    if not isinstance(count, (int, np.integer)) or isinstance(count, bool) or count < 1:
        raise UserError(f"max_consecutive_failures must be an integer >= 1, got {count!r}")
    return int(count)
