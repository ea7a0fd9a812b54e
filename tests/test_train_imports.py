"""train/ and export/ import one way: no cycles, no sys.path edits, any module importable first."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("train", "export")


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(path: Path) -> set[str]:
    """Every module name an import statement in ``path`` names, function-level ones included
    (an import moved into a function to dodge a cycle is still an arrow)."""
    package = module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else None
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's own package
                base = ".".join(filter(None, [package or module_name(path), base]))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def import_graph() -> dict[str, set[str]]:
    """module -> the modules of train/ and export/ it imports."""
    paths = [path for package in PACKAGES for path in sorted((REPO / package).glob("*.py"))]
    modules = {module_name(path): path for path in paths}
    return {
        name: {other for other in imported_names(path) if other in modules and other != name}
        for name, path in modules.items()
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as ``[a, b, ..., a]``, or None."""
    state: dict[str, str] = {}  # "open" while on the DFS stack, then "done"
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return stack[stack.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_train_and_export_have_no_import_cycle():
    graph = import_graph()
    # the graph sees the arrows that matter (a walker that saw nothing would pass anything)
    assert {"train.registry", "train.stft"} <= graph["train.losses"]
    assert "train.losses" in graph["train.model"]
    assert {"export.checkpoint", "export.parity", "export.fp16"} <= graph["export.pipeline"]
    assert "train.model" in graph["export.checkpoint"]
    assert find_cycle(graph) is None


def test_no_sys_path_edits():
    for package in PACKAGES:
        for path in (REPO / package).glob("*.py"):
            assert "sys.path" not in path.read_text(), path


@pytest.mark.slow
@pytest.mark.parametrize(
    "module", ["train.losses", "train.schedules", "train.model", "train.stft", "export.pipeline"]
)
def test_each_module_imports_first_in_a_fresh_interpreter(module):
    """losses and schedules used to import train.model, which imported them back: importing
    them first failed once the arrow back was a module-level import."""
    result = subprocess.run(
        [sys.executable, "-c", f"import {module}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
