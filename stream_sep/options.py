"""Checked option values: argparse ``type=`` functions that refuse a bad number at once.

Every range that can be known without the model is checked while the command line is parsed,
before anything is loaded, and every refusal has one form naming the option, what is allowed
and what was typed::

    --hop must be a number of seconds > 0, got -1
    --blocksize must be a whole number of frames >= 0 (0: the device's choice), got 2.5

The functions raise :class:`UserError` (argparse passes it through: it is not one of the
exceptions argparse turns into its own "invalid value" message), so ``stream-sep`` prints that
one line and exits with status 2.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from stream_sep.errors import UserError


def seconds(option: str, minimum: float, *, inclusive: bool = True) -> Callable[[str], float]:
    """A parser for ``--option SECONDS``: a finite number >= ``minimum`` (> when not inclusive)."""
    bound = f"{'>=' if inclusive else '>'} {minimum:g}"

    def parse(text: str) -> float:
        value = _float(text)
        if value is None or (value < minimum if inclusive else value <= minimum):
            raise UserError(f"--{option} must be a number of seconds {bound}, got {text}")
        return value

    return parse


def number(option: str, low: float, high: float) -> Callable[[str], float]:
    """A parser for a finite number in [low, high]."""

    def parse(text: str) -> float:
        value = _float(text)
        if value is None or not low <= value <= high:
            raise UserError(f"--{option} must be a number in [{low:g}, {high:g}], got {text}")
        return value

    return parse


def whole(
    option: str, unit: str, low: int, high: int | None = None, note: str = ""
) -> Callable[[str], int]:
    """A parser for a whole number of ``unit`` in [low, high] (no upper limit when None)."""
    allowed = f">= {low}" if high is None else f"in [{low}, {high}]"
    note = f" ({note})" if note else ""

    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            value = None
        if value is None or value < low or (high is not None and value > high):
            raise UserError(
                f"--{option} must be a whole number of {unit} {allowed}{note}, got {text}"
            )
        return value

    return parse


def choice(option: str, choices: tuple) -> Callable[[str], object]:
    """A parser for one of ``choices`` (compared as text; the matching choice is returned)."""
    names = ", ".join(str(c) for c in choices)

    def parse(text: str) -> object:
        for value in choices:
            if str(value) == text.strip():
                return value
        raise UserError(f"--{option} must be one of {names}, got {text!r}")

    return parse


def listing(choices: tuple) -> str:
    """The metavar that shows ``choices`` in --help: ``{a,b,c}``, as argparse writes them."""
    return "{" + ",".join(str(c) for c in choices) + "}"


def check_crossfade(args) -> None:
    """The one engine limit between two options: the crossfade fits in the hop."""
    hop, crossfade = getattr(args, "hop", None), getattr(args, "crossfade", None)
    if hop is not None and crossfade is not None and crossfade > hop:
        raise UserError(f"--crossfade must be at most --hop ({hop:g} s), got {crossfade:g}")


def _float(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def add_model_arguments(parser) -> None:
    """``--model`` and ``--provider``, as every command that runs a model takes them."""
    from stream_sep.models import providers, shelf

    parser.add_argument(
        "--model",
        metavar="PATH|NAME",
        help="the separation model: an ONNX file, or the NAME of a model on the shelf "
        f"('stream-sep models list'; {shelf.BUNDLED_NAME} is the bundled one); an existing "
        "file wins over a shelf name (default: the bundled model)",
    )
    parser.add_argument(
        "--provider",
        default="auto",
        type=choice("provider", providers.CHOICES),
        metavar=listing(providers.CHOICES),
        help="where the model runs; auto: the first of tensorrt, cuda, cpu that starts "
        "(default auto)",
    )
