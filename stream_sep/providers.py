"""Choosing the ONNX Runtime execution provider, and saying truthfully which one runs.

``auto`` tries TensorRT, then CUDA, then the CPU. onnxruntime-gpu lists the GPU providers as
*available* even on a machine with no GPU (and then falls back to the CPU after printing
library errors), so availability alone proves nothing: a GPU provider is only chosen when a
CUDA device is really there.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import logging
import os

from stream_sep.errors import UserError

log = logging.getLogger(__name__)

PROVIDER_NAMES = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
CHOICES = ("auto", "tensorrt", "cuda", "cpu")


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


def _available() -> list[str]:
    import onnxruntime

    return onnxruntime.get_available_providers()


def choose(requested: str = "auto") -> ProviderChoice:
    """Pick providers for ``requested``; an explicit GPU request that cannot be met is a
    :class:`UserError`, never a silent CPU run."""
    if requested not in CHOICES:
        raise UserError(f"--provider must be one of {', '.join(CHOICES)}, got {requested!r}")
    available = _available()
    gpus = cuda_device_count()
    cpu = ProviderChoice("cpu", ["CPUExecutionProvider"], "CPU requested")
    if requested == "cpu":
        return cpu
    for name in ("tensorrt", "cuda"):
        if requested not in ("auto", name):
            continue
        missing = _why_not(name, available, gpus)
        if missing is None:
            return ProviderChoice(name, _gpu_providers(name), f"{name} on GPU 0")
        if requested == name:
            raise UserError(f"--provider {name} cannot be used here: {missing}")
    why = _why_not("cuda", available, gpus) or "no GPU provider could be used"
    return dataclasses.replace(cpu, reason=f"CPU, because {why}")


def _why_not(name: str, available: list[str], gpus: int) -> str | None:
    if PROVIDER_NAMES[name] not in available:
        return f"this onnxruntime build has no {PROVIDER_NAMES[name]} (pip install onnxruntime-gpu)"
    if gpus == 0:
        return "no CUDA GPU was found (no NVIDIA driver or device)"
    return None


def _gpu_providers(name: str) -> list:
    cuda = ("CUDAExecutionProvider", {"device_id": 0, "cudnn_conv_algo_search": "EXHAUSTIVE"})
    if name == "cuda":
        return [cuda, "CPUExecutionProvider"]
    cache = os.path.join(os.path.expanduser("~"), ".cache", "stream-sep", "tensorrt")
    os.makedirs(cache, exist_ok=True)
    trt = (
        "TensorrtExecutionProvider",
        {"device_id": 0, "trt_engine_cache_enable": True, "trt_engine_cache_path": cache},
    )
    return [trt, cuda, "CPUExecutionProvider"]


def session_options(choice: ProviderChoice):
    """Session options: quiet logging; on the CPU, leave one core for the audio thread."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: keep ONNX Runtime's noise off the terminal
    if choice.name == "cpu":
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        options.intra_op_num_threads = (
            max(1, (cores or 1) - 1) if (cores or 1) > 2 else (cores or 1)
        )
        options.inter_op_num_threads = 1
    return options


def active_provider(session) -> str:
    """The provider that really runs the graph: the first one the session kept."""
    used = session.get_providers()
    for short, full in PROVIDER_NAMES.items():
        if used and used[0] == full:
            return short
    return used[0] if used else "unknown"
