"""Checked option values: one :class:`Option` per value a user can give, which both parses the
command line (argparse ``type=``) and checks a Python value, refusing a bad one at once.

Every range that can be known without the model is checked while the command line is parsed,
before anything is loaded, and every refusal has one form naming the option, what is allowed
and what was given (the typed text on the command line, the value's ``repr`` from Python)::

    --hop must be a number of seconds > 0, got -1
    --blocksize must be a whole number of frames >= 0 (0: the device's choice), got 2.5

The refusals are :class:`UserError` (argparse passes it through: it is not one of the
exceptions argparse turns into its own "invalid value" message), so ``stream-sep`` prints that
one line and exits with status 2. The engine's own options are listed once, with their
defaults and help, in :data:`stream_sep.settings.OPTIONS`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np

from stream_sep.errors import UserError

KINDS = ("seconds", "number", "whole", "choice", "flag", "latency")


@dataclasses.dataclass(frozen=True)
class Option:
    """One option: its name, type, allowed values, default and help.

    name: the keyword (``high_band_voice_removal``; ``--high-band-voice-removal`` on the
    command line). kind: 'seconds' (a finite number >= low, > low when ``strict``),
    'number' (a finite number in [low, high]), 'whole' (an integer of ``unit`` in [low, high],
    no upper limit when high is None; ``note`` says more about it), 'choice' (one of
    ``choices``), 'flag' (True or False; ``store_true`` on the command line) or 'latency'
    ('auto' or seconds > 0). default: the value used when it is not given; unset: what the
    command line stores when it is not given (None: "not given", resolved later). help: the
    --help text, or a function of the command's name giving it. commands: the commands that
    take it; panel: the live panel shows it as a control.
    """

    name: str
    kind: str
    default: object = None
    help: str | Callable[[str], str] = ""
    low: float = 0.0
    high: float | None = None
    strict: bool = False
    choices: tuple = ()
    unit: str = ""
    note: str = ""
    metavar: str | None = None
    unset: object = None
    commands: tuple[str, ...] = ()
    panel: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"option {self.name}: kind must be one of {', '.join(KINDS)}")

    @property
    def flag(self) -> str:
        """The command-line spelling: ``--high-band-voice-removal``."""
        return "--" + self.name.replace("_", "-")

    @property
    def allowed(self) -> str:
        """What the option takes, in words ('a number in [0, 2]')."""
        if self.kind == "seconds":
            return f"a number of seconds {'>' if self.strict else '>='} {self.low:g}"
        if self.kind == "number":
            return f"a number in [{self.low:g}, {self.high:g}]"
        if self.kind == "whole":
            bound = f">= {self.low}" if self.high is None else f"in [{self.low}, {self.high}]"
            return f"a whole number of {self.unit} {bound}" + (
                f" ({self.note})" if self.note else ""
            )
        if self.kind == "choice":
            return "one of " + ", ".join(str(choice) for choice in self.choices)
        if self.kind == "latency":
            return "auto or a number of seconds > 0"
        return "True or False"

    def refusal(self, shown: str) -> UserError:
        """The one line refusing a value shown as ``shown``."""
        label = self.name if self.kind == "flag" else self.flag
        return UserError(f"{label} must be {self.allowed}, got {shown}")

    def parse(self, text: str):
        """The value of ``text`` as typed on the command line (an argparse ``type=``)."""
        if self.kind == "choice":
            for value in self.choices:
                if str(value) == text.strip():
                    return value
            raise self.refusal(repr(text))
        if self.kind == "whole":
            try:
                value = int(text.strip())
            except ValueError:
                raise self.refusal(text) from None
            if not self._within(value):
                raise self.refusal(text)
            return value
        if self.kind == "latency" and text.strip() == "auto":
            return "auto"
        value = _float(text)
        if value is None or not self._within(value):
            raise self.refusal(text)
        return value

    def check(self, value):
        """``value`` given from Python, checked (numbers as float, whole numbers as int)."""
        if self.kind == "choice":
            if value not in self.choices:
                raise self.refusal(repr(value))
            return value
        if self.kind == "flag":
            if not isinstance(value, (bool, np.bool_)):
                raise self.refusal(repr(value))
            return bool(value)
        if self.kind == "latency" and value == "auto":
            return value
        if self.kind == "whole":
            if not _is_int(value) or not self._within(value):
                raise self.refusal(repr(value))
            return int(value)
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or not math.isfinite(value) or not self._within(value):
            raise self.refusal(repr(value))
        return float(value) if self.kind == "number" else value

    def _within(self, value) -> bool:
        if self.kind == "latency":
            return value > 0
        if self.kind == "seconds":
            return value > self.low if self.strict else value >= self.low
        return self.low <= value and (self.high is None or value <= self.high)

    def arguments(self, command: str) -> dict:
        """The keyword arguments of ``parser.add_argument(self.flag, ...)`` for ``command``."""
        help_text = self.help(command) if callable(self.help) else self.help
        if self.kind == "flag":
            return {"action": "store_true", "default": self.unset, "help": help_text}
        metavar = self.metavar or (listing(self.choices) if self.kind == "choice" else None)
        return {
            "type": self.parse,
            "default": self.unset,
            "metavar": metavar,
            "help": help_text,
        }


def seconds(option: str, minimum: float, *, inclusive: bool = True) -> Callable[[str], float]:
    """A parser for ``--option SECONDS``: a finite number >= ``minimum`` (> when not inclusive)."""
    return Option(option, "seconds", low=minimum, strict=not inclusive).parse


def number(option: str, low: float, high: float) -> Callable[[str], float]:
    """A parser for a finite number in [low, high]."""
    return Option(option, "number", low=low, high=high).parse


def whole(
    option: str, unit: str, low: int, high: int | None = None, note: str = ""
) -> Callable[[str], int]:
    """A parser for a whole number of ``unit`` in [low, high] (no upper limit when None)."""
    return Option(option, "whole", low=low, high=high, unit=unit, note=note).parse


def choice(option: str, choices: tuple) -> Callable[[str], object]:
    """A parser for one of ``choices`` (compared as text; the matching choice is returned)."""
    return Option(option, "choice", choices=tuple(choices)).parse


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


def _is_int(value) -> bool:
    """An integer that is not a bool (numpy's integers too)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


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
