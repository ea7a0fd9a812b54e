"""The engine's sample timeline: input into the delay ring, windows out to the scheduler at
every window end, estimates and the delayed dry signal into the mixer."""

from __future__ import annotations

import numpy as np

from stream_sep.dsp.scratch import FlatIndex, SizeCache
from stream_sep.engine.delay import DelayRing
from stream_sep.engine.health import EngineStats
from stream_sep.engine.mixer import Mixer
from stream_sep.engine.plan import WindowPlan
from stream_sep.engine.scheduler import Scheduler


class _Sized:
    """Scratch of one block size n (<= hop): (C, n) vocals, coverage, dry, mix (with stems:
    (2C, n), the music then the vocals) and the estimate/weight pieces taken from
    zero-padded slots (see :class:`Timeline`)."""

    def __init__(
        self, channels: int, n: int, padded_support: int, pad: int, compute: int, stems: bool
    ):
        shape = (channels, n)
        self.vocals, self.coverage = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
        self.dry, self.mixed = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
        if stems:  # (2C, n): the music, then the vocals; the output in place of ``mixed``
            self.mixed = np.zeros((2 * channels, n), np.float32)
            self.halves = (self.mixed[:channels], self.mixed[channels:])
        self.piece, self.weights = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
        self.estimate_index = FlatIndex(channels, padded_support, n, wrap=False, offset=pad)
        self.weight_index = FlatIndex(channels, padded_support, n, wrap=False, offset=pad, rows=0)
        self.n = n
        self.last_from_start = n - 1 - compute


class Timeline:
    """Walks the stream a block at a time (longer blocks in pieces of one hop), with scratch
    of each block size made once: the audio thread only copies.

    Every block is written to the delay ring whole, the windows ending in it are submitted
    in order, then its output is mixed whole: the same samples as cutting it at the window
    ends, since a window reads only input before its end and the mixer's gains and the guard
    follow the absolute sample index. A slot's estimate sits inside zeros of one hop on each
    side (``Slot.padded``), so the piece of it that meets a block is one ``take`` of n
    samples, zeros where the support does not reach.
    """

    def __init__(
        self,
        plan: WindowPlan,
        channels: int,
        scheduler: Scheduler,
        mixer: Mixer,
        stats: EngineStats,
        stems: bool = False,
    ):
        self.plan, self.scheduler, self.mixer, self.stats = plan, scheduler, mixer, stats
        self.channels = channels
        self.stems = stems  # the output is (2C, n): the music, then the vocals
        hop = plan.hop_samples
        capacity = plan.window_samples + plan.latency_samples + 2 * hop
        self.ring = DelayRing(channels, capacity)
        self._pad = scheduler.pad
        self._padded_support = plan.support_samples + 2 * self._pad
        weights = np.zeros(self._padded_support, np.float32)
        weights[self._pad : self._pad + plan.support_samples] = plan.crossfade_weights()
        self._weights = weights
        self._sizes = SizeCache()
        self.ring.read(0, np.zeros((channels, plan.window_samples), np.float32))  # its scratch
        self.position = 0  # input samples received so far (= output samples emitted)

    def process(self, block: np.ndarray, out: np.ndarray) -> np.ndarray:
        """block (C, n) -> the output for the same n sample times, (C, n), or (2C, n) with
        stems: written into ``out`` for a block longer than a hop, else returned in the
        scratch (copy it out)."""
        if self.mixer.pending:
            self.mixer.apply_requests(self.position)
        if block.shape[1] <= self.plan.hop_samples:  # (no block size kept alive: see _block)
            return self._block(block, self._sized(block.shape[1]))
        total, hop = block.shape[1], self.plan.hop_samples
        for first in range(0, total, hop):  # longer blocks: pieces of one hop (allocates)
            piece = block[:, first : first + hop]
            out[:, first : first + hop] = self._block(piece, self._sized(piece.shape[1]))
        return out

    def reset(self) -> None:
        self.ring.clear()
        self.position = 0

    def _sized(self, n: int) -> _Sized:
        sized = self._sizes.get(n)
        if sized is None:
            sized = _Sized(
                self.channels,
                n,
                self._padded_support,
                self._pad,
                self.plan.compute_samples,
                self.stems,
            )
            self._sizes.keep(n, sized)
        return sized

    def _block(self, block: np.ndarray, sized: _Sized) -> np.ndarray:
        """block (C, n <= hop) -> sized.mixed, the output for the same samples (the mix, or
        with stems the music and the vocals)."""
        start = self.position  # advanced last: one integer alive at a time
        self.stats.nonfinite_input_samples += self.ring.write(block, start)
        # Sample arithmetic in floats (exact below 2**53): Python reuses float objects,
        # while every integer above 256 is a new allocation.
        here, hop = float(start), self.plan.hop_samples
        window = here // hop + 1.0
        while window * hop <= here + sized.n:  # the windows that end in this block, in order
            self._submit(window)
            window += 1.0
        sized.vocals.fill(0.0)
        sized.coverage.fill(0.0)
        self._gather_estimates(here, sized)
        self.ring.read(start - self.plan.latency_samples, sized.dry)
        if self.stems:
            self.mixer.split(start, sized.dry, sized.vocals, sized.mixed, sized.halves)
        else:
            self.mixer.mix(start, sized.dry, sized.vocals, sized.coverage, sized.mixed)
        self.position += sized.n
        return sized.mixed

    def _submit(self, window: float) -> None:
        slot = self.scheduler.claim(window)
        if slot is not None:
            self.ring.read(window * self.plan.hop_samples - self.plan.window_samples, slot.audio)
            self.scheduler.start(slot)

    def _gather_estimates(self, here: float, sized: _Sized) -> None:
        """Add the weighted estimates of every used window whose support meets output
        samples [here, here + n) (``here``: the block's first sample, as a float): output j
        uses windows with e_k in (j - S - D, j - D], and then always meets some of that
        support, at offset j - e_k - D in it."""
        plan, hop, compute = self.plan, self.plan.hop_samples, self.plan.compute_samples
        window = max(1.0, -((compute + plan.support_samples - 1 - here) // hop))
        while window * hop <= here + sized.last_from_start:
            slot = self.scheduler.decide(window)
            if slot is not None:
                index = sized.estimate_index.at(here - window * hop - compute)
                slot.padded_flat.take(index, 0, sized.piece, "clip")
                sized.vocals += sized.piece
                self._weights.take(
                    sized.weight_index.at_same(sized.estimate_index), 0, sized.weights, "clip"
                )
                sized.coverage += sized.weights
            window += 1.0
