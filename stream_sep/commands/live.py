"""The live command: ``stream-sep --input mic --output headphones``.

Everything the user asked for is checked first (options, files, devices, the feedback
guard), then the model is loaded and warmed up, then the stream opens and one line states
the model, provider, rates, block size and latency. While it runs, a status line shows levels,
inference time and load, misses, xruns and latency; keys change the mode when stdin is a
terminal. Ctrl-C, ``q``, SIGTERM, ``--duration`` or the end of an input file fade out, close
the stream and print a summary.

``--input`` and ``--output`` each name a device (see :mod:`stream_sep.live.devices`) or a file: an
input file is played in real time as the source, an output file records the processed stream
(:mod:`stream_sep.live.recording`). With files on both sides no device is opened; a clock thread
paces the stream in real time instead.
"""

from __future__ import annotations

import sys
import time

from stream_sep import options, settings
from stream_sep.live import devices, host, keys, status
from stream_sep.live.events import LiveEvents

SAMPLERATE_RANGE = (8000, 384000)


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
        metavar="DEVICE|FILE.wav|system:NAME|virtual[:NAME]",
        help="playback device (index, part of its name, or 'headphones' for the default "
        "output), system:NAME (the PulseAudio/PipeWire sink NAME), virtual[:NAME] (a "
        "microphone other programs can choose, named NAME, default 'stream-sep karaoke', "
        "made in PulseAudio/PipeWire for the run; macOS/Windows: a loopback driver such as "
        "BlackHole or VB-Audio Cable; docs/sharing.md), "
        "or a .wav file that records the processed stream (default headphones). A "
        "recording starts with the latency (silence while the first input travels through) "
        "and, from an input file, holds exactly the file's frames (at the stream rate) plus "
        "the latency, so frame n + latency of the recording is frame n of the file",
    )
    settings.add_options(parser, "live", ("mode", "vocal_level", "key"))
    parser.add_argument(
        "--stems",
        action="store_true",
        help="the music (no vocals) and the vocals apart, each at the latency, adding up to "
        "the input: on an output device of 4 or more channels the music plays on channels "
        "1-2 and the vocals on 3-4 (through JACK: ports music_1, music_2, vocals_1, "
        "vocals_2); --output FILE.wav writes FILE.music.wav and FILE.vocals.wav. Not with "
        "--mode vocals/bypass, --vocal-level, --key or --mic (docs/sharing.md)",
    )
    options.add_model_arguments(parser)
    settings.add_arguments(parser, live=True)
    settings.add_quality_arguments(parser, "live")
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
    settings.add_options(parser, "live", ("mic_level", "mic_reverb"))
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


def run(args) -> int:
    check_mic_options(args)
    if args.list_devices:
        print(devices.describe())
        return 0
    # The key reader's cbreak mode starts now, not when the stream does: keys typed while
    # the model loads are neither echoed nor flushed, and the first poll applies them.
    with keys.KeyReader() as reader:
        return _run(args, reader)


def check_mic_options(args) -> None:
    """The microphone's options need the microphone: refused without ``--mic``."""
    host.check_mic_options(args.mic, args.mic_level, args.mic_reverb)


def config_from_args(args) -> host.LiveConfig:
    """The run the options ask for (their values were checked while parsing)."""
    return host.LiveConfig(
        input=args.input,
        output=args.output,
        mode=args.mode,
        vocal_level=args.vocal_level,
        key=args.key,
        model=args.model,
        provider=args.provider,
        settings=settings.from_args(args),
        samplerate=args.samplerate,
        blocksize=args.blocksize,
        channels=args.channels,
        duration=args.duration,
        mic=args.mic,
        mic_level=args.mic_level,
        mic_reverb=args.mic_reverb,
        panel=args.panel,
        allow_feedback=args.allow_feedback,
        stems=args.stems,
    )


def _run(args, reader: keys.KeyReader) -> int:
    """Everything the user asked for is checked (options, bundled model, route, mic) before
    the model loads (:class:`~stream_sep.live.host.LiveHost`); then the host runs and its
    reports are printed."""
    printed = PrintedEvents(keys_help=reader.enabled and not args.quiet, quiet=args.quiet)
    return host.LiveHost(config_from_args(args), printed).run(reader)


class PrintedEvents(LiveEvents):
    """A live run's reports as the command's lines on stderr: ``stream-sep: ...`` lines and
    the status line (redrawn in place on a terminal, once a second otherwise)."""

    def __init__(self, keys_help: bool, quiet: bool):
        self.keys_help = keys_help
        self.printer = status.StatusPrinter(enabled=not quiet)

    def started(self, line: str) -> None:
        _say(line)

    def note(self, line: str) -> None:
        self.printer.clear()
        _say(line)

    def running(self) -> None:
        if self.keys_help:
            _say(keys.HELP)

    def status(self, numbers: dict) -> None:
        self.printer.show(status.status_line(numbers), time.monotonic())

    def ending(self) -> None:
        self.printer.clear()

    def stopped(self, summary: status.Summary) -> None:
        self.printer.clear()
        for line in summary.lines:
            _say(line)


def _say(text: str) -> None:
    print(f"stream-sep: {text}", file=sys.stderr, flush=True)
