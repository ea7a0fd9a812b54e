"""Passes over an ONNX graph (``onnx.ModelProto``) that every export runs: the contract's
tensor names and a dynamic batch axis, adjacent-axis means, node order, the op check, the
metadata.

``onnx`` is imported inside the functions that need it.
"""

from __future__ import annotations

from collections.abc import Mapping

from export.errors import ExportFailed
from stream_sep.errors import first_line
from stream_sep.models.contract import ModelContract

# Ops that must never reach the graph: tf2onnx leaves these from ops.stft/istft or an
# exact gelu, writes the file anyway, and onnxruntime refuses it at load (ARCHITECTURE.md).
FORBIDDEN_OPS = frozenset({"STFT", "DFT", "RFFT", "IRFFT", "Real", "Imag", "Erfc"})


def name_graph_tensors(proto, contract: ModelContract) -> None:
    """Rename the single output to the contract's name and call the batch axis ``batch``."""
    graph = proto.graph
    if len(graph.input) != 1 or len(graph.output) != 1:
        raise ExportFailed(
            f"the core network must have one input and one output, the graph has "
            f"{len(graph.input)} and {len(graph.output)}"
        )
    old, new = graph.output[0].name, contract.output_name
    for node in graph.node:
        node.output[:] = [new if name == old else name for name in node.output]
        node.input[:] = [new if name == old else name for name in node.input]
    graph.output[0].name = new
    for tensor in (graph.input[0], graph.output[0]):
        tensor.type.tensor_type.shape.dim[0].dim_param = "batch"


def split_strided_means(proto) -> int:
    """Rewrite each ``ReduceMean`` over non-adjacent axes as a chain of ``ReduceMean`` over
    runs of adjacent axes; returns how many were rewritten.

    Keras' GroupNormalization reshapes (B, T, F, C) to (B, T, F, groups, C / groups) and
    averages over axes (1, 2, 4). ONNX Runtime's CPU kernel is slow on that strided set:
    measured on this machine, over (2, 128, 256, 16, 1) it took 1.29 ms against 0.12 ms for
    axes (1, 2) then (4,). With ``keepdims`` every run averages equal-sized groups, so the
    chain is the same mean (to float rounding: 3.7e-6 on values near 0.5).
    """
    from onnx import helper

    rewritten = 0
    nodes = []
    for node in proto.graph.node:
        axes = _attribute(node, "axes") if node.op_type == "ReduceMean" else None
        runs = _adjacent_runs(sorted(axes)) if axes else []
        if len(runs) < 2 or _attribute(node, "keepdims", 1) != 1 or len(node.input) != 1:
            nodes.append(node)
            continue
        source = node.input[0]
        for index, run in enumerate(runs):
            last = index == len(runs) - 1
            target = node.output[0] if last else f"{node.output[0]}__run{index}"
            name = node.name if last else f"{node.name}__run{index}"
            nodes.append(
                helper.make_node("ReduceMean", [source], [target], name, axes=run, keepdims=1)
            )
            source = target
        rewritten += 1
    del proto.graph.node[:]
    proto.graph.node.extend(nodes)
    return rewritten


def _attribute(node, name: str, default=None):
    from onnx import helper

    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def _adjacent_runs(axes: list[int]) -> list[list[int]]:
    """[1, 2, 4] -> [[1, 2], [4]]."""
    runs: list[list[int]] = []
    for axis in axes:
        if runs and axis == runs[-1][-1] + 1:
            runs[-1].append(axis)
        else:
            runs.append([axis])
    return runs


def sort_topologically(proto) -> None:
    """Order the nodes so each comes after the producers of its inputs (the ONNX rule)."""
    graph = proto.graph
    ready = {t.name for t in graph.input} | {t.name for t in graph.initializer} | {""}
    pending = list(graph.node)
    ordered = []
    while pending:
        waiting = []
        for node in pending:
            if all(name in ready for name in node.input):
                ordered.append(node)
                ready.update(node.output)
            else:
                waiting.append(node)
        if len(waiting) == len(pending):
            raise ExportFailed(f"the graph has a cycle or a missing input at {waiting[0].name}")
        pending = waiting
    del graph.node[:]
    graph.node.extend(ordered)


def check_graph(proto) -> None:
    """Refuse graphs holding ops onnxruntime will not load; run the ONNX checker."""
    import onnx

    present = {node.op_type for node in proto.graph.node} & FORBIDDEN_OPS
    if present:
        raise ExportFailed(
            f"the graph holds {', '.join(sorted(present))}, which onnxruntime cannot run; "
            "the core network must not contain STFT or an Erfc-based gelu"
        )
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as error:
        raise ExportFailed(f"the ONNX checker refused the graph: {first_line(error)}") from None


def attach_metadata(
    proto, contract: ModelContract, provenance: Mapping[str, str]
) -> dict[str, str]:
    """Write the contract and the provenance into ``metadata_props``; returns what was written."""
    entries = {**contract.to_metadata(), **provenance}
    del proto.metadata_props[:]
    for key, value in entries.items():
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name = "stream-sep export/to_onnx.py"
    proto.doc_string = "stream-sep separation core network: " + ", ".join(contract.sources)
    return entries
