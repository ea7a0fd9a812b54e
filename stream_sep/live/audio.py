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
from pathlib import Path

import numpy as np

from stream_sep.dsp.scratch import SizeCache
from stream_sep.live.recording import RingBuffer

log = logging.getLogger(__name__)

DEFAULT_CAPACITY = 8192  # frames per engine call; longer device blocks are cut into pieces
_READER_NAP_SECONDS = 0.01  # how long the file reader waits for room in a full ring


class FileSource:
    """An audio file played once from the start, decoded on a reader thread.

    The reader decodes blocks, matches the stream's channels, resamples to the stream rate
    (soxr's streaming resampler: the same samples as resampling the whole file at once) and
    keeps ``ahead_seconds`` ready in a ring buffer; ``read`` (the audio thread) only copies
    from it. So a one-hour file takes seconds of memory, not gigabytes, and the audio thread
    never touches the disk. ``frames`` is exact before playback starts.
    """

    def __init__(
        self, path: Path, rate: int, channels: int, ahead_seconds: float = 5.0, block: int = 8192
    ):
        import soundfile as sf

        self.path, self.name = Path(path), Path(path).name
        self.rate, self.channels, self.block = rate, channels, block
        info = sf.info(str(path))
        self.file_rate = int(info.samplerate)
        # soxr (one-shot or streaming) returns round(n * ratio) samples (checked in the tests).
        self.frames = int(round(info.frames * rate / self.file_rate))
        self._position = 0.0  # (a float: see BlockProcessor._block)
        self.underrun_frames = 0  # frames the reader had not decoded in time (played silent)
        self.error: str | None = None  # why decoding stopped early, if it did
        self._ring = RingBuffer(channels, max(int(ahead_seconds * rate), 4 * block))
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._read_file, name="file-reader", daemon=True)
        self._reader.start()

    @property
    def position(self) -> int:
        """Frames handed to the audio thread, silence past the end included."""
        return int(self._position)

    @property
    def buffered(self) -> int:
        """Frames decoded and waiting in the ring."""
        return self._ring.available

    @property
    def decoding(self) -> bool:
        return self._reader.is_alive()

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Block until the ring is full or the file is decoded (call before streaming)."""
        deadline = time.monotonic() + timeout
        while self._reader.is_alive() and time.monotonic() < deadline:
            if self._ring.available >= min(self._ring.capacity - self.block, self.frames):
                return
            time.sleep(0.005)

    def read(self, out: np.ndarray) -> None:
        """Fill out (channels, n), C-contiguous, with the next n samples (silence past the
        end). Audio thread: copies only; a block size seen before allocates nothing."""
        got = self._ring.read(out)  # silence past what the reader has decoded
        if got < out.shape[1]:  # (rare: allocates)
            due = min(self.frames - self._position, out.shape[1])  # of the file, still to come
            if due > got:
                self.underrun_frames += int(due - got)
        self._position += out.shape[1]

    def close(self) -> None:
        self._stop.set()
        self._reader.join(timeout=1.0)

    # reader thread -----------------------------------------------------------------
    def _read_file(self) -> None:
        import soundfile as sf
        import soxr

        resampler = None
        if self.file_rate != self.rate:
            resampler = soxr.ResampleStream(
                self.file_rate, self.rate, self.channels, dtype="float32", quality="HQ"
            )
        produced = 0
        try:
            with sf.SoundFile(str(self.path)) as handle:
                for chunk in handle.blocks(self.block, dtype="float32", always_2d=True):
                    audio = match_channels(chunk.T, self.channels)
                    if resampler is not None:
                        audio = resampler.resample_chunk(np.ascontiguousarray(audio.T)).T
                    produced += self._push(audio[:, : self.frames - produced])
                    if self._stop.is_set():
                        return
            if resampler is not None:
                tail = resampler.resample_chunk(
                    np.zeros((0, self.channels), np.float32), last=True
                ).T
                produced += self._push(tail[:, : self.frames - produced])
        except Exception as error:  # noqa: BLE001 - a file that breaks mid-way ends the input
            self.error = (
                f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            )
            log.info("reading %s stopped early: %s", self.name, self.error)
        if produced < self.frames:
            if self.error is None and not self._stop.is_set():
                self.error = f"the file ended after {produced} of {self.frames} frames"
            silence = np.zeros((self.channels, self.block), np.float32)
            while produced < self.frames and not self._stop.is_set():
                produced += self._push(silence[:, : self.frames - produced])

    def _push(self, audio: np.ndarray) -> int:
        """Write (channels, n) into the ring, waiting for room; returns n (0 if stopped)."""
        audio = np.ascontiguousarray(audio, np.float32)
        done = 0
        while done < audio.shape[1] and not self._stop.is_set():
            done += self._ring.write_some(audio[:, done:])
            if done < audio.shape[1]:
                # Full: poll rather than be woken, so that read() (the audio thread) never
                # touches a lock. The ring holds seconds; 10 ms naps cost nothing.
                self._stop.wait(_READER_NAP_SECONDS)
        return done


def match_channels(audio: np.ndarray, channels: int) -> np.ndarray:
    """(n_in, samples) -> (channels, samples): mono is copied, more channels are averaged
    to mono or cut to the first two."""
    if audio.shape[0] == channels:
        return audio
    if channels == 1:
        return audio.mean(axis=0, keepdims=True)
    if audio.shape[0] == 1:
        return np.repeat(audio, channels, axis=0)
    return audio[:channels]


class _Block:
    """The scratch of one block of n frames (n <= the processor's capacity): the device's
    input (n, C) and its (C, n) view for the engine, a file's block or silence (C, n), the
    output (C, n), where each device channel takes it from (flat indices, (n, O): one
    ``take`` lays it out), and the meters' scratch (see :func:`_peak`)."""

    def __init__(self, channels: int, out_channels: int, n: int):
        self.n, self.samples = n, float(n)
        self.frames_in = np.zeros((n, channels), np.float32)
        self.device_source = self.frames_in.T
        self.source = np.zeros((channels, n), np.float32)
        self.target = np.zeros((channels, n), np.float32)
        self.flat_target = self.target.reshape(-1)
        rows = np.arange(out_channels) % channels  # device channel k plays row k % C
        self.layout = np.ascontiguousarray(rows[None, :] * n + np.arange(n)[:, None], np.intp)
        flat = np.zeros(channels * n, np.float32)
        self.frames_magnitude = (flat.reshape(n, channels), flat)
        self.rows_magnitude = (flat.reshape(channels, n), flat)
        self.at = np.zeros((), np.intp)


class _Split:
    """A device block longer than the processor's capacity: its input and output copied
    whole (frames, C) and (frames, O), and its pieces, each (scratch, input rows, output
    rows) with views made once."""

    def __init__(self, channels: int, out_channels: int, frames: int, capacity: int, scratch):
        self.frames_in = np.zeros((frames, channels), np.float32)
        self.frames_out = np.zeros((frames, out_channels), np.float32)
        self.pieces = tuple(
            (
                scratch(min(capacity, frames - first)),
                self.frames_in[first : first + capacity],
                self.frames_out[first : first + capacity],
            )
            for first in range(0, frames, capacity)
        )
        self.count = len(self.pieces)


class BlockProcessor:
    """Source -> engine -> output block -> (device, recorder), one block at a time.

    engine: a stream_sep.engine.Separator (``channels``, ``process``, ``hand_over`` and
        ``faded_out`` are used here).
    out_channels: channels of the output device (engine channel k % C feeds device channel k;
        with stems, see :func:`stem_rows`).
    source: a FileSource instead of a capture device, or None.
    recorder: a stream_sep.live.recording.Recorder, or None.
    end_frame: stop (``finished``) after this many frames, and record no more than that; or
        None to run (and record) until stopped.
    mic: a stream_sep.live.mic.MicMix mixed into every processed block (after the engine), or None.
    """

    def __init__(
        self,
        engine,
        out_channels: int,
        source: FileSource | None = None,
        recorder=None,
        end_frame: int | None = None,
        capacity: int = DEFAULT_CAPACITY,
        mic=None,
    ):
        self.engine = engine
        self.mic = mic
        self.channels = engine.channels
        self.out_channels = out_channels
        self.source = source
        self.recorder = recorder
        self.end_frame = end_frame
        self.capacity = capacity
        self._blocks, self._splits = SizeCache(), SizeCache()  # scratch by block size
        self.stems = bool(getattr(engine, "stems", False))  # music and vocals apart
        self._stem_sizes = SizeCache()
        self.faded = False  # the engine's fade-out (asked by the main thread) is complete
        self.finished = False  # end_frame reached
        self._frames = 0.0  # frames processed (floats: CPython reuses float objects, while
        self._callbacks = 0.0  # every integer above 256 is a new allocation)
        self.xruns = 0  # callbacks whose PortAudio status reported an over/underflow
        self.muted_blocks = 0  # blocks the last-resort guard silenced (should stay 0)
        self.input_peak = 0.0  # since the main thread last reset it
        self.output_peak = 0.0

    @property
    def frames(self) -> int:
        """Frames processed."""
        return int(self._frames)

    @frames.setter
    def frames(self, value) -> None:
        self._frames = float(value)

    @property
    def callbacks(self) -> int:
        return int(self._callbacks)

    @callbacks.setter
    def callbacks(self, value) -> None:
        self._callbacks = float(value)

    # ------------------------------------------------------------ sounddevice callbacks
    def duplex_callback(self, indata, outdata, frames, time_info, status) -> None:
        self._count_xruns(status)
        self._run(indata, outdata, frames)
        self._hand_over()

    def input_callback(self, indata, frames, time_info, status) -> None:
        self._count_xruns(status)
        self._run(indata, None, frames)
        self._hand_over()

    def output_callback(self, outdata, frames, time_info, status) -> None:
        self._count_xruns(status)
        self._run(None, outdata, frames)
        self._hand_over()

    def tick(self, frames: int) -> None:
        """One block with neither a capture nor a playback device (FileClock)."""
        self._run(None, None, frames)
        self._hand_over()

    def _hand_over(self) -> None:
        """Last in a callback: the threads beside this one (the model's, the room's, the
        recording's) are woken once the whole block is done, rather than take the
        interpreter in the middle of it."""
        self.engine.hand_over()
        if self.mic is not None:
            self.mic.hand_over()
        if self.recorder is not None:
            self.recorder.hand_over()

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
        """indata: (frames, C) or None; outdata: (frames, O) or None (sounddevice layout).
        A block size seen before allocates nothing (tests/test_realtime_alloc.py): whole
        arrays of scratch kept per size, copied in and out, no view made per block."""
        if self.stems:
            self._run_stems(indata, outdata, frames)
            return
        self._callbacks += 1.0
        if frames <= self.capacity:
            if frames:
                self._block(self._scratch(frames), indata, outdata)
            return
        split = self._split(frames)
        if indata is not None:
            np.copyto(split.frames_in, indata)
        index = 0
        while index < split.count:  # (a for loop keeps an iterator object alive meanwhile)
            piece, piece_in, piece_out = split.pieces[index]
            self._block(
                piece, None if indata is None else piece_in, None if outdata is None else piece_out
            )
            index += 1
        if outdata is not None:
            np.copyto(outdata, split.frames_out)

    def _scratch(self, n: int) -> _Block:
        block = self._blocks.get(n)
        if block is None:
            block = self._blocks.keep(n, _Block(self.channels, self.out_channels, n))
        return block

    def _split(self, frames: int) -> _Split:
        split = self._splits.get(frames)
        if split is None:
            split = self._splits.keep(
                frames,
                _Split(self.channels, self.out_channels, frames, self.capacity, self._scratch),
            )
        return split

    def _block(self, piece: _Block, indata, outdata) -> None:
        """One block of ``piece.n`` <= capacity frames: indata (n, C) or None -> the engine,
        the microphone, the last-resort check, the meters, the recorder -> outdata (n, O) or
        None (device channel k plays engine channel k % C)."""
        if indata is not None:
            np.copyto(piece.frames_in, indata)
            source = piece.device_source
            peak = _peak(piece.frames_in, piece.frames_magnitude, piece.at)
        else:
            source = piece.source
            if self.source is not None:
                self.source.read(source)
            else:
                source.fill(0.0)
            peak = _peak(source, piece.rows_magnitude, piece.at)
        if peak > self.input_peak:
            self.input_peak = peak
        target = piece.target
        self.engine.process(source, out=target, hand_over=False)
        if self.mic is not None:
            self.mic.mix_into(target)
        peak = _peak(target, piece.rows_magnitude, piece.at)
        if not peak <= 1.0:  # also catches NaN: never send it out
            target.fill(0.0)
            self.muted_blocks += 1
            peak = 0.0
        if peak > self.output_peak:
            self.output_peak = peak
        if self.recorder is not None and not self.faded:
            self._record(target, piece.samples)
        if outdata is not None:
            piece.flat_target.take(piece.layout, 0, outdata, "clip")
        if not self.faded and self.engine.faded_out:
            self.faded = True
        self._frames += piece.samples
        if self.end_frame is not None and self._frames >= self.end_frame:
            self.finished = True

    def _record(self, target: np.ndarray, samples: float | None = None) -> None:
        """Record target (C, n) (samples: n, as a float), but nothing at or past
        ``end_frame``: a recording holds exactly ``end_frame`` frames however the stream is
        cut into blocks, and however long the stream runs on while the main thread notices
        the end and fades out."""
        if samples is None:
            samples = float(target.shape[1])
        if self.end_frame is not None and self._frames + samples > self.end_frame:
            due = self.end_frame - self._frames
            if due > 0:
                self.recorder.write(target, due)
            return
        self.recorder.write(target)

    # ------------------------------------------------------------ stems
    def _run_stems(self, indata, outdata, frames: int) -> None:
        """As :meth:`_run` for an engine that gives stems: (2C, n) blocks laid out on the
        device as :func:`stem_rows` says, and recorded as two files. A device block of a
        size seen before (up to ``capacity`` frames) allocates nothing
        (tests/test_live_stems.py); longer ones go in pieces through fresh scratch."""
        self._callbacks += 1.0
        if frames <= self.capacity:
            self._stems_block(indata, outdata, self._stem_scratch(frames))
        else:
            done = 0
            while done < frames:
                n = min(frames - done, self.capacity)
                inside = None if indata is None else indata[done : done + n]
                outside = None if outdata is None else outdata[done : done + n]
                self._stems_block(inside, outside, self._stem_scratch(n))
                done += n
        # last: the model's worker is woken once the whole block is done, rather than take
        # the interpreter in the middle of it
        self.engine.hand_over()

    def _stem_scratch(self, n: int) -> _StemScratch:
        scratch = self._stem_sizes.get(n)
        if scratch is None:
            scratch = self._stem_sizes.keep(n, _StemScratch(self.channels, n, self.out_channels))
        return scratch

    def _stems_block(self, indata, outdata, scratch: _StemScratch) -> None:
        """indata (n, C) or None -> the engine's stems -> outdata (n, O) or None, whole
        arrays only (no view is made per block)."""
        if indata is not None:
            np.copyto(scratch.frames_in, indata)
            source = scratch.device_source
            peak = _peak(scratch.frames_in, scratch.in_frames_magnitude, scratch.at)
        else:
            source = scratch.source
            if self.source is not None:
                self.source.read(source)
            else:
                source.fill(0.0)
            peak = _peak(source, scratch.in_rows_magnitude, scratch.at)
        if peak > self.input_peak:
            self.input_peak = peak
        stems = scratch.stems
        self.engine.process_stems(source, out=stems, hand_over=False)
        peak = _peak(stems, scratch.out_magnitude, scratch.at)
        if not peak <= 1.0:  # also NaN: never sent out
            stems.fill(0.0)
            self.muted_blocks += 1
            peak = 0.0
        if peak > self.output_peak:
            self.output_peak = peak
        if outdata is not None:
            scratch.flat.take(scratch.layout, 0, outdata, "clip")
        if self.recorder is not None and not self.faded:
            self._record(stems)
        if not self.faded and self.engine.faded_out:
            self.faded = True
        self._frames += scratch.n
        if self.end_frame is not None and self._frames >= self.end_frame:
            self.finished = True

    # ------------------------------------------------------------ main thread
    def take_peaks(self) -> tuple[float, float]:
        """Input and output peaks since the last call (read by the status line)."""
        peaks = (self.input_peak, self.output_peak)
        self.input_peak = self.output_peak = 0.0
        return peaks


# Where the stems go on an output device of O >= 4 channels: device channel k (0-based) plays
# stem row stem_rows(C, O)[k] of the (2C, n) stems (rows 0..C-1 the music, C..2C-1 the vocals);
# so 1-2 the music, 3-4 the vocals, a mono stream on both channels of each pair, and any
# further device channels silent.
STEM_DEVICE_CHANNELS = 4


def stem_rows(channels: int, out_channels: int) -> list[int | None]:
    """For each device channel, the stem row it plays (None: silence)."""
    rows: list[int | None] = [k % channels for k in range(2)]
    rows += [channels + k % channels for k in range(2)]
    return rows + [None] * (out_channels - STEM_DEVICE_CHANNELS)


def _peak(block: np.ndarray, magnitude: tuple[np.ndarray, np.ndarray], at: np.ndarray) -> float:
    """The largest |sample| of a C-contiguous ``block`` (NaN if it holds one). magnitude:
    scratch of the block's shape and its flat view; at: a 0-d index. ``argmax`` into ``at``:
    no reduction machinery, no numpy scalar, nothing allocated."""
    shaped, flat = magnitude
    np.abs(block, out=shaped)
    flat.argmax(None, at)
    return flat.item(int(at))


class _StemScratch:
    """One block size n of the stems path: the device's input (n, C) and its (C, n) view, a
    file's block or silence (C, n), the stems (2C, n) and a silent row after them, the device
    layout as flat indices for one ``take`` into (n, O), and the peak meters' scratch (each
    with its flat view)."""

    def __init__(self, channels: int, n: int, out_channels: int):
        self.n = n
        self.frames_in = np.zeros((n, channels), np.float32)
        self.device_source = self.frames_in.T
        self.source = np.zeros((channels, n), np.float32)
        rows = 2 * channels
        self.padded = np.zeros((rows + 1, n), np.float32)  # the last row stays silent
        self.stems = self.padded[:rows]
        self.flat = self.padded.reshape(-1)
        chosen = [rows if row is None else row for row in stem_rows(channels, out_channels)]
        columns = max(out_channels, STEM_DEVICE_CHANNELS)
        index = np.array(chosen[:columns], np.intp)[None, :] * n + np.arange(n)[:, None]
        self.layout = np.ascontiguousarray(index, np.intp)  # (n, O)
        in_flat = np.zeros(channels * n, np.float32)
        self.in_frames_magnitude = (in_flat.reshape(n, channels), in_flat)
        self.in_rows_magnitude = (in_flat.reshape(channels, n), in_flat)
        out_magnitude = np.zeros((rows, n), np.float32)
        self.out_magnitude = (out_magnitude, out_magnitude.reshape(-1))
        self.at = np.zeros((), np.intp)


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
