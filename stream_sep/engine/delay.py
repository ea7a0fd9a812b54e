"""The engine's input history: a preallocated ring addressed by absolute sample index."""

from __future__ import annotations

import numpy as np


class DelayRing:
    """(channels, capacity) float32 history of the input stream.

    Samples are written and read by their absolute index in the stream; reads of indices
    below zero give silence (the ring starts zeroed). Writes replace NaN/Inf by silence.
    ``max_block`` is the largest block :meth:`write` receives (its scratch is preallocated).
    """

    def __init__(self, channels: int, capacity: int, max_block: int):
        self.capacity = capacity
        self._ring = np.zeros((channels, capacity), np.float32)
        self._finite = np.zeros((channels, max_block), bool)

    def clear(self) -> None:
        self._ring.fill(0.0)

    def write(self, block: np.ndarray, start: int) -> int:
        """Store block (C, n) at stream samples [start, start + n); returns how many
        non-finite samples were replaced by silence."""
        n = block.shape[1]
        first = start % self.capacity
        head = min(n, self.capacity - first)
        self._ring[:, first : first + head] = block[:, :head]
        self._ring[:, : n - head] = block[:, head:]
        bad = self._sanitize(first, head)
        if n > head:
            bad += self._sanitize(0, n - head)
        return bad

    def read(self, start: int, out: np.ndarray) -> None:
        """Copy stream samples [start, start + n) into out (C, n)."""
        n = out.shape[1]
        first = start % self.capacity
        head = min(n, self.capacity - first)
        out[:, :head] = self._ring[:, first : first + head]
        out[:, head:] = self._ring[:, : n - head]

    def _sanitize(self, first: int, n: int) -> int:
        stored = self._ring[:, first : first + n]
        finite = self._finite[:, :n]
        np.isfinite(stored, out=finite)
        bad = finite.size - int(np.count_nonzero(finite))  # no reduction iterator, unlike all()
        if not bad:
            return 0
        np.invert(finite, out=finite)
        stored[finite] = 0.0
        return bad
