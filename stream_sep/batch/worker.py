"""What a worker does with one song, the same in the job's own process, a local worker
process and a Ray worker: load the model once per process, separate the song into its
output folder (stems appear atomically, as for ``stream-sep separate``), describe the
outputs, and report any failure as one line instead of raising.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import time
from pathlib import Path

from stream_sep import offline
from stream_sep.batch import manifest
from stream_sep.errors import UserError, typed_first_line
from stream_sep.models import providers
from stream_sep.models.loading import load_model
from stream_sep.offline.config import OfflinePlan

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """The model every worker loads: its file (None: the bundled model), the sha256 the
    job computed from it, the provider to ask for and the CPU threads to give it."""

    path: str | None
    sha256: str
    provider: str = "auto"
    threads: int | None = None


@dataclasses.dataclass(frozen=True)
class SongTask:
    """One song: separate ``path`` into ``folder`` (absolute paths, as the worker sees
    them). plan: how :func:`stream_sep.offline.separate_file` separates it."""

    key: str
    path: str
    folder: str
    stems: tuple[str, ...]
    clip_mode: str
    plan: OfflinePlan
    model: ModelSpec


@dataclasses.dataclass(frozen=True)
class SongResult:
    """How one song went. outputs: :func:`manifest.describe_outputs` when done; reason:
    one line when failed. worker: "host:pid"; model_loads: how many times that process
    had loaded the model by then. started/finished: wall-clock times (``time.time()``)."""

    key: str
    status: str  # "done" or "failed"
    seconds: float = 0.0
    outputs: dict = dataclasses.field(default_factory=dict)
    reason: str = ""
    worker: str = ""
    model_loads: int = 0
    started: float = 0.0
    finished: float = 0.0


_loaded: dict = {}  # ModelSpec -> the model, in this process
_loads = 0


def cached_model(spec: ModelSpec):
    """The model of ``spec``, loaded the first time this process asks for it; refuses a
    file whose contents differ from the job's (another file at the same path on a node)."""
    global _loads
    model = _loaded.get(spec)
    if model is None:
        providers.limit_cpu_threads(spec.threads)
        model = load_model(spec.path, spec.provider)
        found = manifest.file_sha256(model.path)
        if found != spec.sha256:
            raise UserError(
                f"the model file {str(model.path)!r} on {socket.gethostname()} is not the "
                f"job's model (sha256 {found[:12]}..., expected {spec.sha256[:12]}...)"
            )
        _loaded.clear()  # one model per process
        _loaded[spec] = model
        _loads += 1
    return model


def use_model(spec: ModelSpec, model) -> None:
    """Make ``model`` (already loaded from ``spec``) this process's model."""
    global _loads
    _loaded.clear()
    _loaded[spec] = model
    _loads += 1


def separate_song(task: SongTask) -> SongResult:
    """Separate one song; never raises for a bad song or model, it says why in the result."""
    started = time.time()
    worker = f"{socket.gethostname()}:{os.getpid()}"
    try:
        model = cached_model(task.model)
        seconds = offline.separate_file(
            model,
            Path(task.path),
            Path(task.folder),
            task.stems,
            clip_mode=task.clip_mode,
            plan=task.plan,
        )
        outputs = manifest.describe_outputs(Path(task.folder), [f"{s}.wav" for s in task.stems])
    except UserError as error:
        return _failed(task, str(error), worker, started)
    except Exception as error:  # noqa: BLE001 - one song's unexpected failure ends only that song
        log.debug("%s failed", task.path, exc_info=True)
        return _failed(
            task, f"{typed_first_line(error)} (while separating {task.path!r})", worker, started
        )
    return SongResult(
        task.key,
        "done",
        seconds,
        outputs,
        worker=worker,
        model_loads=_loads,
        started=started,
        finished=time.time(),
    )


def _failed(task: SongTask, reason: str, worker: str, started: float) -> SongResult:
    return SongResult(
        task.key,
        "failed",
        reason=reason,
        worker=worker,
        model_loads=_loads,
        started=started,
        finished=time.time(),
    )


def init_process(parent: int) -> None:
    """Start of a local worker process: die with the job (a SIGKILLed job must not leave
    workers writing into its output folder), and ignore Ctrl-C (the job handles it)."""
    import signal

    _die_with_parent()
    if os.getppid() != parent:  # the job died before the line above took effect
        os._exit(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _die_with_parent() -> None:
    """Linux: have the kernel send SIGKILL to this process when its parent exits."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return
    pr_set_pdeathsig, sigkill = 1, 9
    libc.prctl(pr_set_pdeathsig, sigkill, 0, 0, 0)
