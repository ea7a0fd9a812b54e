"""The live command: ``stream-sep --input mic --output headphones``.

Everything the user asked for is checked first (options, files, devices, the feedback
guard), then the model is loaded and warmed up, then the stream opens and one line states
the model, provider, rates, block size and latency. While it runs, a status line shows levels,
inference time and load, misses, xruns and latency; keys change the mode when stdin is a
terminal. Ctrl-C, ``q``, SIGTERM, ``--duration`` or the end of an input file fade out, close
the stream and print a summary.

``--input`` and ``--output`` each name a device (see :mod:`stream_sep.devices`) or a file: an
input file is played in real time as the source, an output file records the processed stream
(:mod:`stream_sep.recording`). With files on both sides no device is opened; a clock thread
paces the stream in real time instead.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

from stream_sep import devices, keys, options, settings, status, system_audio
from stream_sep import engine as engine_module
from stream_sep import mic as mic_module
from stream_sep.audio_files import audio_file_info
from stream_sep.controls import Controls
from stream_sep.engine import fitting
from stream_sep.engine.key import KEY_RANGE, KeyShift
from stream_sep.errors import AudioFileError, DeviceError, UserError
from stream_sep.inference import bundled_model_path, load_model
from stream_sep.live_audio import BlockProcessor, FileClock, FileSource
from stream_sep.panel import UPDATE_SECONDS as PANEL_TICK_SECONDS
from stream_sep.panel import Panel
from stream_sep.recording import Recorder, check_recording_path

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = {
    ".wav",
    ".flac",
    ".ogg",
    ".oga",
    ".opus",
    ".mp3",
    ".aif",
    ".aiff",
    ".w64",
    ".rf64",
    ".caf",
}
FILE_CLOCK_BLOCKSIZE = 1024
SETTLE_SECONDS = 10.0  # how long the command waits for a model call still running at exit
ASSUMED_DEVICE_BLOCK = 1024  # frames, for fitting the plan when the device chooses its block
SAMPLERATE_RANGE = (8000, 384000)
_MIXING_PLUGINS = {"default", "sysdefault", "pulse", "pipewire", "jack", "dmix", "dsnoop"}
_TICK_SECONDS = 0.25  # status line and key polling: 4 times a second
_FADE_WAIT_SECONDS = 2.0
_CLOSE_SECONDS = 1.0  # a stream whose device vanished may never close: give up after this


def add_arguments(parser) -> None:
    parser.add_argument(
        "--input",
        default="mic",
        metavar="DEVICE|FILE|system[:NAME]",
        help="capture device (index, part of its name, or 'mic' for the default input), an "
        "audio file played in real time, or 'system': what the computer plays (the monitor of "
        "the default PulseAudio/PipeWire output, or of sink NAME; elsewhere a loopback device "
        "such as BlackHole or VB-Audio Cable; docs/system-audio.md) (default mic)",
    )
    parser.add_argument(
        "--output",
        default="headphones",
        metavar="DEVICE|FILE.wav|system:NAME",
        help="playback device (index, part of its name, or 'headphones' for the default "
        "output), system:NAME (the PulseAudio/PipeWire sink NAME), "
        "or a .wav file that records the processed stream (default headphones). A "
        "recording starts with the latency (silence while the first input travels through) "
        "and, from an input file, holds exactly the file's frames (at the stream rate) plus "
        "the latency, so frame n + latency of the recording is frame n of the file",
    )
    parser.add_argument(
        "--mode",
        default="karaoke",
        type=options.choice("mode", engine_module.MODES),
        metavar=options.listing(engine_module.MODES),
        help="karaoke: vocals removed; vocals: vocals alone; bypass: the delayed input "
        "(default karaoke)",
    )
    low, high = engine_module.VOCAL_LEVEL_RANGE
    parser.add_argument(
        "--vocal-level",
        type=options.number("vocal-level", low, high),
        default=None,
        metavar="G",
        help=f"karaoke with the vocals at G, {low:g} to {high:g} (0 none, 1 original)",
    )
    parser.add_argument(
        "--key",
        type=options.whole("key", "semitones", *KEY_RANGE),
        default=None,
        metavar="SEMITONES",
        help=f"change the key by SEMITONES, {KEY_RANGE[0]} to +{KEY_RANGE[1]} (the music in karaoke, "
        "everything in the other modes; also live with the [ and ] keys and the panel). Adds "
        "Rubber Band's fixed delay to the latency whatever the key, so 0 turns key change on "
        "unshifted; needs pip install 'stream-sep[night]' (default: no key change, no delay)",
    )
    options.add_model_arguments(parser)
    settings.add_arguments(parser, live=True)
    settings.add_quality_arguments(parser)
    parser.add_argument(
        "--samplerate",
        type=options.whole("samplerate", "Hz", *SAMPLERATE_RANGE),
        default=None,
        metavar="HZ",
        help="stream rate (default: the device's default rate, or the input file's rate)",
    )
    parser.add_argument(
        "--blocksize",
        type=options.whole("blocksize", "frames", 0, note="0: the device's choice"),
        default=0,
        metavar="FRAMES",
        help="frames per audio callback (default 0: the device's choice)",
    )
    parser.add_argument(
        "--channels",
        type=options.choice("channels", (1, 2)),
        default=None,
        metavar="{1,2}",
        help="channels to process (default: 2 where the devices and file have them)",
    )
    parser.add_argument(
        "--duration",
        type=options.seconds("duration", 0.0, inclusive=False),
        default=None,
        metavar="SECONDS",
        help="stop after this many seconds (default: run until q, Ctrl-C or the input file "
        "ends); a recording then holds exactly this many seconds (less if the input file "
        "and the latency end sooner)",
    )
    parser.add_argument(
        "--mic",
        metavar="DEVICE",
        default=None,
        help="mix this microphone into the output at the lowest latency the device allows "
        "(its own capture stream: not through the separation, not delayed by it); the feedback "
        "guard applies to it as to --input",
    )
    low, high = mic_module.LEVEL_RANGE
    parser.add_argument(
        "--mic-level",
        type=options.number("mic-level", low, high),
        default=1.0,
        metavar="G",
        help=f"the microphone's gain, {low:g} to {high:g} (default 1; also on the panel)",
    )
    low, high = mic_module.REVERB_RANGE
    parser.add_argument(
        "--mic-reverb",
        type=options.number("mic-reverb", low, high),
        default=0.0,
        metavar="AMOUNT",
        help=f"room reverb on the microphone, {low:g} (none, the default) to {high:g}; needs "
        "pip install 'stream-sep[night]' (pedalboard)",
    )
    parser.add_argument("--quiet", action="store_true", help="no live status line")
    parser.add_argument(
        "--panel",
        action="store_true",
        help="serve a control page on 127.0.0.1 (the URL, with its access token, is printed): "
        "meters, mode, vocal level, key, latency and load, live; works on a phone's screen",
    )
    parser.add_argument(
        "--allow-feedback",
        action="store_true",
        help="skip the feedback guard. Without it, stream-sep refuses an input that captures "
        "the output (its monitor or loopback), and a microphone with a loudspeaker output "
        "(named 'speaker', or the microphone's own device named explicitly); --output "
        "headphones (the default) or a device named headphones/headset is always fine",
    )
    parser.add_argument("--list-devices", action="store_true", help="list audio devices and exit")


# ---------------------------------------------------------------------------- planning
@dataclasses.dataclass
class Endpoint:
    """One side of the stream: a device or a file."""

    kind: str  # "input" or "output"
    spec: str
    device: devices.Device | None = None
    path: Path | None = None
    system: system_audio.SystemEnd | None = None  # --input system, --output system:NAME

    @property
    def name(self) -> str:
        if self.system is not None:
            return self.system.describe()
        return self.device.name if self.device is not None else str(self.path)


def is_file_spec(spec: str) -> bool:
    """Whether an --input/--output value names a file rather than a device."""
    path = Path(spec)
    return path.is_file() or "/" in spec or path.suffix.lower() in AUDIO_SUFFIXES


def resolve_endpoint(spec: str, kind: str, partner: devices.Device | None = None) -> Endpoint:
    named_sink = kind == "output" and system_audio.wanted_name(spec) is not None
    if system_audio.is_system(spec) and (kind == "input" or named_sink):
        end = system_audio.resolve(spec, kind)
        if end is not None:
            return Endpoint(kind, spec, device=end.device, system=end)
    if is_file_spec(spec):
        if kind == "output":
            return Endpoint(kind, spec, path=check_recording_path(spec))
        path = Path(spec)
        if not path.is_file():
            raise AudioFileError(f"--input {spec!r}: no such file")
        return Endpoint(kind, spec, path=path)
    return Endpoint(kind, spec, device=devices.resolve(spec, kind, partner))


def choose_rate(args, source: Endpoint, sink: Endpoint, file_rate: int | None) -> int:
    if args.samplerate is not None:
        return args.samplerate
    for end in (source, sink):  # a sound server's sink: its own rate, so nothing resamples
        if end.system is not None and end.system.sink is not None:
            return end.system.sink.rate
    for end in (source, sink):
        if end.device is not None:
            return int(end.device.default_samplerate)
    return int(file_rate)


def choose_channels(args, source: Endpoint, sink: Endpoint, file_channels: int | None) -> int:
    if args.channels is not None:
        return args.channels
    limits = [2] + [e.device.channels(e.kind) for e in (source, sink) if e.device is not None]
    if file_channels is not None:
        limits.append(file_channels)
    return max(1, min(limits))


# ---------------------------------------------------------------------------- running
def run(args) -> int:
    if args.list_devices:
        print(devices.describe())
        return 0
    # The key reader's cbreak mode starts now, not when the stream does: keys typed while
    # the model loads are neither echoed nor flushed, and the first poll applies them.
    with keys.KeyReader() as reader:
        return _run(args, reader)


def _run(args, reader: keys.KeyReader) -> int:
    chosen = settings.from_args(args)  # engine options checked before devices and model
    if args.model is None:
        bundled_model_path()  # no bundled model: say so before touching any device
    source = resolve_endpoint(args.input, "input")
    sink = resolve_endpoint(args.output, "output", partner=source.device)
    if source.device is not None and sink.device is not None and devices.means_default(args.input):
        source = resolve_endpoint(args.input, "input", partner=sink.device)
    if source.system is not None:
        system_audio.check_route(
            source.system, sink.device, sink.system, args.output, args.allow_feedback
        )
    elif source.device is not None and sink.device is not None:
        devices.check_feedback(source.device, sink.device, args.output, args.allow_feedback)
    file_rate, file_channels = audio_file_info(source.path)[:2] if source.path else (None, None)
    rate = choose_rate(args, source, sink, file_rate)
    channels = choose_channels(args, source, sink, file_channels)
    out_channels = _output_channels(sink, channels)
    for end, count in ((source, channels), (sink, out_channels)):
        if end.device is not None:
            devices.check_settings(end.device, end.kind, count, rate)
    mic = open_mic(args, sink, rate, out_channels)
    notes = channel_notes(source, sink, channels, out_channels, file_channels)
    notes = "\n".join(filter(None, [notes, system_note(source, rate)])) or None
    key_delay = KeyShift(rate, channels).latency_seconds if args.key is not None else 0.0
    model = load_model(args.model, args.provider)
    model.warm_up(batch=1 if chosen.stereo == "mid" else channels)
    separator = engine_module.Separator(
        model,
        rate,
        channels,
        mode=args.mode,
        vocal_level=args.vocal_level,
        blocking=False,
        key=args.key,
        **fitted_options(model, rate, channels, chosen, args.blocksize, key_delay),
    )
    try:
        session = LiveSession(args, model, separator, source, sink, rate, out_channels, mic)
        return session.run(reader, notes)
    finally:
        separator.close()
        if not separator.settle(SETTLE_SECONDS):
            log.warning("the model is still running after %.0f s; exiting anyway", SETTLE_SECONDS)


def open_mic(args, sink: Endpoint, rate: int, out_channels: int) -> Mic | None:
    """--mic: the device (checked against the output like --input), and its mixer."""
    if args.mic is None:
        return None
    device = devices.resolve(args.mic, "input")
    if sink.device is not None:
        devices.check_feedback(device, sink.device, args.output, args.allow_feedback, "--mic")
    devices.check_settings(device, "input", 1, rate)
    mixer = mic_module.MicMix(rate, out_channels, args.mic_level, args.mic_reverb)
    return Mic(device, mixer)


@dataclasses.dataclass
class Mic:
    device: devices.Device
    mixer: mic_module.MicMix
    stream: object = None


def fitted_options(
    model,
    rate: int,
    channels: int,
    chosen: settings.Settings,
    blocksize: int = 0,
    key_delay: float = 0.0,
) -> dict:
    """Engine options for this machine: with ``--latency`` the plan is chosen from the
    model's measured speed and the engine sheds work under overload; with explicit
    --hop/--lookahead/--crossfade those are used as given (one hop of compute allowance).
    key_delay: seconds the key stage adds, taken from a --latency SECONDS target."""
    if not chosen.fitted:
        return chosen.engine_options()
    speed = fitting.measure(model, rate, channels, **chosen.window_options())
    target = None if chosen.latency == "auto" else chosen.latency
    if target is not None and key_delay:
        if target <= key_delay:
            raise UserError(
                f"--latency {target:g} is shorter than the key change's own delay "
                f"({key_delay:.3f} s): ask for more, or leave out --key"
            )
        target -= key_delay
    block = (blocksize or ASSUMED_DEVICE_BLOCK) / rate
    fit = fitting.choose(model.contract, rate, channels, speed, target, chosen.stereo, block)
    stereo_cost = speed.t90("batch") / max(speed.t90("mid"), 1e-6)
    log.info("measured %.3f s per window (%s): %s", fit.window_seconds, fit.stereo, fit)
    options = {**fit.engine_options(), **chosen.window_options()}
    return {**options, "shed": True, "stereo_cost": stereo_cost}


def channel_notes(
    source: Endpoint, sink: Endpoint, channels: int, out_channels: int, file_channels: int | None
) -> str | None:
    """One line saying where channels are mixed down, left out or copied; None when the
    stream's ``channels`` match both sides exactly."""
    notes = []
    if file_channels is not None and file_channels != channels:
        notes.append(f"the input file {_file_mix(file_channels, channels)}")
    if _physical(source.device) and source.device.max_input_channels > channels:
        notes.append(
            f"--input {source.device.label()} has {source.device.max_input_channels} "
            f"channels, {_first(channels)} captured"
        )
    if out_channels > channels:
        notes.append(f"the mono stream plays on all {out_channels} output channels")
    if _physical(sink.device) and sink.device.max_output_channels > out_channels:
        notes.append(
            f"--output {sink.device.label()} has {sink.device.max_output_channels} channels, "
            f"{_first(out_channels)} played"
        )
    return "channels: " + "; ".join(notes) if notes else None


def system_note(source: Endpoint, rate: int) -> str | None:
    """One line on what ``--input system`` records and whether the sound server resamples."""
    if source.system is None:
        return None
    sink = source.system.sink
    if sink is None:
        return f"system audio: {source.system.describe()} at {rate} Hz"
    resampling = (
        "no resampling by the sound server"
        if sink.rate == rate
        else f"the sound server resamples {sink.rate} -> {rate} Hz"
    )
    return f"system audio: {source.system.describe()}, captured at {rate} Hz: {resampling}"


def _physical(device: devices.Device | None) -> bool:
    """A device whose channel count is its hardware's: not a sound server's ALSA plugin
    (``default``, ``pulse``, ``pipewire``...), which offers 32 or more channels it mixes."""
    return device is not None and device.name.strip().lower() not in _MIXING_PLUGINS


def _file_mix(have: int, channels: int) -> str:
    """What :func:`stream_sep.live_audio.match_channels` does to a file's channels."""
    if channels == 1:
        return f"has {have} channels, mixed down to mono (their mean)"
    if have == 1:
        return f"is mono, copied to all {channels} channels"
    return f"has {have} channels, {_first(channels)} used and the other {have - channels} left out"


def _first(count: int) -> str:
    return "channel 1" if count == 1 else f"channels 1-{count}"


def _output_channels(sink: Endpoint, channels: int) -> int:
    """A mono stream plays on both sides of a stereo output device."""
    if sink.device is None:
        return channels
    return max(channels, min(2, sink.device.max_output_channels))


class LiveSession:
    """One run of the live command, from opening the stream to the summary."""

    def __init__(
        self,
        args,
        model,
        separator,
        source: Endpoint,
        sink: Endpoint,
        rate: int,
        out_channels: int,
        mic: Mic | None = None,
    ):
        self.args, self.model, self.engine = args, model, separator
        self.mic = mic
        self.controls = Controls(separator, mic.mixer if mic is not None else None)
        self.source, self.sink, self.rate = source, sink, rate
        self.out_channels = out_channels
        self.file_source = (
            FileSource(source.path, rate, separator.channels) if source.path else None
        )
        # The stream (and a recording) ends after the input file and the latency, or after
        # --duration, whichever comes first.
        ends = {}
        if self.file_source is not None:
            ends["end of input"] = self.file_source.frames + separator.latency_samples
        if args.duration is not None:
            ends["duration reached"] = int(round(args.duration * rate))
        self.end_reason = min(ends, key=ends.get) if ends else None
        end_frame = ends.get(self.end_reason)
        self.recorder = None
        self.processor = BlockProcessor(
            separator,
            out_channels,
            source=self.file_source,
            end_frame=end_frame,
            mic=mic.mixer if mic is not None else None,
        )
        self.stream = None
        self.clock = None
        self.panel = None
        self.stop_reason = "stopped"

    def run(self, reader: keys.KeyReader, notes: str | None = None) -> int:
        """Stream until a stop, then print the summary; 0, or 1 when the stream, the model
        or the input file failed. ``notes``: a start-up line printed after the first."""
        extra: list[str] = []
        try:
            self._open()
            if self.sink.path is not None:
                self.recorder = Recorder(self.sink.path, self.rate, self.engine.channels)
                self.processor.recorder = self.recorder
            if self.file_source is not None:
                self.file_source.wait_ready()
            self._start()
            if self.mic is not None:
                self._measure_mic()
            blocksize = self.args.blocksize if self.clock is None else self.clock.blocksize
            _say(
                status.startup_line(
                    self.model, self.engine, self._route(), self.rate, blocksize, self.stream
                )
            )
            for line in (notes or "").splitlines():
                _say(line)
            if self.args.panel:
                self.panel = Panel(self.controls)
                self.panel.start()
                _say(f"panel: {self.panel.url}")
            healthy = self._loop(reader, time.monotonic())
        finally:
            if self.panel is not None:
                self.panel.close()
            self._close()
            extra = self._close_recorder() + self._close_file_source() + self._mic_summary()
        seconds = self.processor.frames / self.rate
        warning = self._xrun_warning()
        if warning:
            extra.insert(0, f"warning: {warning[1]}")
        for line in status.summary_lines(
            self.engine, self.processor, seconds, self.stop_reason, extra
        ):
            _say(line)
        input_broke = self.file_source is not None and self.file_source.error is not None
        return 0 if healthy and not input_broke else 1

    def _route(self) -> str:
        return f"{self.source.name} -> {self.sink.name}"

    def _open(self) -> None:
        """Create (not start) the stream or the file clock; device errors come out here,
        before any output file exists."""
        if self.mic is not None:
            self._open_mic()
        if self.source.device is None and self.sink.device is None:
            blocksize = self.args.blocksize or FILE_CLOCK_BLOCKSIZE
            self.clock = FileClock(self.processor, self.rate, blocksize)
            return
        import sounddevice as sd

        for end in (self.source, self.sink):  # the ALSA pulse plugin reads these at open
            if end.system is not None:
                os.environ.update(end.system.environment)
        common = {"samplerate": self.rate, "blocksize": self.args.blocksize, "dtype": "float32"}
        source, sink = self.source.device, self.sink.device
        try:
            if source is not None and sink is not None:
                self.stream = sd.Stream(
                    device=(source.index, sink.index),
                    channels=(self.engine.channels, self.out_channels),
                    callback=self.processor.duplex_callback,
                    **common,
                )
            elif source is not None:
                self.stream = sd.InputStream(
                    device=source.index,
                    channels=self.engine.channels,
                    callback=self.processor.input_callback,
                    **common,
                )
            else:
                self.stream = sd.OutputStream(
                    device=sink.index,
                    channels=self.out_channels,
                    callback=self.processor.output_callback,
                    **common,
                )
        except sd.PortAudioError as error:
            raise DeviceError(f"cannot open the audio stream {self._route()}: {error}") from None

    def _open_mic(self) -> None:
        """The microphone's own capture stream, at PortAudio's low latency for the device."""
        import sounddevice as sd

        mic = self.mic
        try:
            mic.stream = sd.InputStream(
                device=mic.device.index,
                channels=1,
                samplerate=self.rate,
                dtype="float32",
                latency="low",
                callback=mic.mixer.input_callback,
            )
        except sd.PortAudioError as error:
            raise DeviceError(f"cannot open --mic {mic.device.label()}: {error}") from None

    def _start(self) -> None:
        if self.mic is not None:
            self._start_mic()
        if self.clock is not None:
            self.clock.start()
            return
        import sounddevice as sd

        try:
            self.stream.start()
        except sd.PortAudioError as error:
            raise DeviceError(f"cannot start the audio stream {self._route()}: {error}") from None

    def _start_mic(self) -> None:
        import sounddevice as sd

        try:
            self.mic.stream.start()
        except sd.PortAudioError as error:
            raise DeviceError(f"cannot start --mic {self.mic.device.label()}: {error}") from None

    def _measure_mic(self) -> None:
        """The mic path's device latencies, as PortAudio reports them (None when unusable)."""
        mic_side = status.device_latency(self.mic.stream)
        out_side = status.device_latency(self.stream) if self.sink.device is not None else None
        self.mic.mixer.stream_latency = (
            mic_side[0] if mic_side else None,
            out_side[1] if out_side else (0.0 if self.sink.device is None else None),
        )

    def _active(self) -> bool:
        if self.clock is not None:
            return self.clock.active
        return bool(self.stream is not None and self.stream.active)

    def _xrun_warning(self) -> tuple[str, str] | None:
        return status.xrun_warning(
            self.processor.xruns, self.processor.callbacks, self.rate, self.args.blocksize
        )

    def _loop(self, reader: keys.KeyReader, started: float) -> bool:
        """Runs until a stop; returns False when the stream died on its own."""
        printer = status.StatusPrinter(enabled=not self.args.quiet)
        tick = _TICK_SECONDS if self.panel is None else PANEL_TICK_SECONDS
        with _stop_on_sigterm():
            if reader.enabled and not self.args.quiet:
                _say(keys.HELP)
            try:
                while not self.processor.finished:
                    if self.engine.failed:
                        printer.clear()
                        _say(f"stopping: {self.engine.failure_reason}")
                        self.stop_reason = status.failure_cause(self.engine)
                        return False
                    if not self._active():
                        printer.clear()
                        _say("the audio stream stopped unexpectedly")
                        self.stop_reason = "stream died"
                        return False
                    going, notes = self.controls.apply_keys(reader.poll(tick))
                    for note in notes:
                        printer.clear()
                        _say(note)
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
                    printer.show(status.status_line(numbers), time.monotonic() - started)
                    if self.panel is not None:
                        self.panel.publish(numbers)
                else:
                    self.stop_reason = self.end_reason
            except KeyboardInterrupt:
                self.stop_reason = "interrupted"
            finally:
                printer.clear()
                self._fade_out()
        return True

    def _fade_out(self) -> None:
        if self.mic is not None:
            self.mic.mixer.mute()  # ramps out over one block, before the engine's fade ends
        self.engine.fade_out()
        deadline = time.monotonic() + _FADE_WAIT_SECONDS
        while not self.processor.faded and self._active() and time.monotonic() < deadline:
            time.sleep(0.01)

    def _close(self) -> None:
        if self.mic is not None and self.mic.stream is not None:
            stream, self.mic.stream = self.mic.stream, None
            if not _close_stream(stream, _CLOSE_SECONDS):
                _abandon_portaudio()
        if self.clock is not None:
            self.clock.stop()
        if self.stream is not None:
            stream, self.stream = self.stream, None
            if not _close_stream(stream, _CLOSE_SECONDS):
                log.info("the audio stream did not close in %.1f s; leaving it", _CLOSE_SECONDS)
                _abandon_portaudio()

    def _mic_summary(self) -> list[str]:
        if self.mic is None:
            return []
        mixer = self.mic.mixer
        reverb = f", reverb {mixer.reverb_amount:g}" if mixer.reverb is not None else ""
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
            f"not through the separation; {mixer.underruns} frames late (start-up included), "
            f"{mixer.skipped} skipped, {mixer.xruns} xruns"
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
        text = f"recorded {frames} frames ({frames / self.rate:.2f} s) to {self.recorder.path}"
        if self.recorder.dropped_frames:
            text += f"; {self.recorder.dropped_frames} frames dropped (the disk was too slow)"
        return [text]


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


def _say(text: str) -> None:
    print(f"stream-sep: {text}", file=sys.stderr, flush=True)


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
