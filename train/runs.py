"""Run directories: ``<runs_root>/<run_name>/`` with everything a run needs to resume.

- ``config.json``: the model config, the training settings, the data split, versions;
- ``commit.txt``: the git commit of the code (``-dirty`` when the tree has changes);
- ``log.csv``: one row per epoch (CSVLogger);
- ``best.keras``: the checkpoint with the best ``val_sdr``; ``last.keras``: the latest epoch;
- ``state.json``: epochs and steps done and the best ``val_sdr`` so far, for resuming.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from stream_sep import atomic
from stream_sep.errors import UserError

DEFAULT_RUNS_ROOT = Path("runs")
CONFIG = "config.json"
STATE = "state.json"
LOG = "log.csv"
BEST = "best.keras"
LAST = "last.keras"
COMMIT = "commit.txt"


def newest_run(runs_root: str | Path = DEFAULT_RUNS_ROOT) -> Path:
    """The most recently changed run directory (one holding config.json) under ``runs_root``."""
    root = Path(runs_root)
    runs = [p.parent for p in root.glob(f"*/{CONFIG}")] if root.is_dir() else []
    if not runs:
        raise UserError(f"no training runs in {root} (no */{CONFIG})")
    return max(runs, key=_last_change)


def _last_change(run_dir: Path) -> float:
    return max(p.stat().st_mtime for p in run_dir.iterdir())


def best_checkpoint(run_dir: str | Path) -> Path:
    """``best.keras`` of a run (the best val_sdr); raises UserError if there is none yet.

    A run trained without a validation split (``--val-split 0``: every singer) has no best
    epoch: its ``last.keras`` is the one to use.
    """
    run_dir = Path(run_dir)
    path = run_dir / BEST
    no_validation = (run_dir / CONFIG).is_file() and without_validation(read_run_config(run_dir))
    if not path.is_file() and no_validation:
        path = run_dir / LAST
    if not path.is_file():
        raise UserError(f"run {run_dir} has no {path.name} yet (no epoch has finished)")
    return path


def without_validation(run_config: dict[str, Any]) -> bool:
    """Whether a run's config.json says it trained with no validation split."""
    return (run_config.get("data") or {}).get("val_clips") == 0


def last_checkpoint(run_dir: str | Path) -> Path:
    path = Path(run_dir) / LAST
    if not path.is_file():
        raise UserError(f"run {run_dir} has no {LAST} to resume from")
    return path


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    """The run's config.json: ``{"model": ..., "training": ..., "data": ..., ...}``."""
    return _read_json(Path(run_dir) / CONFIG)


def read_state(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / STATE
    return _read_json(path) if path.is_file() else {"epochs_done": 0, "steps_done": 0}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{path} is not valid JSON: {error}") from None


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON atomically (hidden file + rename), so a killed run never leaves half."""
    atomic.write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def git_commit(directory: str | Path | None = None) -> str:
    """``<sha>`` or ``<sha>-dirty`` of the repository holding ``directory``; "unknown" outside git."""
    directory = Path(directory or Path(__file__).parent)
    try:
        sha = _git(directory, "rev-parse", "HEAD")
        dirty = _git(directory, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("-dirty" if dirty else "")


def _git(directory: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", *args], cwd=directory, capture_output=True, text=True, check=True, timeout=30
    )
    return result.stdout.strip()
