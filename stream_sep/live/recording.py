"""Recording the processed stream to a WAV file that stays playable through a crash.

The audio thread only copies each block into a preallocated :class:`RingBuffer`; a writer
thread drains it into the file about 20 times a second. libsndfile is told to rewrite the
WAV header after every write (``SFC_SET_UPDATE_HEADER_AUTO``), so a Ctrl-C, a crash or a
SIGKILL leaves a file whose header matches the samples written so far. (Measured here:
without that, a killed WAV says "0 data bytes" in its header, and a killed FLAC cannot be
read back at all, so recordings are WAV.)
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import numpy as np
import soundfile as sf

from stream_sep.errors import AudioFileError

log = logging.getLogger(__name__)

_SFC_SET_UPDATE_HEADER_AUTO = 0x1061  # libsndfile's sndfile.h
_DRAIN_SECONDS = 0.05
_BUFFER_SECONDS = 10.0


class RingBuffer:
    """A single-producer, single-consumer ring of (channels, capacity) float32 samples.

    ``write`` (the audio thread) and ``read`` (another thread) each move only their own
    counter, after copying, so no lock is needed; neither allocates.
    """

    def __init__(self, channels: int, capacity: int):
        self.buffer = np.zeros((channels, capacity), np.float32)
        self.capacity = capacity
        self.written = 0  # samples ever written
        self.read_count = 0  # samples ever read
        self.dropped = 0  # samples refused because the ring was full

    @property
    def available(self) -> int:
        return self.written - self.read_count

    def write(self, block: np.ndarray) -> int:
        """Copy (channels, n); returns how many samples fitted (the rest count as dropped)."""
        n = min(block.shape[1], self.capacity - self.available)
        self.dropped += block.shape[1] - n
        first = self.written % self.capacity
        head = min(n, self.capacity - first)
        self.buffer[:, first : first + head] = block[:, :head]
        self.buffer[:, : n - head] = block[:, head:n]
        self.written += n
        return n

    def read(self, out: np.ndarray) -> int:
        """Copy up to out.shape[1] samples into out (channels, m); returns how many."""
        n = min(out.shape[1], self.available)
        first = self.read_count % self.capacity
        head = min(n, self.capacity - first)
        out[:, :head] = self.buffer[:, first : first + head]
        out[:, head:n] = self.buffer[:, : n - head]
        self.read_count += n
        return n


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

    ``write(block)`` is safe to call from the audio callback; ``close()`` drains what is
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
        self._stop = threading.Event()
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
        return self._ring.dropped

    def write(self, block: np.ndarray) -> None:
        """block: (channels, n) float32; called from the audio thread, never blocks."""
        self._ring.write(block)

    def _drain_loop(self) -> None:
        while not self._stop.wait(_DRAIN_SECONDS):
            if not self._drain():
                return
        self._drain()

    def _drain(self) -> bool:
        n = self._ring.read(self._chunk)
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
        self._stop.set()
        self._thread.join()
        for handle, _rows in self._files:
            handle.close()
        if self._error is not None:
            names = ", ".join(repr(str(path)) for path in self.paths)
            raise AudioFileError(f"writing {names} failed: {self._error}")
        return self.frames_written
