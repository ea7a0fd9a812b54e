"""The audio streams of one live run, opened, started and closed.

With a device on either side, one PortAudio stream (duplex, input-only or output-only) calls
the :class:`~stream_sep.live.audio.BlockProcessor`; with files on both sides a
:class:`~stream_sep.live.audio.FileClock` paces it instead. ``--mic`` adds its own capture
stream at PortAudio's low latency. Closing never hangs on a vanished device or server, and
:class:`StallWatch` notices a stream that stays open but no longer calls back.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time

from stream_sep.errors import DeviceError
from stream_sep.live import jack_ports, status, virtual
from stream_sep.live.audio import BlockProcessor, FileClock
from stream_sep.live.route import Mic, Route

log = logging.getLogger(__name__)

FILE_CLOCK_BLOCKSIZE = 1024
CLOSE_SECONDS = 1.0  # a stream whose device vanished may never close: give up after this
REOPEN_SECONDS = 5.0  # a sound server that restarts gets this long to answer a reopen
REOPEN_RETRY_SECONDS = 0.25
STALL_SECONDS = 2.0  # no callback for this long (and 4 device blocks) is a stalled stream


class Streams:
    """The main stream (or file clock) and the --mic stream of a ``route``; ``blocksize``:
    device frames per callback (0 = the device chooses)."""

    def __init__(self, route: Route, processor: BlockProcessor, blocksize: int, mic: Mic | None):
        self.route, self.processor, self.mic = route, processor, mic
        self.requested_blocksize = blocksize
        self.stream = None
        self.clock = None
        # --stems through JACK: the output ports' names, and why they are PortAudio's if so
        self.jack_ports: list[str] = []
        self.jack_ports_note: str | None = None

    @property
    def blocksize(self) -> int:
        """Frames per block: the file clock's, or what was asked of the device (0 = its own)."""
        return self.clock.blocksize if self.clock is not None else self.requested_blocksize

    @property
    def active(self) -> bool:
        if self.clock is not None:
            return self.clock.active
        return bool(self.stream is not None and self.stream.active)

    def open(self) -> None:
        """Create (not start) the streams or the file clock; device errors come out here,
        before any output file exists."""
        virtual.open_for(self.route.sink.virtual)  # --output virtual: made for this run
        if self.mic is not None:
            self._open_mic()
        source, sink = self.route.source, self.route.sink
        if source.device is None and sink.device is None:
            blocksize = self.requested_blocksize or FILE_CLOCK_BLOCKSIZE
            self.clock = FileClock(self.processor, self.route.rate, blocksize)
            return
        self._open_main()

    def start(self) -> None:
        if self.mic is not None:
            self._start_mic()
        if self.clock is not None:
            self.clock.start()
            return
        self._start_main()

    def reopen(self, seconds: float = REOPEN_SECONDS) -> bool:
        """After the main stream stopped on its own, close it and open and start a new one
        on the same devices; the processor goes on where it was. Opening is tried again for
        ``seconds`` (a sound server that restarts), then its :class:`DeviceError` comes out.
        False, with nothing opened, when the old stream does not close: its device or server
        is gone and PortAudio is stuck in it (measured with JACK)."""
        stream, self.stream = self.stream, None
        if not _close_or_abandon(stream):
            return False
        deadline = time.monotonic() + seconds
        while True:
            try:
                self._open_main()
                self._start_main()
                return True
            except DeviceError:
                if self.stream is not None:  # opened but did not start
                    stream, self.stream = self.stream, None
                    if not _close_or_abandon(stream):
                        raise
                if time.monotonic() >= deadline:
                    raise
                time.sleep(REOPEN_RETRY_SECONDS)

    def measure_mic(self) -> None:
        """The mic path's device latencies, as PortAudio reports them (None when unusable)."""
        mic_side = status.device_latency(self.mic.stream)
        to_device = self.route.sink.device is not None
        out_side = status.device_latency(self.stream) if to_device else None
        self.mic.mixer.stream_latency = (
            mic_side[0] if mic_side else None,
            out_side[1] if out_side else (None if to_device else 0.0),
        )

    def close(self) -> None:
        if self.mic is not None and self.mic.stream is not None:
            stream, self.mic.stream = self.mic.stream, None
            _close_or_abandon(stream)
        if self.clock is not None:
            self.clock.stop()
        if self.stream is not None:
            stream, self.stream = self.stream, None
            _close_or_abandon(stream)
        virtual.close_for(self.route.sink.virtual)

    def _open_main(self) -> None:
        import sounddevice as sd

        for end in (self.route.source, self.route.sink):  # ALSA's pulse plugin reads these
            if end.system is not None:
                os.environ.update(end.system.environment)
        try:
            self.stream = self._main_stream(sd)
        except sd.PortAudioError as error:
            raise DeviceError(f"cannot open the audio stream {self.route.name}: {error}") from None

    def _start_main(self) -> None:
        import sounddevice as sd

        try:
            self.stream.start()
        except sd.PortAudioError as error:
            raise DeviceError(f"cannot start the audio stream {self.route.name}: {error}") from None
        sink = self.route.sink.device
        if self.route.stems and sink is not None and sink.hostapi == jack_ports.JACK_HOSTAPI:
            self.jack_ports, self.jack_ports_note = jack_ports.name_stem_ports()

    def _main_stream(self, sd):
        """Duplex, input-only (recording to a file) or output-only (playing a file)."""
        route, processor = self.route, self.processor
        source, sink = route.source.device, route.sink.device
        common = {
            "samplerate": route.rate,
            "blocksize": self.requested_blocksize,
            "dtype": "float32",
        }
        if source is not None and sink is not None:
            return sd.Stream(
                device=(source.index, sink.index),
                channels=(route.channels, route.out_channels),
                callback=processor.duplex_callback,
                **common,
            )
        if source is not None:
            return sd.InputStream(
                device=source.index,
                channels=route.channels,
                callback=processor.input_callback,
                **common,
            )
        return sd.OutputStream(
            device=sink.index,
            channels=route.out_channels,
            callback=processor.output_callback,
            **common,
        )

    def _open_mic(self) -> None:
        import sounddevice as sd

        mic = self.mic
        try:
            mic.stream = sd.InputStream(
                device=mic.device.index,
                channels=1,
                samplerate=self.route.rate,
                dtype="float32",
                latency="low",
                callback=mic.mixer.input_callback,
            )
        except sd.PortAudioError as error:
            raise DeviceError(f"cannot open --mic {mic.device.label()}: {error}") from None

    def _start_mic(self) -> None:
        import sounddevice as sd

        try:
            self.mic.stream.start()
        except sd.PortAudioError as error:
            raise DeviceError(f"cannot start --mic {self.mic.device.label()}: {error}") from None


class StallWatch:
    """Notices a device stream that PortAudio still calls active but that has stopped
    calling back. (Measured: when the PulseAudio server dies, PortAudio's ALSA thread waits
    forever on a lock inside ALSA's pulse plugin; the stream never turns inactive.)

    ``stalled`` is asked once per status tick with the callback count. A stall is
    ``seconds`` of wall time without a new callback, and at least as many ticks as those
    seconds hold, so a process that was itself stopped (SIGSTOP, a suspended laptop) is not
    taken for a stalled device when it wakes up: its first tick sees a long gap but only one
    tick.
    """

    def __init__(self, tick: float, block_seconds: float = 0.0):
        self.seconds = max(STALL_SECONDS, 4 * block_seconds)
        self.min_ticks = math.ceil(self.seconds / tick)
        self.restart()

    def restart(self) -> None:
        """Forget what was seen (a new stream): the next look starts the clock."""
        self.callbacks, self.since, self.ticks = -1, 0.0, 0

    def stalled(self, callbacks: int, now: float) -> bool:
        if callbacks != self.callbacks:
            self.callbacks, self.since, self.ticks = callbacks, now, 0
            return False
        self.ticks += 1
        return self.ticks >= self.min_ticks and now - self.since >= self.seconds


def _close_or_abandon(stream) -> bool:
    """Close ``stream``; if it has not closed after ``CLOSE_SECONDS``, leave it and keep
    PortAudio from being terminated at exit. True when it closed."""
    if _close_stream(stream, CLOSE_SECONDS):
        return True
    log.info("an audio stream did not close in %.1f s; leaving it", CLOSE_SECONDS)
    _abandon_portaudio()
    return False


def _close_stream(stream, timeout: float) -> bool:
    """stop() and close() a sounddevice stream on a helper thread; False if they have not
    returned after ``timeout`` seconds. (Measured: once the JACK server is gone, PortAudio's
    JACK backend never returns from Pa_StopStream/Pa_AbortStream/Pa_CloseStream.)"""
    closed = threading.Event()

    def close() -> None:
        stream.stop()
        stream.close()
        closed.set()

    threading.Thread(target=close, name="stream-sep-close", daemon=True).start()
    return closed.wait(timeout)


def _abandon_portaudio() -> None:
    """PortAudio is stuck (its device or server vanished): do not let sounddevice call
    Pa_Terminate at exit, which then hangs or aborts the process (pa_jack.c asserts)."""
    import atexit

    import sounddevice as sd

    handler = getattr(sd, "_exit_handler", None)
    if handler is not None:
        atexit.unregister(handler)
