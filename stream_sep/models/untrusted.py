"""Checks of an ONNX file from elsewhere, made on the parsed protobuf before ONNX Runtime
sees it (so before it allocates or opens anything).

A community model is untrusted input. It is refused, with one line, when:

- a tensor's external data lies outside the model's own folder (an absolute path, ``..``,
  a link leading out), is missing, or is shorter than the tensor;
- a node uses an operator domain that ONNX Runtime does not carry itself (a custom-op
  domain needs code from outside the file);
- its declared tensor sizes (weights, constants, graph inputs and outputs, intermediate
  values with declared shapes) add up to more memory than this machine has available.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path

from stream_sep.errors import ModelError

# Operator domains ONNX Runtime implements itself; anything else is a custom-op library.
BUILTIN_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml", "com.microsoft"})
_ITEM_BYTES = {
    1: 4,  # FLOAT
    2: 1,  # UINT8
    3: 1,  # INT8
    4: 2,  # UINT16
    5: 2,  # INT16
    6: 4,  # INT32
    7: 8,  # INT64
    9: 1,  # BOOL
    10: 2,  # FLOAT16
    11: 8,  # DOUBLE
    12: 4,  # UINT32
    13: 8,  # UINT64
    14: 8,  # COMPLEX64
    15: 16,  # COMPLEX128
    16: 2,  # BFLOAT16
}


def check(model, folder: Path, origin: str, available_bytes: int | None = None) -> None:
    """Run every check on ``model`` (an ``onnx.ModelProto`` parsed without external data)
    whose file lies in ``folder``; :class:`ModelError` (one line) for the first failure."""
    check_memory(model, origin, available_bytes)
    check_domains(model, origin)
    check_external_data(model, folder, origin)


# ---------------------------------------------------------------------------- walking
def _graphs(graph) -> Iterator:
    """``graph`` and every subgraph inside its nodes' attributes (If, Loop, Scan)."""
    yield graph
    for node in graph.node:
        yield from _attribute_graphs(node)


def _attribute_graphs(node) -> Iterator:
    for attribute in node.attribute:
        if attribute.HasField("g"):
            yield from _graphs(attribute.g)
        for sub in attribute.graphs:
            yield from _graphs(sub)


def _all_nodes(model) -> Iterator:
    for graph in _graphs(model.graph):
        yield from graph.node
    for function in model.functions:
        for node in function.node:
            yield node
            for graph in _attribute_graphs(node):
                yield from graph.node


def tensors(model) -> Iterator:
    """Every TensorProto stored in the model: initializers, sparse initializers' values and
    indices, and tensors in node attributes (Constant values and the like)."""
    for graph in _graphs(model.graph):
        yield from graph.initializer
        for sparse in graph.sparse_initializer:
            yield sparse.values
            yield sparse.indices
    for node in _all_nodes(model):
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("sparse_tensor"):
                yield attribute.sparse_tensor.values
                yield attribute.sparse_tensor.indices


# ---------------------------------------------------------------------------- external data
def _external_entries(tensor) -> dict[str, str]:
    return {entry.key: entry.value for entry in tensor.external_data}


def external_location(tensor, folder: Path, origin: str) -> tuple[Path, int, int | None]:
    """(file, offset, length or None) of an external tensor, refused unless the file lies
    inside ``folder``."""
    entries = _external_entries(tensor)
    location = entries.get("location", "")
    name = tensor.name or "(unnamed)"
    shown = location if len(location) <= 80 else location[:77] + "..."
    if not location:
        raise ModelError(f"{origin}: tensor {name!r} says its data is external but names no file")
    relative = Path(location)
    if (
        relative.is_absolute()
        or location.startswith(("/", "\\"))
        or ".." in relative.parts
        or ".." in location.replace("\\", "/").split("/")
        or (len(location) > 1 and location[1] == ":")  # a Windows drive
    ):
        raise ModelError(
            f"{origin}: tensor {name!r} reads its data from {shown!r}, outside the model's "
            "folder; refused (external data must lie beside the model)"
        )
    root = folder.resolve()
    target = (root / relative).resolve()
    if root != target and root not in target.parents:
        raise ModelError(
            f"{origin}: tensor {name!r} reads its data from {shown!r}, which leads outside the "
            "model's folder; refused"
        )
    if not target.is_file():
        raise ModelError(
            f"{origin}: tensor {name!r} reads its data from {shown!r}, which is missing"
        )
    try:
        offset = int(entries.get("offset", "0"))
        length = int(entries["length"]) if "length" in entries else None
    except ValueError:
        raise ModelError(
            f"{origin}: tensor {name!r} has a malformed external-data offset or length"
        ) from None
    if offset < 0 or (length is not None and length < 0):
        raise ModelError(f"{origin}: tensor {name!r} has a negative external-data offset or length")
    return target, offset, length


def check_external_data(model, folder: Path, origin: str) -> None:
    """Every external tensor's file lies inside ``folder`` and holds its bytes."""
    for tensor in tensors(model):
        if tensor.data_location != 1:  # TensorProto.EXTERNAL
            continue
        target, offset, length = external_location(tensor, folder, origin)
        needed = length if length is not None else declared_bytes(tensor)
        if offset + needed > target.stat().st_size:
            raise ModelError(
                f"{origin}: tensor {tensor.name!r} needs bytes {offset}-{offset + needed} of "
                f"{target.name}, which has {target.stat().st_size}"
            )


def inline_external_data(model, folder: Path, origin: str) -> None:
    """Read every external tensor's bytes into the model itself (paths checked again), so
    the copy is one self-contained file."""
    for tensor in tensors(model):
        if tensor.data_location != 1:
            continue
        target, offset, length = external_location(tensor, folder, origin)
        length = declared_bytes(tensor) if length is None else length
        with open(target, "rb") as handle:
            handle.seek(offset)
            tensor.raw_data = handle.read(length)
        del tensor.external_data[:]
        tensor.data_location = 0  # TensorProto.DEFAULT


# ---------------------------------------------------------------------------- domains
def check_domains(model, origin: str) -> None:
    """Every node's operator comes from ONNX Runtime itself or a function in the file."""
    local = {(function.domain, function.name) for function in model.functions}
    for node in _all_nodes(model):
        if node.domain in BUILTIN_DOMAINS or (node.domain, node.op_type) in local:
            continue
        domain = node.domain if len(node.domain) <= 60 else node.domain[:57] + "..."
        raise ModelError(
            f"{origin}: node {node.op_type!r} is in the custom operator domain {domain!r}, "
            "which needs code from outside the model file; refused"
        )


# ---------------------------------------------------------------------------- memory
def declared_bytes(tensor) -> int:
    """Bytes a stored tensor declares (dims x item size; strings: their stored bytes)."""
    if tensor.data_type == 8:  # STRING
        return sum(len(s) for s in tensor.string_data)
    count = math.prod(int(d) for d in tensor.dims) if tensor.dims else 1
    if any(int(d) < 0 for d in tensor.dims):
        raise ValueError(f"tensor {tensor.name!r} has a negative dimension")
    return count * _ITEM_BYTES.get(tensor.data_type, 8)


def value_bytes(value_info) -> int:
    """Bytes of a declared graph value at batch (or any symbolic size) 1; 0 when its shape
    or type is not declared."""
    kind = value_info.type
    if not kind.HasField("tensor_type") or not kind.tensor_type.HasField("shape"):
        return 0
    count = 1
    for dim in kind.tensor_type.shape.dim:
        if dim.HasField("dim_value"):
            if dim.dim_value < 0:
                raise ValueError(f"value {value_info.name!r} has a negative dimension")
            count *= dim.dim_value
    return count * _ITEM_BYTES.get(kind.tensor_type.elem_type, 8)


def check_memory(model, origin: str, available_bytes: int | None = None) -> None:
    """Refuse a model whose declared sizes need more than the memory available."""
    available = available_memory() if available_bytes is None else available_bytes
    try:
        stored = sum(declared_bytes(t) for t in tensors(model))
        graph = model.graph
        boundary = sum(value_bytes(v) for v in [*graph.input, *graph.output])
        largest = max((value_bytes(v) for v in graph.value_info), default=0)
    except ValueError as error:
        raise ModelError(f"{origin}: {error}") from None
    needed = stored + boundary + largest
    if available is not None and needed > available:
        raise ModelError(
            f"{origin}: its declared tensors need {_size(needed)}, more than the "
            f"{_size(available)} of memory this machine has available; refused"
        )


def available_memory() -> int | None:
    """Bytes of memory available now (Linux: MemAvailable), else physical memory, else None."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def _size(count: int) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"
