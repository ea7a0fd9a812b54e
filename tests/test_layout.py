"""The package's shape: import contracts (import-linter) and what sits at its top."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_the_import_contracts_hold():
    """`lint-imports` checks the contracts in pyproject.toml: layers downwards only, the
    commands independent, the host never importing the training side."""
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint, "import-linter is not installed (it is in the dev extra)"
    result = subprocess.run([lint], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    kept = re.search(r"Contracts: (\d+) kept, (\d+) broken", result.stdout)
    assert kept, result.stdout
    assert int(kept.group(1)) >= 3 and kept.group(2) == "0"


def sys_path_edits(source: str) -> list[int]:
    """Lines of ``source`` that assign to ``sys.path`` or change it in place (``insert``,
    ``append``, ``extend``, ``+=``, item or slice assignment, ``del``)."""

    def is_sys_path(node: ast.AST) -> bool:
        while isinstance(node, ast.Subscript):
            node = node.value
        return (
            isinstance(node, ast.Attribute)
            and node.attr == "path"
            and isinstance(node.value, ast.Name)
            and node.value.id == "sys"
        )

    found = []
    for node in ast.walk(ast.parse(source)):
        targets = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AugAssign | ast.AnnAssign | ast.Delete):
            targets = getattr(node, "targets", None) or [node.target]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            mutators = ("insert", "append", "extend", "remove", "pop", "clear", "__setitem__")
            if node.func.attr in mutators:
                targets = [node.func.value]
        if any(is_sys_path(target) for target in targets):
            found.append(node.lineno)
    return sorted(found)


def test_sys_path_edits_are_caught():
    source = (
        "import sys\nsys.path.insert(0, 'x')\nsys.path[:0] = ['y']\nsys.path += ['z']\n"
        "sys.path = []\nprint(sys.path[0])\npaths = list(sys.path)\n"
    )
    assert sys_path_edits(source) == [2, 3, 4, 5]


def test_no_file_edits_sys_path():
    """Tests, benchmarks, train and export import each other by package name (the tests
    are a package; benchmarks run as ``python -m benchmarks``): none changes sys.path."""
    edits = [
        f"{path.relative_to(REPO)}:{line}"
        for folder in ("stream_sep", "train", "export", "tests", "benchmarks")
        for path in sorted((REPO / folder).rglob("*.py"))
        for line in sys_path_edits(path.read_text())
    ]
    assert edits == []
