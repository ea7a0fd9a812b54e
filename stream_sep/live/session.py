"""One live run, from opening the stream to the summary.

:class:`LiveSession` opens the stream (or the file clock) on a checked
:class:`~stream_sep.live.route.Route` with a built engine, starts it, reports the start-up
line, runs the status loop (keys, panel, failure and stream checks), fades out, closes
everything (never hanging on a vanished device) and reports the summary. Everything it has
to say goes to a :class:`~stream_sep.live.events.LiveEvents`; it never prints.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import threading
import time

from stream_sep.errors import DeviceError
from stream_sep.live import keys, status
from stream_sep.live.audio import BlockProcessor, FileSource
from stream_sep.live.controls import Controls
from stream_sep.live.events import LiveEvents
from stream_sep.live.panel import UPDATE_SECONDS as PANEL_TICK_SECONDS
from stream_sep.live.panel import Panel
from stream_sep.live.recording import Recorder, stem_paths
from stream_sep.live.route import Mic, Route
from stream_sep.live.streams import StallWatch, Streams

log = logging.getLogger(__name__)

_TICK_SECONDS = 0.25  # status line and key polling: 4 times a second
_FADE_WAIT_SECONDS = 2.0
# A device stream that stops on its own (ALSA's pulse plugin gives up on a busy machine; the
# sound server restarts) is opened again at most this many times a run.
MAX_STREAM_REOPENS = 3
STREAM_STALLED = "stream stalled"  # the stop reason when the device stopped calling back
STOP_REQUESTED = "stop requested"  # the stop reason after :meth:`LiveSession.stop`


@dataclasses.dataclass(frozen=True)
class SessionOptions:
    """blocksize: device frames per callback (0 = the device chooses); duration: seconds
    to run (None = until stopped or the input file ends); panel: serve the web panel."""

    blocksize: int = 0
    duration: float | None = None
    panel: bool = False


class LiveSession:
    """One run of the live command, from opening the stream to the summary."""

    def __init__(
        self,
        model,
        separator,
        route: Route,
        options: SessionOptions = SessionOptions(),
        mic: Mic | None = None,
        events: LiveEvents | None = None,
    ):
        self.options, self.model, self.engine, self.route = options, model, separator, route
        self.mic = mic
        self.events = events if events is not None else LiveEvents()
        self.controls = Controls(separator, mic.mixer if mic is not None else None)
        self.rate = route.rate
        path = route.source.path
        self.file_source = FileSource(path, self.rate, separator.channels) if path else None
        # The stream (and a recording) ends after the input file and the latency, or after
        # --duration, whichever comes first.
        ends = {}
        if self.file_source is not None:
            ends["end of input"] = self.file_source.frames + separator.latency_samples
        if options.duration is not None:
            ends["duration reached"] = int(round(options.duration * self.rate))
        self.end_reason = min(ends, key=ends.get) if ends else None
        end_frame = ends.get(self.end_reason)
        self.recorder = None
        self.processor = BlockProcessor(
            separator,
            route.out_channels,
            source=self.file_source,
            end_frame=end_frame,
            mic=mic.mixer if mic is not None else None,
        )
        self.streams = Streams(route, self.processor, options.blocksize, mic)
        self.panel = None
        self.stop_reason = "stopped"
        self.reopens = 0  # device streams opened again after they stopped on their own
        self.reopen_seconds = 0.0  # wall time those reopens took (no audio meanwhile)
        self.summary: status.Summary | None = None
        self._stop = threading.Event()

    def stop(self) -> None:
        """End the run at the next tick, as ``q`` does (any thread)."""
        self._stop.set()

    def run(self, reader: keys.KeyReader | None = None) -> int:
        """Stream until a stop, then report the summary (also kept as ``summary``); 0, or 1
        when the stream, the model or the input file failed. The route's notes are reported
        after the start-up line. reader: the terminal's keys (None: no keys, only
        :meth:`stop`)."""
        # From here on streams exist (a virtual microphone in the sound server): SIGTERM stops
        # the run like Ctrl-C, so they are closed (during the start-up, the interruption
        # then comes out of run as KeyboardInterrupt).
        with _stop_on_sigterm():
            return self._run(reader)

    def _run(self, reader: keys.KeyReader | None) -> int:
        extra: list[str] = []
        healthy = False
        try:
            self.streams.open()
            if self.route.sink.path is not None:
                path = self.route.sink.path
                paths = stem_paths(path) if self.route.stems else path
                self.recorder = Recorder(paths, self.rate, self.engine.channels)
                self.processor.recorder = self.recorder
            if self.file_source is not None:
                self.file_source.wait_ready()
            self.streams.start()
            if self.mic is not None:
                self.streams.measure_mic()
            blocksize, stream = self.streams.blocksize, self.streams.stream
            self.events.started(
                status.startup_line(
                    self.model, self.engine, self.route.name, self.rate, blocksize, stream
                )
            )
            for line in (self.route.notes or "").splitlines():
                self.events.note(line)
            if self.mic is not None and self.mic.mixer.room is not None:
                self.events.note(self.mic.mixer.room.startup_note())
            if self.streams.jack_ports or self.streams.jack_ports_note:
                self.events.note(jack_ports_line(self.streams))
            if self.options.panel:
                self.panel = Panel(self.controls)
                self.panel.start()
                self.events.note(f"panel: {self.panel.url}")
            healthy = self._loop(reader, time.monotonic())
        finally:
            if self.panel is not None:
                self.panel.close()
            self.streams.close()
            if self.mic is not None:
                self.mic.mixer.close()
            extra = self._close_recorder() + self._close_file_source() + self._mic_summary()
            if self.reopens:
                extra.append(
                    f"the audio stream was reopened {self.reopens} time(s), "
                    f"{self.reopen_seconds:.2f} s without it"
                )
        seconds = self.processor.frames / self.rate
        warning = self._xrun_warning()
        if warning:
            extra.insert(0, f"warning: {warning[1]}")
        input_broke = self.file_source is not None and self.file_source.error is not None
        ok = healthy and not input_broke
        self.summary = status.summarize(
            self.engine, self.processor, seconds, self.stop_reason, extra, ok
        )
        self.events.stopped(self.summary)
        return 0 if ok else 1

    def _xrun_warning(self) -> tuple[str, str] | None:
        return status.xrun_warning(
            self.processor.xruns, self.processor.callbacks, self.rate, self.options.blocksize
        )

    def _loop(self, reader: keys.KeyReader | None, started: float) -> bool:
        """Runs until a stop; returns False when the stream died or stalled on its own."""
        events = self.events
        tick = _TICK_SECONDS if self.panel is None else PANEL_TICK_SECONDS
        watch = None
        if self.streams.clock is None:  # a device calls back; the file clock cannot stall
            watch = StallWatch(tick, self.options.blocksize / self.rate)
        events.running()
        try:
            while not self.processor.finished:
                if self.engine.failed:
                    events.note(f"stopping: {self.engine.failure_reason}")
                    self.stop_reason = status.ENGINE_FAILED  # worded at the end
                    return False
                if not self.streams.active:
                    if self._reopen_stream():
                        watch.restart()
                        continue
                    self.stop_reason = "stream died"
                    return False
                if watch is not None and watch.stalled(self.processor.callbacks, time.monotonic()):
                    events.note(
                        f"the audio stream stalled: no audio from the device for "
                        f"{watch.seconds:.1f} s (its sound server or device stopped "
                        "answering)"
                    )
                    self.stop_reason = STREAM_STALLED
                    return False
                going, notes = self.controls.apply_keys(self._wait_for_keys(reader, tick))
                for note in notes:
                    events.note(note)
                if self._stop.is_set():
                    self.stop_reason = STOP_REQUESTED
                    break
                if not going:
                    self.stop_reason = "q"
                    break
                warning = self._xrun_warning()
                numbers = status.snapshot(
                    self.engine,
                    self.processor,
                    self.processor.take_peaks(),
                    self.processor.frames / self.rate,
                    warning[0] if warning else None,
                )
                events.status(numbers)
                if self.panel is not None:
                    self.panel.publish(numbers)
            else:
                self.stop_reason = self.end_reason
        except KeyboardInterrupt:
            self.stop_reason = "interrupted"
        finally:
            events.ending()
            self._fade_out()
        return True

    def _wait_for_keys(self, reader: keys.KeyReader | None, seconds: float) -> list[str]:
        """The keys typed within ``seconds``; without a terminal, a wait that :meth:`stop`
        cuts short."""
        if reader is not None and reader.enabled:
            return reader.poll(seconds)
        self._stop.wait(seconds)
        return []

    def _reopen_stream(self) -> bool:
        """The device stream stopped on its own: open it again, at most
        ``MAX_STREAM_REOPENS`` times a run, and say so in one line. False (said in one line,
        or two with the reason) when it cannot be: a file clock, reopens spent, a device or
        server that is gone."""
        lost = "the audio stream stopped unexpectedly"
        if self.streams.clock is not None:
            self.events.note(lost)
            return False
        if self.reopens >= MAX_STREAM_REOPENS:
            self.events.note(
                f"{lost} again; not reopened: {MAX_STREAM_REOPENS} reopens a run at most"
            )
            return False
        began = time.monotonic()
        self.engine.fade_back_in()  # applied by the new stream's first block
        try:
            reopened = self.streams.reopen()
        except DeviceError as error:
            self.events.note(lost)
            self.events.note(f"could not reopen it in {time.monotonic() - began:.1f} s: {error}")
            return False
        if not reopened:
            self.events.note(lost)
            return False
        self.reopens += 1
        self.reopen_seconds += time.monotonic() - began
        self.events.note(
            f"{lost}; reopened it after {time.monotonic() - began:.2f} s "
            f"({self.reopens} of at most {MAX_STREAM_REOPENS} reopens a run)"
        )
        return True

    def _fade_out(self) -> None:
        if self.mic is not None:
            self.mic.mixer.mute()  # ramps out over one block, before the engine's fade ends
        self.engine.fade_out()
        if self.stop_reason == STREAM_STALLED:
            return  # no callback will play the fade
        deadline = time.monotonic() + _FADE_WAIT_SECONDS
        while not self.processor.faded and self.streams.active and time.monotonic() < deadline:
            time.sleep(0.01)

    def _mic_summary(self) -> list[str]:
        if self.mic is None:
            return []
        mixer = self.mic.mixer
        room = mixer.room
        reverb = f", reverb {mixer.reverb_amount:g}" if room is not None else ""
        waiting = f"{mixer.waiting_seconds * 1000:.1f} ms waiting between the streams"
        total = mixer.latency_seconds
        if total is None:
            path = f"PortAudio reports no usable device latency; {waiting}"
        else:
            mic_in, out = mixer.stream_latency
            path = (
                f"path latency {total * 1000:.1f} ms (mic in {mic_in * 1000:.1f} ms + {waiting} "
                f"+ out {out * 1000:.1f} ms, as PortAudio reports them)"
            )
        return [
            f"microphone {self.mic.device.label()}: level x{mixer.level:.2f}{reverb}; {path}, "
            f"not through the separation; {room.summary() + '; ' if room is not None else ''}"
            f"{mixer.underruns} frames late (start-up included), {mixer.skipped} skipped, "
            f"{mixer.xruns} xruns"
        ]

    def _close_file_source(self) -> list[str]:
        source = self.file_source
        if source is None:
            return []
        source.close()
        lines = []
        if source.error is not None:
            lines.append(f"the input file could not be read to its end: {source.error}")
        if source.underrun_frames:
            lines.append(
                f"{source.underrun_frames} frames of the input file were not decoded in time "
                "and played as silence (the disk or the CPU was too slow)"
            )
        return lines

    def _close_recorder(self) -> list[str]:
        if self.recorder is None:
            return []
        frames = self.recorder.close()
        names = " and ".join(str(path) for path in self.recorder.paths)
        text = f"recorded {frames} frames ({frames / self.rate:.2f} s) to {names}"
        if self.recorder.dropped_frames:
            text += f"; {self.recorder.dropped_frames} frames dropped (the disk was too slow)"
        return [text]


def jack_ports_line(streams: Streams) -> str:
    """The start-up line naming the JACK ports that carry the stems."""
    ports = streams.jack_ports
    if len(ports) < 4:
        return f"stems: the JACK ports are not known ({streams.jack_ports_note})"
    text = f"stems: JACK ports {ports[0]}, {ports[1]} (music), {ports[2]}, {ports[3]} (vocals)"
    if streams.jack_ports_note:
        text += f"; PortAudio's names kept: {streams.jack_ports_note}"
    return text


class _stop_on_sigterm:
    """Within the block, SIGTERM stops the stream like Ctrl-C (main thread only)."""

    def __enter__(self):
        self._previous = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, _raise_interrupt)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt
