"""stream-sep's JACK client and the names of its ports.

PortAudio's JACK backend opens one JACK client per process, named ``PortAudio`` unless it is
told another name before PortAudio starts (``PaJack_SetClientName``), with output ports
``out_N`` connected in order to the device's ports (N counts on from the ports of any stream
opened before in the process). :func:`name_client` asks for ``stream-sep`` (Linux, before
sounddevice first loads PortAudio); :func:`name_stem_ports` renames the four output ports of a
running ``--stems`` stream ``music_1``, ``music_2``, ``vocals_1``, ``vocals_2``, through a
short-lived JACK client of its own (JACK-Client, the ``[jack]`` extra). Renaming keeps the
ports' connections. Both only name things: a PortAudio without JACK, a missing JACK-Client
or a server that refuses a rename leave PortAudio's names, and the start-up note says which
ports carry what.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import re
import sys

from stream_sep.live.recording import STEM_NAMES

log = logging.getLogger(__name__)

CLIENT_NAME = "stream-sep"
JACK_HOSTAPI = "JACK Audio Connection Kit"  # PortAudio's name for its JACK host API
# PortAudio keeps the pointer it is given, not a copy: the buffer lives as long as the process.
_CLIENT_NAME_BUFFER = ctypes.create_string_buffer(CLIENT_NAME.encode())
_HELPER_NAME = "stream-sep-names"


def name_client() -> None:
    """Ask PortAudio to name its JACK client ``stream-sep``. Takes effect only when called
    before PortAudio is first initialised (before sounddevice is imported); does nothing
    elsewhere, or where PortAudio has no JACK backend."""
    if "sounddevice" in sys.modules or not sys.platform.startswith("linux"):
        return
    function = _portaudio_function(ctypes.util.find_library("portaudio"), "PaJack_SetClientName")
    if function is not None:
        function.argtypes = [ctypes.c_char_p]
        function(ctypes.cast(_CLIENT_NAME_BUFFER, ctypes.c_char_p))


def client_name() -> str | None:
    """The name of PortAudio's JACK client while it has one open, else None."""
    import sounddevice as sd

    function = _portaudio_function(sd._libname, "PaJack_GetClientName")
    if function is None:
        return None
    name = ctypes.c_char_p()
    function.argtypes = [ctypes.POINTER(ctypes.c_char_p)]
    if function(ctypes.byref(name)) != 0 or not name.value:
        return None
    return name.value.decode(errors="replace")


def stem_port_names(channels: int = 2) -> list[str]:
    """The short names of the stem ports in output order: music_1, music_2, vocals_1, ..."""
    return [f"{stem}_{k + 1}" for stem in STEM_NAMES for k in range(channels)]


def name_stem_ports() -> tuple[list[str], str | None]:
    """Rename the running --stems stream's four output ports to :func:`stem_port_names`. Returns (the ports' full names as they now are, why they kept
    PortAudio's names or None); never raises."""
    client = client_name()
    if client is None:
        return [], "PortAudio reports no JACK client"
    try:
        import jack
    except (ImportError, OSError):
        return [], "pip install 'stream-sep[jack]' to name them"
    try:
        helper = jack.Client(_HELPER_NAME, no_start_server=True)
    except jack.JackError as error:
        return [], f"JACK refused a client to rename them ({error})"
    try:
        return _rename(helper, client, stem_port_names())
    finally:
        helper.close()


def _rename(helper, client: str, wanted: list[str]) -> tuple[list[str], str | None]:
    """Rename the newest ``len(wanted)`` output ports ``out_N`` of ``client`` in order.
    (PortAudio numbers the ports of each stream it opens on from the last: a second stream
    in one process has out_4 .. out_7; its old ports are gone once it closed.)"""
    import jack

    pattern = f"^{re.escape(client)}:out_[0-9]+$"
    ports = helper.get_ports(pattern, is_audio=True, is_output=True)
    ports = sorted(ports, key=lambda port: int(port.shortname[4:]))[-len(wanted) :]
    old = [port.name for port in ports]
    if len(ports) < len(wanted):
        return old, f"found {len(ports)} output ports of {client}, not {len(wanted)}"
    try:
        for port, short in zip(ports, wanted, strict=True):
            port.shortname = short
    except jack.JackError as error:
        return old, f"the JACK server did not rename them ({error})"
    return [f"{client}:{short}" for short in wanted], None


def _portaudio_function(library: str | None, name: str):
    """A function of the PortAudio library (None when it or the function is missing)."""
    if library is None:
        return None
    try:
        return getattr(ctypes.CDLL(library), name, None)
    except OSError:
        return None
