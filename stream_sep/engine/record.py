"""Which windows did not give the configured estimate, and the output samples they touch.

A window that falls back (late, failed, skipped or dropped while shedding) leaves the output
over its support dry, or fading between dry and separated where a neighbour arrived; a window
run a cheaper way while shedding (mid channel, no denoise pass) is separated, but not as
configured. The audio thread notes each such window in arrays made up front; the ranges of
output samples are worked out when asked (:meth:`WindowRecord.ranges`), on the caller's
thread. Everywhere outside them the stream's output is what the engine gives with every
window computed inline.
"""

from __future__ import annotations

import numpy as np

# Entries kept; more are only counted. At most 256, so that the count stays among the small
# integers Python keeps (counting allocates nothing on the audio thread).
CAPACITY = 256
DRY, LIGHTER = 1, 2


class WindowRecord:
    """Window indices noted with a kind (:data:`DRY` or :data:`LIGHTER`), at most
    ``capacity`` of them; :attr:`dropped` counts those beyond."""

    def __init__(self, capacity: int = CAPACITY):
        if not 0 < capacity <= CAPACITY:
            raise ValueError(f"capacity must be in 1..{CAPACITY}, got {capacity}")
        self._windows = np.zeros(capacity, np.float64)  # window indices (floats: see note)
        self._kinds = np.zeros(capacity, np.int8)
        self._count = 0
        self._dropped = 0.0  # a float: Python reuses float objects, a large int is new

    @property
    def dropped(self) -> int:
        """Windows noted after the record was full (their ranges are not known)."""
        return int(self._dropped)

    def note(self, window, kind: int) -> None:
        """Window ``window`` (an int, or a float holding one) gave no configured estimate.
        Allocates nothing: it writes into the arrays made at construction."""
        count = self._count
        if count == self._windows.size:
            self._dropped += 1.0
            return
        self._windows[count] = window
        self._kinds[count] = kind
        self._count = count + 1  # written last: a reader sees whole entries only

    def clear(self) -> None:
        """Forget every entry (the stream's sample positions start again)."""
        self._count, self._dropped = 0, 0.0

    def windows(self, kind: int) -> np.ndarray:
        """(k,) int64: the distinct windows noted with ``kind``, ascending."""
        count = self._count
        chosen = self._windows[:count][self._kinds[:count] == kind]
        return np.unique(chosen.astype(np.int64))

    def ranges(self, kind: int, hop: int, offset: int, support: int) -> list[tuple[int, int]]:
        """[(start, stop), ...]: the output samples ``start <= j < stop`` met by the windows
        noted with ``kind``, merged where they touch or overlap, ascending. Window k meets
        output samples ``k * hop + offset`` to ``k * hop + offset + support - 1``."""
        merged: list[tuple[int, int]] = []
        for window in self.windows(kind).tolist():
            start = window * hop + offset
            stop = start + support
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], stop))
            else:
                merged.append((start, stop))
        return merged
