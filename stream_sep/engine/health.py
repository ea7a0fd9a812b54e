"""What the engine counts, and when a run of unusable windows means the model has failed."""

from __future__ import annotations

import dataclasses
import logging
import time

import numpy as np

from stream_sep.errors import typed_first_line

log = logging.getLogger(__name__)

DC_OFFSET_LIMIT = 0.05  # |mean| of a window above this is reported as a DC offset
FULL_SCALE = 0.999  # input samples held at or above this are counted as clipped


@dataclasses.dataclass
class EngineStats:
    windows_submitted: int = 0
    windows_run: int = 0
    deadline_misses: int = 0
    windows_skipped: int = 0  # never started: the worker still held their slot
    fallback_windows: int = 0  # windows whose support played the dry signal (any cause)
    consecutive_fallbacks: int = 0  # fallback windows in a row, reset by a used window
    jobs_dropped: int = 0  # queued jobs the worker discarded unrun (already missed or reset)
    model_failures: int = 0  # model calls that raised, returned a wrong shape or NaN/Inf
    nonfinite_model_outputs: int = 0  # of which NaN/Inf estimates
    consecutive_failures: int = 0
    nonfinite_input_samples: int = 0
    dc_offset_windows: int = 0  # windows whose mean magnitude exceeds DC_OFFSET_LIMIT
    clipped_input_windows: int = 0  # windows whose newest hop has flat tops at full scale
    inference_total_s: float = 0.0
    inference_max_s: float = 0.0
    inference_last_s: float = 0.0
    hop_seconds: float = 0.0

    @property
    def inference_mean_s(self) -> float:
        return self.inference_total_s / self.windows_run if self.windows_run else 0.0

    @property
    def load(self) -> float:
        """Mean inference time per window over the hop: above 1 the model cannot keep up."""
        return self.inference_mean_s / self.hop_seconds if self.hop_seconds else 0.0


class NonFiniteEstimate(ValueError):
    """The model returned NaN or Inf for a window: treated like any failed window."""


class Health:
    """Counts windows used, missed and failed; latches a failure after
    ``max_consecutive_failures`` windows in a row played the dry signal."""

    def __init__(self, stats: EngineStats, max_consecutive_failures: int, latch_slow=True):
        self.stats = stats
        self.latch_slow = latch_slow  # False while shedding: slowness is counted, not fatal
        self.max_consecutive_failures = max_consecutive_failures
        self.failure: tuple | None = None  # (kind, streak, failed in streak, seconds running)
        self.running_since = 0.0  # perf_counter() when the current model call started
        self.last_error = ""
        self._streak_failed = 0
        self._finished_at_streak_start = 0

    @property
    def failure_kind(self) -> str:
        """'' while healthy; 'errors', 'hung' or 'slow' once failed."""
        return self.failure[0] if self.failure else ""

    def reset_streak(self) -> None:
        self.stats.consecutive_fallbacks = 0
        self._streak_failed = 0

    def note_used(self) -> None:
        self.reset_streak()

    def note_fallback(self, failed: bool, missed: bool = False) -> None:
        """Count a window that plays the dry signal (``missed``: it was late)."""
        stats = self.stats
        stats.deadline_misses += int(missed)
        if stats.consecutive_fallbacks == 0:
            self._finished_at_streak_start = stats.windows_run + stats.model_failures
        stats.fallback_windows += 1
        stats.consecutive_fallbacks += 1
        self._streak_failed += int(failed)
        if self.failure is None and stats.consecutive_fallbacks >= self.max_consecutive_failures:
            kind = self._kind()
            if kind == "slow" and not self.latch_slow:
                return
            self.failure = (
                kind,
                stats.consecutive_fallbacks,
                self._streak_failed,
                self.running_for(),
            )

    def _kind(self) -> str:
        stats = self.stats
        finished = stats.windows_run + stats.model_failures - self._finished_at_streak_start
        if self._streak_failed:
            return "errors"
        if finished == 0 and self.running_since:
            return "hung"  # not one model call returned during the whole streak
        return "slow"

    def note_run(self, seconds: float) -> None:
        stats = self.stats
        stats.windows_run += 1
        stats.consecutive_failures = 0
        stats.inference_total_s += seconds
        stats.inference_last_s = seconds
        stats.inference_max_s = max(stats.inference_max_s, seconds)

    def note_error(self, error: BaseException) -> None:
        self.last_error = typed_first_line(error)
        self.stats.nonfinite_model_outputs += int(isinstance(error, NonFiniteEstimate))
        self.stats.model_failures += 1
        self.stats.consecutive_failures += 1
        if self.stats.model_failures == 1:
            log.warning("inference failed, playing the dry signal for that window: %s", error)

    def running_for(self) -> float:
        since = self.running_since
        return time.perf_counter() - since if since else 0.0

    def describe(self) -> str:
        """One line saying why the engine failed; empty while it has not."""
        if self.failure is None:
            return ""
        kind, streak, failed, running = self.failure
        stats = self.stats
        if kind == "errors":
            return (
                f"the model gave no usable estimate for {streak} windows in a row "
                f"({failed} failed, {streak - failed} late); last error: {self.last_error}"
            )
        if kind == "hung":
            return (
                f"the model has not returned for {streak} windows ({running:.1f} s; a window "
                f"is due every {stats.hop_seconds:g} s): inference seems hung"
            )
        return (
            f"inference cannot keep up: {streak} windows in a row missed their deadline "
            f"(mean {stats.inference_mean_s:.3f} s per window, hop {stats.hop_seconds:g} s, "
            f"load {stats.load:.2f}); use a longer --hop or a lighter model"
        )

    def check_input(self, audio: np.ndarray, hop: int) -> None:
        """Count (and warn once about) a DC offset or clipped input; audio: (C, W)."""
        stats = self.stats
        offset = float(np.abs(audio.mean(axis=1)).max())
        if offset > DC_OFFSET_LIMIT:
            stats.dc_offset_windows += 1
            if stats.dc_offset_windows == 1:
                log.warning("the input has a DC offset of %.3f; check the source", offset)
        if clipped(audio[:, -hop:]):
            stats.clipped_input_windows += 1
            if stats.clipped_input_windows == 1:
                log.warning("the input reaches full scale (clipping); lower the input gain")


def clipped(audio: np.ndarray) -> bool:
    """audio (C, n): a clipped converter holds full scale for several samples in a row; a
    float signal that merely exceeds 1.0 (a mix summed in float) does not repeat values."""
    loud = np.abs(audio[:, 1:]) >= FULL_SCALE
    held = loud & (audio[:, 1:] == audio[:, :-1])
    return int(np.count_nonzero(held)) >= 2
