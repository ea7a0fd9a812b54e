"""The engine's input history: a preallocated ring addressed by absolute sample index."""

from __future__ import annotations

import numpy as np

from stream_sep.dsp.scratch import FlatIndex, SizeCache


class _Sized:
    """Scratch of one block size n: the block as stored, its finite mask, its ring index."""

    def __init__(self, channels: int, capacity: int, n: int):
        self.block = np.zeros((channels, n), np.float32)
        self.finite = np.zeros((channels, n), bool)
        self.index = FlatIndex(channels, capacity, n, wrap=True)
        self.size = channels * n


class DelayRing:
    """(channels, capacity) float32 history of the input stream.

    Samples are written and read by their absolute index in the stream; reads of indices
    below zero give silence (the ring starts zeroed). Writes replace NaN/Inf by silence.
    Blocks of any size; after the first block of a size, a write or read of that size
    allocates nothing (whole-array ``put``/``take`` through a :class:`FlatIndex`).
    """

    def __init__(self, channels: int, capacity: int):
        self.capacity, self.channels = capacity, channels
        self._ring = np.zeros((channels, capacity), np.float32)
        self._flat = self._ring.reshape(-1)
        self._sizes = SizeCache()

    def clear(self) -> None:
        self._ring.fill(0.0)

    def write(self, block: np.ndarray, start: int) -> int:
        """Store block (C, n <= capacity) at stream samples [start, start + n); returns how
        many non-finite samples were replaced by silence."""
        sized = self._sized(block.shape[1])
        np.copyto(sized.block, block)
        np.isfinite(sized.block, out=sized.finite)
        bad = 0
        if np.count_nonzero(sized.finite) != sized.size:  # rare: allocates
            bad = sized.size - np.count_nonzero(sized.finite)
            sized.block[~sized.finite] = 0.0
        self._ring.put(sized.index.at(start), sized.block, "clip")
        return bad

    def read(self, start: int, out: np.ndarray) -> None:
        """Copy stream samples [start, start + n) into out (C, n <= capacity), contiguous."""
        self._flat.take(self._sized(out.shape[1]).index.at(start), 0, out, "clip")

    def _sized(self, n: int) -> _Sized:
        sized = self._sizes.get(n)
        if sized is None:
            sized = self._sizes.keep(n, _Sized(self.channels, self.capacity, n))
        return sized
