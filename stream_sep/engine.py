"""The streaming separation engine: any stream in, a separated stream out, a fixed delay.

Timeline (all in samples at the *stream* rate; ``H`` hop, ``L`` lookahead, ``X`` crossfade,
``D`` compute allowance = one hop, ``W`` the model window resampled to the stream rate):

- A window ``k`` ends at input sample ``e_k = k * H`` and covers ``[e_k - W, e_k)``; it is
  resampled to the model rate, separated (STFT -> ONNX -> iSTFT) and resampled back.
- Only its *support* ``[e_k - L - S, e_k - L)`` with ``S = H + X`` is used: the last ``L``
  samples (the lookahead, always at least the unreliable iSTFT edge) and the start of the
  window are discarded. Supports of neighbouring windows overlap by ``X`` and are blended
  with raised-cosine weights that sum to exactly one.
- Output sample ``j`` presents input sample ``j - latency_samples`` with
  ``latency_samples = L + S + D``: the window needed for it ended ``D`` samples earlier, so
  the worker thread has one hop of time per window.

Mixing: with ``V`` the weighted vocal estimate, ``c`` the weight of windows that arrived in
time (1 normally, less during a fallback), ``a`` the accompaniment gain and ``g`` the vocal
gain, the output is ``(1 - c (1 - a)) * dry + (g - a) * V``. Karaoke is ``a=1, g=level``,
vocals ``a=0, g=1``, bypass ``a=1, g=1`` (exactly the delayed dry signal). A missing window
therefore fades to the dry signal over the crossfade, and gains ramp per absolute sample, so
output does not depend on how the stream is cut into blocks.

Safety (see docs/reliability.md): the mix is multiplied by an output gain that fades in over
``fade_in`` seconds from ``latency_samples`` (where the delayed signal first arrives) and fades
out on :meth:`Separator.fade_out`, then passes the :class:`~stream_sep.safety.OutputGuard`
(peak limiter, NaN guard, hard clip at the ceiling). A window that raises, returns the wrong
shape or NaN/Inf, or is late plays the dry signal; ``max_consecutive_failures`` such windows
in a row latch :attr:`Separator.failed` with a :attr:`Separator.failure_reason`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import queue
import threading
import time

import numpy as np
import soxr

from stream_sep import safety
from stream_sep.errors import ModelError, UserError

log = logging.getLogger(__name__)

MODES = ("karaoke", "vocals", "bypass")
STEREO_CHOICES = ("batch", "mid")
VOCAL_LEVEL_RANGE = (0.0, 2.0)
MAX_CHANNELS = 8
_SLOTS = 6  # windows alive at once: in use (2), computing (1-2), spare
DEFAULT_FADE_SECONDS = 0.05
DEFAULT_MAX_CONSECUTIVE_FAILURES = 8
MIN_CROSSFADE_SECONDS = 0.005  # a fallback always fades; a zero crossfade would click
DC_OFFSET_LIMIT = 0.05  # |mean| of a window above this is reported as a DC offset
FULL_SCALE = 0.999  # input samples held at or above this are counted as clipped
_CLOSE_TIMEOUT = 1.0  # seconds close() waits for a busy worker (a hung model is left behind)
_RESAMPLE_QUALITY = "HQ"
_RESAMPLE_PAD = 256  # model-rate samples resampled beyond each side of the support


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


class _Slot:
    """One window in flight: its input, its weighted estimate over the support, its state."""

    FREE, QUEUED, RUNNING, READY, FAILED = range(5)

    def __init__(self, channels: int, window: int, support: int):
        self.audio = np.zeros((channels, window), np.float32)  # (C, W) stream rate
        self.estimate = np.zeros((channels, support), np.float32)  # (C, S) weighted vocals
        self.state = _Slot.FREE
        self.window_index = -1
        self.generation = -1
        self.decision = 0  # 0 undecided, 1 used, -1 missed


@dataclasses.dataclass(frozen=True)
class _Ramp:
    """A linear gain ramp defined on absolute output sample indices."""

    start_index: int
    start_value: float
    end_value: float
    length: int

    def value_at(self, index: int) -> float:
        if self.length <= 0 or index >= self.start_index + self.length:
            return self.end_value
        progress = max(0, index - self.start_index) / self.length
        return self.start_value + (self.end_value - self.start_value) * progress

    def fill(self, first_index: int, out: np.ndarray, positions: np.ndarray) -> None:
        """out[i] = value at first_index + i. positions: preallocated float64 scratch."""
        n = out.shape[0]
        if self.length <= 0 or first_index >= self.start_index + self.length:
            out.fill(self.end_value)
            return
        np.add(positions[:n], first_index - self.start_index, out=out)
        np.clip(out, 0.0, self.length, out=out)
        out *= (self.end_value - self.start_value) / self.length
        out += self.start_value


def _seconds_to_samples(name: str, seconds: float, rate: int, minimum: float = 0.0) -> int:
    if not isinstance(seconds, (int, float)) or not math.isfinite(seconds) or seconds < minimum:
        raise UserError(f"--{name} must be a number of seconds >= {minimum:g}, got {seconds!r}")
    return int(round(seconds * rate))


class Separator:
    """Streaming vocal separation with a fixed, exactly reported delay.

    ``process(block)`` takes ``(channels, n)`` float32 blocks of any size ``n`` and returns
    ``(channels, n)``; output sample ``j`` corresponds to input sample
    ``j - latency_samples``.
    """

    def __init__(
        self,
        model,
        sample_rate: int,
        channels: int,
        *,
        hop: float = 0.5,
        lookahead: float = 0.25,
        crossfade: float = 0.064,
        mode: str = "karaoke",
        vocal_level: float | None = None,
        stereo: str = "batch",
        blocking: bool = False,
        ramp_seconds: float = 0.05,
        ceiling_db: float = safety.DEFAULT_CEILING_DB,
        limit: bool = True,
        fade_in: float | None = None,
        max_consecutive_failures: int = DEFAULT_MAX_CONSECUTIVE_FAILURES,
    ):
        self.model = model
        self.contract = model.contract
        self._vocals_index = self.contract.source_index("vocals")
        self.sample_rate = _check_rate(sample_rate)
        self.channels = _check_channels(channels)
        if stereo not in STEREO_CHOICES:
            raise UserError(f"--stereo must be one of {', '.join(STEREO_CHOICES)}, got {stereo!r}")
        self.stereo = stereo
        self.blocking = bool(blocking)
        self._plan(hop, lookahead, crossfade)
        self._ramp_length = _seconds_to_samples("ramp", ramp_seconds, self.sample_rate)
        self._limiter = safety.OutputGuard(
            self.channels, self.sample_rate, ceiling_db, max_block=self.hop_samples
        )
        self._limit = bool(limit)  # False only for callers that guard the output themselves
        if fade_in is None:  # offline callers (limit=False) want the signal from sample one
            fade_in = DEFAULT_FADE_SECONDS if self._limit else 0.0
        self._fade_in_samples = _seconds_to_samples("fade-in", fade_in, self.sample_rate)
        self.max_consecutive_failures = _check_failures(max_consecutive_failures)
        self._allocate()
        self._output_ramp = self._fade_in_ramp()
        self._fade_request: float | None = None
        self._targets_changed = False
        self._failure: tuple | None = None  # (kind, streak, failed in streak, seconds running)
        self._streak_failed = 0
        self._finished_at_streak_start = 0
        self._running_since = 0.0  # perf_counter() when the current model call started
        self._last_error = ""
        if self.sample_rate != self.contract.sample_rate:
            log.info(
                "stream at %d Hz, model at %d Hz: resampling with soxr",
                self.sample_rate,
                self.contract.sample_rate,
            )
        self._mode = "karaoke"
        self._vocal_level = 0.0
        self._accompaniment_ramp = _Ramp(0, 1.0, 1.0, 0)
        self._vocal_ramp = _Ramp(0, 0.0, 0.0, 0)
        self._set_targets(mode, vocal_level)
        self._apply_targets(immediate=True)
        self.stats = EngineStats(hop_seconds=self.hop_samples / self.sample_rate)
        self._generation = 0
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._worker = None
        if not self.blocking:
            self._worker = threading.Thread(
                target=self._work, name="stream-sep-inference", daemon=True
            )
            self._worker.start()

    # ------------------------------------------------------------------ planning
    def _plan(self, hop: float, lookahead: float, crossfade: float) -> None:
        rate, model_rate = self.sample_rate, self.contract.sample_rate
        self.window_samples = int(round(self.contract.window_samples * rate / model_rate))
        edge_model = self.contract.n_fft // 4
        self.edge_samples = int(math.ceil(edge_model * rate / model_rate))
        self.hop_samples = _seconds_to_samples("hop", hop, rate)
        self.lookahead_samples = _seconds_to_samples("lookahead", lookahead, rate)
        self.crossfade_samples = _seconds_to_samples(
            "crossfade", crossfade, rate, MIN_CROSSFADE_SECONDS
        )
        if self.hop_samples < 1:
            raise UserError(f"--hop must be at least one sample (1/{rate} s), got {hop!r}")
        if self.lookahead_samples < self.edge_samples:
            raise UserError(
                f"--lookahead must be at least {self.edge_samples / rate:.3f} s (the window's "
                f"unreliable last {edge_model} model samples), got {lookahead!r}"
            )
        if self.crossfade_samples > self.hop_samples:
            raise UserError(f"--crossfade must be at most the hop ({hop!r} s), got {crossfade!r}")
        self.support_samples = self.hop_samples + self.crossfade_samples
        self.support_start = (
            self.window_samples - self.lookahead_samples - self.support_samples
        )  # first support sample, in window coordinates
        if self.support_start < self.edge_samples:
            usable = (self.window_samples - 2 * self.edge_samples) / rate
            raise UserError(
                f"hop + lookahead + crossfade must be at most {usable:.3f} s for this model's "
                f"{self.contract.window_seconds:.3f} s window, got {hop!r} + {lookahead!r} + "
                f"{crossfade!r}"
            )
        self.compute_samples = self.hop_samples
        self.latency_samples = self.lookahead_samples + self.support_samples + self.compute_samples
        self._weights = _crossfade_weights(self.hop_samples, self.crossfade_samples)
        self._plan_resampling()

    def _plan_resampling(self) -> None:
        """Pick the model-rate stretch to resample back: it must start on a sample that
        falls exactly on a stream sample, so the estimate stays sample-aligned."""
        rate, model_rate = self.sample_rate, self.contract.sample_rate
        self._resample = rate != model_rate
        step = model_rate // math.gcd(rate, model_rate)  # model samples per aligned point
        first = math.floor(self.support_start * model_rate / rate) - _RESAMPLE_PAD
        first = max(0, first // step * step)
        last = math.ceil((self.support_start + self.support_samples) * model_rate / rate)
        last = min(self.contract.window_samples, last + _RESAMPLE_PAD)
        self._model_slice = slice(first, last)
        self._slice_offset = self.support_start - first * rate // model_rate

    def _allocate(self) -> None:
        channels = self.channels
        self._capacity = self.window_samples + self.latency_samples + 2 * self.hop_samples
        self._ring = np.zeros((channels, self._capacity), np.float32)
        chunk = self.hop_samples
        self._vocals = np.zeros((channels, chunk), np.float32)
        self._dry = np.zeros((channels, chunk), np.float32)
        self._coverage = np.zeros(chunk, np.float32)
        self._gain_a = np.zeros(chunk, np.float64)
        self._gain_g = np.zeros(chunk, np.float64)
        self._dry_coef = np.zeros(chunk, np.float32)
        self._vocal_coef = np.zeros(chunk, np.float32)
        self._output_gain = np.zeros(chunk, np.float32)
        self._finite = np.zeros((channels, chunk), bool)
        self._positions = np.arange(chunk, dtype=np.float64)
        self._slots = [
            _Slot(channels, self.window_samples, self.support_samples) for _ in range(_SLOTS)
        ]
        self._position = 0  # input samples received so far (= output samples emitted)

    # ------------------------------------------------------------------ public API
    @property
    def latency_seconds(self) -> float:
        return self.latency_samples / self.sample_rate

    @property
    def latency_breakdown(self) -> dict[str, float]:
        rate = self.sample_rate
        return {
            "lookahead": self.lookahead_samples / rate,
            "hop": self.hop_samples / rate,
            "crossfade": self.crossfade_samples / rate,
            "compute": self.compute_samples / rate,
        }

    @property
    def mode(self) -> str:
        return self._mode

    @property
    def vocal_level(self) -> float:
        return self._vocal_level

    @property
    def limiter(self) -> safety.OutputGuard:
        return self._limiter

    @property
    def failed(self) -> bool:
        """True once ``max_consecutive_failures`` windows in a row had no usable estimate
        (the model raised, returned garbage, hung or cannot keep up). Latched: the stream
        goes on with the dry signal; a live host should fade out and stop."""
        return self._failure is not None

    @property
    def failure_reason(self) -> str:
        """One line saying why :attr:`failed` is set; empty while it is not."""
        if self._failure is None:
            return ""
        return self._describe_failure(*self._failure)

    @property
    def faded_out(self) -> bool:
        """True once a :meth:`fade_out` has finished: every further output sample is 0."""
        ramp = self._output_ramp
        return (
            self._fade_request is None
            and ramp.end_value == 0.0
            and self._position >= ramp.start_index + ramp.length
        )

    @property
    def queued_jobs(self) -> int:
        """Windows waiting for the worker; at most the number of slots, by construction."""
        return self._jobs.qsize()

    def set_mode(self, mode: str) -> None:
        self._set_targets(mode, None)

    def set_vocal_level(self, level: float) -> None:
        """Karaoke with the vocals at ``level`` (0 = none, 1 = original); switches to karaoke."""
        self._set_targets("karaoke", level)

    def warm_up(self) -> float:
        """Run one silent window through the path the worker uses (resampling, the model's
        batch size, the shape and NaN checks) before streaming; returns the seconds taken.

        Raises :class:`ModelError` with one line if the model cannot separate it, so a model
        that loads but cannot run is refused before any audio flows.
        """
        started = time.perf_counter()
        try:
            self._separate_window(np.zeros((self.channels, self.window_samples), np.float32))
        except Exception as error:  # any failure of the model is a refusal of that model
            raise ModelError(
                f"the model cannot separate a silent window: {_first_line(error)}"
            ) from None
        return time.perf_counter() - started

    def fade_out(self, seconds: float = DEFAULT_FADE_SECONDS) -> None:
        """Ramp the output to silence over ``seconds``, starting at the next block. Keep
        calling :meth:`process` until :attr:`faded_out`, then close the stream."""
        self._fade_request = float(_seconds_to_samples("fade-out", seconds, self.sample_rate))

    def process(self, block: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """block: (channels, n) float32 -> (channels, n) float32, delayed by latency_samples."""
        if block.ndim != 2 or block.shape[0] != self.channels:
            raise ValueError(f"block must be ({self.channels}, n), got {block.shape}")
        if out is None:
            out = np.empty(block.shape, np.float32)
        if self._targets_changed or self._fade_request is not None:
            self._apply_requests()
        done, total = 0, block.shape[1]
        while done < total:
            until_window = self.hop_samples - self._position % self.hop_samples
            size = min(total - done, until_window)
            self._process_chunk(block[:, done : done + size], out[:, done : done + size])
            done += size
        return out

    def reset(self) -> None:
        """Forget the stream: silence history, counters kept, worker results discarded."""
        self._generation += 1
        self._ring.fill(0.0)
        for slot in self._slots:
            if slot.state != _Slot.RUNNING:
                slot.state = _Slot.FREE
            slot.decision = 0
            slot.window_index = -1
        self._position = 0
        self.stats.consecutive_fallbacks = 0
        self._streak_failed = 0
        self._limiter.reset()
        self._fade_request = None
        self._output_ramp = self._fade_in_ramp()
        self._apply_targets(immediate=True)

    def close(self) -> None:
        """Stop the worker thread. A model call that does not return within a second is
        left behind on its daemon thread rather than blocking the caller."""
        if self._worker is not None:
            self._jobs.put(None)
            self._worker.join(timeout=_CLOSE_TIMEOUT)
            if self._worker.is_alive():
                log.warning(
                    "the inference worker is still busy after %.1f s; not waiting for it",
                    _CLOSE_TIMEOUT,
                )
            self._worker = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------ streaming
    def _process_chunk(self, block: np.ndarray, out: np.ndarray) -> None:
        """Handle ``n <= hop`` samples that do not cross a window end."""
        n = block.shape[1]
        start = self._position
        self._write_input(block, start)
        self._position = start + n
        if self._position % self.hop_samples == 0:
            self._submit(self._position // self.hop_samples)
        self._mix_output(start, out)

    def _write_input(self, block: np.ndarray, start: int) -> None:
        n = block.shape[1]
        first = start % self._capacity
        head = min(n, self._capacity - first)
        self._ring[:, first : first + head] = block[:, :head]
        self._ring[:, : n - head] = block[:, head:]
        self._sanitize(first, head)
        if n > head:
            self._sanitize(0, n - head)

    def _sanitize(self, first: int, n: int) -> None:
        """Replace NaN/Inf input samples by silence, and count them."""
        stored = self._ring[:, first : first + n]
        finite = self._finite[:, :n]
        np.isfinite(stored, out=finite)
        if not finite.all():
            bad = finite.size - int(np.count_nonzero(finite))
            self.stats.nonfinite_input_samples += bad
            np.invert(finite, out=finite)
            stored[finite] = 0.0

    def _read_ring(self, start: int, out: np.ndarray) -> None:
        """Copy input samples [start, start + n) into out (C, n); times < 0 are silence."""
        n = out.shape[1]
        first = start % self._capacity
        head = min(n, self._capacity - first)
        out[:, :head] = self._ring[:, first : first + head]
        out[:, head:] = self._ring[:, : n - head]

    def _submit(self, window_index: int) -> None:
        slot = self._slots[window_index % _SLOTS]
        self.stats.windows_submitted += 1
        if slot.state in (_Slot.QUEUED, _Slot.RUNNING):
            # The worker still holds this slot (a hung or very slow model): skip the window.
            slot.window_index = window_index
            slot.decision = -1
            self.stats.windows_skipped += 1
            self._note_fallback(False)
            return
        end = window_index * self.hop_samples
        self._read_ring(end - self.window_samples, slot.audio)
        slot.window_index = window_index
        slot.generation = self._generation
        slot.decision = 0
        slot.state = _Slot.QUEUED
        if self.blocking:
            self._run_slot(slot)
        else:
            self._jobs.put(slot)

    def _mix_output(self, start: int, out: np.ndarray) -> None:
        """Fill out (C, n) for output samples [start, start + n)."""
        n = out.shape[1]
        vocals, coverage = self._vocals[:, :n], self._coverage[:n]
        vocals.fill(0.0)
        coverage.fill(0.0)
        self._gather_estimates(start, n, vocals, coverage)
        dry = self._dry[:, :n]
        self._read_ring(start - self.latency_samples, dry)
        gain_a, gain_g = self._gain_a[:n], self._gain_g[:n]
        self._accompaniment_ramp.fill(start, gain_a, self._positions)
        self._vocal_ramp.fill(start, gain_g, self._positions)
        dry_coef, vocal_coef = self._dry_coef[:n], self._vocal_coef[:n]
        # dry_coef = 1 - c (1 - a); vocal_coef = g - a
        np.subtract(1.0, gain_a, out=dry_coef)
        dry_coef *= coverage
        np.subtract(1.0, dry_coef, out=dry_coef)
        np.subtract(gain_g, gain_a, out=vocal_coef)
        np.multiply(dry, dry_coef, out=out)
        vocals *= vocal_coef
        out += vocals
        self._apply_output_gain(start, out)
        if self._limit:
            self._limiter.process(out)

    def _apply_output_gain(self, start: int, out: np.ndarray) -> None:
        """Fade-in / fade-out: out (C, n) *= the output ramp at [start, start + n)."""
        ramp = self._output_ramp
        if start >= ramp.start_index + ramp.length or ramp.length <= 0:
            if ramp.end_value == 0.0:
                out.fill(0.0)
            elif ramp.end_value != 1.0:
                out *= ramp.end_value
            return
        gain = self._output_gain[: out.shape[1]]
        ramp.fill(start, gain, self._positions)
        out *= gain

    def _gather_estimates(self, start: int, n: int, vocals: np.ndarray, coverage: np.ndarray):
        """Add the weighted estimates of every window whose support meets output samples
        [start, start + n), deciding once per window whether it arrived in time."""
        hop, support = self.hop_samples, self.support_samples
        # Output j uses windows with e_k in (j - S - D, j - D].
        lowest = start - support - self.compute_samples + 1
        highest = start + n - 1 - self.compute_samples
        for window_index in range(max(1, -(-lowest // hop)), highest // hop + 1):
            slot = self._slots[window_index % _SLOTS]
            if not self._decide(slot, window_index):
                continue
            support_first = window_index * hop - self.lookahead_samples - support
            offset = start - self.latency_samples - support_first  # support position of start
            first, last = max(0, offset), min(support, offset + n)
            if first >= last:
                continue
            vocals[:, first - offset : last - offset] += slot.estimate[:, first:last]
            coverage[first - offset : last - offset] += self._weights[first:last]

    def _decide(self, slot: _Slot, window_index: int) -> bool:
        if slot.window_index != window_index or slot.generation != self._generation:
            return False
        if slot.decision == 0:
            if slot.state == _Slot.READY:
                slot.decision = 1
                self.stats.consecutive_fallbacks = 0
                self._streak_failed = 0
            else:
                slot.decision = -1
                failed = slot.state == _Slot.FAILED
                if not failed:
                    self.stats.deadline_misses += 1
                self._note_fallback(failed)
        return slot.decision == 1

    def _note_fallback(self, failed: bool) -> None:
        """Count a window that plays the dry signal; latch ``failed`` after too many in a row."""
        stats = self.stats
        if stats.consecutive_fallbacks == 0:
            self._finished_at_streak_start = stats.windows_run + stats.model_failures
        stats.fallback_windows += 1
        stats.consecutive_fallbacks += 1
        self._streak_failed += int(failed)
        if self._failure is None and stats.consecutive_fallbacks >= self.max_consecutive_failures:
            finished = stats.windows_run + stats.model_failures - self._finished_at_streak_start
            if self._streak_failed:
                kind = "errors"
            elif finished == 0 and self._running_since:
                kind = "hung"  # not one model call returned during the whole streak
            else:
                kind = "slow"
            running = self._running_for()
            self._failure = (kind, stats.consecutive_fallbacks, self._streak_failed, running)

    def _running_for(self) -> float:
        since = self._running_since
        return time.perf_counter() - since if since else 0.0

    def _describe_failure(self, kind: str, streak: int, failed: int, running: float) -> str:
        stats = self.stats
        if kind == "errors":
            return (
                f"the model gave no usable estimate for {streak} windows in a row "
                f"({failed} failed, {streak - failed} late); last error: {self._last_error}"
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

    # ------------------------------------------------------------------ inference
    def _work(self) -> None:
        while True:
            slot = self._jobs.get()
            if slot is None:
                return
            if slot.decision == -1 or slot.generation != self._generation:
                slot.state = _Slot.FREE
                self.stats.jobs_dropped += 1
                continue
            self._run_slot(slot)

    def _run_slot(self, slot: _Slot) -> None:
        slot.state = _Slot.RUNNING
        generation = slot.generation
        self._check_input(slot.audio)
        started = time.perf_counter()
        self._running_since = started
        try:
            estimate = self._separate_window(slot.audio)
        except Exception as error:  # the model may fail in any way; the stream must go on
            self._running_since = 0.0
            self._record_failure(slot, error)
            return
        self._running_since = 0.0
        elapsed = time.perf_counter() - started
        if generation != self._generation:
            slot.state = _Slot.FREE
            return
        np.multiply(estimate, self._weights, out=slot.estimate)
        stats = self.stats
        stats.windows_run += 1
        stats.consecutive_failures = 0
        stats.inference_total_s += elapsed
        stats.inference_last_s = elapsed
        stats.inference_max_s = max(stats.inference_max_s, elapsed)
        slot.state = _Slot.READY

    def _record_failure(self, slot: _Slot, error: BaseException) -> None:
        self._last_error = _first_line(error)
        if isinstance(error, NonFiniteEstimate):
            self.stats.nonfinite_model_outputs += 1
        self.stats.model_failures += 1
        self.stats.consecutive_failures += 1
        if self.stats.model_failures == 1:
            log.warning("inference failed, playing the dry signal for that window: %s", error)
        slot.state = _Slot.FAILED

    def _check_input(self, audio: np.ndarray) -> None:
        """Count (and warn once about) a DC offset or clipped input; audio: (C, W)."""
        stats = self.stats
        offset = float(np.abs(audio.mean(axis=1)).max())
        if offset > DC_OFFSET_LIMIT:
            stats.dc_offset_windows += 1
            if stats.dc_offset_windows == 1:
                log.warning("the input has a DC offset of %.3f; check the source", offset)
        if _clipped(audio[:, -self.hop_samples :]):
            stats.clipped_input_windows += 1
            if stats.clipped_input_windows == 1:
                log.warning("the input reaches full scale (clipping); lower the input gain")

    def _separate_window(self, audio: np.ndarray) -> np.ndarray:
        """(C, W) stream-rate window -> (C or 1, S) vocal estimate over the support."""
        model_in = audio.mean(axis=0, keepdims=True) if self.stereo == "mid" else audio
        if self._resample:
            model_in = self._to_model_rate(model_in)
        sources = self.model.separate(np.ascontiguousarray(model_in, np.float32))
        expected = (model_in.shape[0], len(self.contract.sources), self.contract.window_samples)
        if getattr(sources, "shape", None) != expected:
            raise ValueError(
                f"model returned shape {getattr(sources, 'shape', None)}, expected {expected}"
            )
        vocals = sources[:, self._vocals_index]
        if not np.isfinite(vocals).all():
            raise NonFiniteEstimate("model returned NaN or Inf")
        if self._resample:
            stretch = soxr.resample(
                vocals[:, self._model_slice].T,
                self.contract.sample_rate,
                self.sample_rate,
                _RESAMPLE_QUALITY,
            ).T
            first = self._slice_offset
            return _fit(stretch, first + self.support_samples)[:, first:]
        first = self.support_start
        return vocals[:, first : first + self.support_samples]

    def _to_model_rate(self, audio: np.ndarray) -> np.ndarray:
        resampled = soxr.resample(
            audio.T, self.sample_rate, self.contract.sample_rate, _RESAMPLE_QUALITY
        )
        return _fit(np.ascontiguousarray(resampled.T), self.contract.window_samples)

    # ------------------------------------------------------------------ modes
    def _set_targets(self, mode: str, vocal_level: float | None) -> None:
        if mode not in MODES:
            raise UserError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
        if vocal_level is not None:
            low, high = VOCAL_LEVEL_RANGE
            if not isinstance(vocal_level, (int, float)) or not low <= vocal_level <= high:
                raise UserError(
                    f"--vocal-level must be a number in [{low:g}, {high:g}], got {vocal_level!r}"
                )
            self._vocal_level = float(vocal_level)
        self._mode = mode
        # Applied by the next process() call, on the audio thread, at its own position.
        self._targets_changed = True

    def _apply_requests(self) -> None:
        if self._targets_changed:
            self._apply_targets()
        request = self._fade_request
        if request is not None:
            self._fade_request = None
            now = self._position
            start = self._output_ramp.value_at(now)
            self._output_ramp = _Ramp(now, start, 0.0, int(request))

    def _apply_targets(self, immediate: bool = False) -> None:
        self._targets_changed = False  # before reading the targets: a newer request wins
        accompaniment, vocal = {
            "karaoke": (1.0, self._vocal_level),
            "vocals": (0.0, 1.0),
            "bypass": (1.0, 1.0),
        }[self._mode]
        now = self._position
        length = 0 if immediate else self._ramp_length
        self._accompaniment_ramp = _Ramp(
            now, self._accompaniment_ramp.value_at(now), accompaniment, length
        )
        self._vocal_ramp = _Ramp(now, self._vocal_ramp.value_at(now), vocal, length)

    def _fade_in_ramp(self) -> _Ramp:
        """Output gain 0 -> 1 from latency_samples, where the delayed input first arrives."""
        if self._fade_in_samples <= 0:
            return _Ramp(0, 1.0, 1.0, 0)
        return _Ramp(self.latency_samples, 0.0, 1.0, self._fade_in_samples)


def _crossfade_weights(hop: int, crossfade: int) -> np.ndarray:
    """(hop + crossfade,) float32 weights: raised-cosine in, flat, raised-cosine out.

    Shifted by ``hop`` and summed they give exactly one: sin^2 + cos^2.
    """
    weights = np.ones(hop + crossfade, np.float64)
    if crossfade:
        phase = (np.arange(crossfade) + 0.5) / crossfade * (np.pi / 2)
        weights[:crossfade] = np.sin(phase) ** 2
        weights[hop:] = np.cos(phase) ** 2
    return weights.astype(np.float32)


def _fit(audio: np.ndarray, length: int) -> np.ndarray:
    """(C, n) -> (C, length): trim or zero-pad at the end (resamplers round lengths)."""
    if audio.shape[1] >= length:
        return audio[:, :length]
    return np.pad(audio, ((0, 0), (0, length - audio.shape[1])))


def _clipped(audio: np.ndarray) -> bool:
    """audio (C, n): a clipped converter holds full scale for several samples in a row; a
    float signal that merely exceeds 1.0 (a mix summed in float) does not repeat values."""
    loud = np.abs(audio[:, 1:]) >= FULL_SCALE
    held = loud & (audio[:, 1:] == audio[:, :-1])
    return int(np.count_nonzero(held)) >= 2


class NonFiniteEstimate(ValueError):
    """The model returned NaN or Inf for a window: treated like any failed window."""


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    text = lines[0] if lines else ""
    return f"{type(error).__name__}: {text}"[:300]


def _check_failures(count) -> int:
    if not isinstance(count, (int, np.integer)) or isinstance(count, bool) or count < 1:
        raise UserError(f"max_consecutive_failures must be an integer >= 1, got {count!r}")
    return int(count)


def _check_rate(rate) -> int:
    if not isinstance(rate, (int, np.integer)) or not 8000 <= rate <= 384000:
        raise UserError(f"sample rate must be an integer in [8000, 384000] Hz, got {rate!r}")
    return int(rate)


def _check_channels(channels) -> int:
    if not isinstance(channels, (int, np.integer)) or not 1 <= channels <= MAX_CHANNELS:
        raise UserError(f"channels must be an integer in [1, {MAX_CHANNELS}], got {channels!r}")
    return int(channels)
