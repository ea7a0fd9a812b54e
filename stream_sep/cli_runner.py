"""What every command line of the project shares: a bad argument or a :class:`UserError` is
one line ``PROG: error: ...`` and exit status 2, Ctrl-C one line and 130, never a traceback.

Used by ``python -m train`` and ``export/to_onnx.py`` (and usable by ``stream-sep``)::

    def main(argv=None) -> int:
        return run_main(PROG, lambda: run(get_parser().parse_args(argv)))
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from stream_sep.errors import UserError


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error raises :class:`UserError` (one line, exit status 2).

    ``dash_values``: options whose value may start with ``-`` (``--vocal-pitch-shift
    -7,2,0.5``, ``--train-args "--seed 3"``): argparse alone takes such a value for an option
    and refuses the line unless it is written ``--option=value``; here both forms work.
    """

    def __init__(self, *args, dash_values: tuple[str, ...] = (), **kwargs):
        super().__init__(*args, **kwargs)
        self.dash_values = dash_values

    def parse_known_args(self, args=None, namespace=None):
        args = sys.argv[1:] if args is None else list(args)
        return super().parse_known_args(attach_dash_values(args, self.dash_values), namespace)

    def error(self, message: str):  # noqa: D401 - argparse API
        raise UserError(f"{message} (see {self.prog} --help)")


def attach_dash_values(args: list[str], options: tuple[str, ...]) -> list[str]:
    """``[..., "--option", "-7,2", ...]`` as ``[..., "--option=-7,2", ...]`` for each of
    ``options`` (not after a ``--`` that ends the options)."""
    attached: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--":
            return attached + args[index:]
        if arg in options and index + 1 < len(args):
            attached.append(f"{arg}={args[index + 1]}")
            index += 2
        else:
            attached.append(arg)
            index += 1
    return attached


def run_main(prog: str, main_fn: Callable[[], int | None], interrupted: str = "interrupted") -> int:
    """Call ``main_fn`` and return its exit status (``None`` counts as 0).

    A :class:`UserError` prints ``<prog>: error: <message>`` to stderr and returns 2; Ctrl-C
    prints ``<prog>: <interrupted>`` and returns 130. Other exceptions propagate: they are
    bugs, and their traceback is what a bug report needs.
    """
    try:
        return int(main_fn() or 0)
    except UserError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: {interrupted}", file=sys.stderr)
        return 130
