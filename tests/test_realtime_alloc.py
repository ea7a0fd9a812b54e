"""The audio thread allocates nothing per block, measured with tracemalloc.

Each block is measured the way a per-block loop does it: ``tracemalloc.reset_peak()``, then
``before`` = the traced memory, the call, then the peak minus ``before``. That number is not
zero even for an empty function (the two integers ``get_traced_memory`` returns are traced),
so every test first measures an empty call with the same loop in the same test (the floor) and
requires every block to stay at or under it. (The loop rebinds ``before``: a helper function
with a fresh ``before`` per call gives the same floor for an empty call but leaves 32 bytes
less room, and shows single temporary integers that this loop does not.)

The engine runs threaded (``blocking=False``), as live, and each block is measured with the
worker asleep (``Scheduler.idle``): tracemalloc counts every thread, and the worker allocates
while it separates a window. A block that hands a window over wakes the worker at its very
end; on a loaded machine the audio thread can then be preempted for longer than CPython's
switch interval (5 ms), and the waiting worker is given the interpreter and allocates inside
the measured call: the worker's bytes, not the audio thread's. So the measured calls run
with a long switch interval (:func:`_measured_thread_keeps_the_interpreter`); the worker
still runs between the blocks, while the loop waits for it to go idle.
"""

from __future__ import annotations

import contextlib
import sys
import time
import tracemalloc

import numpy as np
import pytest

import stream_sep
from stream_sep.dsp.safety import OutputGuard
from stream_sep.engine.delay import DelayRing
from stream_sep.engine.mixer import Mixer

RATE, CHANNELS, BLOCK = 48000, 2, 1024
WARM_UP_BLOCKS = 10  # the measured blocks include the start's fade-in
MEASURED_BLOCKS = 60  # more than two hops of 24000 samples: hand-overs and first uses


def _empty(block, out) -> None:
    pass


def _floor(block: np.ndarray, out: np.ndarray) -> int:
    """The loop's bytes around an empty call: the most any measured call may show."""
    measured = []
    before = tracemalloc.get_traced_memory()[0]  # bound, as in every later round of the loop
    for _ in range(50):
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        _empty(block, out)
        measured.append(tracemalloc.get_traced_memory()[1] - before)
    return max(measured)


@pytest.fixture(scope="module")
def model():
    return stream_sep.load_model()


@pytest.fixture()
def traced():
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()


def _music(blocks: int, gain: float = 0.1, seed: int = 0) -> np.ndarray:
    """(blocks, C, BLOCK) float32 noise; gain 0.1: -20 dBFS, under the guard's ceiling."""
    rng = np.random.default_rng(seed)
    return (gain * rng.standard_normal((blocks, CHANNELS, BLOCK))).astype(np.float32)


def _wait_idle(engine, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not engine._scheduler.idle:
        assert time.monotonic() < deadline, "the worker did not go idle"
        time.sleep(0.001)


@contextlib.contextmanager
def _measured_thread_keeps_the_interpreter():
    """No other thread takes the interpreter from this one unless it blocks (sleeps, waits)."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(30.0)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)


def _measure_engine(engine, blocks: np.ndarray, requests=None) -> tuple[list[int], int]:
    """(bytes per engine.process(block, out) call after the warm-up, the floor).

    requests: {measured block number: function}, called (from this thread, outside the
    measurement) before that block, as a control thread would ask between two blocks."""
    requests = requests or {}
    out = np.zeros((CHANNELS, BLOCK), np.float32)
    for block in blocks[:WARM_UP_BLOCKS]:
        engine.process(block, out)
    floor = _floor(blocks[0], out)
    measured = []
    before = tracemalloc.get_traced_memory()[0]  # bound, as in every later round of the loop
    with _measured_thread_keeps_the_interpreter():
        for index in range(WARM_UP_BLOCKS, len(blocks)):
            block = blocks[index]
            if index - WARM_UP_BLOCKS in requests:
                requests[index - WARM_UP_BLOCKS]()
            _wait_idle(engine)
            tracemalloc.reset_peak()
            before = tracemalloc.get_traced_memory()[0]
            engine.process(block, out)
            measured.append(tracemalloc.get_traced_memory()[1] - before)
            assert np.isfinite(out).all() and np.abs(out).max() <= 1.0
    return measured, floor


def _over(measured: list[int], floor: int) -> dict[int, int]:
    """{block number: bytes} of the blocks above the floor."""
    return {index: value for index, value in enumerate(measured) if value > floor}


@pytest.mark.parametrize("mode", ["karaoke", "vocals", "bypass"])
def test_engine_block_allocates_nothing(model, traced, mode):
    engine = stream_sep.Separator(model, RATE, CHANNELS, mode=mode, blocking=False)
    try:
        measured, floor = _measure_engine(engine, _music(WARM_UP_BLOCKS + MEASURED_BLOCKS))
    finally:
        engine.close()
    assert engine.stats.windows_run >= 2  # windows were handed over and used meanwhile
    assert not _over(measured, floor), (floor, _over(measured, floor))


def test_level_ramps_mode_switches_and_fades_allocate_nothing(model, traced):
    """The blocks that apply a request (the stream's first level change included: numpy's
    first use of a ufunc loop in a process allocates) and those that ramp after it: level 0.5,
    vocals, bypass, level 1.5 and 1.0 one block later (from the middle of a ramp), a fade-out
    and another one from the middle of it, a fade back in."""
    engine = stream_sep.Separator(model, RATE, CHANNELS, blocking=False)
    requests = {5: lambda: engine.set_vocal_level(0.5), 12: lambda: engine.set_mode("vocals"),
                20: lambda: engine.set_mode("bypass"), 30: lambda: engine.set_vocal_level(1.5),
                31: lambda: engine.set_vocal_level(1.0), 40: lambda: engine.fade_out(0.1),
                41: lambda: engine.fade_out(0.5), 50: lambda: engine.fade_back_in(0.1)}  # fmt: skip
    try:
        measured, floor = _measure_engine(
            engine, _music(WARM_UP_BLOCKS + MEASURED_BLOCKS), requests
        )
    finally:
        engine.close()
    assert (engine.mode, engine.vocal_level) == ("karaoke", 1.0)
    assert engine.stats.windows_run >= 2
    assert not _over(measured, floor), (floor, _over(measured, floor))


def test_key_mode_blocks_allocate_nothing(model, traced):
    """--key: the mixer's output through Rubber Band (its C API, arguments made once) at +2,
    then key changes +2 -> -3 (the running shifter's pitch), -3 -> 0 (to the delay line) and
    0 -> +5 (the shifter restarted and primed), each a crossfade, measured block by block."""
    engine = stream_sep.Separator(model, RATE, CHANNELS, key=2, blocking=False)
    requests = {12: lambda: engine.set_key(-3), 24: lambda: engine.set_key(0),
                36: lambda: engine.set_key(5)}  # fmt: skip
    try:
        measured, floor = _measure_engine(
            engine, _music(WARM_UP_BLOCKS + MEASURED_BLOCKS), requests
        )
    finally:
        engine.close()
    shifter = engine.key_shift
    assert engine.key == shifter.key == 5 and shifter.underruns == 0
    assert shifter.shifted_samples >= 40 * BLOCK  # the shifter ran on most measured blocks
    assert engine.stats.windows_run >= 2
    assert not _over(measured, floor), (floor, _over(measured, floor))


def test_loud_blocks_through_the_limiter_allocate_nothing(traced):
    """Mixer, ring and guard alone on blocks ~ +6 dBFS, which the limiter reduces (no vocal
    estimate: the output is the dry block)."""
    guard = OutputGuard(CHANNELS, RATE, max_block=4800)
    mixer = Mixer(CHANNELS, 2400, 0, 2400, guard)
    ring = DelayRing(CHANNELS, 48000)
    dry, vocals = np.zeros((CHANNELS, BLOCK), np.float32), np.zeros((CHANNELS, BLOCK), np.float32)
    coverage, out = np.ones((CHANNELS, BLOCK), np.float32), np.zeros((CHANNELS, BLOCK), np.float32)
    blocks = _music(40, gain=2.0)
    for index in range(6):  # warm-up: scratch of this size; the first two limited blocks
        # of a guard allocate once (320 and 72 bytes measured), later ones nothing
        ring.write(blocks[index], index * BLOCK)
        ring.read(index * BLOCK - 5000, dry)
        mixer.mix(index * BLOCK, dry, vocals, coverage, out)
    floor = _floor(dry, out)
    measured = []
    before = tracemalloc.get_traced_memory()[0]  # bound, as in every later round of the loop
    for index in range(6, len(blocks)):
        start = index * BLOCK
        ring.write(blocks[index], start)
        ring.read(start - 5000, dry)
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        mixer.mix(start, dry, vocals, coverage, out)
        measured.append(tracemalloc.get_traced_memory()[1] - before)
        assert np.abs(out).max() <= guard.ceiling
    assert guard.limited_blocks >= 30
    assert not _over(measured, floor), (floor, _over(measured, floor))
