"""A PulseAudio server with two null sinks, ``music`` (the default) and ``phones``.

``.ci/test`` starts one and exports its address as ``STREAM_SEP_PULSE_SERVER`` (with
``STREAM_SEP_PULSE=1``: a missing server then fails). Otherwise the fixture starts its own
when ``pulseaudio`` is installed (the recipe of docs/system-audio.md: a private runtime folder,
stopped by its PID); if that is impossible the tests fail under ``CI=true`` and are skipped
elsewhere. The address is given only to the processes a test starts (``PULSE_SERVER`` in
their environment), never to this process: with a server answering, ALSA's ``default`` device
turns into PulseAudio and would change what other tests' default devices are.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

ADDRESS_ENV = "STREAM_SEP_PULSE_SERVER"
SINKS = ("music", "phones")


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(reason: str) -> None:
    if os.environ.get("STREAM_SEP_PULSE") == "1" or in_ci():
        pytest.fail(f"PulseAudio server needed in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def pactl(address: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["pactl", *args],
        env=dict(os.environ, PULSE_SERVER=address),
        capture_output=True,
        text=True,
        timeout=10,
    )


def start(folder: Path) -> tuple[str, int]:
    """Start pulseaudio with the null sinks in ``folder`` (mode 700); (address, pid)."""
    folder.chmod(0o700)
    loads = [f"--load=module-null-sink sink_name={name}" for name in SINKS]
    subprocess.run(
        [
            "pulseaudio",
            "--daemonize=yes",
            "--exit-idle-time=-1",
            "--disallow-exit",
            "-n",
            *loads,
            "--load=module-native-protocol-unix auth-anonymous=1",
            f"--log-target=file:{folder / 'pulse.log'}",
        ],
        env=dict(os.environ, XDG_RUNTIME_DIR=str(folder)),
        check=True,
        timeout=30,
        capture_output=True,
    )
    address = f"unix:{folder / 'pulse' / 'native'}"
    deadline = time.monotonic() + 20
    while pactl(address, "info").returncode != 0:
        if time.monotonic() > deadline:
            raise RuntimeError(f"pulseaudio did not answer; see {folder / 'pulse.log'}")
        time.sleep(0.2)
    pactl(address, "set-default-sink", SINKS[0])
    return address, int((folder / "pulse" / "pid").read_text().split()[0])


@pytest.fixture(scope="session")
def pulse_server():
    """Yields the server's address (for PULSE_SERVER)."""
    if shutil.which("pactl") is None or shutil.which("paplay") is None:
        unavailable("pactl/paplay are not installed (apt-get install pulseaudio-utils)")
    address = os.environ.get(ADDRESS_ENV)
    if address:
        if pactl(address, "info").returncode != 0:
            unavailable(f"{ADDRESS_ENV}={address} does not answer")
        yield address
        return
    if os.environ.get("STREAM_SEP_PULSE") == "1":
        unavailable(f"STREAM_SEP_PULSE=1 but {ADDRESS_ENV} is not set (see .ci/test)")
    if shutil.which("pulseaudio") is None:
        unavailable("pulseaudio is not installed (apt-get install pulseaudio)")
    with private_server("stream-sep-pulse-") as address:
        yield address


@contextlib.contextmanager
def private_server(prefix: str):
    """A PulseAudio server of its own in a fresh folder named ``prefix...``: its address;
    stopped and its folder removed on the way out."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    address, pid = start(folder)
    try:
        yield address
    finally:
        stop(pid)
        shutil.rmtree(folder, ignore_errors=True)


def stop(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM the daemon (not our child: it forked away) and wait until it is gone, so that
    its runtime folder is not written again after it is removed."""
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
