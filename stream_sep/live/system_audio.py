"""``--input system`` / ``system:NAME``: capture what the computer plays (docs/system-audio.md).

Linux (PulseAudio, or PipeWire's PulseAudio layer): ``pactl`` names the default sink (or the
sink NAME matches) and its monitor source; the stream opens PortAudio's ALSA ``pulse`` device
with ``PULSE_SOURCE`` set to that monitor, so nothing has to be changed in a mixer. The capture
runs at the sink's own rate, so the sound server does not resample. ``--output system:NAME``
plays into sink NAME the same way (``PULSE_SINK``).

Elsewhere (macOS, Windows), or where no PulseAudio server answers: a loopback device found by
name among the input devices (BlackHole, Loopback, Soundflower, VB-Audio Cable, Windows' WASAPI
``[Loopback]`` devices and "Stereo Mix"); ``system:NAME`` picks the input device whose name
contains NAME. Where nothing is found, one line says what to install.

The feedback rule (:func:`check_route`): the processed stream must not play into the sink
whose monitor is captured. A PulseAudio capture refuses an output to that sink (``system:``
the same sink, or an ALSA device that the sound server routes to it: ``pulse``, ``default``,
``pipewire``, ``sysdefault``, the default output) unless ``--allow-feedback``; a loopback
device refuses an output on the same loopback product.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import subprocess

from stream_sep.errors import DeviceError
from stream_sep.live import devices

log = logging.getLogger(__name__)

WORD = "system"
PULSE_DEVICE = "pulse"
# ALSA devices that play through the sound server (to PULSE_SINK, or the default sink).
SERVER_ROUTED = {"pulse", "default", "pipewire", "sysdefault"}
LOOPBACK_NAMES = (
    "blackhole",
    "loopback",  # Rogue Amoeba's Loopback, Windows' "<output> [Loopback]", ALSA's snd-aloop
    "soundflower",
    "vb-audio",
    "cable output",
    "stereo mix",
    "monitor of",
)
# Both ends of one virtual cable carry the product's name: playing into one end loops into
# the other.
_PRODUCTS = ("blackhole", "soundflower", "vb-audio", "loopback audio")
_PACTL_SECONDS = 5.0
STEPS = "see docs/system-audio.md"


def is_system(spec: str) -> bool:
    """Whether an --input/--output value asks for system audio (``system`` or ``system:NAME``)."""
    text = spec.strip().lower()
    return text == WORD or text.startswith(WORD + ":")


def wanted_name(spec: str) -> str | None:
    """NAME of ``system:NAME``; None for plain ``system``."""
    _, _, name = spec.strip().partition(":")
    return name.strip() or None


@dataclasses.dataclass(frozen=True)
class Sink:
    name: str
    sample_format: str
    channels: int
    rate: int


@dataclasses.dataclass(frozen=True)
class SystemEnd:
    """What ``system`` resolved to: a PortAudio device, and for PulseAudio the sink (and, for
    a capture, its monitor source) that the environment variable routes it to."""

    device: devices.Device
    sink: Sink | None = None  # PulseAudio: the sink captured (monitor) or played into
    source: str | None = None  # PulseAudio capture: the monitor source

    @property
    def environment(self) -> dict[str, str]:
        """PULSE_SOURCE / PULSE_SINK for the ALSA pulse plugin, read when the stream opens."""
        if self.sink is None:
            return {}
        if self.source is not None:
            return {"PULSE_SOURCE": self.source}
        return {"PULSE_SINK": self.sink.name}

    def describe(self) -> str:
        if self.sink is None:
            return f"{self.device.name} (loopback device)"
        what = f"monitor of sink {self.sink.name!r}" if self.source else f"sink {self.sink.name!r}"
        return (
            f"{what} ({self.sink.sample_format} {self.sink.channels} ch {self.sink.rate} Hz) "
            f"through PortAudio's {self.device.name!r}"
        )


# ---------------------------------------------------------------------------- PulseAudio
def pactl(*args: str) -> str | None:
    """pactl's output, or None when there is no pactl or no server answers."""
    if shutil.which("pactl") is None:
        return None
    try:
        done = subprocess.run(
            ["pactl", *args],
            capture_output=True,
            text=True,
            timeout=_PACTL_SECONDS,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def sinks() -> list[Sink] | None:
    """The sound server's sinks (``pactl list short sinks``), or None without a server."""
    listing = pactl("list", "short", "sinks")
    if listing is None:
        return None
    found = []
    for line in listing.splitlines():
        fields = line.split("\t")
        if len(fields) >= 4:
            found.append(_sink(fields[1], fields[3]))
    return found


def _sink(name: str, spec: str) -> Sink:
    """A sink from its name and pactl's ``s16le 2ch 44100Hz``."""
    parts = spec.split()
    channels = next((int(p[:-2]) for p in parts if p.endswith("ch") and p[:-2].isdigit()), 2)
    rate = next((int(p[:-2]) for p in parts if p.endswith("Hz") and p[:-2].isdigit()), 48000)
    return Sink(name, parts[0] if parts else "?", channels, rate)


def default_sink() -> str | None:
    """The default sink's name (``pactl get-default-sink``, or ``pactl info`` on older pactl)."""
    name = pactl("get-default-sink")
    if name and name.strip():
        return name.strip()
    info = pactl("info") or ""
    for line in info.splitlines():
        if line.startswith("Default Sink:"):
            return line.partition(":")[2].strip() or None
    return None


def sources() -> set[str]:
    listing = pactl("list", "short", "sources") or ""
    return {line.split("\t")[1] for line in listing.splitlines() if line.count("\t") >= 1}


def choose_sink(found: list[Sink], wanted: str | None, option: str) -> Sink:
    """The default sink (``wanted`` None) or the one whose name is or contains ``wanted``."""
    names = ", ".join(repr(s.name) for s in found) or "none"
    if wanted is None:
        default = default_sink()
        match = [s for s in found if s.name == default]
        if not match:
            raise DeviceError(
                f"{option} system: the sound server has no default output (sinks: {names}); "
                f"name one: {option} system:NAME"
            )
        return match[0]
    lowered = wanted.lower()
    match = [s for s in found if s.name.lower() == lowered] or [
        s for s in found if lowered in s.name.lower()
    ]
    if len(match) == 1:
        return match[0]
    if match:
        many = ", ".join(repr(s.name) for s in match)
        raise DeviceError(f"{option} system:{wanted} is ambiguous: it matches the sinks {many}")
    raise DeviceError(f"{option} system:{wanted}: no sink has that name; sinks: {names}")


def _pulse_device(kind: str, option: str) -> devices.Device:
    for device in devices.query():
        if device.name.strip().lower() == PULSE_DEVICE and device.channels(kind) > 0:
            return device
    raise DeviceError(
        f"{option} system: the sound server answers but PortAudio has no {PULSE_DEVICE!r} "
        "device: install ALSA's PulseAudio plugin (Debian/Ubuntu: apt-get install "
        "libasound2-plugins; Fedora: alsa-plugins-pulseaudio)"
    )


# ---------------------------------------------------------------------------- resolving
def resolve(spec: str, kind: str) -> SystemEnd | None:
    """``system`` / ``system:NAME`` for ``kind`` ("input" or "output"). None for a plain
    ``--input system`` where no sound server answers and no loopback device exists but a
    device is named ``system`` (JACK's): the caller then opens that device, as before."""
    option, wanted = f"--{kind}", wanted_name(spec)
    found = sinks()
    if found is not None:
        sink = choose_sink(found, wanted, option)
        device = _pulse_device(kind, option)
        if kind == "output":
            return SystemEnd(device, sink)
        monitor = f"{sink.name}.monitor"
        if monitor not in sources():
            raise DeviceError(f"{option} system: sink {sink.name!r} has no monitor source")
        log.info("%s %s: the monitor of sink %r", option, spec, sink.name)
        return SystemEnd(device, sink, monitor)
    if kind == "output":
        raise DeviceError(
            f"--output {spec}: no PulseAudio or PipeWire server answers (pactl); name the "
            "output device itself (stream-sep --list-devices)"
        )
    loopback = _loopback(wanted)
    return None if loopback is None else SystemEnd(loopback)


def _loopback(wanted: str | None) -> devices.Device | None:
    found = devices.query()
    inputs = [d for d in found if d.max_input_channels > 0]
    if wanted is not None:
        match = [d for d in inputs if wanted.lower() in d.name.lower()]
    else:
        match = [d for d in inputs if is_loopback(d.name)]
    if len(match) == 1:
        log.info("--input system: the loopback device %s", match[0].label())
        return match[0]
    if len(match) > 1:
        many = ", ".join(d.label() for d in match)
        raise DeviceError(
            f"--input system: several loopback devices: {many}; name one: --input system:NAME"
        )
    if wanted is None and any(d.name.strip().lower() == WORD for d in inputs):
        return None
    what = f"no input device named {wanted!r}" if wanted else "no loopback device"
    raise DeviceError(
        f"--input system: no PulseAudio/PipeWire server answers and {what} was found; install "
        "one (macOS: BlackHole or Loopback; Windows: VB-Audio Cable, or use a '[Loopback]' "
        f"device; Linux: PulseAudio or PipeWire), {STEPS}"
    )


def is_loopback(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in LOOPBACK_NAMES)


# ---------------------------------------------------------------------------- feedback
def check_route(
    capture: SystemEnd,
    sink: devices.Device | None,
    played: SystemEnd | None,
    output_spec: str,
    allowed: bool,
) -> None:
    """Refuse an output that plays into what ``capture`` records.

    sink: the output device (None for a file); played: the output's SystemEnd when --output
    was ``system:NAME``. ``allowed`` (--allow-feedback) skips the check.
    """
    if allowed or sink is None:
        return
    if capture.sink is not None:
        target = _pulse_target(sink, played)
        if target == capture.sink.name:
            raise DeviceError(
                f"--input system captures the monitor of sink {target!r} and --output "
                f"{output_spec} plays into that same sink, so the output would be fed back "
                "into the input; play into another sink (--output system:NAME, e.g. your "
                "headphones), a hardware device or a file, or pass --allow-feedback"
            )
        return
    if devices.same_hardware(capture.device, sink) or _same_product(capture.device, sink):
        raise DeviceError(
            f"--input system records {capture.device.label()} and --output {sink.label()} "
            "plays into the same loopback device, so the output would be fed back into the "
            f"input; play to your headphones or speakers instead ({STEPS}), or pass "
            "--allow-feedback"
        )


def _pulse_target(sink: devices.Device, played: SystemEnd | None) -> str | None:
    """The sink an output device plays into, when the sound server routes it; else None."""
    if played is not None and played.sink is not None:
        return played.sink.name
    if sink.name.strip().lower() in SERVER_ROUTED:
        return os.environ.get("PULSE_SINK") or default_sink()
    return None


def _same_product(source: devices.Device, sink: devices.Device) -> bool:
    a, b = source.name.lower(), sink.name.lower()
    if any(p in a and p in b for p in _PRODUCTS):
        return True
    base = a.replace("[loopback]", "").strip()
    return "[loopback]" in a and base == b.strip()
