"""stream-sep: real-time vocal separation with a fixed, reported delay.

The Python API (arrays are ``(channels, samples)`` float32): :func:`load_model`,
:class:`Separator` (streaming), :func:`separate` (whole arrays), :func:`separate_file`,
:class:`Settings` (see :mod:`stream_sep.api`), and ``live(input=..., output=..., mode=...)``,
the live host on devices or files (see :mod:`stream_sep.live.run`).

The names are imported on first use (PEP 562): ``stream-sep separate`` never loads the live
host (its panel's web server, sound-server tools) and the live host never loads the batch
runner's process pools.
"""

import time

# When the package was first imported: the start of a ``stream-sep`` process, give or take
# the interpreter's own start (``stream-sep separate`` reports its wall time from here).
IMPORTED_AT = time.perf_counter()

__version__ = "0.1.0"

_LAZY = {
    "Separator": "stream_sep.api",
    "load_model": "stream_sep.api",
    "separate": "stream_sep.api",
    "separate_file": "stream_sep.api",
    "Settings": "stream_sep.settings",
}

__all__ = [
    "Separator",
    "Settings",
    "__version__",
    "live",
    "load_model",
    "separate",
    "separate_file",
]


def __getattr__(name: str):
    import importlib

    if name == "live":  # a package that is also the function: live(...)
        return importlib.import_module("stream_sep.live")
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'stream_sep' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
