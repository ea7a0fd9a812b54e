"""Audio devices: listing them, finding one from what the user typed, refusing feedback.

A device is named by its index (``3``), a case-insensitive substring of its name
(``usb``), or the words ``mic`` / ``headphones``, which mean the system's default input /
output when no device carries that name. Every failure is a :class:`DeviceError` of one line
that names the candidates.
"""

from __future__ import annotations

import dataclasses
import logging
import re

from stream_sep.errors import DeviceError
from stream_sep.live import jack_ports

log = logging.getLogger(__name__)

DEFAULT_WORDS = {"input": "mic", "output": "headphones"}
_ALSA_CARD = re.compile(r"\(hw:(\d+),\d+\)")


@dataclasses.dataclass(frozen=True)
class Device:
    index: int
    name: str
    hostapi: str
    max_input_channels: int
    max_output_channels: int
    default_samplerate: float

    def channels(self, kind: str) -> int:
        return self.max_input_channels if kind == "input" else self.max_output_channels

    def label(self) -> str:
        return f"{self.index} {self.name!r}"


def _sounddevice():
    jack_ports.name_client()  # before PortAudio starts: its JACK client is 'stream-sep'
    try:
        import sounddevice
    except OSError as error:  # PortAudio itself is missing
        raise DeviceError(
            f"PortAudio cannot be loaded ({error}); install it (Debian/Ubuntu: apt-get install "
            "libportaudio2)"
        ) from None
    return sounddevice


def query() -> list[Device]:
    """Every device PortAudio knows, in index order."""
    sd = _sounddevice()
    apis = sd.query_hostapis()
    return [
        Device(
            index=info["index"],
            name=info["name"],
            hostapi=apis[info["hostapi"]]["name"],
            max_input_channels=info["max_input_channels"],
            max_output_channels=info["max_output_channels"],
            default_samplerate=float(info["default_samplerate"]),
        )
        for info in sd.query_devices()
    ]


def default_index(kind: str, hostapi: str | None = None) -> int | None:
    """The default input or output device (of the host API named ``hostapi``, or of the
    system), or None when there is none."""
    sd = _sounddevice()
    if hostapi is not None:
        for api in sd.query_hostapis():
            if api["name"] == hostapi:
                index = api[f"default_{kind}_device"]
                return int(index) if index is not None and index >= 0 else None
        return None
    index = sd.default.device[0 if kind == "input" else 1]
    return int(index) if index is not None and index >= 0 else None


def means_default(spec: str) -> bool:
    """Whether ``spec`` is the word ``mic`` or ``headphones`` and no device carries it."""
    wanted = spec.strip().lower()
    return wanted in DEFAULT_WORDS.values() and not any(
        wanted in device.name.lower() for device in query()
    )


def describe() -> str:
    """The text of ``stream-sep --list-devices``: one line per device."""
    found = query()
    if not found:
        return "no audio devices found (is a sound server such as JACK or PulseAudio running?)"
    defaults = {default_index("input"): "<", default_index("output"): ">"}
    lines = []
    for device in found:
        mark = "".join(m for i, m in defaults.items() if i == device.index) or " "
        lines.append(
            f"{mark:2}{device.index:3} {device.name} ({device.hostapi}): "
            f"{device.max_input_channels} in, {device.max_output_channels} out, "
            f"{device.default_samplerate:g} Hz"
        )
    lines.append("   < default input, > default output; name a device by index or part of its name")
    return "\n".join(lines)


def resolve(spec: str, kind: str, partner: Device | None = None) -> Device:
    """Find the ``kind`` ("input" or "output") device that ``spec`` names.

    partner: the device of the stream's other side. A default word (``mic``,
    ``headphones``) then means the default device of the partner's host API, so the two
    sides can open one stream (PortAudio refuses a duplex stream across host APIs).

    Raises DeviceError for an unknown or ambiguous name, or a device that has no
    ``kind`` channels.
    """
    option = "--" + kind
    found = query()
    if not found:
        raise DeviceError(
            f"{option} {spec!r}: no audio devices found (is a sound server such as JACK or "
            "PulseAudio running? stream-sep --list-devices)"
        )
    device = _by_index(spec, found, option) or _by_name(spec, found, kind, option, partner)
    if device.channels(kind) < 1:
        raise DeviceError(
            f"{option} {spec!r}: device {device.label()} has no {kind} channels; "
            f"{_candidates(found, kind)}"
        )
    return device


def _by_index(spec: str, found: list[Device], option: str) -> Device | None:
    if not spec.strip().isdigit():
        return None
    index = int(spec)
    if index >= len(found):
        raise DeviceError(
            f"{option} {spec!r}: there is no device {index}; the devices are 0 to "
            f"{len(found) - 1} (stream-sep --list-devices)"
        )
    return found[index]


def _by_name(
    spec: str, found: list[Device], kind: str, option: str, partner: Device | None = None
) -> Device:
    wanted = spec.strip().lower()
    exact = [d for d in found if d.name.lower() == wanted]
    matches = exact or [d for d in found if wanted and wanted in d.name.lower()]
    if len(matches) > 1:
        usable = [d for d in matches if d.channels(kind) > 0]
        matches = usable if usable else matches
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        names = ", ".join(d.label() for d in matches)
        raise DeviceError(f"{option} {spec!r} is ambiguous: it matches {names}; use the index")
    if wanted in DEFAULT_WORDS.values():
        return _default(found, kind, option, spec, partner)
    raise DeviceError(f"{option} {spec!r}: no device has that name; {_candidates(found, kind)}")


def _default(
    found: list[Device], kind: str, option: str, spec: str, partner: Device | None = None
) -> Device:
    index = default_index(kind)
    if partner is not None and (index is None or found[index].hostapi != partner.hostapi):
        index = default_index(kind, partner.hostapi) or index
    if index is None or index >= len(found):
        raise DeviceError(
            f"{option} {spec!r}: no device has that name and there is no default {kind} "
            f"device; {_candidates(found, kind)}"
        )
    log.info("%s %r means the default %s device, %s", option, spec, kind, found[index].label())
    return found[index]


def _candidates(found: list[Device], kind: str) -> str:
    usable = [d.label() for d in found if d.channels(kind) > 0]
    if not usable:
        return f"no device has {kind} channels"
    return f"{kind} devices: " + ", ".join(usable)


def check_feedback(
    source: Device, sink: Device, output_spec: str, allowed: bool, input_option: str = "--input"
) -> None:
    """Refuse a capture device and a playback device that would form a feedback loop.

    ``output_spec`` is what the user typed for --output; ``allowed`` is --allow-feedback,
    which skips every check; ``input_option`` names the capture side in the messages
    (``--mic`` for the singer's microphone). The rule, in order:

    1. A loop in the wiring is refused, headphones or not: the input is a monitor or
       loopback (its name says ``monitor``/``loopback``) of that very output (``Monitor of
       <output>``, ``<output>.monitor``, or the same device or ALSA card).
    2. Headphones are allowed: the user typed the word ``headphones`` (the default --output,
       which means the default output when no device has that name), or the output's name
       says headphone/headset/earphone/earbud. Sound in the ears does not reach a microphone,
       so one sound card for both sides (every laptop, JACK's ``system``) is fine.
    3. A loudspeaker near a microphone is refused: the output's name (or what the user typed)
       says speaker, and the input is not a monitor or loopback; or the output was named
       explicitly (by index or name) and is the input's own device or ALSA card.
    4. Anything else is allowed.
    """
    if allowed:
        return
    if _captures(source, sink):
        raise DeviceError(
            f"{input_option} {source.label()} captures what --output {sink.label()} plays, so the "
            "output would be fed back into the input (on headphones too); choose another "
            "--input or --output, or pass --allow-feedback if you want that loop"
        )
    said_headphones = output_spec.strip().lower() == DEFAULT_WORDS["output"]
    if said_headphones or _says(sink.name, _HEADPHONE_WORDS):
        if _says(sink.name, _SPEAKER_WORDS):
            log.warning(
                "--output %r is %s, which sounds like loudspeakers; if it is, it can feed "
                "back into the microphone: name your headphones output instead",
                output_spec,
                sink.label(),
            )
        return
    speaker = _says(sink.name, _SPEAKER_WORDS) or _says(output_spec, _SPEAKER_WORDS)
    if speaker and not _says(source.name, _MONITOR_WORDS):
        raise DeviceError(
            f"--output {sink.label()} is a loudspeaker and {input_option} {source.label()} can hear "
            "it (feedback); to listen on headphones, name them (--output headphones for the "
            "default output, or their index from stream-sep --list-devices), or pass "
            "--allow-feedback"
        )
    if same_hardware(source, sink):
        raise DeviceError(
            f"{input_option} {source.label()} and --output {sink.label()} are the same physical "
            "device, so a loudspeaker on it can feed back into the microphone; if you listen "
            "on headphones, say so with --output headphones (the default output) or pass "
            "--allow-feedback"
        )


_HEADPHONE_WORDS = ("headphone", "headset", "earphone", "earbud")
_SPEAKER_WORDS = ("speaker",)  # also "loudspeaker", "Speakers (Realtek ...)"
_MONITOR_WORDS = ("monitor", "loopback")


def _says(name: str, words: tuple[str, ...]) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in words)


def _captures(source: Device, sink: Device) -> bool:
    """Whether ``source`` is a monitor/loopback of ``sink`` (rule 1 of check_feedback)."""
    if not _says(source.name, _MONITOR_WORDS):
        return False
    if same_hardware(source, sink):
        return True
    name, target = source.name.lower(), sink.name.lower()
    for marker in ("monitor of ", ".monitor"):
        if marker in name:
            monitored = name.replace(marker, " ").strip(" :-_")
            if monitored and (monitored in target or target in monitored):
                return True
    return False


def same_hardware(first: Device, second: Device) -> bool:
    """Same PortAudio device, or two ALSA devices on one sound card (``(hw:N,M)``)."""
    if first.index == second.index:
        return True
    card_a, card_b = _ALSA_CARD.search(first.name), _ALSA_CARD.search(second.name)
    return bool(card_a and card_b and card_a.group(1) == card_b.group(1))


def check_settings(device: Device, kind: str, channels: int, samplerate: int) -> None:
    """Ask PortAudio whether ``device`` can stream ``channels`` float32 at ``samplerate``."""
    sd = _sounddevice()
    have = device.channels(kind)
    if channels > have:
        raise DeviceError(
            f"--{kind} {device.label()} has {have} {kind} channel{'s' * (have != 1)}, "
            f"{channels} were asked (--channels)"
        )
    check = sd.check_input_settings if kind == "input" else sd.check_output_settings
    try:
        check(device=device.index, channels=channels, dtype="float32", samplerate=samplerate)
    except sd.PortAudioError as error:
        reason = str(error.args[0]) if error.args else str(error)
        raise DeviceError(
            f"--{kind} {device.label()} cannot stream {channels} channel(s) at {samplerate} Hz "
            f"({reason}); its default rate is {device.default_samplerate:g} Hz (--samplerate)"
        ) from None
