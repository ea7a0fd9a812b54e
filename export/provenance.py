"""Stage 1 of the export, continued: where the weights came from, for ``metadata_props``.

Read from the run directory when the checkpoint sits in one (``config.json``,
``state.json``, ``log.csv``, ``commit.txt``); what a bare checkpoint cannot tell is
``"unknown"``, never invented.
"""

from __future__ import annotations

import csv
import datetime
import json
import shlex
import subprocess
from collections.abc import Mapping
from pathlib import Path

from export.checkpoint import model_section, read_json

# The repository of this export code: its commit is the exporting commit.
REPO_ROOT = Path(__file__).resolve().parent.parent
# The prefix of every provenance key in metadata_props.
PROVENANCE = "provenance."


def read_provenance(checkpoint: Path, config) -> dict[str, str]:
    """Where the weights came from, from the run directory when the checkpoint sits in one.

    Keys (all prefixed ``provenance.``): preset, dataset, epochs, steps, best_val_sdr,
    git_commit (of the training code), export_git_commit, export_date, checkpoint,
    model_config, training (the run's training settings as JSON: data recipe, seed,
    schedule, the model it started from) and commands (the command lines that started and
    resumed the run, as a JSON list of shell-quoted strings). Values a bare checkpoint cannot tell are ``"unknown"``.
    """
    run_dir = checkpoint.parent
    run_config = read_json(run_dir / "config.json")
    training = run_config.get("training") or {}
    # Without the run's config the network's structure was not read, only its signal settings.
    known = model_section(run_config) is not None
    state = read_json(run_dir / "state.json")
    logged_epochs, logged_best = _read_log(run_dir / "log.csv")
    epochs = state.get("epochs_done", logged_epochs)
    best = state.get("best_val_sdr", logged_best)
    commit_file = run_dir / "commit.txt"
    values = {
        "preset": preset_of(config) if known else "unknown",
        "dataset": _dataset_of(training),
        "epochs": _or_unknown(epochs),
        "steps": _or_unknown(state.get("steps_done")),
        "best_val_sdr": _best_text(best, run_config),
        "git_commit": commit_file.read_text().strip() if commit_file.is_file() else "unknown",
        "export_git_commit": _git_commit(),
        "export_date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "checkpoint": checkpoint.name,
        "model_config": json.dumps(config.to_dict(), sort_keys=True) if known else "unknown",
        "training": json.dumps(training, sort_keys=True) if training else "unknown",
        "commands": _commands_text(run_config.get("commands")),
    }
    return {PROVENANCE + key: value for key, value in values.items()}


def preset_of(config) -> str:
    """The preset whose network (not window or sources) ``config`` has, else ``custom``."""
    from train.config import PRESETS

    structure = ("n_subbands", "channels", "growth", "n_scales", "scale", "block_size")
    structure += ("bottleneck_factor",)
    for name, preset in PRESETS.items():
        if all(getattr(preset, field) == getattr(config, field) for field in structure):
            return name
    return "custom"


def _dataset_of(training: Mapping) -> str:
    """``<format>:<data folder name>`` from the run's training settings."""
    parts = [str(training["format"])] if training.get("format") else []
    if training.get("data"):
        parts.append(Path(str(training["data"])).name)
    return ":".join(parts) or "unknown"


def _best_text(best, run_config: Mapping) -> str:
    if isinstance(best, int | float):
        return f"{best:.3f}"
    from train.runs import without_validation

    return "none (no validation split)" if without_validation(run_config) else "unknown"


def _commands_text(commands) -> str:
    """The run's command lines (a list of argument lists) as a JSON list of shell-quoted strings."""
    if not isinstance(commands, list) or not commands:
        return "unknown"
    return json.dumps([shlex.join(str(part) for part in command) for command in commands])


def _or_unknown(value) -> str:
    return "unknown" if value is None else str(value)


def _read_log(path: Path) -> tuple[int | None, float | None]:
    """(epochs logged, best val_sdr) from a Keras CSVLogger file."""
    if not path.is_file():
        return None, None
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    # a run without a validation split logs its val_sdr column as NA
    scores = [float(row["val_sdr"]) for row in rows if row.get("val_sdr") not in (None, "", "NA")]
    return len(rows), (max(scores) if scores else None)


def _git_commit() -> str:
    try:
        result = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip()
