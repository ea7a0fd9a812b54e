"""Where a live stream goes: each side a device, a file or the sound server, checked before
any model loads.

:func:`plan_route` resolves ``--input``/``--output`` (see :mod:`stream_sep.live.devices` and
:mod:`stream_sep.live.system_audio`), applies the feedback guard, chooses the stream's rate and
channels, checks the devices accept them and writes the start-up notes (channel mixing,
system-audio resampling). :func:`resolve_mic` does the same for ``--mic``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from stream_sep.audio_files import audio_file_info
from stream_sep.errors import AudioFileError, DeviceError, UserError
from stream_sep.live import devices, system_audio, virtual
from stream_sep.live import mic as mic_module
from stream_sep.live.audio import STEM_DEVICE_CHANNELS
from stream_sep.live.recording import check_recording_path, stem_paths

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
_MIXING_PLUGINS = {"default", "sysdefault", "pulse", "pipewire", "jack", "dmix", "dsnoop"}


@dataclasses.dataclass
class Endpoint:
    """One side of the stream: a device or a file."""

    kind: str  # "input" or "output"
    spec: str
    device: devices.Device | None = None
    path: Path | None = None
    system: system_audio.SystemEnd | None = None  # --input system, --output system:NAME
    virtual: virtual.VirtualOutput | None = None  # --output virtual[:NAME]

    @property
    def name(self) -> str:
        if self.virtual is not None:
            return self.virtual.describe()
        if self.system is not None:
            return self.system.describe()
        return self.device.name if self.device is not None else str(self.path)


@dataclasses.dataclass
class Route:
    """A checked live route: ``channels`` run through the engine at ``rate``;
    ``out_channels`` are played (a mono stream on a stereo device plays on both; with
    ``stems``, 4: the music on 1-2, the vocals on 3-4); ``notes``: start-up lines, or None."""

    source: Endpoint
    sink: Endpoint
    rate: int
    channels: int
    out_channels: int
    notes: str | None = None
    stems: bool = False

    @property
    def name(self) -> str:
        return f"{self.source.name} -> {self.sink.name}"


@dataclasses.dataclass
class Mic:
    """``--mic``: a capture device mixed into the output, not through the separation."""

    device: devices.Device
    mixer: mic_module.MicMix
    stream: object = None


def plan_route(
    input_spec: str,
    output_spec: str,
    *,
    samplerate: int | None = None,
    channels: int | None = None,
    allow_feedback: bool = False,
    stems: bool = False,
) -> Route:
    """Resolve, guard and size a route; UserError/DeviceError/AudioFileError (one line).
    ``--output virtual`` is checked first (it may refuse the input); its modules are loaded
    just before the stream opens (:func:`stream_sep.live.virtual.open_for`). stems: the
    output must take them (:func:`check_stems_output`)."""
    if stems and virtual.is_virtual(output_spec):
        raise UserError(
            f"--stems cannot go to --output {output_spec}: a virtual microphone has one stereo "
            "mix; give a device with 4 or more output channels, or a .wav file"
        )
    shared = virtual.plan(output_spec, input_spec) if virtual.is_virtual(output_spec) else None
    source = resolve_endpoint(input_spec, "input")
    if shared is not None:
        sink = Endpoint("output", output_spec, device=shared.device, virtual=shared)
        if shared.server:  # PULSE_SINK: the virtual sink
            sink.system = system_audio.SystemEnd(shared.device, shared.sink)
    else:
        sink = resolve_endpoint(output_spec, "output", partner=source.device)
    if source.device is not None and sink.device is not None and devices.means_default(input_spec):
        source = resolve_endpoint(input_spec, "input", partner=sink.device)
    if source.system is not None:
        system_audio.check_route(
            source.system, sink.device, sink.system, output_spec, allow_feedback
        )
    elif source.device is not None and sink.device is not None and not _served(sink):
        devices.check_feedback(source.device, sink.device, output_spec, allow_feedback)
    file_rate, file_channels = audio_file_info(source.path)[:2] if source.path else (None, None)
    if stems:
        check_stems_output(sink)
    rate = samplerate or choose_rate(source, sink, file_rate)
    channels = channels or choose_channels(source, sink, file_channels)
    out_channels = (
        STEM_DEVICE_CHANNELS if stems and sink.device else output_channels(sink, channels)
    )
    for end, count in ((source, channels), (sink, out_channels)):
        if end.device is not None:
            devices.check_settings(end.device, end.kind, count, rate)
    if shared is not None and shared.server:  # the sink is made to the stream's measure
        shared.rate, shared.channels = rate, out_channels
        sink.system = system_audio.SystemEnd(shared.device, shared.sink)
    notes = channel_notes(source, sink, channels, out_channels, file_channels, stems)
    shared_note = virtual.ready_note(shared) if shared is not None else None
    stems_note = stems_layout(sink, channels) if stems else None
    notes = [notes, system_note(source, rate), shared_note, stems_note]
    notes = "\n".join(filter(None, notes)) or None
    return Route(source, sink, rate, channels, out_channels, notes, stems)


def check_stems_output(sink: Endpoint) -> None:
    """--stems needs an output that keeps 4 channels apart: a device with 4 or more output
    channels (not a sound server's mixing device, which would mix them down), a sink of 4
    or more channels (system:NAME), or a .wav file (two files); DeviceError otherwise."""
    if sink.device is None:
        return
    if sink.system is not None and sink.system.sink is not None:
        have, named = sink.system.sink.channels, f"--output {sink.spec}"
    elif not _physical(sink.device):
        raise DeviceError(
            f"--stems cannot go to --output {sink.device.label()}: a sound server's mixing "
            "device would mix the music and the vocals down; name a device with 4 or more "
            "output channels (or a JACK client), or give a .wav file"
        )
    else:
        have, named = sink.device.max_output_channels, f"--output {sink.device.label()}"
    if have < STEM_DEVICE_CHANNELS:
        raise DeviceError(
            f"--stems needs {STEM_DEVICE_CHANNELS} output channels (the music on 1-2, the "
            f"vocals on 3-4); {named} has {have} output channel{'s' * (have != 1)}"
        )


def stems_layout(sink: Endpoint, channels: int) -> str:
    """The start-up line saying where each stem goes."""
    if sink.path is not None:
        music, vocals = stem_paths(sink.path)
        return f"stems: the music (no vocals) to {music}, the vocals to {vocals}"
    mono = " (the mono stream on both channels of each pair)" if channels == 1 else ""
    return (
        f"stems: the music (no vocals) on channels 1-2, the vocals on channels 3-4 of "
        f"--output {sink.name}{mono}; music + vocals = the input, both at the latency"
    )


def resolve_mic(
    spec: str, route: Route, output_spec: str, level: float, reverb: float, allow_feedback=False
) -> Mic:
    """--mic: the device (checked against the output like --input), and its mixer."""
    device = devices.resolve(spec, "input")
    if route.sink.device is not None:
        devices.check_feedback(device, route.sink.device, output_spec, allow_feedback, "--mic")
    devices.check_settings(device, "input", 1, route.rate)
    # mixed into the engine's blocks (route.channels), before they are laid out on the device
    return Mic(device, mic_module.MicMix(route.rate, route.channels, level, reverb))


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


def _served(end: Endpoint) -> bool:
    """A virtual microphone made in the sound server: it takes any rate, and an input that
    would record it is refused once it exists (:func:`stream_sep.live.virtual.open_for`)."""
    return end.virtual is not None and end.virtual.server


def choose_rate(source: Endpoint, sink: Endpoint, file_rate: int | None) -> int:
    if _served(sink):
        sink = Endpoint(sink.kind, sink.spec)
    for end in (source, sink):  # a sound server's sink: its own rate, so nothing resamples
        if end.system is not None and end.system.sink is not None:
            return end.system.sink.rate
    for end in (source, sink):
        if end.device is not None:
            return int(end.device.default_samplerate)
    return int(file_rate)


def choose_channels(source: Endpoint, sink: Endpoint, file_channels: int | None) -> int:
    limits = [2] + [e.device.channels(e.kind) for e in (source, sink) if e.device is not None]
    if file_channels is not None:
        limits.append(file_channels)
    return max(1, min(limits))


def output_channels(sink: Endpoint, channels: int) -> int:
    """A mono stream plays on both sides of a stereo output device."""
    if sink.device is None:
        return channels
    return max(channels, min(2, sink.device.max_output_channels))


def channel_notes(
    source: Endpoint,
    sink: Endpoint,
    channels: int,
    out_channels: int,
    file_channels: int | None,
    stems: bool = False,
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
    if out_channels > channels and not stems:
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
    """What :func:`stream_sep.live.audio.match_channels` does to a file's channels."""
    if channels == 1:
        return f"has {have} channels, mixed down to mono (their mean)"
    if have == 1:
        return f"is mono, copied to all {channels} channels"
    return f"has {have} channels, {_first(channels)} used and the other {have - channels} left out"


def _first(count: int) -> str:
    return "channel 1" if count == 1 else f"channels 1-{count}"
