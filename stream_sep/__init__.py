"""stream-sep: real-time vocal separation with a fixed, reported delay.

The Python API (arrays are ``(channels, samples)`` float32): :func:`load_model`,
:class:`Separator` (streaming), :func:`separate` (whole arrays), :func:`separate_file`,
:class:`Settings` (see :mod:`stream_sep.api`), and ``live(input=..., output=..., mode=...)``,
the live host on devices or files (see :mod:`stream_sep.live.run`).
"""

__version__ = "0.1.0"

from stream_sep import live  # noqa: E402  (a package that is also the function: live(...))
from stream_sep.api import Separator, load_model, separate, separate_file  # noqa: E402
from stream_sep.settings import Settings  # noqa: E402

__all__ = [
    "Separator",
    "Settings",
    "__version__",
    "live",
    "load_model",
    "separate",
    "separate_file",
]
