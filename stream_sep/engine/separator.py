"""The streaming separator: composes the plan, the delay ring, the scheduler and the mixer.

Safety (see docs/reliability.md): the mix is multiplied by an output gain that fades in over
``fade_in`` seconds from ``latency_samples`` (where the delayed signal first arrives) and fades
out on :meth:`Separator.fade_out`, then passes the :class:`~stream_sep.dsp.safety.OutputGuard`
(peak limiter, NaN guard, hard clip at the ceiling). A window that raises, returns the wrong
shape or NaN/Inf, or is late plays the dry signal; ``max_consecutive_failures`` such windows
in a row latch :attr:`Separator.failed` with a :attr:`Separator.failure_reason`.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from stream_sep.engine.assembly import assemble
from stream_sep.engine.config import DEFAULT_FADE_SECONDS, EngineConfig
from stream_sep.engine.plan import seconds_to_samples
from stream_sep.engine.record import DRY, LIGHTER
from stream_sep.errors import ModelError, UserError, typed_first_line

log = logging.getLogger(__name__)


class Separator:
    """Streaming vocal separation with a fixed, exactly reported delay.

    ``process(block)`` takes ``(channels, n)`` float32 blocks of any size ``n`` and returns
    ``(channels, n)``; output sample ``j`` corresponds to input sample ``j - latency_samples``
    (see :mod:`stream_sep.engine.plan` for the arithmetic). The options (hop, mode, blocking,
    shed, key, ...) are those of :class:`~stream_sep.engine.config.EngineConfig`, given as
    ``config`` and/or keywords; :mod:`stream_sep.engine.assembly` builds the parts.
    """

    def __init__(self, model, sample_rate: int, channels: int, config=None, **options):
        self.config = config = EngineConfig.of(config, **options)
        self.model, self.contract = model, model.contract
        self._parts = parts = assemble(model, sample_rate, channels, config)
        self.sample_rate, self.channels, self.plan = parts.sample_rate, parts.channels, parts.plan
        self.stats, self.shedding, self.limiter = parts.stats, parts.shedding, parts.limiter
        self._health, self._runner, self._scheduler = parts.health, parts.runner, parts.scheduler
        self._mixer, self._timeline, self._key = parts.mixer, parts.timeline, parts.key
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
    def stereo(self) -> str:
        """'batch' or 'mid': the configured stereo handling (shedding may use mid for a
        window on its own)."""
        return self.config.stereo

    @property
    def blocking(self) -> bool:
        return self.config.blocking

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
        """karaoke, vocals or bypass; 'stems' for an engine made with ``stems=True``."""
        return "stems" if self.config.stems else self._mixer.mode

    @property
    def stems(self) -> bool:
        """Whether the engine gives the music and the vocals apart (:meth:`process_stems`)."""
        return self.config.stems

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

    # ------------------------------------------------------------------ what was not separated
    def dry_ranges(self) -> list[tuple[int, int]]:
        """[(start, stop), ...]: the output samples ``start <= j < stop`` (positions in the
        output since the stream started, or since :meth:`reset`) that a window without an
        estimate touched: late, failed, skipped or shed windows, whose support played the
        dry signal or a fade between dry and separated. Merged and ascending. Everywhere
        else every window arrived, so the output is what the engine gives computing them
        inline, unless :meth:`lighter_ranges` names it. Exact for the first
        ``record.CAPACITY`` such windows; :attr:`unrecorded_windows` counts the rest."""
        return self._ranges(DRY)

    def lighter_ranges(self) -> list[tuple[int, int]]:
        """[(start, stop), ...] as :meth:`dry_ranges`: the output samples met by windows
        that ran a cheaper way to shed work (the mid channel only, or without the denoise
        pass): separated, though not as configured."""
        return self._ranges(LIGHTER)

    @property
    def unrecorded_windows(self) -> int:
        """Windows without the configured estimate noted after the record was full: while
        it is not 0 the ranges do not name every such window."""
        return self._scheduler.record.dropped

    def _ranges(self, kind: int) -> list[tuple[int, int]]:
        plan = self.plan
        offset = plan.compute_samples + self._key.latency_samples
        return self._scheduler.record.ranges(kind, plan.hop_samples, offset, plan.support_samples)

    # ------------------------------------------------------------------ controls
    def set_mode(self, mode: str) -> None:
        """karaoke, vocals or bypass; applied click-free from the next block. UserError for
        an engine that gives stems."""
        self.refuse_if_stems("the mode")
        self._mixer.set_targets(mode, None)

    def set_vocal_level(self, level: float) -> None:
        """Karaoke with the vocals at ``level`` (0 = none, 1 = original); switches to karaoke.
        UserError for an engine that gives stems."""
        self.refuse_if_stems("the vocal level")
        self._mixer.set_targets("karaoke", level)

    def refuse_if_stems(self, what: str) -> None:
        """UserError naming ``what`` (a control of the mix) for an engine that gives stems."""
        if self.config.stems:
            raise UserError(
                f"{what} does not apply to --stems: the music and the vocals play on their "
                "own channels, to be mixed where they arrive"
            )

    def set_key(self, key: int) -> None:
        """Shift by ``key`` semitones (-6..+6), click-free; the latency stays. UserError
        when the engine was made without a key stage (``key=None``)."""
        self._key.set_key(key)

    def fade_out(self, seconds: float = DEFAULT_FADE_SECONDS) -> None:
        """Ramp the output to silence over ``seconds``, starting at the next block. Keep
        calling :meth:`process` until :attr:`faded_out`, then close the stream."""
        self._mixer.request_fade_out(seconds_to_samples("fade-out", seconds, self.sample_rate))

    def fade_back_in(self, seconds: float = DEFAULT_FADE_SECONDS) -> None:
        """After a gap in what the output device heard (its stream was reopened): start
        again from silence at the next block and ramp up over ``seconds``, so that the
        music does not come back with a click."""
        self._mixer.request_fade_in(seconds_to_samples("fade-in", seconds, self.sample_rate))

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
    def process(
        self, block: np.ndarray, out: np.ndarray | None = None, hand_over: bool = True
    ) -> np.ndarray:
        """block: (channels, n) float32 -> (channels, n) float32, delayed by latency_samples.

        With ``out`` given, a block of a size seen before allocates nothing (any strides:
        the block is copied in and the result out whole); tests/test_realtime_alloc.py.
        hand_over False: the windows this block started wait for :meth:`hand_over` (an
        audio callback that does more after the engine calls it last)."""
        if self.config.stems:
            raise ValueError("this engine gives stems (stems=True): call process_stems")
        self._check_block(block)
        if out is None:
            out = np.empty(block.shape, np.float32)
        mixed = self._timeline.process(block, out)
        self._key.process(mixed)
        if mixed is not out:
            np.copyto(out, mixed)
        if hand_over:
            self._scheduler.dispatch()  # last: the worker wakes once this block is done
        return out

    def hand_over(self) -> None:
        """Wake the worker for the windows started since the last hand-over (see
        :meth:`process`); allocates nothing."""
        self._scheduler.dispatch()

    def process_stems(
        self, block: np.ndarray, out: np.ndarray | None = None, hand_over: bool = True
    ) -> np.ndarray:
        """block: (channels, n) float32 -> (2 * channels, n) float32, both stems delayed by
        latency_samples: rows 0..C-1 the music (the accompaniment: exactly what karaoke
        plays with the vocals at 0), rows C..2C-1 the vocals. Their sum is the delayed
        input (float32 rounding aside) on every sample, windows that fell back included,
        times the output gain (fade-in, fade-out) and the guard's gain, one gain for all
        channels. Only for an engine made with ``stems=True``; with ``out`` given, a block
        of a size seen before allocates nothing, as :meth:`process`. hand_over False: the
        windows this block started wait for :meth:`hand_over`."""
        if not self.config.stems:
            raise ValueError("this engine gives one mix (stems=False): call process")
        self._check_block(block)
        if out is None:
            out = np.empty((2 * self.channels, block.shape[1]), np.float32)
        stems = self._timeline.process(block, out)
        if stems is not out:
            np.copyto(out, stems)
        if hand_over:
            self._scheduler.dispatch()  # last: the worker wakes once this block is done
        return out

    def _check_block(self, block: np.ndarray) -> None:
        if block.ndim != 2 or block.shape[0] != self.channels:
            raise ValueError(f"block must be ({self.channels}, n), got {block.shape}")

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
