"""Stage 3 of the export, two ways to halve the file.

``--fp16``: float16 weights and arithmetic behind float32 inputs and outputs, with the nodes
that would overflow kept in float32 (for GPUs). onnxconverter-common's converter
(``onnxruntime.transformers.float16``) does the work; the passes here fix what it gets wrong
for this network.

``--fp16-weights``: float16 storage only (:func:`store_weights_as_float16`); the arithmetic
stays float32, so the speed on a CPU is the float32 file's.
"""

from __future__ import annotations

import logging
import warnings

from export.errors import ExportFailed
from export.graph_passes import sort_topologically
from stream_sep.errors import UserError

log = logging.getLogger(__name__)


def to_float16(proto):
    """Float16 weights and arithmetic, float32 inputs and outputs (onnxconverter-common).

    GroupNorm's statistics stay float32: its variance squares ``x - mean`` (a ``Mul`` of a
    tensor by itself), which overflows float16 (max 65504) once ``|x - mean| > 256`` -- a
    full-scale low tone does that in the first block, and the output turns to NaN.
    """
    try:
        from onnxruntime.transformers import float16
    except ImportError:
        raise UserError("--fp16 needs onnxconverter-common; pip install -e '.[train]'") from None
    kept = normalisation_statistics(proto) + output_head(proto)
    log.debug("keeping %d nodes in float32", len(kept))
    unshare_constants(proto, set(kept))
    with warnings.catch_warnings():
        # Weights under float16's smallest normal are flushed to 1e-7; the converter warns
        # once per weight, which is noise for a network of millions of them.
        warnings.filterwarnings("ignore", message="the float32 number", category=UserWarning)
        converted = float16.convert_float_to_float16(
            proto, keep_io_types=True, node_block_list=kept
        )
    drop_duplicate_nodes(converted)
    skip_cast_round_trips(converted)
    sort_topologically(converted)
    return converted


# Float tensors with fewer elements (biases, norm scales, scalars some operators need as
# constants) stay float32: they hold a negligible share of the bytes.
MIN_HALF_STORED_ELEMENTS = 1024
FLOAT16_MAX = 65504.0


def store_weights_as_float16(proto) -> int:
    """Store every large float32 weight as float16 under its own name, read through a
    ``Cast`` to float32 by the nodes that used it; returns the number of weights converted.

    ONNX Runtime folds each ``Cast`` of a constant into a float32 constant when the session is
    built, so inference runs the float32 graph with weights rounded to 11 significant bits.
    Weights keep their names, so ``--init-from`` reads the file like a float32 one. A weight
    beyond float16's range, a graph input or output stays float32.
    """
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    graph = proto.graph
    exposed = {tensor.name for tensor in (*graph.input, *graph.output)}
    renamed, casts = {}, []
    for weight in graph.initializer:
        if weight.data_type != TensorProto.FLOAT or weight.name in exposed:
            continue
        values = numpy_helper.to_array(weight)
        if values.size < MIN_HALF_STORED_ELEMENTS or np.abs(values).max() > FLOAT16_MAX:
            continue
        weight.CopyFrom(numpy_helper.from_array(values.astype(np.float16), weight.name))
        renamed[weight.name] = weight.name + "/as_float32"
        casts.append(
            helper.make_node(
                "Cast", [weight.name], [renamed[weight.name]],
                name=weight.name + "/to_float32", to=TensorProto.FLOAT,
            )
        )  # fmt: skip
    for node in graph.node:
        for index, name in enumerate(node.input):
            if name in renamed:
                node.input[index] = renamed[name]
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + nodes)
    return len(casts)


def skip_cast_round_trips(proto) -> None:
    """Let float32 flow straight between kept nodes: drop ``Cast(fp16) -> Cast(fp32)`` pairs.

    The converter wraps every kept node on its own, casting its output to float16 and back
    for the next kept node; a square of 500 would overflow in that detour.
    """
    from onnx import TensorProto

    graph = proto.graph
    producer = {out: node for node in graph.node for out in node.output}

    def cast_to(node) -> int | None:
        if node is None or node.op_type != "Cast":
            return None
        return next(attr.i for attr in node.attribute if attr.name == "to")

    replace = {}
    for node in graph.node:
        before = producer.get(node.input[0]) if node.input else None
        if cast_to(node) == TensorProto.FLOAT and cast_to(before) == TensorProto.FLOAT16:
            replace[node.output[0]] = before.input[0]
    if not replace:
        return
    kept = [node for node in graph.node if not (node.output and node.output[0] in replace)]
    # A graph output keeps its name: the float32 tensor before the detour takes it over.
    outputs = {t.name for t in graph.output}
    renamed = {source: output for output, source in replace.items() if output in outputs}
    replace = {out: renamed.get(source, source) for out, source in replace.items()}
    for node in kept:
        node.input[:] = [replace.get(name, renamed.get(name, name)) for name in node.input]
        node.output[:] = [renamed.get(name, name) for name in node.output]
    used = {name for node in kept for name in node.input} | {t.name for t in graph.output}
    # A float16 cast nobody reads any more is dropped as well.
    kept = [
        node
        for node in kept
        if not (cast_to(node) == TensorProto.FLOAT16 and node.output[0] not in used)
    ]
    del graph.node[:]
    graph.node.extend(kept)


def drop_duplicate_nodes(proto) -> None:
    """Remove repeated copies of the same node (same name, inputs and outputs).

    The converter casts a float16 tensor to float32 once per float32 consumer, each time
    under the same name (``<tensor>_cast_to_fp32``): a tensor squared by ``Mul(x, x)`` or
    read by two kept nodes gets identical duplicate casts, which onnxruntime refuses.
    """
    seen: set[bytes] = set()
    unique = []
    for node in proto.graph.node:
        key = node.SerializeToString(deterministic=True)
        if key not in seen:
            seen.add(key)
            unique.append(node)
    names = [node.name for node in unique]
    if len(set(names)) != len(names):
        raise ExportFailed("the float16 conversion left two different nodes with one name")
    del proto.graph.node[:]
    proto.graph.node.extend(unique)
    infos = {info.name: info for info in proto.graph.value_info}
    del proto.graph.value_info[:]
    proto.graph.value_info.extend(infos.values())


def unshare_constants(proto, kept: set[str]) -> None:
    """Give float32-kept nodes their own copies of initializers shared with other nodes.

    tf2onnx shares equal constants (gelu's 0.5, ...) across the graph; the converter then
    leaves a shared one float32 and a float16 ``Mul`` elsewhere gets a float32 operand,
    which onnxruntime refuses at load.
    """
    graph = proto.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    users: dict[str, set[bool]] = {}
    for node in graph.node:
        for name in node.input:
            if name in initializers:
                users.setdefault(name, set()).add(node.name in kept)
    shared = {name for name, kinds in users.items() if kinds == {True, False}}
    for node in graph.node:
        if node.name not in kept:
            continue
        for index, name in enumerate(node.input):
            if name in shared:
                copy = graph.initializer.add()
                copy.CopyFrom(initializers[name])
                copy.name = f"{name}__fp32_{node.name}"
                node.input[index] = copy.name


def output_head(proto) -> list[str]:
    """Names of the nodes from the skip product ``x * first_conv`` to the graph output.

    That product multiplies two activations of the spectrogram's scale (hundreds for loud
    audio) and overflows float16; the two 1x1 convolutions after it are cheap in float32.
    The head starts at the last ``Concat`` fed by a ``Mul`` (the seed's
    ``concatenate([mix, x * first_conv_out])``); an empty list if there is none.
    """
    nodes = list(proto.graph.node)
    producer = {out: node for node in nodes for out in node.output}
    consumers: dict[str, list] = {}
    for node in nodes:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    joins = [
        node
        for node in nodes
        if node.op_type == "Concat"
        and any(
            producer.get(name) is not None and producer[name].op_type == "Mul"
            for name in node.input
        )
    ]
    if not joins:
        return []
    join = joins[-1]
    head = [
        producer[name]
        for name in join.input
        if name in producer and producer[name].op_type == "Mul"
    ]
    pending = [join]
    while pending:
        node = pending.pop()
        head.append(node)
        pending += [after for out in node.output for after in consumers.get(out, [])]
    return list(dict.fromkeys(node.name for node in head))


def normalisation_statistics(proto) -> list[str]:
    """Names of the nodes that compute GroupNorm's mean and variance and their inverse root.

    ReduceMean, the squares feeding it (``Mul(x, x)``), the ``+ epsilon`` after it, Sqrt and
    Reciprocal.
    """
    means = {
        out for node in proto.graph.node if node.op_type == "ReduceMean" for out in node.output
    }
    names = []
    for node in proto.graph.node:
        square = node.op_type == "Mul" and len(node.input) == 2 and node.input[0] == node.input[1]
        epsilon = node.op_type == "Add" and any(name in means for name in node.input)
        if square or epsilon or node.op_type in ("ReduceMean", "Sqrt", "Reciprocal"):
            names.append(node.name)
    return names
