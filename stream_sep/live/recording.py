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


class Recorder:
    """Writes (channels, n) float32 blocks to a WAV file from a background thread.

    ``write(block)`` is safe to call from the audio callback; ``close()`` drains what is
    left, closes the file and returns the number of frames written.
    """

    def __init__(self, path: str | os.PathLike, sample_rate: int, channels: int):
        self.path = check_recording_path(path)
        self.sample_rate = sample_rate
        self.frames_written = 0
        self._ring = RingBuffer(channels, int(_BUFFER_SECONDS * sample_rate))
        self._chunk = np.zeros((channels, self._ring.capacity), np.float32)
        self._file = self._open(channels)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._drain_loop, name="stream-sep-recorder")
        self._thread.daemon = True
        self._thread.start()

    def _open(self, channels: int) -> sf.SoundFile:
        try:
            handle = sf.SoundFile(
                str(self.path), "w", self.sample_rate, channels, subtype="FLOAT", format="WAV"
            )
        except (sf.LibsndfileError, RuntimeError, OSError) as error:
            raise AudioFileError(f"cannot write {str(self.path)!r}: {error}") from None
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
        try:
            # soundfile wants (frames, channels).
            self._file.write(self._chunk[:, :n].T)
        except (sf.LibsndfileError, RuntimeError, OSError) as error:
            self._error = error
            log.error("recording to %s stopped: %s", self.path, error)
            return False
        self.frames_written += n
        return True

    def close(self) -> int:
        """Write what is buffered, close the file; returns frames written."""
        self._stop.set()
        self._thread.join()
        self._file.close()
        if self._error is not None:
            raise AudioFileError(f"writing {str(self.path)!r} failed: {self._error}")
        return self.frames_written
