"""stream-sep: real-time vocal separation with a fixed, reported delay.

The Python API (arrays are ``(channels, samples)`` float32): :func:`load_model`,
:class:`Separator` (streaming), :func:`separate` (whole arrays), :func:`separate_file`,
:class:`Settings`. See :mod:`stream_sep.api`.
"""

__version__ = "0.1.0"

from stream_sep.api import Separator, load_model, separate, separate_file  # noqa: E402
from stream_sep.settings import Settings  # noqa: E402

__all__ = ["Separator", "Settings", "__version__", "load_model", "separate", "separate_file"]
