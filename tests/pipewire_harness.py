"""A private, headless PipeWire with its PulseAudio layer, for tests of what the sound server
does on PipeWire desktops.

Four processes in a fresh runtime folder (mode 700, ``XDG_RUNTIME_DIR``), with their
configuration and state folders inside it too, so nothing is read from or written to the
user's own: a D-Bus session bus of its own (WirePlumber needs one), ``pipewire``,
``wireplumber`` (the session manager that links a stream to the sink it asks for) and
``pipewire-pulse`` (the PulseAudio protocol on ``pulse/native``). WirePlumber finds no sound
card here; ``pipewire-pulse`` then offers a dummy sink ``auto_null``, which WirePlumber makes
the default: the server is ready once ``pactl info`` names it. As with
tests/pulse_harness.py, the address goes only to the processes a test starts
(``PULSE_SERVER``). Missing programs fail the tests under ``CI=true`` and skip them elsewhere.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.pulse_harness import in_ci, pactl

PROGRAMS = ("dbus-daemon", "pipewire", "wireplumber", "pipewire-pulse", "pactl", "parec")
INSTALL = "apt-get install pipewire pipewire-pulse wireplumber dbus pulseaudio-utils"
READY_SECONDS = 30.0


def unavailable(reason: str) -> None:
    if in_ci():
        pytest.fail(f"PipeWire needed in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def missing_programs() -> list[str]:
    return [name for name in PROGRAMS if shutil.which(name) is None]


def version() -> str:
    """``pipewire --version``'s library version, e.g. ``0.3.65``."""
    text = subprocess.run(
        ["pipewire", "--version"], capture_output=True, text=True, timeout=10
    ).stdout
    return text.split()[-1] if text.split() else "unknown"


class Server:
    """The running processes, and the address of the PulseAudio layer."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.address = f"unix:{folder / 'pulse' / 'native'}"
        self.processes: list[subprocess.Popen] = []
        bus = folder / "bus"
        self.env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("PIPEWIRE_", "PULSE_", "DBUS_", "WIREPLUMBER_"))
        }
        self.env.update(
            XDG_RUNTIME_DIR=str(folder),
            XDG_CONFIG_HOME=str(folder / "config"),
            XDG_STATE_HOME=str(folder / "state"),
            DBUS_SESSION_BUS_ADDRESS=f"unix:path={bus}",
        )

    def start(self) -> None:
        bus = self.env["DBUS_SESSION_BUS_ADDRESS"]
        self.spawn("dbus", "dbus-daemon", "--session", "--nofork", f"--address={bus}")
        self.wait_for(lambda: (self.folder / "bus").exists(), "the D-Bus session bus")
        self.spawn("pipewire", "pipewire")
        self.wait_for(lambda: (self.folder / "pipewire-0").exists(), "pipewire")
        self.spawn("wireplumber", "wireplumber")
        self.spawn("pipewire-pulse", "pipewire-pulse")
        self.wait_for(self.linked, "pipewire-pulse with WirePlumber's default sink")

    def spawn(self, log: str, *command: str) -> None:
        with (self.folder / f"{log}.log").open("wb") as output:
            self.processes.append(
                subprocess.Popen(
                    command,
                    env=self.env,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                )
            )

    def linked(self) -> bool:
        """pipewire-pulse answers and WirePlumber has chosen a default sink."""
        info = pactl(self.address, "info")
        return info.returncode == 0 and "Default Sink: auto_null" in info.stdout

    def wait_for(self, ready, what: str) -> None:
        deadline = time.monotonic() + READY_SECONDS
        while not ready():
            gone = [p.args[0] for p in self.processes if p.poll() is not None]
            if gone or time.monotonic() > deadline:
                logs = ", ".join(str(path) for path in sorted(self.folder.glob("*.log")))
                exited = f" ({', '.join(gone)} exited)" if gone else ""
                raise RuntimeError(f"{what} did not start{exited}; see {logs}")
            time.sleep(0.1)

    def stop(self, timeout: float = 10.0) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=timeout)


@contextlib.contextmanager
def private_server(prefix: str = "stream-sep-pipewire-"):
    """A PipeWire server of its own in a fresh folder named ``prefix...``: its PulseAudio
    address; stopped and its folder removed on the way out."""
    missing = missing_programs()
    if missing:
        unavailable(f"{', '.join(missing)} not installed ({INSTALL})")
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    folder.chmod(0o700)
    server = Server(folder)
    try:
        server.start()
        yield server.address
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
