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

from stream_sep import providers
from stream_sep.batch.worker import SongResult, SongTask, separate_song
from stream_sep.errors import UserError, first_line

INSTALL_HINT = "pip install stream-sep[cluster]"
GCS_PORT = 6379  # `ray start --head` default
CLIENT_PORT = 10001  # ray:// (Ray Client) default
PROBE_SECONDS = 5.0
TASK_CPUS = 1


def import_ray():
    """The ray module, or one line naming the extra that installs it."""
    try:
        import ray
    except ImportError:
        raise UserError(f"--ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


@contextlib.contextmanager
def connected(address: str) -> Iterator[object]:
    """Connect to the Ray cluster at ``address`` for the block; ``auto``: the cluster of
    ``RAY_ADDRESS`` or one started on this machine with ``ray start``, else a local Ray
    instance started for the job (and stopped after it). An address that does not answer
    is one line, found within :data:`PROBE_SECONDS` (Ray itself would retry for minutes)."""
    ray = import_ray()
    options = {"logging_level": logging.ERROR, "include_dashboard": False, "log_to_driver": False}
    if address != "auto" or os.environ.get("RAY_ADDRESS"):
        target = address if address != "auto" else os.environ["RAY_ADDRESS"]
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
    while it cannot reach the cluster) kept off the terminal; a failure is one line."""
    try:
        with providers.captured_native_output():
            ray.init(address=address, **options)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as error:
        raise UserError(
            f"cannot connect to the Ray cluster at {address!r}: {first_line(error)}"
        ) from None


def _probe(address: str) -> None:
    """Refuse with one line an address whose host:port takes no TCP connection."""
    client = address.startswith("ray://")
    host_port = address.removeprefix("ray://")
    host, _, port = host_port.rpartition(":")
    if not host:
        host, port = host_port, str(CLIENT_PORT if client else GCS_PORT)
    if not port.isdigit():
        raise UserError(f"--ray must be auto or HOST:PORT (or ray://HOST:PORT), got {address!r}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_SECONDS).close()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        if isinstance(error, TimeoutError | socket.timeout):
            reason = f"no answer within {PROBE_SECONDS:g} s"
        raise UserError(f"cannot reach the Ray cluster at {address!r}: {reason}") from None


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
