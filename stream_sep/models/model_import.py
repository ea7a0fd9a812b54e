"""Importing a community MDX-Net model (Ultimate Vocal Remover, python-audio-separator) onto
the shelf: check it, identify it, store a copy that carries our contract.

Order of work (each failure is one line, :class:`UserError`, and nothing is written):

1. the shelf is writable and the name free (before any slow work);
2. the file is read (size limits) and parsed as ONNX without its external data;
3. the untrusted-input checks (:mod:`stream_sep.models.untrusted`): external-data paths, custom-op
   domains, declared memory, all before ONNX Runtime sees the file;
4. the graph has UVR's tensor contract: one input ``input`` of ``[batch, 4, dim_f, dim_t]``
   float32 (or float16) with dim_f and dim_t fixed, an output of the same shape;
5. the parameters: from the UVR model-data table (``--model-data``) by the MD5 of the
   file's last 10,240,000 bytes, and/or from flags; the graph's dim_f / dim_t must agree with
   both; a conflict or a missing value is one line naming it;
6. a copy with our contract (and where it came from) in its metadata, external data inlined,
   runs in ONNX Runtime on a test window and returns a finite output of the input's shape;
7. the copy is stored on the shelf (the user's file is never modified).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from stream_sep.errors import ModelError, UserError, first_line
from stream_sep.models import loading, providers, shelf, untrusted
from stream_sep.models.contract import PREFIX
from stream_sep.models.families import mdx

HASH_BYTES = 10_000 * 1024  # UVR: the MD5 of the last 10,240,000 bytes (the whole file if smaller)
MAX_TABLE_BYTES = 64 * 1024**2
UVR_STEMS = {"vocals": "vocals", "instrumental": "instrumental"}
_FLOAT_TYPES = {1: "float32", 10: "float16"}


@dataclasses.dataclass(frozen=True)
class Parameters:
    """MDX parameters as given by one source; None = not given. ``dim_t`` in frames."""

    n_fft: int | None = None
    dim_f: int | None = None
    dim_t: int | None = None
    compensate: float | None = None
    stem: str | None = None


@dataclasses.dataclass(frozen=True)
class Imported:
    """What :func:`import_model` stored."""

    name: str
    path: Path
    contract: mdx.MdxContract
    md5: str
    parameters_from: str


def model_hash(path: str | os.PathLike) -> str:
    """UVR's model id: the MD5 hex digest of the file's last 10,240,000 bytes."""
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - HASH_BYTES))
        return hashlib.md5(handle.read()).hexdigest()


# ---------------------------------------------------------------------------- the table
def read_table(path: str | os.PathLike) -> dict:
    """A UVR model-data table: ``{hash: {...}}`` (UVR's ``model_data.json``), or with that
    mapping under ``mdx_model_data`` (python-audio-separator's file)."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_TABLE_BYTES:
            raise UserError(f"--model-data {str(path)!r} is over {MAX_TABLE_BYTES >> 20} MB")
        table = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"--model-data {str(path)!r} does not exist") from None
    except OSError as error:
        raise UserError(f"--model-data {str(path)!r} cannot be read ({error.strerror})") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise UserError(f"--model-data {str(path)!r} is not JSON ({first_line(error)})") from None
    if isinstance(table, dict) and isinstance(table.get("mdx_model_data"), dict):
        table = table["mdx_model_data"]
    if not isinstance(table, dict):
        raise UserError(f"--model-data {str(path)!r} is not a table of model hashes")
    return table


def table_parameters(table: dict, md5: str, table_name: str) -> Parameters | None:
    """The parameters of ``md5`` in ``table``; None when the table does not know it."""
    entry = table.get(md5)
    if entry is None:
        return None
    where = f"{table_name} entry {md5}"
    if not isinstance(entry, dict):
        raise UserError(f"{where} is not an object")
    if "mdx_dim_f_set" not in entry:
        kind = (
            "an MDX23C model (config_yaml)"
            if "config_yaml" in entry
            else "a VR-architecture model"
            if "vr_model_param" in entry
            else "not an MDX-Net model"
        )
        raise UserError(f"{where} describes {kind}: only MDX-Net ONNX models are supported")
    try:
        exponent = int(entry["mdx_dim_t_set"])
        return Parameters(
            n_fft=int(entry["mdx_n_fft_scale_set"]),
            dim_f=int(entry["mdx_dim_f_set"]),
            dim_t=2**exponent if 0 <= exponent <= 12 else -1,
            compensate=float(entry["compensate"]),
            stem=stem_name(str(entry["primary_stem"]), where),
        )
    except KeyError as error:
        raise UserError(f"{where} lacks {error.args[0]!r}") from None
    except (TypeError, ValueError):
        raise UserError(f"{where} has a value that is not a number") from None


def stem_name(value: str, where: str = "--stem") -> str:
    """'Vocals' / 'Instrumental' (UVR's spelling) or 'vocals' / 'instrumental'."""
    stem = UVR_STEMS.get(value.strip().lower())
    if stem is None:
        raise UserError(
            f"{where}: primary stem {value!r} is not supported (vocals or instrumental models only)"
        )
    return stem


# ---------------------------------------------------------------------------- parameters
_FLAG = {
    "n_fft": "--n-fft",
    "dim_f": "--dim-f",
    "dim_t": "--dim-t",
    "compensate": "--compensate",
    "stem": "--stem",
}
_TABLE_KEY = {
    "n_fft": "mdx_n_fft_scale_set",
    "dim_f": "mdx_dim_f_set",
    "dim_t": "mdx_dim_t_set (as 2^value frames)",
    "compensate": "compensate",
    "stem": "primary_stem",
}


def merge(
    graph_dims: tuple[int, int],
    flags: Parameters,
    table: Parameters | None,
    table_note: str,
) -> tuple[dict, str]:
    """One value per parameter from the graph, the table and the flags; (values, where
    they came from). Raises :class:`UserError` for a conflict or a missing value."""
    graph = {"dim_f": graph_dims[0], "dim_t": graph_dims[1]}
    values, missing = {}, []
    for field in _FLAG:
        flag = getattr(flags, field)
        listed = getattr(table, field) if table is not None else None
        if flag is not None and listed is not None and flag != listed:
            raise UserError(
                f"{_FLAG[field]} {flag} disagrees with {table_note} ({_TABLE_KEY[field]}: "
                f"{listed}); leave the flag out or correct it"
            )
        value = flag if flag is not None else listed
        if field in graph:
            if value is not None and value != graph[field]:
                source = _FLAG[field] if flag is not None else table_note
                raise UserError(
                    f"the model's input has {field} {graph[field]}, but {source} says {value}: "
                    "this file does not match those parameters"
                )
            value = graph[field]
        if value is None and field == "compensate":
            value = 1.0
        if value is None:
            missing.append(_FLAG[field])
        values[field] = value
    if missing:
        raise UserError(
            f"missing {' and '.join(missing)}: {table_note}; pass "
            "--n-fft N --stem vocals|instrumental [--compensate C], or --model-data with "
            "UVR's model_data.json"
        )
    origin = "model-data table" if table is not None else "flags"
    if table is not None and any(getattr(flags, f) is not None for f in _FLAG):
        origin = "model-data table and flags"
    return values, origin


# ---------------------------------------------------------------------------- the graph
def _onnx():
    try:
        import onnx
    except ImportError:  # pragma: no cover - onnx is a dependency
        raise UserError("importing models needs the onnx package: pip install onnx") from None
    return onnx


def parse(data: bytes, origin: str):
    """An ``onnx.ModelProto`` (external data not loaded); :class:`ModelError` if it is not one."""
    onnx = _onnx()
    try:
        model = onnx.load_model_from_string(data)
    except Exception as error:  # noqa: BLE001 - protobuf raises DecodeError and others
        raise ModelError(f"{origin} is not an ONNX model ({first_line(error)})") from None
    if not model.HasField("graph") or not model.graph.node or not model.opset_import:
        raise ModelError(f"{origin} is not an ONNX model (no graph, no operators)")
    return model


def _dims(value_info) -> list:
    """Declared dims: ints, names (symbolic) or None (unknown)."""
    shape = value_info.type.tensor_type.shape
    if not value_info.type.tensor_type.HasField("shape"):
        return []
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in shape.dim]


def graph_dims(model, origin: str) -> tuple[int, int, str, int]:
    """Check the graph against UVR's tensor contract: (dim_f, dim_t, output name, type)."""
    graph = model.graph
    stored = {t.name for t in graph.initializer}
    inputs = [v for v in graph.input if v.name not in stored]
    names = [v.name for v in inputs]
    if names != [mdx.INPUT_NAME]:
        raise ModelError(
            f"{origin}: graph inputs are {names}, an MDX model has exactly one, {mdx.INPUT_NAME!r}"
        )
    tensor = inputs[0]
    elem = tensor.type.tensor_type.elem_type
    if elem not in _FLOAT_TYPES:
        raise ModelError(f"{origin}: input 'input' has element type {elem}, not float32/float16")
    dims = _dims(tensor)
    shown = "[" + ", ".join(str(d) if d is not None else "?" for d in dims) + "]"
    if len(dims) != 4:
        raise ModelError(
            f"{origin}: input 'input' has rank {len(dims)} {shown}; an MDX model's input is "
            "[batch, 4, dim_f, dim_t]"
        )
    batch, channels, dim_f, dim_t = dims
    if channels != mdx.NETWORK_CHANNELS:
        raise ModelError(
            f"{origin}: input 'input' has {channels} channels {shown}; an MDX model has 4 "
            "(left real, left imaginary, right real, right imaginary)"
        )
    for axis, value in (("dim_f", dim_f), ("dim_t", dim_t)):
        if not isinstance(value, int) or value <= 0:
            raise ModelError(
                f"{origin}: input 'input' has a dynamic {axis} axis {shown}; MDX models fix "
                "dim_f and dim_t"
            )
    if isinstance(batch, int) and batch not in (0, 1):
        raise ModelError(
            f"{origin}: input 'input' has a fixed batch of {batch} {shown}; need 1 or dynamic"
        )
    if not graph.output:
        raise ModelError(f"{origin}: the graph has no output")
    output = graph.output[0]
    if output.type.tensor_type.elem_type != elem:
        raise ModelError(
            f"{origin}: output {output.name!r} has another element type than the input"
        )
    out_dims = _dims(output)
    if out_dims:
        expected = [batch, 4, dim_f, dim_t]
        agree = len(out_dims) == 4 and all(
            not isinstance(got, int) or not isinstance(want, int) or got == want or got == 0
            for got, want in zip(out_dims[1:], expected[1:], strict=True)
        )
        if not agree:
            out_shown = "[" + ", ".join(str(d) if d is not None else "?" for d in out_dims) + "]"
            raise ModelError(
                f"{origin}: output {output.name!r} has shape {out_shown}, an MDX model "
                f"returns its input's shape {shown}"
            )
    return dim_f, dim_t, output.name, elem


def shelf_bytes(model, contract: mdx.MdxContract, provenance: dict[str, str]) -> bytes:
    """The copy's bytes: the model with our contract and provenance in its metadata (any
    stream-sep entries it brought along replaced)."""
    kept = [(p.key, p.value) for p in model.metadata_props if not p.key.startswith(PREFIX)]
    del model.metadata_props[:]
    for key, value in [*kept, *contract.to_metadata().items(), *provenance.items()]:
        model.metadata_props.add(key=key, value=value)
    data = model.SerializeToString()
    if len(data) >= 2 * 1024**3:
        raise ModelError("the model with its weights is over 2 GB, more than one ONNX file holds")
    return data


def test_run(data: bytes, contract: mdx.MdxContract, origin: str, dtype: str) -> None:
    """Run the copy in ONNX Runtime (CPU) on one window of quiet noise: the output must have
    the input's shape and be finite."""
    try:
        session, _ = providers.open_session(data, "cpu")
    except UserError:
        raise
    except Exception as error:  # noqa: BLE001 - onnxruntime's own exception types
        raise ModelError(f"{origin} does not load in ONNX Runtime: {first_line(error)}") from None
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal((1, 2, contract.window_samples))).astype(np.float32)
    network_input = np.zeros((1, *contract.input_shape[1:]), np.float32)
    mdx.to_network_input(audio, contract, network_input)
    try:
        output = session.run(None, {contract.input_name: network_input.astype(dtype)})[0]
    except Exception as error:  # noqa: BLE001
        raise ModelError(f"{origin} fails on a test window: {first_line(error)}") from None
    expected = network_input.shape
    if tuple(output.shape) != expected:
        raise ModelError(
            f"{origin} returns shape {list(output.shape)} on a test window; an MDX model "
            f"returns its input's shape {list(expected)}"
        )
    if not np.isfinite(output).all():
        raise ModelError(f"{origin} returns NaN or Inf on a test window of quiet noise")


# ---------------------------------------------------------------------------- the command
def import_model(
    source: str | os.PathLike,
    name: str | None = None,
    flags: Parameters = Parameters(),
    table_path: str | os.PathLike | None = None,
    replace: bool = False,
) -> Imported:
    """Check, identify and store ``source`` on the shelf (see the module docstring)."""
    source = Path(source)
    name = shelf.check_name(name) if name is not None else shelf.name_from_file(source)
    origin = source.name
    if name == shelf.BUNDLED_NAME:
        raise UserError(f"{name!r} is the bundled model's name; choose another --name")
    folder = shelf.writable_dir()
    if (folder / f"{name}{shelf.SUFFIX}").exists() and not replace:
        raise UserError(
            f"a model named {name!r} is already on the shelf; pass --replace to replace it "
            "or --name to choose another name"
        )
    table = read_table(table_path) if table_path is not None else None
    data = loading.read_model_file(source)
    md5 = model_hash(source)
    model = parse(data, origin)
    untrusted.check(model, source.parent, origin)
    dim_f, dim_t, output_name, elem = graph_dims(model, origin)
    if table is not None:
        table_name = Path(table_path).name
        listed = table_parameters(table, md5, table_name)
        note = (
            f"the model-data table {table_name}"
            if listed is not None
            else f"{table_name} does not know this model (MD5 {md5})"
        )
    else:
        listed, note = None, f"no --model-data table was given (MD5 {md5})"
    values, parameters_from = merge((dim_f, dim_t), flags, listed, note)
    contract = mdx.MdxContract(output_name=output_name, **values)
    try:
        contract.validate()
    except ModelError as error:
        raise ModelError(f"{origin}: {error}") from None
    untrusted.inline_external_data(model, source.parent, origin)
    provenance = {
        shelf.ORIGIN_KEY: str(source.resolve()),
        shelf.MD5_KEY: md5,
        shelf.PARAMETERS_KEY: parameters_from,
    }
    copy = shelf_bytes(model, contract, provenance)
    test_run(copy, contract, origin, _FLOAT_TYPES[elem])
    path = shelf.store(name, copy, replace=replace)
    return Imported(name, path, contract, md5, parameters_from)
