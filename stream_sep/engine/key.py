"""Key change: the engine's output shifted by whole semitones, at one fixed delay for any key.

Rubber Band's real-time API (through ``pylibrb``, the optional ``[night]`` extra) does the
shifting; this module only keeps the time straight around it. Measured at 48 kHz (R3 "finer"
engine, the options below): after priming with ``get_preferred_start_pad()`` samples the
shifter's output sample ``m`` holds input sample ``m - D(key)``, where ``D`` is its
``get_start_delay()`` (2048 samples unshifted, 1825 at +2, 2897 at -6, 1449 at +6), and its
output lags what was fed by at most ``pad + ~70`` samples because it works a hop at a time.

So the stage delays everything by one constant ``L = max D + pad + SLACK`` samples: output
``j`` presents input ``j - L`` whatever the key. With the key at 0 the output is a plain delay
line of ``L`` samples (bit-exact, no shifter in the path: it is not even fed); at key ``k`` it
reads the shifter's output ``D(k) - L`` samples back, so each key lines up with the same delay.
A key change is a raised-cosine crossfade of ``crossfade`` seconds between the old source and
the new one, starting where the first input heard after the change reaches the output (``L``
later): 0 -> k restarts the shifter primed with the last ``pad`` input samples, k -> 0 fades to
the delay line and then stops feeding the shifter, k -> k' changes the running shifter's pitch
and fades between the two read offsets. A request made during a crossfade waits for it to end
(the latest request wins).

Audio thread: every buffer is allocated here once, except one array per block that
``pylibrb``'s ``retrieve`` returns (its binding has no way to retrieve into a given buffer),
and Rubber Band's own work, which in real-time mode does not allocate.
"""

from __future__ import annotations

import time

import numpy as np

from stream_sep.errors import UserError

KEY_RANGE = (-6, 6)
EXTRA = "night"
DEFAULT_CROSSFADE_SECONDS = 0.05
SLACK = 256  # samples beyond the pad that the shifter may still be holding back (~70 seen)
MAX_PIECE = 2048  # samples handed to the shifter at once


def check_key(key) -> int:
    """A key (semitones) as an int in KEY_RANGE, or UserError naming the value."""
    low, high = KEY_RANGE
    whole = isinstance(key, (int, np.integer)) and not isinstance(key, bool)
    if not whole or not low <= key <= high:
        raise UserError(
            f"--key must be a whole number of semitones from {low} to {high}, got {key!r}"
        )
    return int(key)


def rubberband():
    """The ``pylibrb`` module, or one line saying how to install it."""
    try:
        import pylibrb
    except ImportError:
        raise UserError(
            f"--key needs Rubber Band's real-time pitch shifter: pip install 'stream-sep[{EXTRA}]'"
        ) from None
    return pylibrb


def pitch_ratio(key: int) -> float:
    return 2.0 ** (key / 12.0)


class _Ring:
    """(channels, capacity) float32 samples addressed by absolute position (mod capacity)."""

    def __init__(self, channels: int, capacity: int):
        self.buffer = np.zeros((channels, capacity), np.float32)
        self.capacity = capacity

    def write(self, position: int, block: np.ndarray) -> None:
        n = block.shape[1]
        first = position % self.capacity
        head = min(n, self.capacity - first)
        self.buffer[:, first : first + head] = block[:, :head]
        self.buffer[:, : n - head] = block[:, head:]

    def read(self, position: int, out: np.ndarray) -> None:
        n = out.shape[1]
        first = position % self.capacity
        head = min(n, self.capacity - first)
        out[:, :head] = self.buffer[:, first : first + head]
        out[:, head:] = self.buffer[:, : n - head]


class KeyShift:
    """Shift (channels, n) float32 blocks by ``key`` semitones, delayed by ``latency_samples``.

    ``set_key`` may be called from any thread; the audio thread applies it at its own position.
    ``cpu_seconds`` / ``shifted_samples``: time spent in the shifter and the samples it shifted.
    """

    def __init__(
        self,
        sample_rate: int,
        channels: int,
        key: int = 0,
        crossfade: float = DEFAULT_CROSSFADE_SECONDS,
    ):
        rb = rubberband()
        self.sample_rate, self.channels = sample_rate, channels
        options = (
            rb.Option.PROCESS_REALTIME
            | rb.Option.ENGINE_FINER
            | rb.Option.PitchHighConsistency
            | rb.Option.CHANNELS_TOGETHER
            | rb.Option.THREADING_NEVER
        )
        self._shifter = rb.RubberBandStretcher(sample_rate, channels, options, 1.0, 1.0)
        self.pad = int(self._shifter.get_preferred_start_pad())
        self._shifter.set_max_process_size(max(MAX_PIECE, self.pad))
        low, high = KEY_RANGE
        self.delays = {}
        for semitones in range(low, high + 1):
            self._shifter.pitch_scale = pitch_ratio(semitones)
            self.delays[semitones] = int(self._shifter.get_start_delay())
        self.latency_samples = max(self.delays.values()) + self.pad + SLACK
        self.crossfade_samples = max(1, int(round(crossfade * sample_rate)))
        capacity = self.latency_samples + self.pad + 4 * MAX_PIECE
        self._dry = _Ring(channels, capacity)
        self._shifted = _Ring(channels, capacity)
        self._feed = np.zeros(channels * max(MAX_PIECE, self.pad), np.float32)  # contiguous
        self._old = np.zeros((channels, MAX_PIECE), np.float32)
        self._weights = np.zeros(MAX_PIECE, np.float32)
        phase = (np.arange(self.crossfade_samples) + 0.5) / self.crossfade_samples * np.pi / 2
        self._fade_in = (np.sin(phase) ** 2).astype(np.float32)
        self.position = 0  # samples in (= samples out)
        self._written = 0  # next position of the shifter's output in _shifted
        self._running = False
        self.key = self._requested = check_key(key)
        self._previous: int | None = None  # the key faded out of, during a crossfade
        self._fade_start = 0
        self.underruns = 0  # samples the shifter had not delivered in time (played silent)
        self.cpu_seconds = 0.0
        self.shifted_samples = 0
        if self.key:
            self._start_shifter(self.key)

    # ------------------------------------------------------------------ controls
    def set_key(self, key: int) -> None:
        """Ask for ``key`` semitones; applied click-free from the next block."""
        self._requested = check_key(key)

    @property
    def requested_key(self) -> int:
        return self._requested

    @property
    def latency_seconds(self) -> float:
        return self.latency_samples / self.sample_rate

    @property
    def cpu_per_audio_second(self) -> float:
        """Seconds of CPU the shifter took per second of audio it shifted (0 if none)."""
        if not self.shifted_samples:
            return 0.0
        return self.cpu_seconds / (self.shifted_samples / self.sample_rate)

    def reset(self) -> None:
        """Forget the stream (silence history), keep the key."""
        self._dry.buffer.fill(0.0)
        self._shifted.buffer.fill(0.0)
        self.position = self._written = 0
        self._previous = None
        self._running = False
        if self.key:
            self._start_shifter(self.key)

    # ------------------------------------------------------------------ streaming
    def process(self, block: np.ndarray, out: np.ndarray) -> None:
        """block (C, n) -> out (C, n) (may be the same array): the output for the same n
        sample times, input ``j - latency_samples`` shifted by the key."""
        done, total = 0, block.shape[1]
        while done < total:
            n = min(MAX_PIECE, total - done)
            self._piece(block[:, done : done + n], out[:, done : done + n])
            done += n

    def _piece(self, block: np.ndarray, out: np.ndarray) -> None:
        n = block.shape[1]
        self._apply_request()
        start = self.position
        self._dry.write(start, block)
        if self._running:
            self._shift(block)
        self.position = start + n
        self._read(self.key, start, out)
        if self._previous is None:
            return
        fade_end = self._fade_start + self.crossfade_samples
        if start + n <= self._fade_start:
            self._read(self._previous, start, out)
        elif start < fade_end:
            self._blend(start, out)
        if self.position >= fade_end:
            self._previous = None
            if self.key == 0:
                self._running = False

    def _apply_request(self) -> None:
        wanted = self._requested
        if wanted == self.key or self._previous is not None:
            return
        if wanted == 0:
            pass  # the shifter runs on until the crossfade to the delay line has ended
        elif self.key == 0 and not self._running:
            self._start_shifter(wanted)
        else:
            self._shifter.pitch_scale = pitch_ratio(wanted)
        self._previous, self.key = self.key, wanted
        self._fade_start = self.position + self.latency_samples

    def _start_shifter(self, key: int) -> None:
        """Restart the shifter at ``key``, primed with the last ``pad`` input samples, so that
        its output for input from ``position`` on is whole."""
        began = time.perf_counter()
        self._shifter.reset()
        self._shifter.pitch_scale = pitch_ratio(key)
        prime = self._feed[: self.channels * self.pad].reshape(self.channels, self.pad)
        self._dry.read(self.position - self.pad, prime)
        if self.position < self.pad:
            prime[:, : self.pad - self.position] = 0.0
        self._shifter.process(prime)
        self._written = self.position
        self._collect()
        self._running = True
        self.cpu_seconds += time.perf_counter() - began

    def _shift(self, block: np.ndarray) -> None:
        began = time.perf_counter()
        n = block.shape[1]
        feed = self._feed[: self.channels * n].reshape(self.channels, n)
        feed[...] = block
        self._shifter.process(feed)
        self._collect()
        self.cpu_seconds += time.perf_counter() - began
        self.shifted_samples += n

    def _collect(self) -> None:
        available = int(self._shifter.available())
        if available > 0:
            shifted = self._shifter.retrieve(available)  # pylibrb allocates this array
            self._shifted.write(self._written, shifted)
            self._written += shifted.shape[1]

    def _read(self, key: int, start: int, out: np.ndarray) -> None:
        """out (C, n) = the output of source ``key`` (0: the delay line) for [start, start+n)."""
        n = out.shape[1]
        if key == 0:
            self._dry.read(start - self.latency_samples, out)
            return
        first = start - self.latency_samples + self.delays[key]
        self._shifted.read(first, out)
        late = first + n - self._written
        if late > 0:  # not delivered yet (should not happen: L leaves SLACK samples of room)
            out[:, max(0, n - late) :] = 0.0
            self.underruns += min(n, late)

    def _blend(self, start: int, out: np.ndarray) -> None:
        """out holds the new source for [start, start+n); blend in the previous one."""
        n = out.shape[1]
        old = self._old[:, :n]
        self._read(self._previous, start, old)
        weights = self._weights[:n]
        offset = start - self._fade_start
        first, last = max(0, offset), min(self.crossfade_samples, offset + n)
        weights.fill(0.0)
        if offset + n > self.crossfade_samples:
            weights[max(0, self.crossfade_samples - offset) :] = 1.0
        if first < last:
            weights[first - offset : last - offset] = self._fade_in[first:last]
        # out = old + w (new - old)
        out -= old
        out *= weights
        out += old


class KeyStage:
    """The engine's output stage for ``--key``: a :class:`KeyShift` and its own output guard
    after the mixer, or (key None) nothing at all: no delay, no work.

    out (C, n) is shifted in place by :meth:`process`; ``latency_samples`` is the stage's
    fixed delay (0 without a stage)."""

    def __init__(self, key: int | None, rate: int, channels: int, guard_factory):
        self.shift = None if key is None else KeyShift(rate, channels, key)
        self.guard = guard_factory() if self.shift is not None else None
        self.latency_samples = 0 if self.shift is None else self.shift.latency_samples

    @property
    def key(self) -> int | None:
        """The key (semitones) asked for last; None when there is no key stage."""
        return None if self.shift is None else self.shift.requested_key

    def terms(self) -> dict[str, float]:
        """{'key': seconds} when there is a stage, for the latency breakdown."""
        return {} if self.shift is None else {"key": self.shift.latency_seconds}

    def set_key(self, key: int) -> None:
        if self.shift is None:
            raise UserError("key change is off: start with --key 0 (or another key) to use it")
        self.shift.set_key(key)

    def reset(self) -> None:
        if self.shift is not None:
            self.shift.reset()
        if self.guard is not None:
            self.guard.reset()

    def process(self, out) -> None:
        if self.shift is not None:
            self.shift.process(out, out)
            if self.guard is not None:
                self.guard.process(out)
