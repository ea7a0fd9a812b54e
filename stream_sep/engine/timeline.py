"""The engine's sample timeline: input into the delay ring, windows out to the scheduler at
every window end, estimates and the delayed dry signal into the mixer."""

from __future__ import annotations

import numpy as np

from stream_sep.engine.delay import DelayRing
from stream_sep.engine.health import EngineStats
from stream_sep.engine.mixer import Mixer
from stream_sep.engine.plan import WindowPlan
from stream_sep.engine.scheduler import Scheduler


class Timeline:
    """Walks the stream in chunks that never cross a window end (at most one hop), with
    scratch buffers of one hop allocated once: the audio thread only copies."""

    def __init__(
        self,
        plan: WindowPlan,
        channels: int,
        scheduler: Scheduler,
        mixer: Mixer,
        stats: EngineStats,
    ):
        self.plan, self.scheduler, self.mixer, self.stats = plan, scheduler, mixer, stats
        chunk = plan.hop_samples
        capacity = plan.window_samples + plan.latency_samples + 2 * chunk
        self.ring = DelayRing(channels, capacity, chunk)
        self._vocals = np.zeros((channels, chunk), np.float32)
        self._dry = np.zeros((channels, chunk), np.float32)
        self._coverage = np.zeros(chunk, np.float32)
        self._weights = plan.crossfade_weights()
        self.position = 0  # input samples received so far (= output samples emitted)

    def process(self, block: np.ndarray, out: np.ndarray) -> None:
        """block (C, n) -> out (C, n), the output for the same n sample times."""
        if self.mixer.pending:
            self.mixer.apply_requests(self.position)
        done, total, hop = 0, block.shape[1], self.plan.hop_samples
        while done < total:
            size = min(total - done, hop - self.position % hop)
            self._chunk(block[:, done : done + size], out[:, done : done + size])
            done += size

    def reset(self) -> None:
        self.ring.clear()
        self.position = 0

    def _chunk(self, block: np.ndarray, out: np.ndarray) -> None:
        """Handle ``n <= hop`` samples that do not cross a window end."""
        start, hop = self.position, self.plan.hop_samples
        self.stats.nonfinite_input_samples += self.ring.write(block, start)
        self.position = start + block.shape[1]
        if self.position % hop == 0:
            self._submit(self.position // hop)
        self._mix_output(start, out)

    def _submit(self, window_index: int) -> None:
        slot = self.scheduler.claim(window_index)
        if slot is not None:
            end = window_index * self.plan.hop_samples
            self.ring.read(end - self.plan.window_samples, slot.audio)
            self.scheduler.start(slot)

    def _mix_output(self, start: int, out: np.ndarray) -> None:
        """Fill out (C, n) for output samples [start, start + n)."""
        n = out.shape[1]
        vocals, coverage, dry = self._vocals[:, :n], self._coverage[:n], self._dry[:, :n]
        vocals.fill(0.0)
        coverage.fill(0.0)
        self._gather_estimates(start, n, vocals, coverage)
        self.ring.read(start - self.plan.latency_samples, dry)
        self.mixer.mix(start, dry, vocals, coverage, out)

    def _gather_estimates(self, start: int, n: int, vocals: np.ndarray, coverage: np.ndarray):
        """Add the weighted estimates of every used window whose support meets output
        samples [start, start + n)."""
        plan, support = self.plan, self.plan.support_samples
        for window_index in plan.windows_meeting(start, n):
            slot = self.scheduler.decide(window_index)
            if slot is None:
                continue
            offset = start - plan.latency_samples - plan.support_first(window_index)
            first, last = max(0, offset), min(support, offset + n)
            if first < last:
                vocals[:, first - offset : last - offset] += slot.estimate[:, first:last]
                coverage[first - offset : last - offset] += self._weights[first:last]
