"""The real-time part of the live command: what runs on the audio thread, and its clocks.

:class:`BlockProcessor` is called once per device block (from a sounddevice callback) or, when
no device is involved, from :class:`FileClock`, a thread that paces blocks in real time. Per
block it only copies between preallocated buffers and the engine: no allocation of audio
buffers, no locks, no prints, no exceptions of its own. The main thread reads its counters.
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np

log = logging.getLogger(__name__)

DEFAULT_CAPACITY = 8192  # frames per engine call; longer device blocks are cut into pieces


class FileSource:
    """A whole file, already resampled to the stream rate, played once from the start.

    audio: (channels, samples) float32. After its end, ``read`` gives silence.
    """

    def __init__(self, audio: np.ndarray, name: str):
        self.audio = np.ascontiguousarray(audio, np.float32)
        self.name = name
        self.position = 0

    @property
    def frames(self) -> int:
        return self.audio.shape[1]

    def read(self, out: np.ndarray) -> None:
        """Fill out (channels, n) with the next n samples (silence past the end)."""
        n = out.shape[1]
        start = min(self.position, self.frames)
        real = min(n, self.frames - start)
        out[:, :real] = self.audio[:, start : start + real]
        out[:, real:] = 0.0
        self.position += n


class BlockProcessor:
    """Source -> engine -> output block -> (device, recorder), one block at a time.

    engine: a stream_sep.engine.Separator (only ``channels`` and ``process`` are used here).
    out_channels: channels of the output device (engine channel k % C feeds device channel k).
    source: a FileSource instead of a capture device, or None.
    recorder: a stream_sep.recording.Recorder, or None.
    end_frame: stop (``finished``) after this many frames, or None to run until stopped.
    """

    def __init__(
        self,
        engine,
        out_channels: int,
        source: FileSource | None = None,
        recorder=None,
        end_frame: int | None = None,
        capacity: int = DEFAULT_CAPACITY,
    ):
        self.engine = engine
        self.channels = engine.channels
        self.out_channels = out_channels
        self.source = source
        self.recorder = recorder
        self.end_frame = end_frame
        self.capacity = capacity
        self._in = np.zeros((self.channels, capacity), np.float32)
        self._out = np.zeros((self.channels, capacity), np.float32)
        self.faded = False  # the engine's fade-out (asked by the main thread) is complete
        self.finished = False  # end_frame reached
        self.frames = 0  # frames processed
        self.callbacks = 0
        self.xruns = 0  # callbacks whose PortAudio status reported an over/underflow
        self.muted_blocks = 0  # blocks the last-resort guard silenced (should stay 0)
        self.input_peak = 0.0  # since the main thread last reset it
        self.output_peak = 0.0

    # ------------------------------------------------------------ sounddevice callbacks
    def duplex_callback(self, indata, outdata, frames, time_info, status) -> None:
        self._count_xruns(status)
        self._run(indata, outdata, frames)

    def input_callback(self, indata, frames, time_info, status) -> None:
        self._count_xruns(status)
        self._run(indata, None, frames)

    def output_callback(self, outdata, frames, time_info, status) -> None:
        self._count_xruns(status)
        self._run(None, outdata, frames)

    def tick(self, frames: int) -> None:
        """One block with neither a capture nor a playback device (FileClock)."""
        self._run(None, None, frames)

    def _count_xruns(self, status) -> None:
        # PortAudio's JACK backend raises input overflow and output underflow together:
        # count callbacks, not flags.
        if (
            status.input_overflow
            or status.input_underflow
            or status.output_underflow
            or status.output_overflow
        ):
            self.xruns += 1

    # ------------------------------------------------------------ per block
    def _run(self, indata, outdata, frames: int) -> None:
        """indata: (frames, C) or None; outdata: (frames, O) or None (sounddevice layout)."""
        self.callbacks += 1
        direct = outdata is not None and self.out_channels == self.channels
        done = 0
        while done < frames:
            n = min(frames - done, self.capacity)
            if indata is not None:
                source = indata[done : done + n].T
            else:
                source = self._in[:, :n]
                if self.source is not None:
                    self.source.read(source)
                else:
                    source.fill(0.0)
            target = outdata[done : done + n].T if direct else self._out[:, :n]
            self._block(source, target)
            if outdata is not None and not direct:
                self._fan_out(target, outdata[done : done + n])
            done += n

    def _block(self, source: np.ndarray, target: np.ndarray) -> None:
        """source, target: (C, n) float32 views."""
        n = source.shape[1]
        if n == 0:
            return
        peak = max(float(source.max()), -float(source.min()))
        if peak > self.input_peak:
            self.input_peak = peak
        self.engine.process(source, out=target)
        high, low = float(target.max()), float(target.min())
        if not (high <= 1.0 and low >= -1.0):  # also catches NaN: never send it out
            target.fill(0.0)
            self.muted_blocks += 1
            high = low = 0.0
        if max(high, -low) > self.output_peak:
            self.output_peak = max(high, -low)
        if self.recorder is not None and not self.faded:
            self.recorder.write(target)
        if not self.faded and self.engine.faded_out:
            self.faded = True
        self.frames += n
        if self.end_frame is not None and self.frames >= self.end_frame:
            self.finished = True

    def _fan_out(self, target: np.ndarray, outdata: np.ndarray) -> None:
        """target (C, n) -> outdata (n, O): device channel k plays engine channel k % C."""
        for k in range(self.out_channels):
            outdata[:, k] = target[k % self.channels]

    # ------------------------------------------------------------ main thread
    def take_peaks(self) -> tuple[float, float]:
        """Input and output peaks since the last call (read by the status line)."""
        peaks = (self.input_peak, self.output_peak)
        self.input_peak = self.output_peak = 0.0
        return peaks


class FileClock:
    """Calls ``processor.tick(block)`` in real time on a thread: a device with no device.

    Used when both --input and --output are files: the stream runs exactly as it would live
    (same engine, same deadlines), paced by the monotonic clock.
    """

    def __init__(self, processor: BlockProcessor, sample_rate: int, blocksize: int):
        self.processor = processor
        self.blocksize = blocksize
        self.period = blocksize / sample_rate
        self.late_blocks = 0  # blocks started more than one period late (like an xrun)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="stream-sep-clock", daemon=True)

    @property
    def active(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _loop(self) -> None:
        deadline = time.perf_counter()
        while not self._stop.is_set():
            self.processor.tick(self.blocksize)
            deadline += self.period
            wait = deadline - time.perf_counter()
            if wait < -self.period:
                self.late_blocks += 1
                deadline = time.perf_counter()
            elif wait > 0:
                self._stop.wait(wait)
