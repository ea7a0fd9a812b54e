"""``--mic DEVICE``: the singer's microphone, mixed into the output beside the separation.

The microphone has a capture stream of its own, opened with PortAudio's lowest latency for
that device (``latency="low"``), whose callback only copies its first channel into a ring
(:class:`~stream_sep.live.recording.RingBuffer`). The output's callback mixes what is there into
the processed block, after the engine (so neither the separation's nor the key change's delay
touches the voice), with the level ramped over one block on a change, an optional room reverb
(:mod:`stream_sep.live.room`: made on a thread of its own and joined ``delay_samples`` after
the voice; the dry voice is not delayed), then an output guard over the sum.

The two streams run on their own callbacks: the reader keeps at most ``max_backlog`` frames
waiting (more is dropped at once, so a clock drift between two devices never grows into
delay) and counts the frames the microphone had not delivered in time (played as silence).

Audio threads (both callbacks): copies and arithmetic on whole arrays of scratch made once per
block size, so a block size seen before allocates nothing (tests/test_realtime_alloc.py).
"""

from __future__ import annotations

import numpy as np

from stream_sep.dsp import safety
from stream_sep.dsp.scratch import SizeCache
from stream_sep.live.recording import RingBuffer
from stream_sep.live.room import Room
from stream_sep.settings import OPTIONS

MAX_BLOCK = 8192
_RING_SECONDS = 1.0


class _Block:
    """The output side's scratch for blocks of n frames: the voice (1, n) and its row, the
    room due with it, its magnitude for the meter, the gain ramp and its steps (1..n), the
    voice spread over the stream's channels (C, n), and n (also as a float)."""

    def __init__(self, channels: int, n: int):
        self.voice = np.zeros((1, n), np.float32)
        self.voice_row = self.voice[0]
        self.room = np.zeros((1, n), np.float32)
        self.magnitude = np.zeros(n, np.float32)
        self.steps = np.arange(1, n + 1, dtype=np.float32)
        self.ramp = np.zeros(n, np.float32)
        self.spread = np.zeros((channels, n), np.float32)
        self.n, self.samples = n, float(n)
        # numpy allocates the first time it runs a loop in a process: here, not at the
        # stream's first level change
        step = np.zeros((), np.float32)
        np.multiply(self.steps, step, out=self.ramp)
        np.add(self.ramp, step, out=self.ramp)
        np.multiply(self.voice_row, self.ramp, out=self.ramp)


class _Capture:
    """The microphone side's scratch for blocks of n frames: (n, 1) as captured, and its
    (1, n) view for the ring."""

    def __init__(self, n: int):
        self.frames = np.zeros((n, 1), np.float32)
        self.row = self.frames.T


class MicMix:
    """A microphone ring filled by its own stream and mixed into (C, n) output blocks.

    rate: the stream rate; channels: C, the rows of the blocks it is mixed into (the
    engine's); level: the voice's gain; reverb_amount: 0 (none) to 1; max_backlog: frames
    allowed to wait in the ring (default: what one block of ``MAX_BLOCK`` needs).
    """

    def __init__(
        self,
        rate: int,
        channels: int,
        level: float = 1.0,
        reverb_amount: float = 0.0,
        max_backlog: int = 2048,
        ceiling_db: float = safety.DEFAULT_CEILING_DB,
    ):
        self.rate, self.channels = rate, channels
        self.level = self._target = float(level)
        self._gain = float(level)
        self._gain_value = np.full((), level, np.float32)  # the gain, for numpy
        self._step_value = np.zeros((), np.float32)  # the ramp's step, for numpy
        self._at = np.zeros((), np.intp)
        self.ring = RingBuffer(1, max(int(_RING_SECONDS * rate), 4 * MAX_BLOCK))
        self.max_backlog = max_backlog
        self._kept_backlog = float(max_backlog // 2)  # what a skip leaves waiting
        self._blocks, self._captures = SizeCache(), SizeCache()
        self.guard = safety.OutputGuard(channels, rate, ceiling_db, max_block=MAX_BLOCK)
        self.room = Room(reverb_amount, rate) if reverb_amount > 0 else None
        self.reverb_amount = reverb_amount
        self.started = False
        self._underruns = 0.0  # frames the microphone had not delivered in time
        self._skipped = 0.0  # frames dropped to keep the backlog bounded
        self.xruns = 0
        self.backlog = 0.0  # frames left waiting after the last read
        self.peak = 0.0
        # (mic input, output) seconds as PortAudio reports them; None where it reports nothing
        # usable (its JACK backend), or where there is no output device (a recording)
        self.stream_latency: tuple[float | None, float | None] = (None, None)

    # ------------------------------------------------------------ the microphone's thread
    def input_callback(self, indata, frames, time_info, status) -> None:
        """sounddevice callback of the microphone's stream (opened with one channel): copy
        indata (frames, 1) into the ring."""
        if status.input_overflow or status.input_underflow:
            self.xruns += 1
        capture = self._captures.get(frames)
        if capture is None:
            capture = self._captures.keep(frames, _Capture(frames))
        np.copyto(capture.frames, indata)
        self.ring.write(capture.row)

    # ------------------------------------------------------------ controls
    def set_level(self, level: float) -> None:
        """Ramped to over the next output block (any thread)."""
        self._target = float(level)
        self.level = float(level)

    def mute(self) -> None:
        """Ramp the voice out over the next block (at the end of a run); keeps ``level``."""
        self._target = 0.0

    @property
    def underruns(self) -> int:
        return int(self._underruns)

    @property
    def skipped(self) -> int:
        return int(self._skipped)

    @property
    def waiting_seconds(self) -> float:
        """How long the voice waits in the ring between the two streams (the last block's)."""
        return self.backlog / self.rate

    @property
    def latency_seconds(self) -> float | None:
        """Microphone to output: the two streams' device latencies and the ring's wait; None
        when PortAudio reports no usable latency for either stream."""
        mic_in, out = self.stream_latency
        if mic_in is None or out is None:
            return None
        return mic_in + self.waiting_seconds + out

    def take_peak(self) -> float:
        peak, self.peak = self.peak, 0.0
        return peak

    def close(self) -> None:
        """Stop the room's thread, if there is one."""
        if self.room is not None:
            self.room.close()

    # ------------------------------------------------------------ the output's thread
    def mix_into(self, target: np.ndarray) -> None:
        """target (C, n <= MAX_BLOCK), C-contiguous: add the voice of the next n frames (and
        its room), guard the sum."""
        block = self._blocks.get(target.shape[1])  # (no new integer kept alive: each costs
        if block is None:  # bytes; the block's size is a float made with its scratch)
            block = self._blocks.keep(target.shape[1], _Block(self.channels, target.shape[1]))
        if not self.started:
            if self.ring.available < block.samples:
                return  # the microphone's stream has not started yet
            self.started = True
            if self.room is not None:
                self.room.begin(block.n)
        if self.ring.available - block.samples > self.max_backlog:
            self._skip(self.ring.available - block.samples - self._kept_backlog)
        got = self.ring.read(block.voice)  # silence past what the microphone delivered
        if got < block.samples:
            self._underruns += block.samples - got
        self.backlog = self.ring.available
        np.abs(block.voice_row, out=block.magnitude)
        block.magnitude.argmax(None, self._at)
        peak = block.magnitude.item(int(self._at))
        if peak > self.peak:
            self.peak = peak
        if self.room is not None:
            self.room.add(block.voice, block.room, block.samples)
        self._apply_gain(block)
        np.copyto(block.spread, block.voice)  # on every channel
        np.add(target, block.spread, out=target)
        self.guard.process(target)

    def hand_over(self) -> None:
        """Last in the output's block: wake the room's thread for the voice just mixed."""
        if self.room is not None:
            self.room.hand_over()

    def _skip(self, frames) -> None:
        """Drop ``frames`` from the ring."""
        self.ring.discard(frames)
        self._skipped += frames

    def _apply_gain(self, block: _Block) -> None:
        """The voice (1, n) *= the gain, ramped linearly from the last block's to the
        target."""
        target, gain = self._target, self._gain
        voice = block.voice_row
        if target == gain:
            if gain != 1.0:
                np.multiply(voice, self._gain_value, out=voice)
            return
        self._step_value.fill((target - gain) / block.n)
        np.multiply(block.steps, self._step_value, out=block.ramp)
        np.add(block.ramp, self._gain_value, out=block.ramp)
        np.multiply(voice, block.ramp, out=voice)
        self._gain = target
        self._gain_value.fill(target)


def check_level(value) -> float:
    """The microphone's gain as a float, checked by its entry of the options table."""
    return OPTIONS["mic_level"].check(value)
