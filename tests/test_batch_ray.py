"""Batch jobs on a Ray cluster at an address: a real head node started on 127.0.0.1 for the
tests (token authentication on, as Ray clusters run it), reached as HOST:PORT, as
ray://HOST:PORT (Ray Client) and through RAY_ADDRESS; addresses that are not Ray; a node
whose model file is not the driver's.

Each head runs in a process group of its own (``ray start`` in a new session), so the
tests stop exactly it, its workers included, by that group however a test ends:
``ray stop --force`` would stop every Ray process of this user on the machine.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from stream_sep.batch import cluster
from stream_sep.cli import main
from tests.test_batch import _check_stems, _files, _manifest, _write_song

REPO = Path(__file__).resolve().parent.parent
RAY = Path(sys.executable).with_name("ray")
SONGS = {"first.wav": (16000, 1, "PCM_16", 0.6), "second.flac": (22050, 2, "PCM_24", 0.5)}
RAY_VARIABLES = ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _clean_env(**extra: str) -> dict[str, str]:
    """This environment without Ray's address and token variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in RAY_VARIABLES}
    return {**env, **extra}


class Head:
    """A Ray head node on 127.0.0.1 with one CPU, token authentication and a Ray Client
    port, in a process group of its own; ``env`` reaches it and its workers."""

    def __init__(self, env: dict[str, str]):
        self.port, self.client_port = _free_port(), _free_port()
        self.token = env["RAY_AUTH_TOKEN"]
        # Short: Ray's sockets live under it (a Unix socket path holds 107 bytes).
        self.temp_dir = tempfile.mkdtemp(prefix="rs", dir="/tmp")
        command = [
            str(RAY), "start", "--head", "--node-ip-address=127.0.0.1",
            f"--port={self.port}", f"--ray-client-server-port={self.client_port}",
            "--num-cpus=1", "--include-dashboard=false", "--disable-usage-stats",
            f"--dashboard-agent-listen-port={_free_port()}",
            f"--dashboard-agent-grpc-port={_free_port()}",
            f"--temp-dir={self.temp_dir}",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command,
            env=env,
            cwd=self.temp_dir,
            start_new_session=True,  # its own group: ours to stop, and no one else's
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            output, _ = self.process.communicate(timeout=120)
        except BaseException:
            self.stop()
            raise
        if self.process.returncode != 0:
            self.stop()
            raise RuntimeError(f"ray start failed:\n{output}")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def drivers(self) -> int:
        """How many drivers have connected to this head (a log file each in its session)."""
        logs = Path(self.temp_dir) / "session_latest" / "logs"
        return len(list(logs.glob("python-core-driver-*.log")))

    def members(self) -> list[int]:
        """The processes of the head's group still alive (zombies not counted)."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if fields[0] != "Z" and int(fields[2]) == self.process.pid:
                    found.append(int(entry.name))
        return found

    def stop(self) -> None:
        """SIGTERM to the group, SIGKILL to what is left after 10 s; then its folder."""
        for signum, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signum)
            deadline = time.monotonic() + wait
            while self.members() and time.monotonic() < deadline:
                time.sleep(0.1)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


@contextlib.contextmanager
def started_head(**extra: str):
    env = _clean_env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16), **extra)
    head = Head(env)
    try:
        yield head
    finally:
        head.stop()
        assert head.members() == [], "the head's processes outlived the test"


@pytest.fixture(scope="module")
def head():
    with started_head() as running:
        yield running


@pytest.fixture
def songs(tmp_path) -> Path:
    folder = tmp_path / "songs"
    for seed, (name, spec) in enumerate(SONGS.items()):
        _write_song(folder / name, *spec, seed=seed)
    return folder


def _separate(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    """`python -m stream_sep separate ARGS` with ``env``, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "stream_sep", "separate", *args],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=cwd,
        env=env,
    )


@pytest.mark.slow
@pytest.mark.parametrize("form", ["HOST:PORT", "ray://HOST:PORT", "RAY_ADDRESS"])
def test_a_job_runs_on_the_cluster_at_an_address(head, songs, tmp_path, half_path, form):
    """Each address form reaches the test's head (a driver log appears in its session) with
    the cluster's token from RAY_AUTH_MODE/RAY_AUTH_TOKEN, and the stems are the model's."""
    env = _clean_env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=head.token)
    address = {"HOST:PORT": head.address, "ray://HOST:PORT": f"ray://127.0.0.1:{head.client_port}"}
    if form == "RAY_ADDRESS":
        env["RAY_ADDRESS"], ray_option = head.address, "auto"
    else:
        ray_option = address[form]
    out = tmp_path / "out"
    drivers = head.drivers()
    done = _separate([str(songs), "-o", str(out), "--model", str(half_path), "--ray", ray_option],
                     env, tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "separated 2 songs" in done.stderr and "on Ray (up to 1 song at a time)" in done.stderr
    assert head.drivers() > drivers, "the job did not run on the test's head"
    entries = _manifest(out)
    assert sorted(entries) == ["first", "second"]
    assert {entry["status"] for entry in entries.values()} == {"done"}
    for name in SONGS:
        _check_stems(songs / name, out / Path(name).stem)


@pytest.mark.slow
def test_a_missing_or_wrong_token_is_one_line(head, songs, tmp_path, half_path):
    """Token mode without a token: Ray's own refusal, at once; no token mode (the cluster
    refuses the call, Ray retries for about 20 s): the hint on the token."""
    out = tmp_path / "out"
    args = [str(songs), "-o", str(out), "--model", str(half_path), "--ray", head.address]
    home = tmp_path / "home"  # no ~/.ray/auth_token to find
    home.mkdir()
    no_token = _separate(args, _clean_env(RAY_AUTH_MODE="token", HOME=str(home)), tmp_path)
    assert no_token.returncode == 2, no_token.stderr
    assert no_token.stderr.count("\n") == 1, no_token.stderr
    assert no_token.stderr.startswith(
        f"stream-sep: error: cannot connect to the Ray cluster at '{head.address}': Token "
        "authentication is enabled but no authentication token was found; give its token in "
        "RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH\n"
    )
    no_mode = _separate(args, _clean_env(HOME=str(home)), tmp_path)
    assert no_mode.returncode == 2, no_mode.stderr
    assert no_mode.stderr.count("\n") == 1, no_mode.stderr
    assert f"cannot connect to the Ray cluster at '{head.address}': " in no_mode.stderr
    assert no_mode.stderr.endswith(f"({cluster.TOKEN_HINT})\n"), no_mode.stderr
    assert not out.exists()


class Listener:
    """A TCP listener on 127.0.0.1 that is not Ray: it accepts and says nothing, writes
    garbage, or closes at once (``behaviour``)."""

    def __init__(self, behaviour: str):
        self.behaviour, self.connections = behaviour, []
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:  # closed
                return
            self.connections.append(connection)
            if self.behaviour == "garbage":
                connection.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            elif self.behaviour == "closes":
                connection.close()

    def close(self) -> None:
        self.server.close()
        for connection in self.connections:
            connection.close()
        self.thread.join(timeout=5)


@pytest.mark.parametrize(
    "behaviour, form, reason",
    [
        ("silent", "HOST:PORT", f"it said nothing within {cluster.PROBE_SECONDS:g} s"),
        ("garbage", "HOST:PORT", "it answered b'HTTP/1.1 '"),
        ("closes", "ray://HOST:PORT", "it closed the connection without an HTTP/2 (gRPC) answer"),
        ("garbage", "RAY_ADDRESS", "it answered b'HTTP/1.1 '"),
    ],
)
def test_an_address_that_is_not_ray_is_one_line_within_the_bound(
    songs, tmp_path, half_path, capsys, monkeypatch, behaviour, form, reason
):
    for name in RAY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    listener = Listener(behaviour)
    address = f"127.0.0.1:{listener.port}"
    if form == "ray://HOST:PORT":
        address = f"ray://{address}"
    option = address
    if form == "RAY_ADDRESS":
        monkeypatch.setenv("RAY_ADDRESS", address)
        option = "auto"
    out = tmp_path / "out"
    before = _files(tmp_path)
    started = time.monotonic()
    try:
        code = main(["separate", str(songs), "-o", str(out), "--model", str(half_path),
                     "--ray", option])  # fmt: skip
    finally:
        took = time.monotonic() - started
        listener.close()
    err = capsys.readouterr().err
    assert code == 2, err
    assert err == (
        f"stream-sep: error: the address {address!r} is not a Ray cluster: {reason}"
        + err.split(reason, 1)[1]
    ), err
    assert err.count("\n") == 1 and "(a Ray head's port, 6379 by default" in err, err
    assert took < cluster.REFUSAL_SECONDS, took
    assert _files(tmp_path) == before and not out.exists()


def test_a_ray_client_address_without_ray_client_is_one_line(
    songs, tmp_path, half_path, capsys, monkeypatch
):
    monkeypatch.setitem(sys.modules, "grpc", None)  # import grpc: ImportError, as uninstalled
    out = tmp_path / "out"
    code = main(["separate", str(songs), "-o", str(out), "--model", str(half_path),
                 "--ray", "ray://127.0.0.1:10001"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert err == (
        "stream-sep: error: --ray ray://127.0.0.1:10001 needs Ray Client, which is not "
        "installed: pip install 'ray[client]' (or pip install stream-sep[cluster])\n"
    )
    assert not out.exists()


def _package_with_another_bundled_model(folder: Path, model: Path) -> Path:
    """A copy of stream_sep under ``folder`` whose bundled model is ``model``: what a node
    with another version of the package installed loads."""
    target = folder / "stream_sep"
    shutil.copytree(
        REPO / "stream_sep", target, ignore=shutil.ignore_patterns("*.onnx", "__pycache__")
    )
    shutil.copyfile(model, target / "models" / "vocals-mir1k.onnx")
    return target / "models" / "vocals-mir1k.onnx"


@pytest.mark.slow
def test_a_node_whose_model_file_differs_fails_its_songs_with_one_line(songs, tmp_path, half_path):
    """The head's workers import stream_sep from a copy whose bundled model is another
    file; the driver hashes its own bundled model. Every song fails with the one line
    naming the node's file; nothing is written for them."""
    node_model = _package_with_another_bundled_model(tmp_path / "node", half_path)
    with started_head(PYTHONPATH=str(tmp_path / "node")) as other:
        env = _clean_env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=other.token)
        out = tmp_path / "out"
        done = _separate([str(songs), "-o", str(out), "--ray", other.address], env, tmp_path)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.splitlines()
    assert "Traceback" not in done.stderr
    failed = lines.index("2 of 2 songs failed:")
    expected = (
        rf"  (first|second): the model file '{node_model}' on {socket.gethostname()} is not "
        r"the job's model \(sha256 [0-9a-f]{12}\.\.\., expected [0-9a-f]{12}\.\.\.\)"
    )
    assert len(lines) == failed + 3, done.stderr
    assert all(re.fullmatch(expected, line) for line in lines[failed + 1 :]), done.stderr
    entries = _manifest(out)
    assert {entry["status"] for entry in entries.values()} == {"failed"}
    assert not (out / "first").exists() and not (out / "second").exists()
