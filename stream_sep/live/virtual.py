"""``--output virtual[:NAME]``: the processed stream as a microphone other programs can choose
(docs/sharing.md).

Linux (PulseAudio, or PipeWire's PulseAudio layer): at start a null sink and a source remapped
from its monitor are loaded into the running sound server (``pactl load-module``); the source
is the microphone apps list, described as NAME (default "stream-sep karaoke"). The stream
plays into the sink through PortAudio's ALSA ``pulse`` device (``PULSE_SINK``, as
``--output system:NAME``). The sink is made at the stream's own rate, channels and float32
samples, so nothing between the stream and an app recording the source at that spec is
converted; PipeWire, which runs its graph at one rate, offers the source at that rate and
resamples a stream at another (said in one line, :func:`resampling_line`). Both modules
carry the property ``stream_sep.owner=PID@HOST``; they are unloaded at exit (the streams'
close, which Ctrl-C and SIGTERM reach too), and a start finds the ones a killed run left
behind (owner gone) and unloads them, saying so in one line.

macOS and Windows have no sound server to ask: a loopback driver found by name among the
output devices (BlackHole, Rogue Amoeba's Loopback, VB-Audio Cable) is played into, and apps
record its other end.

Nothing is loaded before the run has been checked: :func:`plan` only reads the server (and
removes what a killed run left); :func:`open_for` loads just before the stream opens and
:func:`close_for` unloads once it has closed (:class:`stream_sep.live.streams.Streams`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from stream_sep.errors import DeviceError, UserError
from stream_sep.live import devices, system_audio

log = logging.getLogger(__name__)

WORD = "virtual"
DEFAULT_NAME = "stream-sep karaoke"
OWNER = "stream_sep.owner"
NAME_RULE = "1 to 48 letters, digits, spaces, '.', '_' or '-', starting with a letter or digit"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,47}$")
_OWNER_ARGUMENT = re.compile(re.escape(OWNER) + r"=(\d+)@([A-Za-z0-9._-]+)")
_LATENCY = re.compile(r"Latency:\s*(\d+)\s*usec(?:,\s*configured\s*(\d+)\s*usec)?")
_SPEC_RATE = re.compile(r"(\d+)\s*Hz")
_PACTL_SECONDS = 5.0
_LATENCY_WAIT_SECONDS = 10.0
_LATENCY_SETTLE_SECONDS = 2.0
# Output ends of loopback drivers (macOS, Windows); apps record the other end.
LOOPBACK_OUTPUTS = ("blackhole", "loopback audio", "cable input", "vb-audio", "soundflower")
INSTALL = (
    "macOS: BlackHole (brew install blackhole-2ch) or Rogue Amoeba's Loopback; Windows: "
    "VB-Audio Virtual Cable (vb-audio.com/Cable); see docs/sharing.md"
)
_CHANNEL_MAPS = {1: "mono", 2: "front-left,front-right"}


def is_virtual(spec: str) -> bool:
    """Whether an --output value asks for a virtual microphone (``virtual[:NAME]``)."""
    text = spec.strip().lower()
    return text == WORD or text.startswith(WORD + ":")


def wanted_name(spec: str) -> str | None:
    """NAME of ``virtual:NAME`` (checked), None for plain ``virtual``."""
    _, colon, name = spec.strip().partition(":")
    if not colon:
        return None
    if not _NAME.match(name):
        raise UserError(f"--output virtual:{name}: the name must be {NAME_RULE}")
    return name


def slug(name: str) -> str:
    """The sound server's name for a description: ``stream-sep karaoke`` -> ``stream_sep_karaoke``;
    other names get the prefix ``stream_sep_``."""
    text = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    return text if text.startswith("stream_sep") else f"stream_sep_{text}"


def owner_tag() -> str:
    return f"{os.getpid()}@{socket.gethostname()}"


@dataclasses.dataclass(frozen=True)
class Names:
    """What the two modules are called: the sink played into, and the source apps record."""

    description: str
    sink: str
    source: str

    @classmethod
    def of(cls, description: str) -> Names:
        base = slug(description)
        return cls(description, base, f"{base}_mic")

    @property
    def monitor(self) -> str:
        return f"{self.sink}.monitor"


@dataclasses.dataclass
class VirtualOutput:
    """``--output virtual`` resolved: the device the stream plays into, and for a sound server
    the modules' names (``names``) and, once the route is sized, their ``rate``/``channels``."""

    device: devices.Device
    names: Names | None = None  # None: a loopback driver (macOS, Windows)
    input_spec: str = ""
    rate: int | None = None
    channels: int | None = None
    module_ids: list[int] = dataclasses.field(default_factory=list)
    load_started: bool = False  # a load began: unload also looks for modules with our tag
    watch: threading.Thread | None = None

    @property
    def server(self) -> bool:
        return self.names is not None

    @property
    def sink(self) -> system_audio.Sink:
        """The sink as --output system:NAME would see it (its measure once the route is sized)."""
        return system_audio.Sink(self.names.sink, "float32le", self.channels or 2, self.rate or 0)

    def describe(self) -> str:
        if not self.server:
            return (
                f"{self.device.name} (loopback driver; apps record {microphone_of(self.device)!r})"
            )
        return f"virtual microphone {self.names.description!r} (sink {self.names.sink!r})"


# ---------------------------------------------------------------------------- the server
def _pactl(*args: str) -> subprocess.CompletedProcess | None:
    """pactl with untranslated output; None when pactl cannot run."""
    try:
        return subprocess.run(
            ["pactl", *args],
            capture_output=True,
            text=True,
            timeout=_PACTL_SECONDS,
            stdin=subprocess.DEVNULL,
            env=dict(os.environ, LC_ALL="C"),
        )
    except (OSError, subprocess.TimeoutExpired):
        return None


def _read(*args: str) -> str:
    done = _pactl(*args)
    if done is None or done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no answer"])[0] if done else "no answer"
        raise DeviceError(f"--output virtual: pactl {' '.join(args)} failed ({reason})")
    return done.stdout


@dataclasses.dataclass(frozen=True)
class Module:
    index: int
    name: str
    argument: str

    @property
    def owner(self) -> tuple[int, str] | None:
        found = _OWNER_ARGUMENT.search(self.argument)
        return (int(found.group(1)), found.group(2)) if found else None


def modules() -> list[Module]:
    """The server's modules (``pactl list short modules``)."""
    found = []
    for line in _read("list", "short", "modules").splitlines():
        fields = line.split("\t")
        if len(fields) >= 2 and fields[0].strip().isdigit():
            found.append(Module(int(fields[0]), fields[1], fields[2] if len(fields) > 2 else ""))
    return found


def ours(found: list[Module]) -> list[Module]:
    """Modules loaded by some stream-sep (they carry the owner property)."""
    return [m for m in found if m.owner is not None]


def owner_alive(owner: tuple[int, str]) -> bool:
    """Whether the stream-sep that loaded a module still runs. On another host it cannot be
    known: taken as running."""
    pid, host = owner
    if host != socket.gethostname():
        return True
    if pid == os.getpid():
        return False  # a process of ours cannot hold them before this start loaded any
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    return "stream_sep" in command or "stream-sep" in command


def remove_left_over(found: list[Module]) -> list[Module]:
    """Unload the modules of stream-sep runs that are gone; the removed ones."""
    stale = [m for m in ours(found) if not owner_alive(m.owner)]
    for module in sorted(stale, key=lambda m: -m.index):  # the source before its sink
        _pactl("unload-module", str(module.index))
    if stale:
        pids = sorted({m.owner[0] for m in stale})
        log.warning(
            "removed a virtual microphone left by an earlier run that did not exit cleanly "
            "(process %s; modules %s)",
            ", ".join(map(str, pids)),
            ", ".join(str(m.index) for m in stale),
        )
    return stale


@dataclasses.dataclass(frozen=True)
class Node:
    """A sink or source as ``pactl list sinks|sources`` describes it."""

    kind: str  # "sink" or "source"
    name: str
    description: str
    owner: str | None
    latency: tuple[float, float | None] | None  # (now, configured) seconds


def nodes(kind: str) -> list[Node]:
    """The server's sinks or sources (kind "sinks" or "sources") with their descriptions."""
    found, block = [], []
    for line in _read("list", kind).splitlines() + [""]:
        if line and not line[0].isspace() and block:
            found.append(_node(kind[:-1], block))
            block = []
        block.append(line)
    if any(b.strip() for b in block):
        found.append(_node(kind[:-1], block))
    return [n for n in found if n.name]


def _node(kind: str, lines: list[str]) -> Node:
    fields = {}
    for line in lines:
        key, colon, value = line.strip().partition(":")
        if colon and key in ("Name", "Description") and key not in fields:
            fields[key] = value.strip()
    text = "\n".join(lines)
    owner = re.search(re.escape(OWNER) + r'\s*=\s*"([^"]*)"', text)
    latency = _LATENCY.search(text)
    seconds = None
    if latency:
        configured = latency.group(2)
        seconds = (int(latency.group(1)) / 1e6, int(configured) / 1e6 if configured else None)
    return Node(
        kind,
        fields.get("Name", ""),
        fields.get("Description", ""),
        owner.group(1) if owner else None,
        seconds,
    )


def check_free(names: Names, sinks: list[Node], sources: list[Node], option: str) -> None:
    """Refuse a name a sink or source already has (its name or what apps show)."""
    taken = {names.sink, names.monitor, names.source}
    for node in sinks + sources:
        clash = node.name in taken or node.description.lower() == names.description.lower()
        if not clash:
            continue
        if node.owner is not None:
            raise DeviceError(
                f"{option}: {node.kind} {node.name!r} ({node.description!r}) belongs to "
                f"stream-sep process {node.owner.split('@')[0]}, which still runs; stop it or "
                "choose another name: --output virtual:NAME"
            )
        raise DeviceError(
            f"{option}: the sound server already has a {node.kind} {node.name!r} described as "
            f"{node.description!r}; choose another name: --output virtual:NAME"
        )


# ---------------------------------------------------------------------------- planning
def plan(output_spec: str, input_spec: str) -> VirtualOutput:
    """Check ``--output virtual[:NAME]`` before anything is loaded: the name, the sound
    server (or, on macOS/Windows, a loopback driver), what an earlier killed run left
    (removed), a clash with existing devices, and an --input that would record our own
    output. Raises UserError/DeviceError (one line)."""
    option = f"--output {output_spec}"
    name = wanted_name(output_spec)
    if not sys.platform.startswith("linux"):
        found = devices.query()
        return VirtualOutput(choose_loopback_output(found, name, option), input_spec=input_spec)
    if shutil.which("pactl") is None:
        raise DeviceError(
            f"{option} needs pactl to reach the sound server (Debian/Ubuntu: apt-get install "
            "pulseaudio-utils; it also talks to PipeWire's pipewire-pulse)"
        )
    info = _pactl("info")
    if info is None or info.returncode != 0:
        raise DeviceError(
            f"{option}: no PulseAudio or PipeWire server answers (pactl info); start your "
            "desktop's sound server (pipewire-pulse or pulseaudio), see docs/sharing.md"
        )
    names = Names.of(name or DEFAULT_NAME)
    remove_left_over(modules())
    check_own_capture(input_spec, names)
    check_free(names, nodes("sinks"), nodes("sources"), option)
    device = _pulse_output(option)
    return VirtualOutput(device, names, input_spec)


def _pulse_output(option: str) -> devices.Device:
    for device in devices.query():
        if device.name.strip().lower() == system_audio.PULSE_DEVICE and device.max_output_channels:
            return device
    raise DeviceError(
        f"{option}: the sound server answers but PortAudio has no 'pulse' device: install "
        "ALSA's PulseAudio plugin (Debian/Ubuntu: apt-get install libasound2-plugins; Fedora: "
        "alsa-plugins-pulseaudio)"
    )


def check_own_capture(input_spec: str, names: Names) -> None:
    """Refuse ``--input system[:NAME]`` that would capture the virtual sink's monitor or the
    virtual microphone itself (the sink is made by this run, so --allow-feedback cannot
    help: the stream would only hear itself)."""
    if not system_audio.is_system(input_spec):
        return
    wanted = system_audio.wanted_name(input_spec)
    if wanted is None:
        hit = system_audio.default_sink() == names.sink
    else:
        lowered = wanted.lower()
        hit = lowered in {names.sink, names.monitor, names.source, names.description.lower()}
        if not hit:
            others = [s.name for s in system_audio.sinks() or [] if s.name != names.sink]
            exact = lowered in {n.lower() for n in others}
            unique = not any(lowered in n.lower() for n in others)
            hit = not exact and unique and (lowered in names.sink or lowered in names.source)
    if hit:
        raise DeviceError(
            f"--input {input_spec} would record the virtual microphone "
            f"{names.description!r} (sink {names.sink!r}) that --output virtual plays into, "
            "so the stream would hear only itself; capture another sink (--input system:NAME)"
        )


def choose_loopback_output(
    found: list[devices.Device], wanted: str | None, option: str
) -> devices.Device:
    """macOS/Windows: the output end of a loopback driver, by name (or the one whose name
    contains ``wanted``); one line naming what to install when there is none."""
    outputs = [d for d in found if d.max_output_channels > 0 and "[loopback]" not in d.name.lower()]
    loopbacks = [d for d in outputs if _says_loopback(d.name)]
    if wanted is not None:
        loopbacks = [d for d in loopbacks if wanted.lower() in d.name.lower()]
    if len(loopbacks) == 1:
        return loopbacks[0]
    if loopbacks:
        many = ", ".join(d.label() for d in loopbacks)
        raise DeviceError(f"{option}: several loopback drivers: {many}; name one: virtual:NAME")
    if wanted is not None:
        raise DeviceError(f"{option}: no loopback driver's output is named like {wanted!r}")
    raise DeviceError(
        f"{option}: no loopback driver found among the output devices; install {INSTALL}"
    )


def _says_loopback(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in LOOPBACK_OUTPUTS)


def microphone_of(device: devices.Device) -> str:
    """The input apps choose for a loopback output: VB-Audio's ``CABLE Input`` is recorded as
    ``CABLE Output``; BlackHole and Loopback keep one name for both ends."""
    return re.sub(r"(?i)\bcable input\b", "CABLE Output", device.name)


# ---------------------------------------------------------------------------- running
def load_arguments(names: Names, rate: int, channels: int, owner: str) -> tuple[list, list]:
    """module-null-sink's and module-remap-source's arguments (each a list for pactl)."""
    mapping = _CHANNEL_MAPS[channels]
    sink = [
        f"sink_name={names.sink}",
        f"sink_properties=\"device.description='{names.description}' {OWNER}={owner}\"",
        f"rate={rate}",
        "format=float32le",
        f"channels={channels}",
        f"channel_map={mapping}",
    ]
    source = [
        f"master={names.monitor}",
        f"source_name={names.source}",
        f"source_properties=\"device.description='{names.description}' "
        f'device.class=sound {OWNER}={owner}"',
        f"channels={channels}",
        f"channel_map={mapping}",
        f"master_channel_map={mapping}",
        "remix=no",
    ]
    return sink, source


def load(virtual: VirtualOutput) -> None:
    """Load the sink and its source; on failure unload what was loaded and raise."""
    sink_args, source_args = load_arguments(
        virtual.names, virtual.rate, virtual.channels, owner_tag()
    )
    virtual.load_started = True
    for module, arguments in (
        ("module-null-sink", sink_args),
        ("module-remap-source", source_args),
    ):
        done = _pactl("load-module", module, *arguments)
        if done is None or done.returncode != 0 or not done.stdout.strip().isdigit():
            unload(virtual)
            reason = (done.stderr.strip().splitlines() or ["no answer"])[0] if done else "no answer"
            raise DeviceError(f"--output virtual: the sound server refused {module} ({reason})")
        virtual.module_ids.append(int(done.stdout.strip()))


def unload(virtual: VirtualOutput) -> None:
    """Unload the modules this run loaded, and any other carrying this process's tag: one
    whose load a signal interrupted before its index came back."""
    while virtual.module_ids:
        _pactl("unload-module", str(virtual.module_ids.pop()))
    if not virtual.load_started:
        return
    virtual.load_started = False
    me = (os.getpid(), socket.gethostname())
    for module in sorted(ours(modules()), key=lambda m: -m.index):  # the source first
        if module.owner == me:
            _pactl("unload-module", str(module.index))


def check_default_source(virtual: VirtualOutput) -> None:
    """An --input routed through the sound server's default source must not record our own
    microphone (a server may make a new source its default)."""
    if virtual.input_spec.strip().lower() not in system_audio.SERVER_ROUTED | {"mic"}:
        return
    chosen = os.environ.get("PULSE_SOURCE", "")
    if not chosen:
        done = _pactl("get-default-source")
        chosen = done.stdout.strip() if done and done.returncode == 0 else ""
    if chosen in (virtual.names.source, virtual.names.monitor):
        raise DeviceError(
            f"--input {virtual.input_spec} records the sound server's source {chosen!r}, the "
            "virtual microphone itself; choose another input (pactl set-default-source NAME)"
        )


def source_rate(name: str) -> int | None:
    """The rate the server offers the source ``name`` at (``pactl list short sources``)."""
    for line in _read("list", "short", "sources").splitlines():
        fields = line.split("\t")
        if len(fields) > 3 and fields[1] == name:
            found = _SPEC_RATE.search(fields[3])
            return int(found.group(1)) if found else None
    return None


def resampling_line(virtual: VirtualOutput) -> str | None:
    """One line when the server offers the source at another rate than the stream's: PipeWire
    runs its graph at one rate (48000 Hz unless configured otherwise) and resamples a sink
    made at another; PulseAudio keeps the sink's rate. None when nothing is resampled."""
    rate = source_rate(virtual.names.source)
    if rate is None or rate == virtual.rate:
        return None
    return (
        f"virtual microphone: the sound server resamples the stream's {virtual.rate} Hz to "
        f"{rate} Hz, the rate it offers the source at; --samplerate {rate} would reach apps "
        "without resampling"
    )


def latency_line(virtual: VirtualOutput) -> str:
    """What the sound server reports for the sink and source now."""
    sink = next((n for n in nodes("sinks") if n.name == virtual.names.sink), None)
    source = next((n for n in nodes("sources") if n.name == virtual.names.source), None)
    parts = [_latency_text("sink", sink), _latency_text("source", source)]
    return (
        f"virtual microphone: the sound server reports {'; '.join(parts)}; an app recording "
        "it adds its own buffer, which stream-sep cannot see"
    )


def _latency_text(kind: str, node: Node | None) -> str:
    if node is None or node.latency is None:
        return f"no {kind} latency"
    now, configured = node.latency
    text = f"{kind} latency {now * 1000:.1f} ms"
    return text + (f" (configured {configured * 1000:.1f} ms)" if configured is not None else "")


class _LatencyWatch(threading.Thread):
    """Once the stream plays into the sink, one line with the server's latencies."""

    def __init__(self, virtual: VirtualOutput):
        super().__init__(name="virtual-latency", daemon=True)
        self.virtual, self.stopped = virtual, threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + _LATENCY_WAIT_SECONDS
        while not self.stopped.wait(0.5) and time.monotonic() < deadline:
            try:
                if self._playing():  # the server settles its latencies for the new stream
                    if self.stopped.wait(_LATENCY_SETTLE_SECONDS):
                        return
                    line = latency_line(self.virtual)
                    if not self.stopped.is_set():
                        log.warning("%s", line)
                    return
            except DeviceError:
                return

    def _playing(self) -> bool:
        sink_index = None
        for line in _read("list", "short", "sinks").splitlines():
            fields = line.split("\t")
            if len(fields) > 1 and fields[1] == self.virtual.names.sink:
                sink_index = fields[0]
        inputs = _read("list", "short", "sink-inputs").splitlines()
        return any(line.split("\t")[1:2] == [sink_index] for line in inputs)


def open_for(virtual: VirtualOutput | None) -> None:
    """Before the stream opens: load the virtual microphone, refuse an --input that records
    it, and start the watch that reports the server's latencies. No-op for None or a
    loopback driver. Raises DeviceError with nothing left loaded."""
    if virtual is None or not virtual.server or virtual.module_ids:
        return
    load(virtual)
    try:
        check_default_source(virtual)
        line = resampling_line(virtual)
    except DeviceError:
        unload(virtual)
        raise
    if line:
        log.warning("%s", line)
    virtual.watch = _LatencyWatch(virtual)
    virtual.watch.start()


def close_for(virtual: VirtualOutput | None) -> None:
    """After the stream closed: unload the virtual microphone (idempotent)."""
    if virtual is None or not virtual.server:
        return
    if virtual.watch is not None:
        virtual.watch.stopped.set()
        virtual.watch.join(timeout=_PACTL_SECONDS)
        virtual.watch = None
    unload(virtual)


def ready_note(virtual: VirtualOutput) -> str:
    """The start-up line naming the microphone apps choose."""
    if not virtual.server:
        return (
            f"virtual microphone: playing into {virtual.device.label()}; apps record "
            f"{microphone_of(virtual.device)!r} (the loopback driver's own latency is not known "
            "to stream-sep)"
        )
    names = virtual.names
    return (
        f"virtual microphone {names.description!r}: apps record the source {names.source!r} "
        f"({virtual.channels} ch {virtual.rate} Hz float32); stream-sep plays into the sink "
        f"{names.sink!r}"
    )
