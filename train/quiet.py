"""Keep TensorFlow's import-time log lines (about nine on stderr) out of the user's way.

TF 2.21 writes them from C++ (absl) before ``TF_CPP_MIN_LOG_LEVEL`` is read, so the setting
alone does not silence them: the import runs with file descriptor 2 sent to /dev/null.
Python errors raised by the import still reach the user (stderr is back when they print).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterator


@contextlib.contextmanager
def stderr_to_devnull() -> Iterator[None]:
    """Point file descriptor 2 at /dev/null for the duration (C and C++ writers included)."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def quiet_tensorflow() -> None:
    """Import TensorFlow (when it is Keras' backend) without its log lines."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    if backend != "tensorflow" or importlib.util.find_spec("tensorflow") is None:
        return
    with stderr_to_devnull():
        import tensorflow

        # Device discovery (cuInit) logs its own errors on machines without a usable GPU.
        tensorflow.config.list_physical_devices()
