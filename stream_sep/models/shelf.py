"""The model shelf: a per-user folder of models that ``--model NAME`` finds by name.

The folder is ``$STREAM_SEP_MODELS`` when set, else ``stream-sep/models`` in the platform's
user data directory (``$XDG_DATA_HOME`` or ``~/.local/share`` on Linux, ``~/Library/
Application Support`` on macOS, ``%LOCALAPPDATA%`` on Windows). Each model is one file,
``NAME.onnx``, carrying its contract (and where it came from) in its ONNX metadata, so a shelf
file is self-describing; ``NAME.measured.json`` beside it, when present, holds the lowest
live latency measured on this machine. The bundled model is always on the shelf, under the
name :data:`BUNDLED_NAME`, and cannot be removed.

Files appear whole or not at all (written under a hidden name, then renamed).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
from pathlib import Path

from stream_sep import atomic
from stream_sep.errors import ModelError, UserError
from stream_sep.models import bundled, families
from stream_sep.models.onnx_metadata import read_metadata

ENV_VAR = "STREAM_SEP_MODELS"
BUNDLED_NAME = "vocals-mir1k"
SUFFIX = ".onnx"
MEASURED_SUFFIX = ".measured.json"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,79}")
# Provenance entries the importer writes into a shelf copy's metadata.
ORIGIN_KEY = "stream_sep.import.source"
MD5_KEY = "stream_sep.import.md5"
PARAMETERS_KEY = "stream_sep.import.parameters"


def user_data_dir() -> Path:
    """The platform's per-user data directory (no third-party package needed)."""
    home = Path.home()
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA") or home / "AppData" / "Local")
    if sys.platform == "darwin":
        return home / "Library" / "Application Support"
    return Path(os.environ.get("XDG_DATA_HOME") or home / ".local" / "share")


def shelf_dir() -> Path:
    """The shelf folder (it may not exist yet)."""
    override = os.environ.get(ENV_VAR)
    if override:
        return Path(override).expanduser()
    return user_data_dir() / "stream-sep" / "models"


def check_name(name: str) -> str:
    """``name`` if it can name a shelf model; :class:`UserError` otherwise."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or name.endswith(SUFFIX):
        raise UserError(
            f"--name must be 1-80 letters, digits, '.', '_', '+' or '-', starting with a "
            f"letter or digit and not ending in {SUFFIX}, got {name!r}"
        )
    return name


def name_from_file(path: str | os.PathLike) -> str:
    """A shelf name made from a file name: its stem with other characters turned into '-'."""
    stem = re.sub(r"[^A-Za-z0-9._+-]+", "-", Path(path).stem).strip("-._+")[:80]
    return stem or "model"


def model_path(name: str) -> Path:
    return shelf_dir() / f"{name}{SUFFIX}"


def resolve(name: str) -> Path | None:
    """The file of shelf model ``name`` (the bundled one included), or None."""
    if name == BUNDLED_NAME:
        return bundled.bundled_model_path()
    if not NAME_PATTERN.fullmatch(name):
        return None
    path = model_path(name)
    return path if path.is_file() else None


def names() -> list[str]:
    """Names on the shelf, the bundled model first."""
    folder = shelf_dir()
    found = []
    if folder.is_dir():
        for path in folder.glob(f"*{SUFFIX}"):
            name = path.name[: -len(SUFFIX)]
            if path.is_file() and NAME_PATTERN.fullmatch(name):
                found.append(name)
    return [BUNDLED_NAME, *sorted(set(found) - {BUNDLED_NAME})]


@dataclasses.dataclass(frozen=True)
class Entry:
    """One shelf model as ``models list`` shows it."""

    name: str
    path: Path
    family: str = "?"
    sample_rate: int = 0
    window_seconds: float = 0.0
    band_hz: tuple[float, float] = (0.0, 0.0)
    stem: str = "?"
    size_bytes: int = 0
    origin: str = ""
    latency: str = ""
    problem: str = ""


def entry(name: str) -> Entry:
    """What the shelf knows about ``name``; a file it cannot read gets ``problem`` set."""
    path = resolve(name)
    if path is None:
        raise UserError(f"no model named {name!r} on the shelf ({shelf_dir()}); {_known()}")
    size = path.stat().st_size
    latency = _measured(name)
    try:
        metadata = read_metadata(path)
        family_name = families.family_name(metadata, path.name)
        contract = families.family_module(family_name).contract_from_metadata(metadata, path.name)
    except UserError as error:
        return Entry(name, path, size_bytes=size, latency=latency, problem=str(error))
    band = getattr(contract, "band_hz", (0.0, contract.sample_rate / 2))
    stem = getattr(contract, "stem", contract.sources[0])
    origin = "bundled with stream-sep" if name == BUNDLED_NAME else metadata.get(ORIGIN_KEY, "")
    return Entry(
        name,
        path,
        family_name,
        contract.sample_rate,
        contract.window_seconds,
        band,
        stem,
        size,
        origin,
        latency,
    )


def entries() -> list[Entry]:
    return [entry(name) for name in names()]


def _known() -> str:
    return "on the shelf: " + ", ".join(names())


def _measured_path(name: str) -> Path:
    return shelf_dir() / f"{name}{MEASURED_SUFFIX}"


def _measured(name: str) -> str:
    """'0.93 s (48000 Hz, 2 ch, cpu)' from NAME.measured.json, or ''."""
    try:
        record = json.loads(_measured_path(name).read_text())
        return f"{float(record['latency']):.2f} s ({record['setting']})"
    except (OSError, ValueError, KeyError, TypeError):
        return ""


def record_latency(name: str, latency: float, setting: str) -> Path:
    """Remember the lowest live latency measured for ``name`` (``setting`` says where)."""
    folder = writable_dir()
    path = folder / f"{name}{MEASURED_SUFFIX}"
    atomic.write_text(path, json.dumps({"latency": round(latency, 4), "setting": setting}) + "\n")
    return path


def writable_dir() -> Path:
    """The shelf folder, created if needed; :class:`UserError` (one line) if it cannot be
    created or written."""
    folder = shelf_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = atomic.hidden_sibling(folder / "probe")
        probe.unlink()
    except OSError as error:
        raise UserError(
            f"the model shelf {str(folder)!r} is not writable ({error.strerror or error}); "
            f"set {ENV_VAR} to a folder you can write"
        ) from None
    return folder


def store(name: str, data: bytes, replace: bool = False) -> Path:
    """Put ``data`` (a whole ONNX file) on the shelf as ``name``; refuses a taken name
    unless ``replace``. The file appears whole or not at all."""
    check_name(name)
    if name == BUNDLED_NAME:
        raise UserError(f"{name!r} is the bundled model's name; choose another --name")
    folder = writable_dir()
    path = folder / f"{name}{SUFFIX}"
    if path.exists() and not replace:
        raise UserError(
            f"a model named {name!r} is already on the shelf; pass --replace to replace it "
            "or --name to choose another name"
        )
    try:
        with atomic.write_path(path) as temporary:
            temporary.write_bytes(data)
    except OSError as error:
        raise UserError(
            f"cannot write {str(path)!r} ({error.strerror or error}); nothing was stored"
        ) from None
    _measured_path(name).unlink(missing_ok=True)  # a replaced model is measured anew
    return path


def remove(name: str) -> Path:
    """Remove shelf model ``name``; the bundled model and unknown names are refused."""
    if name == BUNDLED_NAME:
        raise UserError(f"{name!r} is the bundled model: it cannot be removed")
    path = resolve(name)
    if path is None:
        raise UserError(f"no model named {name!r} on the shelf ({shelf_dir()}); {_known()}")
    try:
        path.unlink()
        _measured_path(name).unlink(missing_ok=True)
    except OSError as error:
        raise UserError(f"cannot remove {str(path)!r} ({error.strerror or error})") from None
    return path


def describe_missing(name: str) -> ModelError:
    """The one-line error for ``--model NAME`` that is neither a file nor on the shelf."""
    return ModelError(f"model {name!r} is neither a file nor a model on the shelf; {_known()}")
