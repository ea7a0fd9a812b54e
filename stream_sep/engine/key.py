"""Key change: the engine's output shifted by whole semitones, at one fixed delay for any key.

Rubber Band's real-time stretcher (the system's ``librubberband`` 3.x, through
:mod:`stream_sep.engine.rubberband`) does the shifting; this module only keeps the time
straight around it. Measured at 48 kHz (R3 "finer" engine, the options below): after priming
with ``preferred_start_pad`` samples the shifter's output sample ``m`` holds input sample
``m - D(key)``, where ``D`` is its ``start_delay`` (2048 samples unshifted, 1825 at +2, 2897 at
-6, 1449 at +6), and its output lags what was fed by at most ``pad + ~70`` samples because it
works a hop at a time.

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

Audio thread: every buffer and every argument of a call into Rubber Band is made once, the
scratch of a block size with the first block of that size (a block longer than ``MAX_PIECE``
samples is copied into scratch of its size and shifted in pieces of at most ``MAX_PIECE``,
each with views made once), and sample positions are counted in floats (CPython reuses float
objects; an integer above 256 is a new allocation), so a block allocates nothing, key changes
included, whatever its length (tests/test_realtime_alloc.py). Rubber Band itself does not
allocate in real-time mode.
"""

from __future__ import annotations

import time

import numpy as np

from stream_sep.dsp.scratch import FlatIndex, SizeCache
from stream_sep.engine.delay import DelayRing
from stream_sep.engine.rubberband import (
    OPTION_CHANNELS_TOGETHER,
    OPTION_ENGINE_FINER,
    OPTION_PITCH_HIGH_CONSISTENCY,
    OPTION_PROCESS_REALTIME,
    OPTION_THREADING_NEVER,
    Stretcher,
)
from stream_sep.errors import UserError

KEY_RANGE = (-6, 6)
DEFAULT_CROSSFADE_SECONDS = 0.05
SLACK = 256  # samples beyond the pad that the shifter may still be holding back (~70 seen)
MAX_PIECE = 2048  # samples handed to the shifter at once (and taken back at once)
OPTIONS = (
    OPTION_PROCESS_REALTIME
    | OPTION_ENGINE_FINER
    | OPTION_PITCH_HIGH_CONSISTENCY
    | OPTION_CHANNELS_TOGETHER
    | OPTION_THREADING_NEVER
)


def check_key(key) -> int:
    """A key (semitones) as an int in KEY_RANGE, or UserError naming the value."""
    low, high = KEY_RANGE
    whole = isinstance(key, (int, np.integer)) and not isinstance(key, bool)
    if not whole or not low <= key <= high:
        raise UserError(
            f"--key must be a whole number of semitones from {low} to {high}, got {key!r}"
        )
    return int(key)


def pitch_ratio(key: int) -> float:
    return 2.0 ** (key / 12.0)


class _Sized:
    """Scratch of one piece size n: the shifter's input columns as a (C, n) view, the
    previous source during a crossfade, the crossfade weights and their table index."""

    def __init__(self, stretcher: Stretcher, n: int, table_size: int):
        channels = stretcher.input.shape[0]
        self.feed = stretcher.input[:, :n]
        self.old = np.zeros((channels, n), np.float32)
        self.weights = np.zeros((channels, n), np.float32)
        self.weight_index = FlatIndex(channels, table_size, n, wrap=False, offset=1, rows=0)
        self.n, self.samples = n, float(n)


class _Split:
    """Scratch of one block size n > MAX_PIECE: the block (C, n), and its pieces, each (its
    columns of the block: a view made once, the piece as the shifter takes it: contiguous
    (C, m), the scratch of size m)."""

    def __init__(self, channels: int, n: int, sized):
        self.whole = np.zeros((channels, n), np.float32)
        self.pieces = tuple(
            (
                self.whole[:, first : first + MAX_PIECE],
                np.zeros((channels, min(MAX_PIECE, n - first)), np.float32),
                sized(min(MAX_PIECE, n - first)),
            )
            for first in range(0, n, MAX_PIECE)
        )
        self.count = len(self.pieces)


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
        self.sample_rate, self.channels = sample_rate, channels
        low, high = KEY_RANGE
        scales = {semitones: pitch_ratio(semitones) for semitones in range(low, high + 1)}
        self._shifter = Stretcher(sample_rate, channels, OPTIONS, MAX_PIECE, MAX_PIECE, scales)
        self.pad = self._shifter.preferred_start_pad
        self.delays = {}
        for semitones in scales:
            self._shifter.set_scale(semitones)
            self.delays[semitones] = self._shifter.start_delay
        self.latency_samples = max(self.delays.values()) + self.pad + SLACK
        # where each key's output is read, relative to the output position (floats: see above)
        self._read_offsets = {k: float(d - self.latency_samples) for k, d in self.delays.items()}
        self._read_offsets[0] = float(-self.latency_samples)
        self.crossfade_samples = max(1, int(round(crossfade * sample_rate)))
        capacity = self.latency_samples + self.pad + 4 * MAX_PIECE + self._shifter.chunk
        self._dry = DelayRing(channels, capacity)
        self._shifted = DelayRing(channels, capacity)
        self._prime = np.zeros((channels, self.pad), np.float32)
        self._prime_feed = self._shifter.input[:, : self.pad]
        phase = (np.arange(self.crossfade_samples) + 0.5) / self.crossfade_samples * np.pi / 2
        # weight of the new source at crossfade sample i is _fade[i + 1]; 0 before, 1 after
        self._fade = np.concatenate([[0.0], np.sin(phase) ** 2, [1.0]]).astype(np.float32)
        self._sizes, self._splits = SizeCache(), SizeCache()
        self.position = 0.0  # samples in (= samples out)
        self._written = 0.0  # next position of the shifter's output in _shifted
        self._running = False
        self.key = self._requested = check_key(key)
        self._previous: int | None = None  # the key faded out of, during a crossfade
        self._fade_start = self._fade_end = 0.0
        self._underruns = 0.0
        self.cpu_seconds = 0.0
        self._shifted_samples = 0.0
        self._shifted.write(self._shifter.output, 0)  # the scratch of its one write size
        self._dry.read(0, self._prime)
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
    def shifted_samples(self) -> int:
        return int(self._shifted_samples)

    @property
    def underruns(self) -> int:
        """Samples the shifter had not delivered in time (played silent)."""
        return int(self._underruns)

    @property
    def cpu_per_audio_second(self) -> float:
        """Seconds of CPU the shifter took per second of audio it shifted (0 if none)."""
        if not self._shifted_samples:
            return 0.0
        return self.cpu_seconds / (self._shifted_samples / self.sample_rate)

    def reset(self) -> None:
        """Forget the stream (silence history), keep the key."""
        self._dry.clear()
        self._shifted.clear()
        self.position = self._written = 0.0
        self._previous = None
        self._running = False
        if self.key:
            self._start_shifter(self.key)

    # ------------------------------------------------------------------ streaming
    def process(self, block: np.ndarray, out: np.ndarray) -> None:
        """block (C, n) -> out (C, n) (may be the same array): the output for the same n
        sample times, input ``j - latency_samples`` shifted by the key."""
        if block.shape[1] <= MAX_PIECE:
            self._piece(block, out, self._sized(block.shape[1]))
            return
        split = self._splits.get(block.shape[1])
        if split is None:
            split = self._splits.keep(
                block.shape[1], _Split(self.channels, block.shape[1], self._sized)
            )
        np.copyto(split.whole, block)
        index = 0
        while index < split.count:  # (a for loop keeps an iterator object alive meanwhile)
            columns, piece, sized = split.pieces[index]
            np.copyto(piece, columns)
            self._piece(piece, piece, sized)
            np.copyto(columns, piece)
            index += 1
        np.copyto(out, split.whole)

    def _sized(self, n: int) -> _Sized:
        sized = self._sizes.get(n)
        if sized is None:
            sized = self._sizes.keep(n, _Sized(self._shifter, n, self._fade.size))
        return sized

    def _piece(self, block: np.ndarray, out: np.ndarray, sized: _Sized) -> None:
        if self._requested != self.key and self._previous is None:
            self._apply_request()
        start = self.position
        self._dry.write(block, start)
        if self._running:
            self._shift(block, sized)
        self.position = start + sized.samples
        self._read(self.key, start, out, sized.samples)
        if self._previous is None:
            return
        if start + sized.samples <= self._fade_start:
            self._read(self._previous, start, out, sized.samples)
        elif start < self._fade_end:
            self._blend(start, out, sized)
        if self.position >= self._fade_end:
            self._previous = None
            if self.key == 0:
                self._running = False

    def _apply_request(self) -> None:
        wanted = self._requested
        if wanted == 0:
            pass  # the shifter runs on until the crossfade to the delay line has ended
        elif self.key == 0 and not self._running:
            self._start_shifter(wanted)
        else:
            self._shifter.set_scale(wanted)
        self._previous, self.key = self.key, wanted
        self._fade_start = self.position + self.latency_samples
        self._fade_end = self._fade_start + self.crossfade_samples

    def _start_shifter(self, key: int) -> None:
        """Restart the shifter at ``key``, primed with the last ``pad`` input samples, so that
        its output for input from ``position`` on is whole (the ring holds zeros before the
        stream's first sample)."""
        began = time.perf_counter()
        self._shifter.reset()
        self._shifter.set_scale(key)
        self._dry.read(self.position - self.pad, self._prime)
        np.copyto(self._prime_feed, self._prime)
        self._shifter.process(self.pad)
        self._written = self.position
        self._collect()
        self._running = True
        self.cpu_seconds += time.perf_counter() - began

    def _shift(self, block: np.ndarray, sized: _Sized) -> None:
        began = time.perf_counter()
        np.copyto(sized.feed, block)
        self._shifter.process(sized.n)
        self._collect()
        self.cpu_seconds += time.perf_counter() - began
        self._shifted_samples += sized.samples

    def _collect(self) -> None:
        """Everything the shifter has ready into _shifted, a chunk at a time (each write puts
        the whole chunk buffer: columns past what was retrieved land beyond ``_written`` and
        are overwritten before they are read)."""
        got = self._retrieve()
        while got:
            self._shifted.write(self._shifter.output, self._written)
            self._written += got
            got = self._retrieve()

    def _retrieve(self) -> float:
        """Up to a chunk of the shifter's output into its output buffer; how many samples."""
        samples = self._shifter.available()  # (no min(): it makes an iterator object)
        if samples <= 0:
            return 0.0
        if samples > self._shifter.chunk:
            samples = self._shifter.chunk
        self._shifter.retrieve(samples)
        return float(samples)

    def _read(self, key: int, start: float, out: np.ndarray, samples: float) -> None:
        """out (C, n) = the output of source ``key`` (0: the delay line) for [start, start+n);
        samples: n as a float."""
        first = start + self._read_offsets[key]
        if key == 0:
            self._dry.read(first, out)
            return
        self._shifted.read(first, out)
        if first + samples > self._written:  # not delivered yet (should not happen: L leaves
            late = min(samples, first + samples - self._written)  # SLACK samples of room)
            out[:, out.shape[1] - int(late) :] = 0.0
            self._underruns += late

    def _blend(self, start: float, out: np.ndarray, sized: _Sized) -> None:
        """out holds the new source for [start, start+n); blend in the previous one:
        out = old + w (new - old), w the raised-cosine weight of each output sample."""
        self._read(self._previous, start, sized.old, sized.samples)
        self._fade.take(sized.weight_index.at(start - self._fade_start), 0, sized.weights, "clip")
        np.subtract(out, sized.old, out=out)
        np.multiply(out, sized.weights, out=out)
        np.add(out, sized.old, out=out)


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
