"""Windows in flight: their slots, and who runs them (a worker thread live, the caller offline).

A window is *claimed* when its last input sample arrives, filled by the caller, *started*
(queued for the worker, or run at once inline) and later *decided* exactly once, when its
first output sample is due: used if its estimate is ready, otherwise a fallback to the dry
signal (late, failed or skipped).
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np

from stream_sep.engine.health import Health
from stream_sep.engine.record import DRY, LIGHTER, WindowRecord
from stream_sep.engine.shedding import Shedding, Way
from stream_sep.engine.window import WindowRunner
from stream_sep.errors import ModelError, typed_first_line

log = logging.getLogger(__name__)

SLOTS = 6  # windows alive at once: in use (2), computing (1-2), spare
CLOSE_TIMEOUT = 1.0  # seconds close() waits for a busy worker (a hung model is left behind)


FLOATS_TO_FREE = 128  # more than CPython's float free list holds


class Slot:
    """One window in flight: its input, its weighted estimate over the support, its state."""

    FREE, QUEUED, RUNNING, READY, FAILED, SHED = range(6)

    def __init__(self, channels: int, window: int, support: int, pad: int):
        self.audio = np.zeros((channels, window), np.float32)  # (C, W) stream rate
        # (C, pad + S + pad): the weighted vocals inside zeros, so that the audio thread
        # takes any n <= pad samples of it around the support without slicing
        self.padded = np.zeros((channels, pad + support + pad), np.float32)
        self.padded_flat = self.padded.reshape(-1)
        self.estimate = self.padded[:, pad : pad + support]  # (C, S) weighted vocals
        self.state = Slot.FREE
        self.window_index = -1
        self.generation = -1
        self.decision = 0  # 0 undecided, 1 used, -1 fallback
        self.handed = False  # queued and handed to the worker (Scheduler.dispatch)
        self.way: Way | None = None  # a cheaper way to run it while shedding, else None
        self.deadline = 0.0  # perf_counter() by which the estimate is due (shedding)


class Scheduler:
    """Runs claimed windows through ``runner`` and records the outcome in ``health``.

    threaded: a daemon worker thread runs them (live); otherwise :meth:`start` runs the
    window before returning (offline). strict (inline only): a window the model fails on
    raises :class:`ModelError` at once instead of playing the dry signal. shedding (threaded
    only): a :class:`~stream_sep.engine.shedding.Shedding` that sheds work under overload.
    ``record`` (a :class:`~stream_sep.engine.record.WindowRecord`) notes each window that
    falls back or runs a cheaper way.
    """

    def __init__(
        self,
        runner: WindowRunner,
        health: Health,
        weights: np.ndarray,
        channels: int,
        threaded: bool,
        strict: bool = False,
        shedding: Shedding | None = None,
    ):
        plan = runner.plan
        self.runner, self.health, self.strict = runner, health, strict
        self.shedding = shedding if threaded else None
        self._weights = weights
        self.pad = plan.hop_samples
        self._slots = [
            Slot(channels, plan.window_samples, plan.support_samples, self.pad)
            for _ in range(SLOTS)
        ]
        self.record = WindowRecord()
        self.generation = 0
        self._started: list[Slot | None] = [None] * SLOTS  # not yet handed to the worker
        self._started_count = 0
        self._wake = threading.Lock()  # locked: nothing new for the worker
        self._wake.acquire()
        self._closing = False
        self.worker_waiting = False  # the worker is asleep, waiting for the next window
        self._worker = None
        if threaded:
            self._worker = threading.Thread(
                target=self._work, name="stream-sep-inference", daemon=True
            )
            self._worker.start()

    @property
    def idle(self) -> bool:
        """No window queued, running or waiting to be handed over, and the worker asleep
        (or inline: always)."""
        if self._worker is None:
            return True
        busy = any(slot.state in (Slot.QUEUED, Slot.RUNNING) for slot in self._slots)
        return not busy and not self._started_count and self.worker_waiting

    @property
    def queued_jobs(self) -> int:
        """Windows waiting for the worker; at most the number of slots, by construction."""
        return sum(slot.handed for slot in self._slots)

    def claim(self, window_index: int) -> Slot | None:
        """The slot for a new window (an int, or a float holding one), or None (counted as
        skipped) while the worker still holds it (a hung or very slow model)."""
        slot = self._slots[int(window_index % SLOTS)]
        self.health.stats.windows_submitted += 1
        slot.window_index = window_index
        if slot.state in (Slot.QUEUED, Slot.RUNNING):
            slot.decision = -1
            self.health.stats.windows_skipped += 1
            self.health.note_fallback(False)
            self.record.note(window_index, DRY)
            return None
        slot.generation = self.generation
        slot.decision = 0
        slot.way = None
        if self.shedding is not None:
            slot.way = self.shedding.way_for_next()
            if slot.way is not None:
                self.record.note(window_index, LIGHTER)
            slot.deadline = time.perf_counter() + self.shedding.allowance
        return slot

    def start(self, slot: Slot) -> None:
        """Run the slot now (inline), or queue it for the worker at the next :meth:`dispatch`."""
        slot.state = Slot.QUEUED
        if self._worker is None:
            self._run(slot)
        else:
            self._started[self._started_count] = slot
            self._started_count += 1

    def dispatch(self) -> None:
        """Hand the windows started since the last call to the worker. Called last in a
        block, so that the worker (which takes the interpreter's lock) wakes after the audio
        thread's work rather than in the middle of it; it allocates nothing (a fixed list of
        slots and a lock released as a signal, where a queue's list would grow and shrink)."""
        count = self._started_count
        if not count:
            return
        index = 0
        while index < count:
            self._started[index].handed = True
            self._started[index] = None
            index += 1
        self._started_count = 0
        if self._wake.locked():
            self._wake.release()

    def decide(self, window_index: int) -> Slot | None:
        """The slot of ``window_index`` (an int, or a float holding one) if its estimate is
        used; decides once per window."""
        slot = self._slots[int(window_index % SLOTS)]
        if slot.window_index != window_index or slot.generation != self.generation:
            return None
        if slot.decision == 0:
            if slot.state == Slot.READY:
                slot.decision = 1
                self.health.note_used()
            else:
                slot.decision = -1
                failed = slot.state == Slot.FAILED
                missed = slot.state not in (Slot.FAILED, Slot.SHED)
                self.health.note_fallback(failed, missed=missed)
                self.record.note(window_index, DRY)
        return slot if slot.decision == 1 else None

    def reset(self) -> None:
        """Forget every window; results of a model call still running are discarded."""
        self.dispatch()  # the worker drops them: their generation is past
        self.generation += 1
        self.record.clear()  # the stream's sample positions start again
        for slot in self._slots:
            if slot.state != Slot.RUNNING:
                slot.state = Slot.FREE
            slot.decision = 0
            slot.window_index = -1

    def close(self) -> None:
        """Stop the worker. A model call that does not return within a second is left
        behind on its daemon thread rather than blocking the caller (see :meth:`settle`)."""
        if self._worker is None:
            return
        self._closing = True
        if self._wake.locked():
            self._wake.release()
        self._worker.join(timeout=CLOSE_TIMEOUT)
        if self._worker.is_alive():
            log.warning(
                "the inference worker is still busy after %.1f s; not waiting for it",
                CLOSE_TIMEOUT,
            )
            self._left_behind = self._worker
        self._worker = None

    def settle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a model call left behind by :meth:`close`;
        True when none is running. A process should not exit while one runs: ONNX Runtime
        aborts the interpreter's shutdown from under a running session."""
        worker = getattr(self, "_left_behind", None)
        if worker is not None:
            worker.join(timeout)
        return worker is None or not worker.is_alive()

    def _next_job(self) -> Slot | None:
        """The handed-over slot of the earliest window, taken; None when there is none."""
        handed = [slot for slot in self._slots if slot.handed]
        if not handed:
            return None
        slot = min(handed, key=lambda slot: slot.window_index)
        slot.handed = False
        return slot

    def _work(self) -> None:
        while True:
            slot = self._next_job()
            if slot is None:
                _fill_float_free_list()
                self.worker_waiting = True
                self._wake.acquire()
                self.worker_waiting = False
                if self._closing:
                    return
                continue
            if slot.decision == -1 or slot.generation != self.generation:
                slot.state = Slot.FREE
                self.health.stats.jobs_dropped += 1
                continue
            shedding = self.shedding
            if shedding and shedding.hopeless(slot.way, slot.deadline - time.perf_counter()):
                slot.state = Slot.SHED
                continue
            self._run(slot)

    def _run(self, slot: Slot) -> None:
        slot.state = Slot.RUNNING
        generation, health = slot.generation, self.health
        health.check_input(slot.audio, self.runner.plan.hop_samples)
        started = health.running_since = time.perf_counter()
        try:
            way = slot.way
            if way is None:
                estimate = self.runner.estimate(slot.audio)
            else:
                estimate = self.runner.estimate(slot.audio, way.stereo, way.denoise)
        except Exception as error:  # the model may fail in any way; the stream must go on
            health.running_since = 0.0
            health.note_error(error)
            slot.state = Slot.FAILED
            if self.strict:
                raise self._model_error(error) from None
            return
        health.running_since = 0.0
        if generation != self.generation:
            slot.state = Slot.FREE
            return
        np.multiply(estimate, self._weights, out=slot.estimate)
        elapsed = time.perf_counter() - started
        health.note_run(elapsed)
        if self.shedding is not None:
            self.shedding.observe(slot.way, elapsed)
        slot.state = Slot.READY

    def _model_error(self, error: BaseException) -> ModelError:
        stats = self.health.stats
        reason = typed_first_line(error).split(": ", 1)[-1] or type(error).__name__
        if "NaN" in reason:
            reason = "the model returned NaN/Inf"
        return ModelError(
            f"the model failed on {stats.model_failures} of {stats.windows_submitted} "
            f"window(s): {reason}"
        )


def _fill_float_free_list() -> None:
    """Make and drop more floats than CPython keeps on its free list of float objects (100),
    so that the list is full when the worker goes to sleep: the audio thread's sample
    arithmetic in floats (see Timeline._block) then takes float objects from it rather than
    allocating one whenever the list has run dry (24 bytes, seen on hand-over blocks)."""
    floats = [0.5 * index for index in range(FLOATS_TO_FREE)]
    del floats
