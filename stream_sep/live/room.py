"""``--mic-reverb``: the microphone's room, made on a thread of its own.

pedalboard's ``Reverb`` (the ``[night]`` extra) has no call that writes into a given array:
every ``process`` returns a new one, so it does not run on the audio thread. The output's
callback copies each block of the dry voice into a ring and, once its whole block is done,
wakes the room's thread (a lock released as a signal, as the engine wakes its worker). That
thread runs the reverb on what is waiting, in order, and puts the room (the reverb's wet part
alone: its dry level is 0) into a second ring. The callback adds the room to the voice
``delay_samples`` after the voice it was made from: a fixed pre-delay of
``ROOM_DELAY_SECONDS``, or of two blocks when the first block the microphone mixes is longer
than half of that. The dry voice is not delayed at all.

The reverb is primed with ``MAX_CHUNK`` samples of silence in one call (which leaves it
silent): pedalboard prepares the plugin again whenever a call is longer than any before, and
that changes what follows; primed, it gives the same samples however the voice is cut into
calls (tests/test_mic.py compares them).

Room samples the thread had not delivered when they were due are played without the room
(:attr:`Room.late`, and skipped when they arrive). Should the thread ever fall a whole ring
behind, the room stops for the rest of the run (:attr:`Room.failed`); the voice goes on.
"""

from __future__ import annotations

import logging
import threading

import numpy as np

from stream_sep.errors import UserError
from stream_sep.live.recording import RingBuffer

log = logging.getLogger(__name__)

ROOM_DELAY_SECONDS = 0.05  # the room's pre-delay, unless two blocks are longer
MAX_CHUNK = 8192  # samples the thread hands the reverb at once (and its buffer size)
CLOSE_TIMEOUT = 1.0
_RING_SECONDS = 2.0


def reverb(amount: float, rate: int):
    """A pedalboard Reverb giving the room alone, ``amount`` (0..1) of the dry voice's level,
    primed (see the module's text); or one line saying how to install it."""
    try:
        import pedalboard
    except ImportError:
        raise UserError(
            "--mic-reverb needs pedalboard's Reverb: pip install 'stream-sep[night]'"
        ) from None
    # JUCE's reverb scales its wet level by 3.
    plugin = pedalboard.Reverb(
        room_size=0.35, damping=0.5, wet_level=amount / 3.0, dry_level=0.0, width=1.0
    )
    plugin.process(np.zeros((1, MAX_CHUNK), np.float32), rate, MAX_CHUNK, False)
    return plugin


class Room:
    """The room of a mono voice, ``amount`` (0..1) of its level, ``delay_samples`` after it.

    Audio thread: :meth:`begin` once at the first block, then per block :meth:`add` and,
    once the block is done, :meth:`hand_over`; these allocate nothing
    (tests/test_realtime_alloc.py). ``late``: room samples played without the room.
    """

    def __init__(self, amount: float, rate: int):
        self.amount, self.rate = amount, rate
        self.plugin = reverb(amount, rate)
        capacity = max(int(_RING_SECONDS * rate), 4 * MAX_CHUNK)
        self._dry = RingBuffer(1, capacity)  # the voice, for the thread
        self._wet = RingBuffer(1, capacity)  # the room, from the thread
        self._chunk = np.zeros((1, MAX_CHUNK), np.float32)
        self.delay_samples = int(round(ROOM_DELAY_SECONDS * rate))
        self.late = 0.0
        self.failed = False  # the thread fell a ring behind (or failed): no more room
        self._owed = 0.0  # room samples whose time passed before they arrived
        self._wake = threading.Lock()
        self._wake.acquire()
        self._closing = False
        self.waiting = False  # the thread is waiting to be woken
        self._thread = threading.Thread(target=self._work, name="stream-sep-room", daemon=True)
        self._thread.start()

    @property
    def delay_seconds(self) -> float:
        return self.delay_samples / self.rate

    @property
    def late_samples(self) -> int:
        return int(self.late)

    def startup_note(self) -> str:
        """One line for the start of a run: how much later than the voice its room comes."""
        least = ROOM_DELAY_SECONDS * 1000
        return (
            f"microphone reverb {self.amount:g}: made beside the audio thread, its room joins "
            f"the voice {least:.0f} ms after it (two blocks, if the device's blocks are longer "
            f"than {least / 2:.0f} ms); the dry voice is not delayed"
        )

    def summary(self) -> str:
        """The room's delay as it was, and its samples played late."""
        text = (
            f"its room {self.delay_seconds * 1000:.1f} ms after the voice, "
            f"{self.late_samples} samples of it late"
        )
        return text + (" (then stopped: its thread fell behind)" if self.failed else "")

    @property
    def idle(self) -> bool:
        """The thread waits, and nothing waits for it."""
        return self.waiting and self._wake.locked() and self._dry.available == 0

    # ------------------------------------------------------------ the audio thread
    def begin(self, block: int) -> None:
        """At the first block the microphone mixes (``block`` frames), before any voice is
        handed over: fix the delay. The room's ring starts with that many samples of
        silence."""
        if 2 * block > self.delay_samples:
            self.delay_samples = 2 * block
        self._wet.written = float(self.delay_samples)  # (the ring starts zeroed)

    def add(self, voice: np.ndarray, room: np.ndarray, samples: float) -> None:
        """voice (1, n), contiguous: keep it for the thread, and add the room due with it;
        room: (1, n) contiguous scratch; samples: n as a float."""
        if self.failed:
            return
        if not self._dry.write(voice):
            self.failed = True  # the thread is a whole ring behind
            return
        if self._owed > 0.0:  # skip the room whose time has passed, as it arrives
            there = self._wet.available
            if there > self._owed:
                there = self._owed
            self._wet.discard(there)
            self._owed -= there
            if self._owed > 0.0:
                self._owed += samples
                self.late += samples
                return
        got = self._wet.read(room)  # silence past what the thread has delivered
        if got < samples:
            self._owed += samples - got
            self.late += samples - got
        np.add(voice, room, out=voice)

    def hand_over(self) -> None:
        """Wake the thread for the voice added since (last in a block)."""
        if self._wake.locked():
            self._wake.release()

    # ------------------------------------------------------------ the room's thread
    def _work(self) -> None:
        while True:
            self.waiting = True
            self._wake.acquire()
            self.waiting = False
            if self._closing:
                return
            try:
                self._run_waiting()
            except Exception as error:  # noqa: BLE001 - the voice goes on without its room
                log.warning("the microphone's reverb stopped: %s", error)
                self.failed = True
                return

    def _run_waiting(self) -> None:
        """The reverb on all the voice waiting, in chunks, into the room's ring."""
        while True:
            n = min(int(self._dry.available), int(self._wet.room), MAX_CHUNK)
            if n <= 0:
                return
            chunk = self._chunk[:, :n]
            self._dry.read_some(chunk)
            self._wet.write_some(self.plugin.process(chunk, self.rate, MAX_CHUNK, False))

    def close(self) -> None:
        """Stop the thread."""
        self._closing = True
        if self._wake.locked():
            self._wake.release()
        self._thread.join(timeout=CLOSE_TIMEOUT)
