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

The live callbacks are measured the same way, on the objects the live session builds, called
as sounddevice calls them. Their other threads, the microphone room's and the recording's
writer, are woken like the model's worker, by a lock the callback releases last in the
block (never by a timer), and the loop waits for them too between blocks (:func:`_settle`).
The loop's own code around a measured call makes no object either (a list index, not an
array index, which would make a view; an index loop, not a ``for`` loop's iterator).
"""

from __future__ import annotations

import contextlib
import sys
import time
import tracemalloc

import numpy as np
import pytest
import sounddevice as sd
import soundfile as sf

import stream_sep
from stream_sep import engine as engine_module
from stream_sep.dsp.safety import OutputGuard
from stream_sep.engine.delay import DelayRing
from stream_sep.engine.mixer import Mixer
from stream_sep.live.audio import BlockProcessor, FileSource
from stream_sep.live.mic import MicMix
from stream_sep.live.recording import Recorder

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


def _music(blocks: int, gain: float = 0.1, seed: int = 0, block: int = BLOCK) -> np.ndarray:
    """(blocks, C, block) float32 noise; gain 0.1: -20 dBFS, under the guard's ceiling."""
    rng = np.random.default_rng(seed)
    return (gain * rng.standard_normal((blocks, CHANNELS, block))).astype(np.float32)


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
    out = np.zeros(blocks.shape[1:], np.float32)
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


# ---------------------------------------------------------------- the live callbacks
# The objects LiveSession builds (stream_sep.live.session): the engine as the host makes it
# (stream_sep.engine.Separator, blocking=False), a BlockProcessor around it, the MicMix of
# route.resolve_mic, a Recorder, a FileSource; called as sounddevice calls them, with the
# device's (frames, channels) arrays made beforehand (indexing an array in the measured call
# would make a view).

FLAGS = sd.CallbackFlags()  # no xrun


def _frames(blocks: int, frames: int, channels: int, gain: float = 0.1, seed: int = 0):
    """[(frames, channels) float32] * blocks: noise as a capture device delivers it."""
    rng = np.random.default_rng(seed)
    return [
        (gain * rng.standard_normal((frames, channels))).astype(np.float32) for _ in range(blocks)
    ]


def _wait_until(idle, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not idle():
        assert time.monotonic() < deadline, f"{what} did not go idle"
        time.sleep(0.001)


def _settle(engine, mic=None, recorder=None) -> None:
    """Every thread beside the audio thread waits: the model's, the room's, the writer's."""
    _wait_idle(engine)
    if mic is not None and mic.room is not None:
        _wait_until(lambda: mic.room.idle, "the room's thread")
    if recorder is not None:
        _wait_until(lambda: recorder.idle, "the recording's writer")


def _measure_calls(call, count: int, settle, requests=None, after=None):
    """(bytes per ``call(index)`` for index >= WARM_UP_BLOCKS, the floor), as
    :func:`_measure_engine`: settle() before each call, requests {measured block: function}
    before theirs, after(index) once each call is measured (checks, a main thread's reads)."""
    requests = requests or {}
    after = after or (lambda index: None)
    for index in range(WARM_UP_BLOCKS):
        settle()
        call(index)
        after(index)
    scratch = np.zeros((CHANNELS, BLOCK), np.float32)
    floor = _floor(scratch, scratch)
    measured = []
    before = tracemalloc.get_traced_memory()[0]  # bound, as in every later round of the loop
    with _measured_thread_keeps_the_interpreter():
        for index in range(WARM_UP_BLOCKS, count):
            if index - WARM_UP_BLOCKS in requests:
                requests[index - WARM_UP_BLOCKS]()
            settle()
            tracemalloc.reset_peak()
            before = tracemalloc.get_traced_memory()[0]
            call(index)
            measured.append(tracemalloc.get_traced_memory()[1] - before)
            after(index)
    return measured, floor


def _live_engine(model, channels: int = CHANNELS, key=None):
    return engine_module.Separator(model, RATE, channels, blocking=False, key=key)


@pytest.mark.parametrize(
    "channels, out_channels, frames, key",
    [(2, 2, BLOCK, None), (1, 2, BLOCK, None), (2, 2, 10000, 2)],
    ids=["stereo", "mono-on-a-stereo-device", "long-device-blocks-key"],
)
def test_live_callback_and_its_meters_allocate_nothing(
    model, traced, channels, out_channels, frames, key
):
    """BlockProcessor.duplex_callback: the input copied in, the input and output peak meters
    (read by the main thread between blocks, as the status line and the panel do), the
    last-resort check, the engine, the device layout (a mono stream on both channels of a
    stereo device). Device blocks of 10,000 frames, longer than the processor's 8,192, go
    through in two pieces, the first of which the key stage (+2) shifts in pieces of 2,048."""
    engine = _live_engine(model, channels, key)
    processor = BlockProcessor(engine, out_channels)
    inputs = _frames(WARM_UP_BLOCKS + MEASURED_BLOCKS, frames, channels)
    outdata = np.zeros((frames, out_channels), np.float32)
    peaks = []

    def after(index: int) -> None:
        assert np.isfinite(outdata).all() and np.abs(outdata).max() <= 1.0
        for k in range(out_channels):  # device channel k plays engine channel k % C
            np.testing.assert_array_equal(outdata[:, k], outdata[:, k % channels])
        peaks.append(processor.take_peaks())

    try:
        measured, floor = _measure_calls(
            lambda index: processor.duplex_callback(inputs[index], outdata, frames, None, FLAGS),
            WARM_UP_BLOCKS + MEASURED_BLOCKS,
            lambda: _settle(engine),
            after=after,
        )
    finally:
        engine.close()
    assert engine.stats.windows_run >= 2 and processor.muted_blocks == 0
    for (input_peak, output_peak), block in zip(peaks, inputs, strict=True):
        assert input_peak == np.abs(block).max() and 0.0 <= output_peak <= 1.0
    assert max(output for _, output in peaks) > 0.0  # the separated music came out
    if key is not None:
        assert engine.key_shift.shifted_samples >= MEASURED_BLOCKS * frames // 2
    assert not _over(measured, floor), (floor, _over(measured, floor))


def test_recording_callback_allocates_nothing(model, traced, tmp_path):
    """A capture device recorded to a file (BlockProcessor.input_callback with the session's
    Recorder): the copy into the recording's ring, the block cut at ``end_frame`` (inside
    the measured blocks) and the ones after it, and the blocks that wake the writer."""
    engine = _live_engine(model)
    count = WARM_UP_BLOCKS + MEASURED_BLOCKS + 10  # past the engine's latency (the music)
    end_frame = (count - 4) * BLOCK + 300
    processor = BlockProcessor(engine, CHANNELS, end_frame=end_frame)
    recorder = processor.recorder = Recorder(tmp_path / "take.wav", RATE, CHANNELS)
    inputs = _frames(count, BLOCK, CHANNELS)
    try:
        measured, floor = _measure_calls(
            lambda index: processor.input_callback(inputs[index], BLOCK, None, FLAGS),
            count,
            lambda: _settle(engine, recorder=recorder),
        )
    finally:
        engine.close()
        written = recorder.close()
    assert engine.latency_samples < end_frame
    assert processor.finished and written == end_frame and recorder.dropped_frames == 0
    recorded, rate = sf.read(tmp_path / "take.wav", dtype="float32")
    assert rate == RATE and recorded.shape == (end_frame, CHANNELS)
    assert np.isfinite(recorded).all() and np.abs(recorded).max() <= 1.0
    assert np.abs(recorded[engine.latency_samples + 4800 :]).max() > 0.01  # the music
    assert not _over(measured, floor), (floor, _over(measured, floor))


def test_file_input_callback_allocates_nothing(model, traced, tmp_path):
    """A file played to an output device (BlockProcessor.output_callback reading the
    session's FileSource). The file is shorter than what the reader decodes ahead, so the
    reader has finished before the measured blocks: only the audio thread runs."""
    song = tmp_path / "song.wav"
    music = np.concatenate(_frames(WARM_UP_BLOCKS + MEASURED_BLOCKS + 5, BLOCK, CHANNELS))
    sf.write(song, music, RATE, subtype="FLOAT")
    source = FileSource(song, RATE, CHANNELS)
    _wait_until(lambda: not source.decoding, "the file's reader")
    engine = _live_engine(model)
    processor = BlockProcessor(engine, CHANNELS, source=source)
    outdata = np.zeros((BLOCK, CHANNELS), np.float32)
    try:
        measured, floor = _measure_calls(
            lambda index: processor.output_callback(outdata, BLOCK, None, FLAGS),
            WARM_UP_BLOCKS + MEASURED_BLOCKS,
            lambda: _settle(engine),
        )
    finally:
        engine.close()
        source.close()
    assert source.error is None and source.underrun_frames == 0
    assert source.position == (WARM_UP_BLOCKS + MEASURED_BLOCKS) * BLOCK
    assert engine.stats.windows_run >= 2
    assert not _over(measured, floor), (floor, _over(measured, floor))


@pytest.mark.parametrize("reverb", [0.0, 0.5], ids=["dry", "reverb"])
def test_microphone_callbacks_allocate_nothing(model, traced, reverb):
    """--mic: the microphone's callback (256-frame blocks, four per output block) and the
    output's callback with the voice mixed in (MicMix as route.resolve_mic builds it), with
    the blocks that ramp the level (0.5, 1.5, a mute), a block the microphone delivers short
    (an underrun: silence for the rest), a burst it delivers late (the backlog dropped) and,
    with --mic-reverb, the room: the voice handed to the room's thread, its room added."""
    if reverb:
        pytest.importorskip("pedalboard")
    engine = _live_engine(model)
    mic = MicMix(RATE, CHANNELS, 1.0, reverb)
    processor = BlockProcessor(engine, CHANNELS, mic=mic)
    count = WARM_UP_BLOCKS + MEASURED_BLOCKS
    inputs = _frames(count, BLOCK, CHANNELS)
    voice = _frames(count * 16, 256, 1, gain=0.2, seed=1)
    captures = [tuple(voice[4 * index : 4 * index + 4]) for index in range(count)]
    short, burst = WARM_UP_BLOCKS + 20, WARM_UP_BLOCKS + 30
    captures[short] = captures[short][:3]
    captures[burst] = tuple(voice[4 * count : 4 * count + 16])  # 4,096 frames at once
    outdata = np.zeros((BLOCK, CHANNELS), np.float32)
    requests = {5: lambda: mic.set_level(0.5), 10: lambda: mic.set_level(1.5),
                40: mic.mute, 45: lambda: mic.set_level(1.0)}  # fmt: skip
    mic_peaks = []

    def call(index: int) -> None:
        captured, delivered = captures[index], 0
        while delivered < len(captured):  # the microphone's own callbacks (a for loop would
            mic.input_callback(captured[delivered], 256, None, FLAGS)  # keep an iterator)
            delivered += 1
        processor.duplex_callback(inputs[index], outdata, BLOCK, None, FLAGS)

    def after(index: int) -> None:
        assert np.isfinite(outdata).all() and np.abs(outdata).max() <= 1.0
        mic_peaks.append(mic.take_peak())

    try:
        measured, floor = _measure_calls(
            call, count, lambda: _settle(engine, mic), requests=requests, after=after
        )
    finally:
        engine.close()
        mic.close()
    assert mic.underruns == 256 and mic.skipped > 0 and mic.xruns == 0
    assert max(mic_peaks) > 0.5  # the voice was there (noise at 0.2 rms)
    if reverb:
        assert mic.room.late_samples == 0 and not mic.room.failed
    assert not _over(measured, floor), (floor, _over(measured, floor))


@pytest.mark.parametrize("block", [3000, 8192])
def test_key_mode_blocks_longer_than_a_piece_allocate_nothing(model, traced, block):
    """--key with blocks longer than the shifter's 2,048-sample pieces (3,000: a piece and
    a part; 8,192: the longest block the live callback hands the engine), through a key
    change (+2 -> -3) and back to the delay line (-> 0)."""
    engine = stream_sep.Separator(model, RATE, CHANNELS, key=2, blocking=False)
    requests = {8: lambda: engine.set_key(-3), 20: lambda: engine.set_key(0)}
    blocks = _music(WARM_UP_BLOCKS + 30, block=block)
    try:
        measured, floor = _measure_engine(engine, blocks, requests)
    finally:
        engine.close()
    assert engine.key == 0 and engine.key_shift.underruns == 0
    assert engine.key_shift.shifted_samples >= 10 * block
    assert not _over(measured, floor), (floor, _over(measured, floor))
