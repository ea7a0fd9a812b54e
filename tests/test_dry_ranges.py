"""The engine's record of what it did not separate: ``Separator.dry_ranges()`` (windows that
fell back) and ``lighter_ranges()`` (windows run a cheaper way), in output sample positions.

Outside the dry ranges the output must be what the engine gives with every window computed;
inside each one it must differ (a window's estimate is missing there)."""

from __future__ import annotations

import time
import tracemalloc

import numpy as np
import pytest

from stream_sep.engine import Separator
from stream_sep.engine.record import CAPACITY, DRY, LIGHTER, WindowRecord
from tests.helpers import FAST_OPTIONS, noise, stream

RATE = 16000


class FailsOn:
    """A real model whose calls numbered in ``calls`` (from 1) raise, or sleep ``sleep``
    seconds first when ``sleep`` is given (late rather than failed)."""

    def __init__(self, model, calls, sleep: float | None = None):
        self.model, self.contract = model, model.contract
        self.calls, self.sleep, self.count = set(calls), sleep, 0

    def separate(self, audio):
        self.count += 1
        if self.count in self.calls:
            if self.sleep is None:
                raise RuntimeError("injected failure")
            time.sleep(self.sleep)
        return self.model.separate(audio)


def outside(ranges, length: int) -> np.ndarray:
    """(length,) bool: True at the samples no range covers."""
    mask = np.ones(length, bool)
    for start, stop in ranges:
        mask[max(start, 0) : max(min(stop, length), 0)] = False
    return mask


def test_failed_windows_are_exactly_the_ranges_where_the_output_differs(half):
    audio = noise(2, 3 * RATE, seed=1)
    with Separator(half, RATE, 2, blocking=True, **FAST_OPTIONS) as clean:
        expected = stream(clean, audio, 333)
        assert clean.dry_ranges() == [] and clean.unrecorded_windows == 0
    failing = FailsOn(half, calls={5, 6, 14})  # windows 5, 6 (adjacent) and 14
    with Separator(failing, RATE, 2, blocking=True, **FAST_OPTIONS) as engine:
        out = stream(engine, audio, 333)
        ranges = engine.dry_ranges()
        hop, support = engine.hop_samples, engine.support_samples
        compute = engine.compute_samples
    assert engine.stats.model_failures == 3 and engine.lighter_ranges() == []
    # window k meets output samples [k hop + compute, k hop + compute + support)
    assert ranges == [
        (5 * hop + compute, 6 * hop + compute + support),
        (14 * hop + compute, 14 * hop + compute + support),
    ]
    same = outside(ranges, audio.shape[1])
    np.testing.assert_array_equal(out[:, same], expected[:, same])
    for start, stop in ranges:  # each range holds samples the missing estimate changed
        assert np.abs(out[:, start:stop] - expected[:, start:stop]).max() > 1e-3
    # the range is tight: it starts and ends where the window's crossfade weight does
    assert np.abs(out[:, ranges[1][0] + 1] - expected[:, ranges[1][0] + 1]).max() > 0
    assert np.abs(out[:, ranges[1][1] - 2] - expected[:, ranges[1][1] - 2]).max() > 0


def test_late_windows_on_the_worker_are_recorded_and_the_rest_is_the_inline_output(half):
    audio = noise(1, 3 * RATE, seed=2)
    with Separator(half, RATE, 1, blocking=True, **FAST_OPTIONS) as clean:
        expected = stream(clean, audio, 160)
    slow = FailsOn(half, calls={8}, sleep=0.5)  # five hops late: windows after it wait too
    out = np.zeros_like(audio)
    with Separator(slow, RATE, 1, blocking=False, **FAST_OPTIONS) as engine:
        started, block = time.monotonic(), 160
        for first in range(0, audio.shape[1], block):
            out[:, first : first + block] = engine.process(audio[:, first : first + block])
            ahead = (first + block) / RATE - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
        ranges, stats = engine.dry_ranges(), engine.stats
    assert stats.deadline_misses + stats.windows_skipped >= 1 and ranges
    assert stats.fallback_windows == len(engine._scheduler.record.windows(DRY))
    same = outside(ranges, audio.shape[1])
    assert same.mean() > 0.3
    np.testing.assert_array_equal(out[:, same], expected[:, same])
    for start, stop in ranges:
        stop = min(stop, audio.shape[1])
        if start < stop:
            assert np.abs(out[:, start:stop] - expected[:, start:stop]).max() > 1e-3


def test_windows_run_a_cheaper_way_are_lighter_ranges(half):
    """A stereo stream put on the mid channel at its start: the windows it runs that way
    (until it finds itself calm and steps back up) are lighter, none dry."""
    audio = noise(2, RATE, seed=3)
    with Separator(half, RATE, 2, blocking=False, shed=True, **FAST_OPTIONS) as engine:
        engine.shedding.step = len(engine.shedding.ladder) - 1  # the cheapest way
        assert engine.shedding.on_mid
        for first in range(0, audio.shape[1], 1600):
            engine.process(audio[:, first : first + 1600])
            time.sleep(0.05)
        windows = engine._scheduler.record.windows(LIGHTER)
        lighter, hop = engine.lighter_ranges(), engine.hop_samples
        mid_windows = engine.shedding.mid_windows
    assert mid_windows >= 1 and windows.tolist() == list(range(1, mid_windows + 1))
    start = hop + engine.compute_samples
    assert lighter == [(start, mid_windows * hop + engine.compute_samples + engine.support_samples)]
    assert len(engine._scheduler.record.windows(DRY)) == engine.stats.fallback_windows


def test_the_record_is_bounded_counts_what_it_drops_and_notes_without_allocating():
    record = WindowRecord()
    for window in range(1, 6):
        record.note(float(window), DRY)
    tracemalloc.start()
    try:
        for window in range(6, CAPACITY + 100):
            record.note(float(window), DRY)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 200  # the loop's own counter; the record itself allocates nothing
    assert record.dropped == CAPACITY + 100 - 1 - CAPACITY
    assert record.windows(DRY).tolist() == list(range(1, CAPACITY + 1))
    assert record.ranges(DRY, 10, 3, 15) == [(13, CAPACITY * 10 + 18)]
    record.clear()
    assert record.dropped == 0 and record.ranges(DRY, 10, 3, 15) == []
    with pytest.raises(ValueError, match="capacity must be in 1..256"):
        WindowRecord(CAPACITY + 1)
