"""The ``stream-sep`` command: live by default, plus ``separate`` and ``evaluate``.

    stream-sep --input mic --output headphones      live (stream_sep.commands.live)
    stream-sep separate song.flac -o out/           offline files (stream_sep.commands.separate)
    stream-sep evaluate --model M --data DIR ...     quality measures (stream_sep.commands.evaluate)
    stream-sep models list|import|remove|measure    the model shelf (stream_sep.commands.models)

Each subcommand module has ``add_arguments(parser)`` and ``run(args) -> int``. Option values
are checked while parsing (:mod:`stream_sep.options`), before any model loads. ``main`` turns
a :class:`UserError` into one line ``stream-sep: error: ...`` and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import time

from stream_sep import IMPORTED_AT, __version__, options
from stream_sep.cli_runner import OneLineParser, run_main

PROG = "stream-sep"
SUBCOMMANDS = {
    "separate": (
        "stream_sep.commands.separate",
        "separate audio files offline with the same engine",
    ),
    "evaluate": (
        "stream_sep.commands.evaluate",
        "measure separation quality (SDR, SI-SDR, museval)",
    ),
    "models": (
        "stream_sep.commands.models",
        "the model shelf: list, import (UVR MDX-Net models), remove, measure",
    ),
}
LIVE_MODULE = "stream_sep.commands.live"


def get_parser(subcommand: str | None = None) -> argparse.ArgumentParser:
    if subcommand is None:
        module = importlib.import_module(LIVE_MODULE)
        parser = OneLineParser(
            prog=PROG,
            description=(
                "Real-time vocal separation. Live by default; subcommands: "
                + ", ".join(f"'{name}' ({text})" for name, (_, text) in SUBCOMMANDS.items())
                + f". See '{PROG} SUBCOMMAND --help'."
            ),
        )
    else:
        module_name, text = SUBCOMMANDS[subcommand]
        module = importlib.import_module(module_name)
        parser = OneLineParser(prog=f"{PROG} {subcommand}", description=text)
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail to stderr")
    parser.add_argument(
        "--version", action="version", version=f"{PROG} {__version__}", help="print the version"
    )
    module.add_arguments(parser)
    parser.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command line; ``argv`` None: this process's (``sys.argv``). A command that
    reports its wall time counts it from the package's import when ``argv`` is None (the
    process' start-up included), else from this call."""
    started = IMPORTED_AT if argv is None else time.perf_counter()
    argv = list(sys.argv[1:] if argv is None else argv)
    return run_main(PROG, lambda: _run(argv, started))


def _run(argv: list[str], started: float) -> int:
    subcommand = argv[0] if argv and argv[0] in SUBCOMMANDS else None
    parser = get_parser(subcommand)
    args = parser.parse_args(argv[1:] if subcommand else argv)
    args._started = started  # time.perf_counter() when the command began
    options.check_crossfade(args)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format=f"{PROG}: %(message)s",
    )
    return int(args._module.run(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
