"""``python -m benchmarks NAME [options]``: run one scenario (``--list``: every scenario).

Each scenario is a module of this package with a ``main(argv)``; ``python -m benchmarks
NAME ...`` is the same as ``python -m benchmarks.NAME ...``. Run from the repository root
(the scenarios import ``tests.helpers`` for their generated models and songs).
"""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
# Modules of the package that are not scenarios: the dispatcher, the shared harness, the
# inputs several scenarios share and the MDX-Net network builder the MDX scenarios use.
NOT_SCENARIOS = {"__init__", "__main__", "harness", "fixtures", "mdx_models"}


def scenarios() -> dict[str, str]:
    """{name: one line saying what it measures}, read from each module's docstring (nothing
    is imported: some scenarios import TensorFlow or Ray)."""
    found = {}
    for path in sorted(PACKAGE.glob("*.py")):
        if path.stem in NOT_SCENARIOS:
            continue
        docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
        found[path.stem] = summary(docstring)
    return found


def summary(docstring: str) -> str:
    """The docstring's first sentence on one line."""
    paragraph = " ".join(docstring.split("\n\n")[0].split())
    sentence, dot, _ = paragraph.partition(". ")
    return sentence + ("." if dot and not sentence.endswith(".") else "")


def usage() -> str:
    return "usage: python -m benchmarks NAME [options]  (python -m benchmarks --list)"


def print_list(known: dict[str, str]) -> None:
    """One line per scenario: its name and what it measures."""
    width = max(map(len, known))
    for name, line in known.items():
        print(f"{name:<{width}}  {line}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    known = scenarios()
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        print(__doc__.split("\n\n")[1].replace("\n", " ").strip())
        print("\nscenarios:")
        print_list(known)
        return 0 if argv else 2
    if argv[0] == "--list":
        print_list(known)
        return 0
    name, rest = argv[0], argv[1:]
    if name not in known:
        print(f"benchmarks: no scenario {name!r}; scenarios: {', '.join(known)}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"benchmarks.{name}")
    sys.argv = [f"python -m benchmarks {name}", *rest]
    return module.main(rest) or 0


if __name__ == "__main__":
    sys.exit(main())
