"""Recording the processed stream to a WAV file that stays playable through a crash.

The audio thread only copies each block into a preallocated :class:`RingBuffer` (without
allocating: tests/test_realtime_alloc.py) and, once 50 ms of audio wait there, wakes a
writer thread that drains it into the file (so about 20 times a second). libsndfile is told
to rewrite the WAV header after every write (``SFC_SET_UPDATE_HEADER_AUTO``), so a Ctrl-C, a
crash or a SIGKILL leaves a file whose header matches the samples written so far. (Measured
here: without that, a killed WAV says "0 data bytes" in its header, and a killed FLAC cannot
be read back at all, so recordings are WAV.)
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import numpy as np
import soundfile as sf

from stream_sep.dsp.scratch import FlatIndex, SizeCache
from stream_sep.errors import AudioFileError

log = logging.getLogger(__name__)

_SFC_SET_UPDATE_HEADER_AUTO = 0x1061  # libsndfile's sndfile.h
_DRAIN_SECONDS = 0.05
_BUFFER_SECONDS = 10.0


class RingBuffer:
    """A single-producer, single-consumer ring of (channels, capacity) float32 samples.

    The producer and the consumer each move only their own counter, after copying, so no
    lock is needed. For the audio thread: :meth:`write` takes a whole block or none of it,
    :meth:`read` fills a whole block (silence past what is there) and :meth:`discard`
    skips samples; a block size seen before allocates nothing (whole-array ``put``/``take``
    through a :class:`~stream_sep.dsp.scratch.FlatIndex` per size, each side its own, and
    counters in floats: CPython reuses float objects). For other threads, which may
    allocate: :meth:`write_some` and :meth:`read_some` move as much as fits or is there.
    """

    def __init__(self, channels: int, capacity: int):
        self.buffer = np.zeros((channels, capacity), np.float32)
        self._flat = self.buffer.reshape(-1)
        self.channels, self.capacity = channels, capacity
        self.written = 0.0  # samples ever written
        self.read_count = 0.0  # samples ever read (or discarded)
        self.dropped = 0.0  # samples refused because the ring was full
        self._writes, self._reads = SizeCache(), SizeCache()

    @property
    def available(self) -> float:
        """Samples written and not yet read."""
        return self.written - self.read_count

    @property
    def room(self) -> float:
        return self.capacity - (self.written - self.read_count)

    # ------------------------------------------------------------ the audio thread
    def write(self, block: np.ndarray, count=None) -> float:
        """Store block (channels, n), or with ``count`` only its first ``count`` samples;
        returns how many were stored: all of them, or none when the whole block does not
        fit (those count as dropped)."""
        sized = self._writes.get(block.shape[1])  # (no new integer kept alive: each costs
        if sized is None:  # bytes; the sizes are floats made with the scratch)
            sized = self._writes.keep(
                block.shape[1], _RingWrite(self.channels, self.capacity, block.shape[1])
            )
        kept = sized.samples if count is None else count
        if sized.samples > self.capacity - (self.written - self.read_count):
            self.dropped += kept
            return 0.0
        np.copyto(sized.block, block)
        self.buffer.put(sized.index.at(self.written), sized.block, "clip")
        self.written += kept  # columns past ``kept`` lie in free space, written over later
        return kept

    def read(self, out: np.ndarray) -> float:
        """Fill out (channels, n), C-contiguous, with the next n samples; past what is there,
        with silence. Returns how many samples were there (and were taken)."""
        sized = self._reads.get(out.shape[1])
        if sized is None:
            sized = self._reads.keep(
                out.shape[1], _RingRead(self.channels, self.capacity, out.shape[1])
            )
        there = self.written - self.read_count
        self._flat.take(sized.index.at(self.read_count), 0, out, "clip")
        if there >= sized.samples:
            self.read_count += sized.samples
            return sized.samples
        sized.count.fill(there)
        np.greater_equal(sized.columns, sized.count, out=sized.missing)
        np.putmask(out, sized.missing, sized.silence)
        self.read_count += there
        return there

    def discard(self, count) -> None:
        """Skip ``count`` (<= :attr:`available`) samples without reading them."""
        self.read_count += count

    # ------------------------------------------------------------ other threads
    def write_some(self, block: np.ndarray) -> int:
        """Copy as much of (channels, n) as fits; returns how many samples (the rest count
        as dropped). Allocates (slices)."""
        n = min(block.shape[1], int(self.room))
        self.dropped += block.shape[1] - n
        first = int(self.written) % self.capacity
        head = min(n, self.capacity - first)
        self.buffer[:, first : first + head] = block[:, :head]
        self.buffer[:, : n - head] = block[:, head:n]
        self.written += n
        return n

    def read_some(self, out: np.ndarray) -> int:
        """Copy up to out.shape[1] samples into out (channels, m); returns how many.
        Allocates (slices)."""
        n = min(out.shape[1], int(self.available))
        first = int(self.read_count) % self.capacity
        head = min(n, self.capacity - first)
        out[:, :head] = self.buffer[:, first : first + head]
        out[:, head:n] = self.buffer[:, : n - head]
        self.read_count += n
        return n


class _RingWrite:
    """A writer's scratch for blocks of n samples: the block as stored, its ring index."""

    def __init__(self, channels: int, capacity: int, n: int):
        self.block = np.zeros((channels, n), np.float32)
        self.index = FlatIndex(channels, capacity, n, wrap=True)
        self.samples = float(n)


class _RingRead:
    """A reader's scratch for blocks of n samples: its ring index, and what silences the
    columns past those there (column numbers, their count, the mask, a silent sample)."""

    def __init__(self, channels: int, capacity: int, n: int):
        self.index = FlatIndex(channels, capacity, n, wrap=True)
        self.columns = np.ascontiguousarray(np.broadcast_to(np.arange(n), (channels, n)))
        self.count = np.zeros((), np.intp)
        self.missing = np.zeros((channels, n), bool)
        self.silence = np.zeros((), np.float32)
        self.samples = float(n)
        # numpy allocates the first time it runs a loop in a process: here, not at the
        # stream's first short read
        np.greater_equal(self.columns, self.count, out=self.missing)
        np.putmask(np.zeros((channels, n), np.float32), self.missing, self.silence)


def check_recording_path(path: str | os.PathLike) -> Path:
    """Refuse an --output FILE that cannot be a recording, before anything starts."""
    path = Path(path)
    if path.suffix.lower() != ".wav":
        raise AudioFileError(
            f"--output {str(path)!r}: recordings are written as WAV (the one format here that "
            "stays playable after a crash); name the file *.wav"
        )
    if path.is_dir():
        raise AudioFileError(f"--output {str(path)!r} is a directory, not a file")
    if not path.parent.is_dir():
        raise AudioFileError(
            f"--output {str(path)!r}: directory {str(path.parent)!r} does not exist"
        )
    if not os.access(path.parent, os.W_OK):
        raise AudioFileError(
            f"--output {str(path)!r}: directory {str(path.parent)!r} is not writable"
        )
    return path


STEM_NAMES = ("music", "vocals")  # --stems: the files' and the JACK ports' names, in order


def stem_paths(path: str | os.PathLike) -> tuple[Path, ...]:
    """--output take.wav with --stems: take.music.wav and take.vocals.wav beside it."""
    path = Path(path)
    return tuple(path.with_name(f"{path.stem}.{name}{path.suffix}") for name in STEM_NAMES)


class Recorder:
    """Writes float32 blocks to WAV files from a background thread: ``paths`` (one path or
    several), each file ``channels`` wide; a block is (channels * len(paths), n), file i
    taking rows ``i * channels`` to ``(i + 1) * channels - 1`` (with --stems: the music
    file, then the vocals file).

    ``write(block)`` and ``hand_over()`` are for the audio callback (``hand_over`` last in a
    block: it wakes the writer when there is enough to write); ``close()`` drains what is
    left, closes the files and returns the number of frames written (the same in each).
    """

    def __init__(
        self,
        paths: str | os.PathLike | tuple[str | os.PathLike, ...],
        sample_rate: int,
        channels: int,
    ):
        if isinstance(paths, (str, os.PathLike)):
            paths = (paths,)
        self.paths = tuple(check_recording_path(path) for path in paths)
        self.path = self.paths[0]
        self.sample_rate = sample_rate
        self.frames_written = 0
        rows = channels * len(self.paths)
        self._ring = RingBuffer(rows, int(_BUFFER_SECONDS * sample_rate))
        self._chunk = np.zeros((rows, self._ring.capacity), np.float32)
        self._files = self._open_all(channels)
        self._batch = float(int(_DRAIN_SECONDS * sample_rate))  # frames that wake the writer
        self._wake = threading.Lock()  # released (by the audio thread) to wake the writer
        self._wake.acquire()
        self._closing = False
        self.waiting = False  # the writer waits to be woken
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._drain_loop, name="stream-sep-recorder")
        self._thread.daemon = True
        self._thread.start()

    def _open_all(self, channels: int) -> list[tuple[sf.SoundFile, np.ndarray]]:
        """Each file with the rows of the chunk it takes; a file that cannot be made
        removes those made before it (nothing half made is left)."""
        files = []
        for index, path in enumerate(self.paths):
            try:
                handle = self._open(path, channels)
            except AudioFileError:
                for made, _rows in files:
                    made.close()
                for earlier in self.paths[:index]:
                    earlier.unlink(missing_ok=True)
                raise
            files.append((handle, self._chunk[index * channels : (index + 1) * channels]))
        return files

    def _open(self, path: Path, channels: int) -> sf.SoundFile:
        try:
            handle = sf.SoundFile(
                str(path), "w", self.sample_rate, channels, subtype="FLOAT", format="WAV"
            )
        except (sf.LibsndfileError, RuntimeError, OSError) as error:
            raise AudioFileError(f"cannot write {str(path)!r}: {error}") from None
        # Private but long-stable soundfile API: libsndfile's sf_command on the open handle.
        sf._snd.sf_command(handle._file, _SFC_SET_UPDATE_HEADER_AUTO, sf._ffi.NULL, 1)
        return handle

    @property
    def dropped_frames(self) -> int:
        return int(self._ring.dropped)

    def write(self, block: np.ndarray, count=None) -> None:
        """block: (channels, n) float32, or with ``count`` its first ``count`` frames; called
        from the audio thread: never blocks, and a block size seen before allocates nothing
        (a block that does not fit in the ring whole is dropped whole)."""
        self._ring.write(block, count)

    def hand_over(self) -> None:
        """Last in an audio block: wake the writer once ``_DRAIN_SECONDS`` of audio wait
        (it never wakes on its own, so never in the middle of the audio thread's work)."""
        if self._ring.available >= self._batch and self._wake.locked():
            self._wake.release()

    @property
    def idle(self) -> bool:
        """The writer waits, and nothing has woken it."""
        return self.waiting and self._wake.locked()

    def _drain_loop(self) -> None:
        while True:
            self.waiting = True
            self._wake.acquire()
            self.waiting = False
            closing = self._closing  # read before draining: close() wakes it once more
            if not self._drain() or closing:
                return

    def _drain(self) -> bool:
        n = self._ring.read_some(self._chunk)
        if n == 0:
            return True
        for handle, rows in self._files:
            try:
                # soundfile wants (frames, channels).
                handle.write(rows[:, :n].T)
            except (sf.LibsndfileError, RuntimeError, OSError) as error:
                self._error = error
                log.error("recording to %s stopped: %s", handle.name, error)
                return False
        self.frames_written += n
        return True

    def close(self) -> int:
        """Write what is buffered, close the files; returns frames written."""
        self._closing = True
        if self._wake.locked():
            self._wake.release()
        self._thread.join()
        for handle, _rows in self._files:
            handle.close()
        if self._error is not None:
            names = ", ".join(repr(str(path)) for path in self.paths)
            raise AudioFileError(f"writing {names} failed: {self._error}")
        return self.frames_written
