"""Choosing the ONNX Runtime execution provider, and saying truthfully which one runs.

``auto`` tries TensorRT, then CUDA, then the CPU. onnxruntime-gpu lists the GPU providers as
*available* even on a machine with no GPU, and when asked for them it prints library errors
and quietly runs on the CPU. So availability proves nothing:

- a GPU provider is only tried when the NVIDIA driver reports a CUDA device;
- every session is created with ONNX Runtime's own output captured (it prints to the process'
  file descriptors, not through Python), and the provider that really runs the graph is read
  back from the session afterwards;
- a provider that did not start becomes one line saying why (``auto`` moves on to the next
  one; an explicit request is a :class:`UserError`, never a silent CPU run).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import dataclasses
import functools
import io
import logging
import os
import platform
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from stream_sep.errors import UserError

log = logging.getLogger(__name__)

PROVIDER_NAMES = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
CHOICES = ("auto", "tensorrt", "cuda", "cpu")
GPU_NAMES = ("tensorrt", "cuda")
# Environment variable that overrides the intra-op threads of CPU sessions (see intra_op_threads).
THREADS_ENV = "STREAM_SEP_THREADS"


class ProviderUnavailable(UserError):
    """An execution provider that was asked for explicitly cannot run here."""


@dataclasses.dataclass(frozen=True)
class ProviderChoice:
    name: str  # "tensorrt", "cuda" or "cpu"
    providers: list  # what onnxruntime.InferenceSession gets
    reason: str  # one line: why this provider (and why not a faster one)


def cuda_device_count() -> int:
    """Number of CUDA devices the driver reports; 0 without a driver or a GPU."""
    name = ctypes.util.find_library("cuda") or "libcuda.so.1"
    try:
        driver = ctypes.CDLL(name)
    except OSError:
        return 0
    if driver.cuInit(0) != 0:
        return 0
    count = ctypes.c_int(0)
    if driver.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return 0
    return count.value


def cpu_cores() -> int:
    """Cores this process may run on (its affinity mask, not the machine's total)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def cpu_description() -> str:
    """The CPU's model name and the cores this process may use, as benchmarks report the
    machine: ``"AMD EPYC 7B13, 2 cores"`` (the name from /proc/cpuinfo where there is one)."""
    name = platform.processor() or "CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    cores = cpu_cores()
    return f"{name}, {cores} core{'s' if cores != 1 else ''}"


def cpu_threads(cores: int | None = None) -> int:
    """ONNX Runtime intra-op threads: all cores but one, which stays free for the audio thread.

    With two cores or fewer both are used: one thread would double every window's time,
    and the audio callback only copies blocks (it needs a core briefly, not a whole one).
    A process that called :func:`limit_cpu_threads` gets that number instead.
    """
    if cores is None and _thread_limit is not None:
        return _thread_limit
    cores = cpu_cores() if cores is None else cores
    return cores - 1 if cores > 2 else cores


_thread_limit: int | None = None


def limit_cpu_threads(threads: int | None) -> None:
    """Give every CPU session this process creates from now on ``threads`` intra-op threads
    (None: back to :func:`cpu_threads`). For batch workers, several of which share the
    cores: each runs the model on its share of them."""
    global _thread_limit
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    _thread_limit = threads


def intra_op_threads() -> int:
    """Intra-op threads for a CPU session: ``$STREAM_SEP_THREADS`` when it is set (a positive
    whole number), otherwise :func:`cpu_threads`. A bad value is a :class:`UserError`."""
    if _thread_limit is not None:  # a batch worker's share of the cores (limit_cpu_threads)
        return _thread_limit
    text = os.environ.get(THREADS_ENV, "").strip()
    if not text:
        return cpu_threads()
    try:
        threads = int(text)
    except ValueError:
        threads = 0
    if threads < 1:
        raise UserError(f"{THREADS_ENV} must be a positive whole number of threads, got {text!r}")
    return threads


def cache_dir() -> Path:
    """The user's cache directory for stream-sep (``$XDG_CACHE_HOME/stream-sep``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "stream-sep"


def _available() -> list[str]:
    import onnxruntime

    return onnxruntime.get_available_providers()


def candidates(requested: str = "auto") -> tuple[list[ProviderChoice], list[str]]:
    """The providers to try for ``requested``, fastest first, and why faster ones are skipped.

    Returns ``(choices, skipped)``: each ``skipped`` entry is one line. An explicit GPU
    request that cannot even be tried raises :class:`ProviderUnavailable`.
    """
    if requested not in CHOICES:
        raise UserError(f"--provider must be one of {', '.join(CHOICES)}, got {requested!r}")
    cpu = ProviderChoice("cpu", ["CPUExecutionProvider"], "CPU requested")
    if requested == "cpu":
        return [cpu], []
    available = _available()
    gpus = cuda_device_count()
    choices, skipped = [], []
    for name in GPU_NAMES:
        if requested not in ("auto", name):
            continue
        missing = _why_not(name, available, gpus)
        if missing is None:
            choices.append(ProviderChoice(name, gpu_providers(name), f"{name} on GPU 0"))
        elif requested == name:
            raise ProviderUnavailable(f"--provider {name} cannot be used here: {missing}")
        else:
            skipped.append(f"{name}: {missing}")
    if requested == "auto":
        choices.append(cpu)
    return choices, skipped


def choose(requested: str = "auto") -> ProviderChoice:
    """The first provider to try for ``requested`` (see :func:`candidates`)."""
    choices, skipped = candidates(requested)
    first = choices[0]
    if first.name == "cpu" and skipped:
        return dataclasses.replace(first, reason="CPU, because " + _gpu_skip_reason(skipped))
    return first


def _gpu_skip_reason(skipped: list[str]) -> str:
    """One line from the per-provider reasons; identical reasons are said once."""
    reasons = [line.split(": ", 1)[1] for line in skipped]
    if len(set(reasons)) == 1:
        return reasons[0]
    return "; ".join(skipped)


def _why_not(name: str, available: list[str], gpus: int) -> str | None:
    if PROVIDER_NAMES[name] not in available:
        return (
            f"this onnxruntime build has no {PROVIDER_NAMES[name]} "
            "(install onnxruntime-gpu instead of onnxruntime)"
        )
    if gpus == 0:
        return "no CUDA GPU was found (no NVIDIA driver or device)"
    return None


def gpu_providers(name: str, graph_capture: bool = False) -> list:
    """The provider list for a GPU choice: the GPU provider(s) first, the CPU last.

    ``graph_capture`` asks for CUDA graphs; only valid when every input shape is fixed. Under
    TensorRT it is TensorRT's own graph option: the CUDA provider then only takes what
    TensorRT leaves, and a CUDA graph there would refuse a graph split between the two.
    """
    cuda_options = {
        "device_id": 0,
        "cudnn_conv_algo_search": "EXHAUSTIVE",  # slow first run (warm_up), fastest after
        "cudnn_conv_use_max_workspace": "1",
        "enable_cuda_graph": "1" if graph_capture and name == "cuda" else "0",
    }
    cuda = ("CUDAExecutionProvider", cuda_options)
    if name == "cuda":
        return [cuda, "CPUExecutionProvider"]
    cache = cache_dir() / "tensorrt"
    trt_options = {
        "device_id": 0,
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": str(cache),
        "trt_timing_cache_enable": "True",
        "trt_timing_cache_path": str(cache),
        "trt_cuda_graph_enable": "True" if graph_capture else "False",
    }
    return [("TensorrtExecutionProvider", trt_options), cuda, "CPUExecutionProvider"]


def session_options(
    choice: ProviderChoice,
    fixed_dims: dict[str, int] | None = None,
    model_folder: str | os.PathLike | None = None,
):
    """Session options: ONNX Runtime's logging at errors only; on the CPU, threads from the
    cores this process has or ``$STREAM_SEP_THREADS`` (see :func:`intra_op_threads`) and no
    busy-waiting between operators.

    fixed_dims: symbolic input dimensions to pin (``{"batch": 2}``) so that every shape in
    the graph is static, which CUDA graphs and TensorRT engines need.
    model_folder: where the model file lies. A model saved with external data (weights in a
    separate file, as ONNX does for models over 2 GB) names that file relative to the model;
    sessions are made from the model's bytes, which carry no location, so without this ONNX
    Runtime looks in the working directory and refuses.
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    for name, size in (fixed_dims or {}).items():
        options.add_free_dimension_override_by_name(name, size)
    if model_folder is not None:
        options.add_session_config_entry(
            "session.model_external_initializers_file_folder_path",
            str(Path(model_folder).resolve()),
        )
    if choice.name == "cpu":
        options.intra_op_num_threads = intra_op_threads()
        options.inter_op_num_threads = 1
        # Idle pool threads would spin on the core the audio thread needs.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # Denormals (tiny activations of trained weights near silence) are slow on x86.
        options.add_session_config_entry("session.set_denormal_as_zero", "1")
    return options


def active_provider(session) -> str:
    """The provider that really runs the graph: the first one the session kept."""
    used = session.get_providers()
    for short, full in PROVIDER_NAMES.items():
        if used and used[0] == full:
            return short
    return used[0] if used else "unknown"


@contextlib.contextmanager
def captured_native_output() -> Iterator[io.StringIO]:
    """Capture what ONNX Runtime and the CUDA libraries print while the block runs.

    They write to file descriptors 1 and 2 from C++ and Python's ``print``; both are sent to
    a temporary file and handed back in the yielded buffer, never to the terminal. Use it
    only around session creation: the redirect is process-wide while it lasts.
    """
    captured = io.StringIO()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError, OSError):
            stream.flush()
    with tempfile.TemporaryFile(mode="w+b") as sink:
        saved = _redirect_fds(sink.fileno())
        try:
            with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
                yield captured
        finally:
            _restore_fds(saved)
            sink.seek(0)
            captured.write(sink.read().decode("utf-8", "replace"))


def _redirect_fds(target: int) -> list[tuple[int, int]]:
    saved = []
    for fd in (1, 2):
        try:
            saved.append((fd, os.dup(fd)))
            os.dup2(target, fd)
        except OSError:  # a closed descriptor: nothing to protect
            continue
    return saved


def _restore_fds(saved: list[tuple[int, int]]) -> None:
    for fd, copy in saved:
        os.dup2(copy, fd)
        os.close(copy)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_LIBRARY = re.compile(r"(lib[\w.+-]+\.so[\w.]*): cannot open shared object file")
_REQUIREMENT = re.compile(r"Require (cuDNN \d+(?:\.[\d*]+)* and CUDA \d+(?:\.[\d*]+)*)")


def summarize_failure(name: str, text: str) -> str:
    """One line from ONNX Runtime's output when ``name`` did not start (no raw log text)."""
    text = _ANSI.sub("", text)
    parts = []
    library = _LIBRARY.search(text)
    if library:
        parts.append(f"{library.group(1)} is missing")
    requirement = _REQUIREMENT.search(text)
    if requirement:
        parts.append(f"it needs {requirement.group(1)}")
    if "TensorRT libraries" in text:
        parts.append("the TensorRT libraries are not installed")
    detail = "; ".join(parts) if parts else "ONNX Runtime could not start it"
    return f"the {name} provider did not start ({detail})"


@functools.lru_cache(maxsize=1)
def preload_gpu_libraries() -> None:
    """Load CUDA/cuDNN from the ``nvidia-*`` pip packages when they are installed, so
    ``pip install onnxruntime-gpu[cuda,cudnn]`` works without a system CUDA (once per
    process; what it prints is captured and dropped)."""
    import onnxruntime

    preload = getattr(onnxruntime, "preload_dlls", None)
    if preload is None:
        return
    with captured_native_output():
        try:
            preload()
        except OSError as error:
            log.debug("preloading CUDA libraries failed: %s", error)


def create_session(model: bytes, choice: ProviderChoice, options, providers: list | None = None):
    """An ``InferenceSession`` that really runs on ``choice``, or :class:`ProviderUnavailable`.

    ONNX Runtime's output while it starts is captured; on failure it becomes one line.
    Errors in the model itself propagate unchanged (the caller turns them into a ModelError).
    """
    import onnxruntime

    if choice.name in GPU_NAMES:
        preload_gpu_libraries()
    with captured_native_output() as output:
        session = onnxruntime.InferenceSession(
            model, sess_options=options, providers=providers or choice.providers
        )
    running = active_provider(session)
    if running != choice.name:
        raise ProviderUnavailable(summarize_failure(choice.name, output.getvalue()))
    return session


def open_session(
    model: bytes, requested: str = "auto", model_folder: str | os.PathLike | None = None
) -> tuple[object, ProviderChoice]:
    """Create the one session for ``model`` on the fastest provider that really starts.
    ``model_folder``: see :func:`session_options`.

    Returns ``(session, choice)``; ``choice.reason`` is one line saying why this provider
    (for a CPU run under ``auto``: why the GPU is not used).
    """
    choices, skipped = candidates(requested)
    for choice in choices:
        if choice.name == "cpu" and skipped:
            choice = dataclasses.replace(choice, reason="CPU, because " + _gpu_skip_reason(skipped))
        try:
            session = create_session(model, choice, session_options(choice, None, model_folder))
        except ProviderUnavailable as error:
            if requested != "auto":
                raise ProviderUnavailable(
                    f"--provider {requested} cannot be used here: {error}"
                ) from None
            skipped.append(f"{choice.name}: {error}")
            continue
        return session, choice
    raise ProviderUnavailable(f"no execution provider could run the model: {'; '.join(skipped)}")
