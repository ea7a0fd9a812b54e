"""``--mic DEVICE``: the singer's microphone, mixed into the output beside the separation.

The microphone has a capture stream of its own, opened with PortAudio's lowest latency for
that device (``latency="low"``), whose callback only copies its first channel into a ring
(:class:`~stream_sep.live.recording.RingBuffer`). The output's callback mixes what is there into
the processed block, after the engine (so neither the separation's nor the key change's delay
touches the voice), with the level ramped over one block on a change, an optional room reverb
(pedalboard's ``Reverb``, the ``[night]`` extra), then an output guard over the sum.

The two streams run on their own callbacks: the reader keeps at most ``max_backlog`` frames
waiting (more is dropped at once, so a clock drift between two devices never grows into
delay) and counts the frames the microphone had not delivered in time (played as silence).

Audio thread: copies and in-place arithmetic on buffers allocated here, except the reverb,
whose ``process`` returns a new array each block (pedalboard has no in-place call).
"""

from __future__ import annotations

import numpy as np

from stream_sep.dsp import safety
from stream_sep.errors import UserError
from stream_sep.live.recording import RingBuffer

LEVEL_RANGE = (0.0, 2.0)
REVERB_RANGE = (0.0, 1.0)
MAX_BLOCK = 8192
_RING_SECONDS = 1.0


def reverb(amount: float, rate: int):
    """A pedalboard Reverb whose wet part is ``amount`` (0..1) of the dry voice, or one line
    saying how to install it."""
    try:
        import pedalboard
    except ImportError:
        raise UserError(
            "--mic-reverb needs pedalboard's Reverb: pip install 'stream-sep[night]'"
        ) from None
    # JUCE's reverb scales dry by 2 and wet by 3: dry_level 0.5 keeps the voice at unity.
    return pedalboard.Reverb(
        room_size=0.35, damping=0.5, wet_level=amount / 3.0, dry_level=0.5, width=1.0
    )


class MicMix:
    """A microphone ring filled by its own stream and mixed into (C, n) output blocks.

    rate: the stream rate; level: the voice's gain; reverb_amount: 0 (none) to 1; max_backlog:
    frames allowed to wait in the ring (default: what one block of ``MAX_BLOCK`` needs).
    """

    def __init__(
        self,
        rate: int,
        out_channels: int,
        level: float = 1.0,
        reverb_amount: float = 0.0,
        max_backlog: int = 2048,
        ceiling_db: float = safety.DEFAULT_CEILING_DB,
    ):
        self.rate = rate
        self.level = self._target = float(level)
        self._gain = float(level)
        self.ring = RingBuffer(1, max(int(_RING_SECONDS * rate), 4 * MAX_BLOCK))
        self.max_backlog = max_backlog
        self._voice = np.zeros((1, MAX_BLOCK), np.float32)
        self._ramp = np.zeros(MAX_BLOCK, np.float32)
        self._steps = np.arange(1, MAX_BLOCK + 1, dtype=np.float32)
        self.guard = safety.OutputGuard(out_channels, rate, ceiling_db, max_block=MAX_BLOCK)
        self.reverb = reverb(reverb_amount, rate) if reverb_amount > 0 else None
        self.reverb_amount = reverb_amount
        self.started = False
        self.underruns = 0  # frames the microphone had not delivered in time
        self.skipped = 0  # frames dropped to keep the backlog bounded
        self.xruns = 0
        self.backlog = 0  # frames left waiting after the last read
        self.peak = 0.0
        # (mic input, output) seconds as PortAudio reports them; None where it reports nothing
        # usable (its JACK backend), or where there is no output device (a recording)
        self.stream_latency: tuple[float | None, float | None] = (None, None)

    # ------------------------------------------------------------ the microphone's thread
    def input_callback(self, indata, frames, time_info, status) -> None:
        """sounddevice callback of the microphone's stream: copy channel 1 into the ring."""
        if status.input_overflow or status.input_underflow:
            self.xruns += 1
        self.ring.write(indata[:, :1].T)

    # ------------------------------------------------------------ controls
    def set_level(self, level: float) -> None:
        """Ramped to over the next output block (any thread)."""
        self._target = float(level)
        self.level = float(level)

    def mute(self) -> None:
        """Ramp the voice out over the next block (at the end of a run); keeps ``level``."""
        self._target = 0.0

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

    # ------------------------------------------------------------ the output's thread
    def mix_into(self, target: np.ndarray) -> None:
        """target (C, n <= MAX_BLOCK): add the voice of the next n frames, guard the sum."""
        n = target.shape[1]
        available = self.ring.available
        if not self.started:
            if available < n:
                return  # the microphone's stream has not started yet
            self.started = True
        if available - n > self.max_backlog:
            self._skip(available - n - self.max_backlog // 2)
        voice = self._voice[:, :n]
        got = self.ring.read(voice)
        if got < n:
            voice[:, got:] = 0.0
            self.underruns += n - got
        self.backlog = self.ring.available
        peak = max(float(voice.max()), -float(voice.min()))
        if peak > self.peak:
            self.peak = peak
        if self.reverb is not None:
            voice = self.reverb.process(voice, self.rate, reset=False)  # allocates (pedalboard)
        self._apply_gain(voice[0])
        target += voice
        self.guard.process(target)

    def _skip(self, frames: int) -> None:
        """Drop ``frames`` from the ring (reading them into the scratch buffer, in pieces)."""
        while frames > 0:
            piece = min(frames, MAX_BLOCK)
            self.ring.read(self._voice[:, :piece])
            self.skipped += piece
            frames -= piece

    def _apply_gain(self, voice: np.ndarray) -> None:
        """voice (n,) *= the gain, ramped linearly from the last block's to the target."""
        target, gain = self._target, self._gain
        if target == gain:
            if gain != 1.0:
                voice *= gain
            return
        n = voice.shape[0]
        ramp = self._ramp[:n]
        np.multiply(self._steps[:n], (target - gain) / n, out=ramp)
        ramp += gain
        voice *= ramp
        self._gain = target


def check_level(value, option: str = "--mic-level") -> float:
    low, high = LEVEL_RANGE
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not low <= value <= high:
        raise UserError(f"{option} must be a number in [{low:g}, {high:g}], got {value!r}")
    return float(value)
