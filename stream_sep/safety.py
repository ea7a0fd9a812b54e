"""Hearing safety: the last stage before any output. Nothing above the ceiling, no NaN/Inf.

:class:`OutputGuard` is a peak limiter with instant attack and exponential release, applied
per sample across channels (the same gain on every channel keeps the stereo image), then a
hard clip at the ceiling as a last resort and a NaN/Inf guard. Below the ceiling it leaves the
signal untouched (gain exactly 1), so it costs one peak test per block in normal use.

The release recursion ``u[n] = max(1 - r[n], beta * u[n-1])`` (``u`` = gain reduction,
``r`` = the gain that would just reach the ceiling) is evaluated without a Python loop: in the
log domain it is a running maximum, ``log u[n] = n log beta + max_k(log a[k] - k log beta)``.
"""

from __future__ import annotations

import math

import numpy as np

DEFAULT_CEILING_DB = -1.0
RELEASE_SECONDS = 0.1
_NEGLIGIBLE = 1e-7


def db_to_gain(db: float) -> float:
    return 10.0 ** (db / 20.0)


class OutputGuard:
    """Limit (channels, n) float32 blocks in place to ``ceiling_db`` dBFS."""

    def __init__(self, channels: int, sample_rate: int, ceiling_db: float = DEFAULT_CEILING_DB):
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

    def reset(self) -> None:
        self._carry = 0.0

    def process(self, block: np.ndarray) -> np.ndarray:
        """block: (channels, n) float32, modified in place and returned."""
        n = block.shape[1]
        if n == 0:
            return block
        if not np.isfinite(block).all():
            self.nonfinite_samples += int(block.size - np.count_nonzero(np.isfinite(block)))
            np.nan_to_num(block, copy=False, nan=0.0, posinf=self.ceiling, neginf=-self.ceiling)
        peak = np.abs(block).max(axis=0)  # (n,)
        if self._carry < _NEGLIGIBLE and float(peak.max()) <= self.ceiling:
            self._carry = 0.0
            return block
        self._limit(block, peak)
        np.clip(block, -self.ceiling, self.ceiling, out=block)
        return block

    def _limit(self, block: np.ndarray, peak: np.ndarray) -> None:
        n = block.shape[1]
        with np.errstate(divide="ignore"):
            needed = 1.0 - np.minimum(1.0, self.ceiling / np.maximum(peak, 1e-30))  # a[k]
            index = np.arange(n, dtype=np.float64)
            running = np.maximum.accumulate(np.log(needed) - index * self._log_beta)
        reduction = np.exp(running + index * self._log_beta)
        if self._carry > 0.0:
            carried = self._carry * np.exp((index + 1.0) * self._log_beta)
            np.maximum(reduction, carried, out=reduction)
        gain = (1.0 - reduction).astype(np.float32)
        block *= gain
        self._carry = float(reduction[-1]) if reduction[-1] > _NEGLIGIBLE else 0.0
        self.limited_blocks += 1
        self.max_reduction_db = max(
            self.max_reduction_db, -20.0 * math.log10(max(gain.min(), 1e-9))
        )
