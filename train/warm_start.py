"""Warm start: the weights of an ONNX model exported by export/ into a fresh Keras network.

``python -m train ... --init-from MODEL.onnx`` fine-tunes a model whose Keras checkpoint is
gone (the bundled one). export/ converts the core network with tf2onnx, which keeps every
Keras variable as one initializer named after the TensorFlow scope it was read in::

    core_network_1/time_frequency_transform_block_8_1/time_frequency_convolution_35_1/
        conv2d_56_1/convolution/ReadVariableOp:0            Conv weight   (O, I, kh, kw)
    .../conv2d_transpose_3_1/conv_transpose/ReadVariableOp:0   ConvTranspose (I, O, kh, kw)
    .../dense_35_1/Cast/ReadVariableOp:0                     MatMul B      (in, out)
    .../group_normalization_79_1/Reshape_1:0                 gamma * inv   (1, 1, 1, C, 1)
    .../group_normalization_79_1/Reshape_2:0                 + beta        (1, 1, 1, C, 1)

Each scope segment is the Keras layer name plus TensorFlow's uniquifying suffix
(``time_frequency_convolution_1_2`` is the layer ``time_frequency_convolution_1``). The
numbers are global counters of the process that built the model, so they differ from a fresh
build; the order of the numbers among siblings of one kind is the order the layers were
created in, which is the same in every build. A weight is therefore named by its *canonical
path*: per level (layer kind, rank among the siblings of that kind), then the weight's role.
The role comes from how the graph uses the initializer (Conv/ConvTranspose/MatMul input 1:
kernel; GroupNorm's Mul: gamma, Add: beta), not from the ``Reshape_N`` numbering.

Kernels go OIHW -> HWIO (ConvTranspose's (I, O, kh, kw) -> Keras' (kh, kw, O, I) is the same
transpose), dense kernels are as they are, gamma/beta are flattened. The networks have no
biases. Anything that does not map one-to-one, with the same shape, is refused with one
line; after loading, the Keras network and ONNX Runtime must agree on a random spectrogram.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from stream_sep.errors import UserError, first_line
from train.config import ModelConfig

CORE_SCOPE = "core_network"
MODEL_CONFIG_KEY = "provenance.model_config"
# ONNX consumer (op type, input index) of a weight -> its Keras variable name
ROLE_OF_CONSUMER = {
    ("Conv", 1): "kernel",
    ("ConvTranspose", 1): "kernel",
    ("MatMul", 1): "kernel",
    ("Mul", 1): "gamma",
    ("Add", 1): "beta",
}
# OIHW (and ConvTranspose's IOHW) -> Keras' HWIO (HWOI)
CONV_TO_KERAS = (2, 3, 1, 0)
# Keras-vs-ONNX Runtime check after loading: max |diff| relative to max |output|
# (measured on the bundled model: 1.1e-5; its float16 export: 1.2e-3)
PARITY_TOLERANCE = 1e-4
HALF_PARITY_TOLERANCE = 1e-2

_SEGMENT = re.compile(r"(.*?)((?:_\d+)*)")


# ---------------------------------------------------------------- reading the ONNX file


def read_onnx(path: str | Path):
    """The ``onnx.ModelProto`` of ``path``; UserError if it is missing or not ONNX."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise UserError(f"--init-from {path}: no such file")
    try:
        return onnx.load(str(path))
    except Exception as error:  # onnx raises DecodeError, ValueError, OSError...
        raise UserError(f"--init-from {path}: not an ONNX model ({first_line(error)})") from None


def onnx_model_config(proto, path: str | Path) -> ModelConfig:
    """The :class:`ModelConfig` export/ wrote into the model's metadata."""
    metadata = {entry.key: entry.value for entry in proto.metadata_props}
    if MODEL_CONFIG_KEY not in metadata:
        raise UserError(
            f"--init-from {path}: no {MODEL_CONFIG_KEY} in its metadata; only models exported "
            "by export/to_onnx.py can be loaded"
        )
    try:
        return ModelConfig.from_dict(json.loads(metadata[MODEL_CONFIG_KEY]))
    except (ValueError, TypeError) as error:
        raise UserError(f"--init-from {path}: bad {MODEL_CONFIG_KEY}: {error}") from None


# The window is not part of the weights: every layer works along time with the same kernels
# (convolutions) or along frequency alone (the TDF dense layers), so a model's weights run on
# any valid window length (--window-samples with --init-from: a shorter window for live).
ARCHITECTURE_FIELDS = tuple(
    name
    for name in ModelConfig.__dataclass_fields__
    if name not in ("zero_init_output", "window_samples")
)


def check_same_architecture(wanted: ModelConfig, found: ModelConfig, path: str | Path) -> None:
    """UserError naming the fields where ``found`` (the ONNX model's) differs from ``wanted``."""
    differences = [
        f"{name} {getattr(found, name)!r} (not {getattr(wanted, name)!r})"
        for name in ARCHITECTURE_FIELDS
        if getattr(wanted, name) != getattr(found, name)
    ]
    if differences:
        raise UserError(
            f"--init-from {path}: the model has {', '.join(differences)}; drop the model "
            "options to take its configuration"
        )


# ---------------------------------------------------------------- canonical paths


def parse_segment(segment: str, scope_suffix: bool) -> tuple[str, tuple[int, ...]]:
    """``"conv2d_56_1"`` -> ``("conv2d", (56,))`` with a scope suffix, ``(56, 1)`` without."""
    base, digits = _SEGMENT.fullmatch(segment).groups()
    numbers = tuple(int(d) for d in digits.split("_")[1:])
    return base, numbers[:-1] if scope_suffix and numbers else numbers


def canonical_paths(paths: dict[str, tuple[list[tuple[str, tuple]], str]]) -> dict[str, tuple]:
    """Name -> canonical path: per level (kind, rank among same-kind siblings), then role.

    paths: name -> ([(kind, numbers) per layer level, outermost first], role).
    """
    prefixes = {name: () for name in paths}
    depth = max(len(levels) for levels, _ in paths.values())
    for level in range(depth):
        siblings = defaultdict(set)
        for name, (levels, _) in paths.items():
            if level < len(levels):
                siblings[(prefixes[name], levels[level][0])].add(levels[level][1])
        for name, (levels, _) in paths.items():
            if level < len(levels):
                kind, numbers = levels[level]
                rank = sorted(siblings[(prefixes[name], kind)]).index(numbers)
                prefixes[name] = (*prefixes[name], (kind, rank))
    return {name: (*prefixes[name], role) for name, (_, role) in paths.items()}


def keras_weights(core) -> dict[tuple, object]:
    """Canonical path -> Keras variable of a core network (paths like ``a/b/kernel``)."""
    paths = {}
    variables = {}
    for variable in core.weights:
        *layers, role = variable.path.split("/")
        paths[variable.path] = ([parse_segment(s, scope_suffix=False) for s in layers], role)
        variables[variable.path] = variable
    return {key: variables[name] for name, key in canonical_paths(paths).items()}


def onnx_weights(proto, path: str | Path) -> dict[tuple, np.ndarray]:
    """Canonical path -> weight array in Keras' layout, for every weight initializer."""
    from onnx import numpy_helper

    roles = _initializer_roles(proto)
    arrays, paths = {}, {}
    scope_suffix = None
    for tensor in proto.graph.initializer:
        if tensor.name not in roles:
            continue
        role, op_type = roles[tensor.name]
        segments = tensor.name.split("/")
        layers = segments[:-2] if op_type in ("Conv", "ConvTranspose", "MatMul") else segments[:-1]
        if not layers or parse_segment(layers[0], False)[0] != CORE_SCOPE:
            raise UserError(
                f"--init-from {path}: weight {tensor.name} is not inside {CORE_SCOPE}; "
                "only models exported by export/to_onnx.py can be loaded"
            )
        if scope_suffix is None:
            # the core network's Keras name has no number: any number is TensorFlow's suffix
            scope_suffix = layers[0] != CORE_SCOPE
        levels = [parse_segment(s, scope_suffix) for s in layers[1:]]
        paths[tensor.name] = (levels, role)
        arrays[tensor.name] = _keras_layout(numpy_helper.to_array(tensor), op_type)
    return {key: arrays[name] for name, key in canonical_paths(paths).items()} if paths else {}


def _initializer_roles(proto) -> dict[str, tuple[str, str]]:
    """Initializer name -> (Keras role, consuming op) for float weights of known consumers.

    A ``Cast`` between a (float16) initializer and its consumer is looked through.
    """
    from onnx import TensorProto

    floats = {
        t.name
        for t in proto.graph.initializer
        if t.data_type in (TensorProto.FLOAT, TensorProto.FLOAT16) and len(t.dims) > 0
    }
    cast_source = {
        node.output[0]: node.input[0]
        for node in proto.graph.node
        if node.op_type == "Cast" and node.input[0] in floats
    }
    roles = {}
    for node in proto.graph.node:
        for index, name in enumerate(node.input):
            name = cast_source.get(name, name)
            role = ROLE_OF_CONSUMER.get((node.op_type, index))
            if name in floats and role and (role != "gamma" and role != "beta" or _is_norm(name)):
                roles[name] = (role, node.op_type)
    return roles


def _is_norm(name: str) -> bool:
    return "group_normalization" in name.rsplit("/", 2)[-2]


def _keras_layout(array: np.ndarray, op_type: str) -> np.ndarray:
    array = array.astype(np.float32)
    if op_type in ("Conv", "ConvTranspose"):
        return np.transpose(array, CONV_TO_KERAS)
    if op_type in ("Mul", "Add"):
        return array.reshape(-1)
    return array


# ---------------------------------------------------------------- loading


def start_from(core, config: ModelConfig, path: str | Path) -> int:
    """Check that the ONNX model at ``path`` has ``config``'s architecture, then copy its
    weights into ``core`` (built from ``config``); returns the number of weights copied."""
    proto = read_onnx(path)
    found = onnx_model_config(proto, path)
    check_same_architecture(config, found, path)
    if found.window_samples == config.window_samples:
        return copy_weights(core, proto, path)
    # another window: the parity check runs at the model's own window, then the same
    # arrays go into ``core``
    from train.model import build_core_network

    own_window = build_core_network(found)
    count = copy_weights(own_window, proto, path)
    core.set_weights(own_window.get_weights())
    return count


def load_onnx_weights(core, path: str | Path, verify: bool = True) -> int:
    """Copy the weights of the ONNX model at ``path`` into the Keras core network ``core``.

    ``core`` must be built from the model's own configuration (:func:`onnx_model_config`).
    """
    return copy_weights(core, read_onnx(path), path, verify)


def copy_weights(core, proto, path: str | Path, verify: bool = True) -> int:
    """Copy the weights of ``proto`` (read from ``path``) into ``core``; returns their count.

    With ``verify`` both networks run one random spectrogram afterwards and must agree within
    :data:`PARITY_TOLERANCE` (:data:`HALF_PARITY_TOLERANCE` for float16 weights). Raises
    UserError when the weights cannot be mapped one-to-one or the outputs differ.
    """
    targets = keras_weights(core)
    sources = onnx_weights(proto, path)
    missing = sorted(_describe(k) for k in set(targets) - set(sources))
    extra = sorted(_describe(k) for k in set(sources) - set(targets))
    if missing or extra:
        raise UserError(
            f"--init-from {path}: its weights do not map onto the network "
            f"({len(missing)} Keras weight(s) without a source, e.g. {(missing or ['-'])[0]}; "
            f"{len(extra)} ONNX weight(s) left over, e.g. {(extra or ['-'])[0]})"
        )
    for key, variable in targets.items():
        if tuple(variable.shape) != sources[key].shape:
            raise UserError(
                f"--init-from {path}: weight {_describe(key)} has shape {sources[key].shape}, "
                f"the network wants {tuple(variable.shape)}"
            )
    for key, variable in targets.items():
        variable.assign(sources[key])
    if verify:
        half = any(t.data_type == 10 for t in proto.graph.initializer)  # TensorProto.FLOAT16
        check_parity(core, path, HALF_PARITY_TOLERANCE if half else PARITY_TOLERANCE)
    return len(targets)


def check_parity(
    core, path: str | Path, tolerance: float = PARITY_TOLERANCE, seed: int = 0
) -> float:
    """Max |Keras - ONNX Runtime| / max |ONNX Runtime| on one random spectrogram (B=1);
    UserError when it is not under ``tolerance``."""
    import onnxruntime as ort

    rng = np.random.default_rng(seed)
    shape = (1, *(int(d) for d in core.inputs[0].shape[1:]))
    spectrogram = rng.normal(0.0, 1.0, shape).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    reference = session.run(None, {session.get_inputs()[0].name: spectrogram})[0]
    ours = np.asarray(core(spectrogram, training=False))
    error = float(np.max(np.abs(ours - reference)) / max(np.max(np.abs(reference)), 1e-12))
    if not error < tolerance:
        raise UserError(
            f"--init-from {path}: the loaded network differs from ONNX Runtime by "
            f"{error:.2g} of the output scale (allowed {tolerance:g})"
        )
    return error


def _describe(key: tuple) -> str:
    *levels, role = key
    return "/".join([f"{kind}[{rank}]" for kind, rank in levels] + [role])
