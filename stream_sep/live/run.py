"""The live host from Python: ``stream_sep.live(...)``, what ``stream-sep`` live does.

    import stream_sep
    with stream_sep.live(input="song.wav", output="karaoke.wav", mode="karaoke") as run:
        run.set_vocal_level(0.2)          # any time while it runs
        summary = run.wait()              # until the input file and the latency have played
    print(summary.deadline_misses, run.latency_seconds)

The arguments are the command's options, typed and flat (``--vocal-level`` is
``vocal_level=``); they are checked at once, and the route (devices, files, the feedback
guard) when the call returns, so a mistake is one :class:`~stream_sep.errors.UserError` line
before anything loads. Entering the ``with`` block (or :meth:`LiveRun.start`) loads the model,
fits the plan and starts the stream on a thread of its own; leaving it stops the stream,
fades out and closes everything.
"""

from __future__ import annotations

import os
import threading

from stream_sep import options
from stream_sep.errors import UserError
from stream_sep.live import status
from stream_sep.live.events import LiveEvents
from stream_sep.live.host import LiveConfig, LiveHost
from stream_sep.models import providers
from stream_sep.settings import OPTIONS, Settings

SAMPLERATE_RANGE = (8000, 384000)


def live(
    input: str | os.PathLike = "mic",
    output: str | os.PathLike = "headphones",
    *,
    mode: str = "karaoke",
    vocal_level: float | None = None,
    key: int | None = None,
    model: str | os.PathLike | None = None,
    provider: str = "auto",
    latency: float | str | None = "auto",
    hop: float | None = None,
    lookahead: float | None = None,
    crossfade: float | None = None,
    stereo: str | None = None,
    postfilter: str | None = None,
    high_band_voice_removal: float | None = None,
    denoise: bool | None = None,
    samplerate: int | None = None,
    blocksize: int = 0,
    channels: int | None = None,
    duration: float | None = None,
    mic: str | None = None,
    mic_level: float | None = None,
    mic_reverb: float | None = None,
    panel: bool = False,
    allow_feedback: bool = False,
    stems: bool = False,
    events: LiveEvents | None = None,
) -> LiveRun:
    """A live run from ``input`` to ``output``, ready to start (a context manager).

    input: a capture device (index, part of its name, 'mic'), an audio file played in real
    time, or 'system[:NAME]'; output: a playback device ('headphones'), 'system:NAME' or a
    .wav file that records the stream (exactly the input file's frames plus the latency).
    mode: 'karaoke', 'vocals' or 'bypass'; vocal_level: karaoke with the vocals at this
    gain; key: semitones of key change (needs the [night] extra). latency: 'auto' (the
    plan fitted to this machine), seconds, or None with hop/lookahead/crossfade as given
    (giving any of those with 'auto' uses them too). stems: the music and the vocals apart
    (channels 1-2 and 3-4 of a 4-channel device, or two files FILE.music.wav and
    FILE.vocals.wav beside ``output``). The other options are the command's
    (``stream-sep --help``); events: receives the start-up line, notes, status ticks and the
    summary (default: logged). Raises UserError (one line naming the option) for a bad
    value, and DeviceError/AudioFileError for a route that cannot be.
    """
    config = LiveConfig(
        input=_path_or_name("input", input),
        output=_path_or_name("output", output),
        mode=OPTIONS["mode"].check(mode),
        vocal_level=_given(OPTIONS["vocal_level"].check, vocal_level),
        key=_given(OPTIONS["key"].check, key),
        model=model,
        provider=_text(options.choice("provider", providers.CHOICES), provider),
        settings=Settings(
            hop=hop,
            lookahead=lookahead,
            crossfade=crossfade,
            stereo=stereo,
            latency=latency,
            postfilter=postfilter,
            high_band_voice_removal=high_band_voice_removal,
            denoise=denoise,
        ),
        samplerate=_optional(options.whole("samplerate", "Hz", *SAMPLERATE_RANGE), samplerate),
        blocksize=_whole(
            options.whole("blocksize", "frames", 0, note="0: the device's choice"), blocksize
        ),
        channels=_optional(options.choice("channels", (1, 2)), channels),
        duration=_optional(options.seconds("duration", 0.0, inclusive=False), duration),
        mic=None if mic is None else _path_or_name("mic", mic),
        mic_level=_given(OPTIONS["mic_level"].check, mic_level),
        mic_reverb=_given(OPTIONS["mic_reverb"].check, mic_reverb),
        panel=_flag("panel", panel),
        allow_feedback=_flag("allow-feedback", allow_feedback),
        stems=_flag("stems", stems),
    )
    options.check_crossfade(config.settings)  # the crossfade fits in the hop
    relay = _Relay(events if events is not None else LiveEvents())
    return LiveRun(LiveHost(config, relay), relay)


class LiveRun:
    """A live run on a thread of its own: ``start()`` (or ``with``), ``wait()``, ``stop()``,
    ``set_mode()``, ``set_vocal_level()``, ``latency_seconds``, ``summary``, ``close()``."""

    def __init__(self, host: LiveHost, relay: _Relay):
        self.host, self._relay = host, relay
        self.exit_status: int | None = None  # 0, or 1 when the stream, model or input failed
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def __enter__(self) -> LiveRun:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> LiveRun:
        """Load the model, fit the plan, build the engine and start the stream; returns once
        it streams. The errors of a start that failed (a model that cannot run, a device that
        cannot open) come out here, after everything was closed."""
        if self._thread is not None:
            raise UserError("this live run was started already; call stream_sep.live() again")
        self._thread = threading.Thread(target=self._run, name="stream-sep live", daemon=True)
        self._thread.start()
        try:
            while not self._relay.streaming.wait(0.05) and self._thread.is_alive():
                pass
        except KeyboardInterrupt:
            self.host.stop()
            self._thread.join()
            raise
        if self._error is not None:
            self._thread.join()
            raise self._error
        return self

    def wait(self, timeout: float | None = None) -> status.Summary | None:
        """Wait for the run to end (the input file played, ``duration`` reached, ``stop()``,
        a failure); its summary, or None when ``timeout`` seconds passed first. Ctrl-C stops
        the run, then comes out as KeyboardInterrupt."""
        thread = self._started()
        try:
            thread.join(timeout)
        except KeyboardInterrupt:
            self.host.stop()
            thread.join()
            raise
        if thread.is_alive():
            return None
        if self._error is not None:
            raise self._error
        return self.summary

    def stop(self) -> status.Summary | None:
        """Fade out and stop at the next tick; waits for the end and returns the summary."""
        self.host.stop()
        return self.wait() if self._thread is not None else None

    def close(self) -> None:
        """Stop if running and release everything (what leaving the ``with`` block does)."""
        if self._thread is not None and self._thread.is_alive():
            self.stop()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def summary(self) -> status.Summary | None:
        """The finished run's numbers (None while it runs)."""
        return self._relay.summary

    @property
    def latency_seconds(self) -> float:
        """The engine's fixed delay from input to output (device buffers not included)."""
        return self._session().engine.latency_seconds

    @property
    def latency_samples(self) -> int:
        return self._session().engine.latency_samples

    def set_mode(self, mode: str) -> None:
        """'karaoke', 'vocals' or 'bypass', ramped without a click at the next block."""
        self._session().controls.set_mode(mode)

    def set_vocal_level(self, level: float) -> None:
        """Karaoke with the vocals at ``level`` (0 none, 1 original)."""
        self._session().controls.set_vocal_level(level)

    def set_key(self, key: int) -> None:
        """Semitones of key change (the run must have started with ``key=``)."""
        self._session().controls.set_key(key)

    def _run(self) -> None:
        try:
            self.exit_status = self.host.run()
        except BaseException as error:  # handed to the caller's thread by start() or wait()
            self._error = error

    def _started(self) -> threading.Thread:
        if self._thread is None:
            raise UserError("this live run has not started: use 'with stream_sep.live(...)'")
        return self._thread

    def _session(self):
        self._started()
        if self.host.session is None:
            raise UserError("this live run did not start")
        return self.host.session


class _Relay(LiveEvents):
    """Passes every report on to the caller's events and keeps what the run needs: that the
    stream started, and the summary."""

    def __init__(self, events: LiveEvents):
        self.events = events
        self.streaming = threading.Event()
        self.summary: status.Summary | None = None

    def started(self, line: str) -> None:
        self.events.started(line)
        self.streaming.set()

    def note(self, line: str) -> None:
        self.events.note(line)

    def running(self) -> None:
        self.events.running()

    def status(self, numbers: dict) -> None:
        self.events.status(numbers)

    def ending(self) -> None:
        self.events.ending()

    def stopped(self, summary: status.Summary) -> None:
        self.summary = summary
        self.events.stopped(summary)


def _path_or_name(option: str, value) -> str:
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"--{option} must be a device name or a file path, got {value!r}")
    return value


def _number_text(value) -> str:
    """A number as the option parsers read it; anything else as a text they refuse."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return str(value) if number else repr(value)


def _given(check, value):
    """``check(value)``, or None for a value not given."""
    return None if value is None else check(value)


def _optional(parse, value):
    return None if value is None else parse(_number_text(value))


def _whole(parse, value) -> int:
    return parse(_number_text(value))


def _text(parse, value):
    return parse(value if isinstance(value, str) else repr(value))


def _flag(option: str, value) -> bool:
    if not isinstance(value, bool):
        raise UserError(f"--{option} must be True or False, got {value!r}")
    return value
