"""Hearing safety: the last stage before any output. Nothing above the ceiling, no NaN/Inf.

:class:`OutputGuard` is a peak limiter with instant attack and exponential release, applied
per sample across channels (the same gain on every channel keeps the stereo image), then a
hard clip at the ceiling as a last resort and a NaN/Inf guard. Below the ceiling it leaves the
signal untouched (gain exactly 1), so it costs one peak test per block in normal use: no
pumping on music that stays under the ceiling.

The release recursion ``u[n] = max(1 - r[n], beta * u[n-1])`` (``u`` = gain reduction,
``r`` = the gain that would just reach the ceiling) is evaluated without a Python loop: in the
log domain it is a running maximum, ``log u[n] = n log beta + max_k(log a[k] - k log beta)``.
``beta = exp(-1 / (RELEASE_SECONDS * rate))``: after a peak the reduction decays by 1/e every
``RELEASE_SECONDS``.

Blocks of any length are processed in pieces of at most ``max_block`` samples with scratch
buffers allocated once, so the guard's memory does not grow with the block, and the result
does not depend on how a stream is cut into blocks (the reduction carries over).
"""

from __future__ import annotations

import math

import numpy as np

from stream_sep.dsp.scratch import SizeCache

DEFAULT_CEILING_DB = -1.0
RELEASE_SECONDS = 0.1
DEFAULT_MAX_BLOCK = 8192
_NEGLIGIBLE = 1e-7


def db_to_gain(db: float) -> float:
    return 10.0 ** (db / 20.0)


class OutputGuard:
    """Limit (channels, n) float32 blocks in place to ``ceiling_db`` dBFS."""

    def __init__(
        self,
        channels: int,
        sample_rate: int,
        ceiling_db: float = DEFAULT_CEILING_DB,
        max_block: int = DEFAULT_MAX_BLOCK,
    ):
        if not math.isfinite(ceiling_db) or not -40.0 <= ceiling_db <= 0.0:
            raise ValueError(f"ceiling must be in [-40, 0] dBFS, got {ceiling_db!r}")
        self.ceiling_db = ceiling_db
        self.ceiling = db_to_gain(ceiling_db)
        self.channels = channels
        self._log_beta = -1.0 / (RELEASE_SECONDS * sample_rate)
        self._carry = 0.0  # gain reduction u at the last sample of the previous block
        self.limited_blocks = 0
        self.nonfinite_samples = 0
        self.max_reduction_db = 0.0
        self._allocate(max(1, int(max_block)))

    def _allocate(self, size: int) -> None:
        self._size = size
        self._magnitude = np.zeros((self.channels, size), np.float32)  # |block|
        self._peak = np.zeros(size, np.float32)  # max over channels
        self._index = np.arange(size, dtype=np.float64)
        self._decay = self._index * self._log_beta  # n log beta
        self._carried_decay = np.exp((self._index + 1.0) * self._log_beta)
        self._work = np.zeros(size, np.float64)
        self._reduction = np.zeros(size, np.float64)
        self._gain = np.zeros(size, np.float32)
        self._sizes = SizeCache()
        self._ceiling64 = np.array(self.ceiling, np.float64)
        # the largest float32 <= the ceiling: a float32 sample is at most the ceiling exactly
        # when it is at most this (compared in float32: no casting buffer)
        below = np.float32(self.ceiling)
        if below > self.ceiling:
            below = np.nextafter(below, np.float32(-np.inf))
        self._quiet_limit = np.array(below, np.float32)
        self._ceiling32 = np.array(self.ceiling, np.float32)
        self._minus_ceiling32 = np.array(-self.ceiling, np.float32)
        self._tiny = np.array(1e-30, np.float64)
        self._smallest64 = np.array(np.finfo(np.float64).tiny, np.float64)
        self._one64 = np.ones((), np.float64)
        self._carry64 = np.zeros((), np.float64)
        self._at = np.zeros((), np.intp)

    def reset(self) -> None:
        self._carry = 0.0

    def process(self, block: np.ndarray) -> np.ndarray:
        """block: (channels, n) float32, modified in place and returned. A contiguous block
        of a size seen before allocates nothing unless it holds NaN/Inf."""
        sized = self._sizes.get(block.shape[1])  # no int kept alive: each costs bytes
        if sized is None and block.shape[1] <= self._size:
            sized = self._sizes.keep(
                block.shape[1],
                _Sized(self.channels, block.shape[1], self._decay, self._carried_decay),
            )
        if sized is not None and block.flags.c_contiguous:
            self._process_whole(block, sized)
            return block
        for first in range(0, block.shape[1], self._size):
            self._process_piece(block[:, first : first + self._size])
        return block

    def _process_whole(self, block: np.ndarray, sized: _Sized) -> None:
        """block: (channels, n <= max_block) contiguous float32, in place, with the scratch
        of its size: a block under the ceiling costs one comparison and a count."""
        np.abs(block, out=sized.magnitude)
        np.less_equal(sized.magnitude, self._quiet_limit, out=sized.quiet)
        if np.count_nonzero(sized.quiet) == sized.size:
            if self._carry < _NEGLIGIBLE:
                self._carry = 0.0
                return
        elif np.count_nonzero(np.isfinite(block, out=sized.quiet)) != sized.size:
            self._process_piece(block)  # NaN/Inf: the allocating path
            return
        np.copyto(sized.peak, sized.rows[0])
        for row in sized.other_rows:
            np.maximum(sized.peak, row, out=sized.peak)
        self._limit(sized.peak, sized)
        for row in sized.gain_rows:
            np.copyto(row, sized.gain)
        block *= sized.gain_2d
        np.minimum(block, self._ceiling32, out=block)
        np.maximum(block, self._minus_ceiling32, out=block)

    def _process_piece(self, block: np.ndarray) -> None:
        """block: (channels, m <= max_block) float32 of any strides, in place (allocates)."""
        m = block.shape[1]
        magnitude, peak = self._magnitude[:, :m], self._peak[:m]
        np.abs(block, out=magnitude)
        np.max(magnitude, axis=0, out=peak)
        loudest = float(peak.max())
        if not math.isfinite(loudest):  # NaN propagates through max; Inf is Inf
            self._replace_nonfinite(block)
            np.abs(block, out=magnitude)
            np.max(magnitude, axis=0, out=peak)
            loudest = float(peak.max())
        if self._carry < _NEGLIGIBLE and loudest <= self.ceiling:
            self._carry = 0.0
            return
        sized = _Sized(self.channels, m, self._decay, self._carried_decay)
        self._limit(peak, sized)
        block *= sized.gain
        np.clip(block, -self.ceiling, self.ceiling, out=block)

    def _replace_nonfinite(self, block: np.ndarray) -> None:
        """NaN -> 0, +-Inf -> +-ceiling (rare: allocates)."""
        bad = ~np.isfinite(block)
        self.nonfinite_samples += int(np.count_nonzero(bad))
        np.nan_to_num(block, copy=False, nan=0.0, posinf=self.ceiling, neginf=-self.ceiling)

    def _limit(self, peak: np.ndarray, sized: _Sized) -> None:
        """peak (m,) -> sized.gain (m,), the limiter's gain; updates the carried reduction."""
        work, reduction, gain, decay = sized.work, sized.reduction, sized.gain, sized.decay
        # work = a[k] = 1 - min(1, ceiling / peak): the reduction each sample needs alone.
        # Every ufunc here has operands and output of one dtype: a float32 operand of a
        # float64 ufunc (or the reverse) would need a casting buffer, allocated per call;
        # copyto casts without one.
        np.copyto(work, peak)
        np.maximum(work, self._tiny, out=work)
        np.divide(self._ceiling64, work, out=work)
        np.minimum(work, self._one64, out=work)
        np.subtract(self._one64, work, out=work)
        # Samples that need no reduction (a = 0) take the smallest normal float64 instead,
        # whose log (-708) stays finite: no divide warning to silence (np.errstate, and a
        # warning, would allocate), and exp(-708 + ...) is 0 to float32 just as exp(-inf).
        np.maximum(work, self._smallest64, out=work)
        np.log(work, out=work)
        work -= decay
        np.maximum.accumulate(work, out=reduction)
        reduction += decay
        np.exp(reduction, out=reduction)
        if self._carry > 0.0:
            self._carry64.fill(self._carry)
            np.multiply(sized.carried_decay, self._carry64, out=work)
            np.maximum(reduction, work, out=reduction)
        last = reduction.item(reduction.shape[0] - 1)
        np.subtract(self._one64, reduction, out=reduction)
        np.copyto(gain, reduction, casting="same_kind")
        self._carry = last if last > _NEGLIGIBLE else 0.0
        self.limited_blocks += 1
        gain.argmin(None, self._at)
        smallest = max(gain.item(int(self._at)), 1e-9)
        self.max_reduction_db = max(self.max_reduction_db, -20.0 * math.log10(smallest))


class _Sized:
    """The guard's scratch for one block size m: |block|, masks, peak, the limiter's work."""

    def __init__(self, channels: int, m: int, decay: np.ndarray, carried_decay: np.ndarray):
        self.magnitude = np.zeros((channels, m), np.float32)
        self.quiet = np.zeros((channels, m), bool)
        self.size = channels * m
        self.rows = list(self.magnitude)
        self.other_rows = tuple(self.rows[1:])
        self.peak = np.zeros(m, np.float32)
        self.work, self.reduction = np.zeros(m, np.float64), np.zeros(m, np.float64)
        self.decay, self.carried_decay = decay[:m], carried_decay[:m]
        self.gain = np.zeros(m, np.float32)
        self.gain_2d = np.zeros((channels, m), np.float32)
        self.gain_rows = tuple(self.gain_2d)
