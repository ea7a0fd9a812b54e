"""Running a job's songs on a Ray cluster (``--ray ADDRESS|auto``; the optional extra
``pip install stream-sep[cluster]``).

Each song is one Ray task running :func:`stream_sep.batch.worker.separate_song`, the same
function a local worker runs: it loads the model once per Ray worker process (a cached
global: Ray reuses its worker processes between tasks) and writes the stems itself into
the output folder, which every node must see at the same path (a shared filesystem), as
it must see the songs and the model file. Each task asks Ray for one CPU and runs the
model on one thread.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator

from stream_sep.batch.worker import SongResult, SongTask, separate_song
from stream_sep.errors import UserError, first_line
from stream_sep.models import providers

INSTALL_HINT = "pip install stream-sep[cluster]"
CLIENT_HINT = "pip install 'ray[client]'"
GCS_PORT = 6379  # `ray start --head` default
CLIENT_PORT = 10001  # ray:// (Ray Client) default
PROBE_SECONDS = 5.0  # for the TCP connection, and again for the answer to it
REFUSAL_SECONDS = 2 * PROBE_SECONDS  # the most a refusal of a dead or non-Ray address takes
TASK_CPUS = 1
# What a client sends first on an HTTP/2 connection: the preface and an empty SETTINGS frame.
# Both the head's GCS and the Ray Client server speak gRPC (HTTP/2), whose first frame in
# reply is SETTINGS (RFC 9113, 3.4).
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
_HTTP2_FRAME_HEADER = 9
_HTTP2_SETTINGS = 4
TOKEN_HINT = (
    "if the cluster uses token authentication, set RAY_AUTH_MODE=token and its token in "
    "RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH"
)


def import_ray():
    """The ray module, or one line naming the extra that installs it."""
    try:
        import ray
    except ImportError:
        raise UserError(f"--ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


def check_client(address: str) -> None:
    """A ray:// address needs Ray Client's gRPC library (Ray's ``client`` extra)."""
    if not address.startswith("ray://"):
        return
    try:
        import grpc  # noqa: F401
    except ImportError:
        raise UserError(
            f"--ray {address} needs Ray Client, which is not installed: {CLIENT_HINT} "
            f"(or {INSTALL_HINT})"
        ) from None


@contextlib.contextmanager
def connected(address: str) -> Iterator[object]:
    """Connect to the Ray cluster at ``address`` for the block; ``auto``: the cluster of
    ``RAY_ADDRESS`` or one started on this machine with ``ray start``, else a local Ray
    instance started for the job (and stopped after it). An address that does not answer,
    or answers but is not Ray, is one line within :data:`REFUSAL_SECONDS` (Ray itself
    would retry for 20 s or more)."""
    ray = import_ray()
    options = {"logging_level": logging.ERROR, "include_dashboard": False, "log_to_driver": False}
    if address != "auto" or os.environ.get("RAY_ADDRESS"):
        target = address if address != "auto" else os.environ["RAY_ADDRESS"]
        check_client(target)
        _probe(target)
        _init(ray, target, options)
    else:
        try:
            ray.init(address="auto", **options)
        except ConnectionError:  # no cluster on this machine: one for this job
            _init(ray, "local", dict(options, num_cpus=providers.cpu_cores()))
    try:
        yield ray
    finally:
        ray.shutdown()


def _init(ray, address: str, options: dict) -> None:
    """ray.init, with what Ray's C++ core prints meanwhile (a retry warning every second
    while it cannot reach the cluster) kept off the terminal; a failure is one line, with
    a hint on the token where the cluster refused this one (or none was sent)."""
    no_token = getattr(ray.exceptions, "AuthenticationError", ())  # Ray >= 2.52
    try:
        with providers.captured_native_output() as printed:
            ray.init(address=address, **options)
    except no_token as error:  # token mode on here, no token found
        reason = getattr(error, "message", "") or first_line(error)  # without Ray's advice
        raise UserError(
            f"cannot connect to the Ray cluster at {address!r}: {reason}; "
            "give its token in RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH"
        ) from None
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as error:
        hint = f" ({TOKEN_HINT})" if "Unauthenticated" in printed.getvalue() else ""
        raise UserError(
            f"cannot connect to the Ray cluster at {address!r}: {first_line(error)}{hint}"
        ) from None


def _probe(address: str) -> None:
    """Refuse with one line an address whose host:port takes no TCP connection within
    :data:`PROBE_SECONDS`, or takes one but does not answer as an HTTP/2 (gRPC) server
    within as long again: a port of something else (Ray would retry it for minutes)."""
    client = address.startswith("ray://")
    host_port = address.removeprefix("ray://")
    host, _, port = host_port.rpartition(":")
    if not host:
        host, port = host_port, str(CLIENT_PORT if client else GCS_PORT)
    if not port.isdigit():
        raise UserError(f"--ray must be auto or HOST:PORT (or ray://HOST:PORT), got {address!r}")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), PROBE_SECONDS) as sock:
            if not _tls():
                answer = _http2_answer(sock)
                if answer is not None:
                    raise UserError(
                        f"the address {address!r} is not a Ray cluster: {answer} (a Ray "
                        f"head's port, {GCS_PORT} by default, or ray://HOST:{CLIENT_PORT})"
                    )
    except OSError as error:
        reason = error.strerror or type(error).__name__
        if isinstance(error, TimeoutError | socket.timeout):
            reason = f"no answer within {PROBE_SECONDS:g} s"
        raise UserError(f"cannot reach the Ray cluster at {address!r}: {reason}") from None


def _tls() -> bool:
    """Whether Ray is set to speak TLS here (RAY_USE_TLS): its ports then do not answer
    a plain HTTP/2 preface."""
    return os.environ.get("RAY_USE_TLS", "0").strip().lower() in ("1", "true")


def _http2_answer(sock: socket.socket) -> str | None:
    """None if the peer answers the HTTP/2 preface with a SETTINGS frame, as a gRPC server
    does; else what it did instead, in a few words."""
    sock.settimeout(PROBE_SECONDS)
    try:
        sock.sendall(_HTTP2_PREFACE)
        header = b""
        while len(header) < _HTTP2_FRAME_HEADER:
            chunk = sock.recv(_HTTP2_FRAME_HEADER - len(header))
            if not chunk:
                return "it closed the connection without an HTTP/2 (gRPC) answer"
            header += chunk
    except TimeoutError:
        return f"it said nothing within {PROBE_SECONDS:g} s"
    except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
        # a peer that closes at once may be seen as a reset or a broken pipe, not an end
        return "it closed the connection without an HTTP/2 (gRPC) answer"
    except OSError as error:
        return f"it broke the connection ({error.strerror or type(error).__name__})"
    if header[3] != _HTTP2_SETTINGS:
        return f"it answered {header[:_HTTP2_FRAME_HEADER]!r}, not HTTP/2 (gRPC)"
    return None


def cluster_cpus(ray) -> int:
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def run_ray(
    ray, tasks: list[SongTask], jobs: int, on_wait: Callable[[], None] | None = None
) -> Iterator[SongResult]:
    """Separate ``tasks`` as Ray tasks, at most ``jobs`` at a time, yielding each result
    as it comes. A task whose worker died is a failed song, not a failed job."""
    remote = ray.remote(separate_song).options(num_cpus=TASK_CPUS, max_retries=1)
    queue = list(reversed(tasks))
    running: dict = {}
    try:
        while queue or running:
            while queue and len(running) < jobs:
                task = queue.pop()
                running[remote.remote(task)] = task
            finished, _ = ray.wait(list(running), num_returns=1, timeout=1.0)
            if not finished and on_wait is not None:
                on_wait()
            for reference in finished:
                task = running.pop(reference)
                yield _result(ray, reference, task)
    finally:
        for reference in running:
            ray.cancel(reference, force=True)


def _result(ray, reference, task: SongTask) -> SongResult:
    try:
        return ray.get(reference)
    except ray.exceptions.RayError as error:
        reason = f"the Ray task separating {task.path!r} failed: {first_line(error)}"
        return SongResult(task.key, "failed", reason=reason, finished=time.time())
