"""Scratch for the audio thread, made once per block size.

Slicing an array makes a view object, and numpy allocates a buffer for a broadcast operand, a
reduction or a Python scalar operand: the audio thread does none of that. Each stage keeps a
:class:`SizeCache` of scratch objects for the few block sizes a stream uses (the first block
of a size builds its scratch; a stream of many different sizes gets fresh, uncached scratch
beyond :data:`MAX_SIZES`), works on whole ``(channels, n)`` arrays, and reads or writes
arbitrary positions of a ring through :class:`FlatIndex` with ``take``/``put`` instead of
slices. tests/test_realtime_alloc.py measures the audio thread's paths at tracemalloc's floor.
"""

from __future__ import annotations

import numpy as np

MAX_SIZES = 4  # block sizes whose scratch is kept


class SizeCache:
    """Scratch objects by block size: ``get(n)`` returns the cached one or None; ``keep``
    stores a new one while there is room."""

    def __init__(self):
        self._entries: dict[int, object] = {}

    def get(self, n: int):
        return self._entries.get(n)

    def keep(self, n: int, entry):
        if len(self._entries) < MAX_SIZES:
            self._entries[n] = entry
        return entry


class FlatIndex:
    """Flat indices of ``n`` consecutive samples in every row of a ``(channels, stride)``
    array, starting at a column given per call: ``at(start)`` -> (channels, n) intp, for
    ``flat.take(index, 0, out, 'clip')`` and ``array.put(index, values, 'clip')`` (``flat``: the
    array's 1-D view, made once: ``take`` on the 2-D array would make one per call).

    wrap: the column is taken modulo ``stride`` (a ring); otherwise ``offset`` is added to
    it (a zero-padded array read from before its first column). ``rows``: 0 to index a 1-D
    array (every row of the result reads the same samples)."""

    def __init__(self, channels: int, stride: int, n: int, wrap: bool, offset: int = 0, rows=1):
        columns = np.arange(n, dtype=np.intp) + (0 if wrap else offset)
        self._columns = np.ascontiguousarray(np.broadcast_to(columns, (channels, n)))
        row_starts = np.arange(channels, dtype=np.intp)[:, None] * (stride * rows)
        self._rows = np.ascontiguousarray(np.broadcast_to(row_starts, (channels, n)))
        self._stride = np.array(stride, np.intp)
        self._start = np.zeros((), np.intp)
        self._wrap = wrap
        self.index = np.zeros((channels, n), np.intp)

    def at_same(self, other: FlatIndex) -> np.ndarray:
        """The indices for the start ``other`` was last given (no Python integer made)."""
        np.add(self._columns, other._start, out=self.index)
        if self._wrap:
            np.remainder(self.index, self._stride, out=self.index)
        np.add(self.index, self._rows, out=self.index)
        return self.index

    def at(self, start: int) -> np.ndarray:
        self._start.fill(start)
        np.add(self._columns, self._start, out=self.index)
        if self._wrap:
            np.remainder(self.index, self._stride, out=self.index)
        np.add(self.index, self._rows, out=self.index)
        return self.index
