"""A trained checkpoint becomes an ONNX separation model the host can run, proven on export.

Only the *core network* (spectrogram in, spectrogram per source out) is converted: tf2onnx
cannot convert Keras' STFT/iSTFT, and the host does those in numpy anyway
(:mod:`stream_sep.spectral`). The steps, each a function a test can call:

1. :func:`resolve_checkpoint` / :func:`default_output` pick the files;
2. :func:`convert_core` runs tf2onnx on the core network, names the graph's tensors after
   the contract and makes the batch axis dynamic;
3. :func:`to_float16` (``--fp16``) stores float16 weights behind float32 inputs/outputs;
4. :func:`attach_metadata` writes the :class:`stream_sep.contract.ModelContract` and the
   provenance into ``metadata_props``;
5. :func:`verify` loads the written file with the host's own loader, runs it on
   :func:`parity_signal` and compares the waveforms with Keras' (``ops.stft -> model ->
   ops.istft``) against :data:`TOLERANCES`.

The file is written to a temporary name beside the output and moved into place only after
step 5 passed, so a failed export leaves nothing behind (and keeps an older file intact).

TensorFlow, Keras and tf2onnx are imported inside the functions that need them, so
``--help`` and argument errors are immediate.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import datetime
import importlib
import json
import logging
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from stream_sep import atomic
from stream_sep.contract import ModelContract
from stream_sep.errors import UserError

log = logging.getLogger(__name__)

PROG = "to_onnx.py"
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RUNS_ROOT = Path("runs")
DEFAULT_OPSET = 17
# tf2onnx 1.17 writes opsets 13..18; Erf, GroupNorm's decomposition and dynamic Reshape
# need nothing newer than 13.
OPSET_RANGE = (13, 18)
PROVENANCE = "provenance."
# Ops that must never reach the graph: tf2onnx leaves these from ops.stft/istft or an
# exact gelu, writes the file anyway, and onnxruntime refuses it at load (ARCHITECTURE.md).
FORBIDDEN_OPS = frozenset({"STFT", "DFT", "RFFT", "IRFFT", "Real", "Imag", "Erfc"})
# A protobuf message cannot exceed 2 GiB: larger models would need external data files.
MAX_SELF_CONTAINED_BYTES = 2 * 1024**3 - 1


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """Largest allowed ``max|host - keras| / max|keras|`` for the parity waveforms."""

    relative: float
    reason: str


# The one table of parity tolerances. The reference is Keras' float32 waveform path.
TOLERANCES: dict[str, Tolerance] = {
    "float32": Tolerance(
        relative=1e-4,
        reason=(
            "same float32 arithmetic in a different order (oneDNN vs onnxruntime kernels, "
            "numpy vs TensorFlow FFT): measured 1e-7..1e-5 of the peak; GroupNorm over a "
            "whole window sums ~10^5 values, so allow 10x the worst seen"
        ),
    ),
    "float16": Tolerance(
        relative=2e-2,
        reason=(
            "float16 keeps 11 significant bits (relative step 4.9e-4 per op); errors add "
            "over ~100 layers of the full network: measured ~1e-3..5e-3 of the peak"
        ),
    ),
}


class ExportFailed(Exception):
    """The export ran but its result is not usable (conversion error, parity, NaN)."""


@dataclasses.dataclass(frozen=True)
class Parity:
    """How far the host's waveforms are from Keras' for the same chunk."""

    max_abs: float
    peak: float
    tolerance: Tolerance
    finite: bool

    @property
    def relative(self) -> float:
        """``max_abs`` over the peak of the Keras reference."""
        return self.max_abs / self.peak if self.peak > 0 else 0.0

    @property
    def passed(self) -> bool:
        return self.finite and self.relative <= self.tolerance.relative

    def describe(self) -> str:
        if not self.finite:
            return "the ONNX model's output holds NaN or Inf"
        return (
            f"max |onnx - keras| = {self.max_abs:.3g}, relative to the peak "
            f"{self.peak:.3g}: {self.relative:.3g} (tolerance {self.tolerance.relative:g})"
        )


@dataclasses.dataclass(frozen=True)
class ExportReport:
    path: Path
    precision: str
    seconds: float
    size_bytes: int
    parity: Parity
    metadata: dict[str, str]


# ----------------------------------------------------------------------------- files


def import_train(module: str):
    """Import ``train.<module>`` from the repository root (TensorFlow/Keras load here)."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    try:
        return importlib.import_module(f"train.{module}")
    except ModuleNotFoundError as error:
        raise UserError(
            f"cannot import train.{module} ({error}); run from the repository root "
            "with the training extra installed: pip install -e '.[train]'"
        ) from None


def resolve_checkpoint(checkpoint: str | os.PathLike | None, runs_root: Path) -> Path:
    """The checkpoint to export: the given path, or the newest run's best checkpoint."""
    if checkpoint is None:
        train_runs = import_train("runs")
        return Path(train_runs.best_checkpoint(train_runs.newest_run(runs_root)))
    path = Path(checkpoint)
    if not path.exists():
        raise UserError(f"--checkpoint {str(path)!r} does not exist")
    if not path.is_file():
        raise UserError(f"--checkpoint {str(path)!r} is not a file")
    return path


def default_output(checkpoint: Path, fp16: bool) -> Path:
    """``runs/<run>/best.keras`` -> ``runs/<run>/best.onnx`` (``best.fp16.onnx`` with fp16)."""
    return checkpoint.with_name(checkpoint.stem + (".fp16.onnx" if fp16 else ".onnx"))


@contextlib.contextmanager
def staged_output(output: Path) -> Iterator[Path]:
    """A temporary file beside ``output``; moved onto it only if the block succeeds.

    Creating it first also proves the output's folder is writable before any slow work.
    """
    if output.is_dir():
        raise UserError(f"--output {str(output)!r} is a directory; give a file name")
    try:
        staged = atomic.hidden_sibling(output)
    except OSError as error:
        raise UserError(
            f"cannot write --output {str(output)!r}: {error.strerror or error}"
        ) from None
    try:
        yield staged
        os.replace(staged, output)
    finally:
        staged.unlink(missing_ok=True)


# ---------------------------------------------------------------------- checkpoint


def model_config_of(model, checkpoint: Path):
    """The checkpoint's ``train.config.ModelConfig``.

    From the run directory's ``config.json`` when the checkpoint sits in one; otherwise
    the signal settings are read off the model itself (the window from the waveform input,
    n_fft and hop from its STFT layer) over the preset defaults. Either way the core
    network's tensor shapes must agree with the result.
    """
    from train.config import ModelConfig

    section = _model_section(_read_json(checkpoint.parent / "config.json"))
    if section is not None:
        try:
            config = ModelConfig.from_dict(section)
        except (TypeError, ValueError) as error:
            raise UserError(f"{checkpoint.parent / 'config.json'}: {error}") from None
    else:
        config = ModelConfig(**_signal_settings(model))
    _check_core_shapes(model, config, checkpoint)
    return config


def _model_section(run_config: Mapping) -> dict | None:
    """The model's fields in a run's config.json: a ``model`` section or the top level."""
    from train.config import ModelConfig

    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    for key in ("model", "model_config", "config"):
        if isinstance(run_config.get(key), dict):
            return {k: v for k, v in run_config[key].items() if k in fields}
    if "window_samples" in run_config:
        return {k: v for k, v in run_config.items() if k in fields}
    return None


def _signal_settings(model) -> dict:
    """n_fft, hop_length, window_samples and the source count, read off a Keras model."""
    from train.model import core_network_of

    core = core_network_of(model)
    settings = {}
    stft_layers = [layer for layer in model.layers if hasattr(layer, "hop_length")]
    if stft_layers:
        settings["n_fft"] = stft_layers[0].n_fft
        settings["hop_length"] = stft_layers[0].hop_length
    if model is not core:
        settings["window_samples"] = int(model.inputs[0].shape[-1])
    else:
        hop = settings.get("hop_length", _default_config().hop_length)
        settings["window_samples"] = (int(core.inputs[0].shape[1]) - 1) * hop
        settings["n_fft"] = 2 * int(core.inputs[0].shape[2])
    n_sources = int(core.outputs[0].shape[1])
    default_sources = _default_config().sources
    if n_sources != len(default_sources):
        raise UserError(
            f"the model has {n_sources} sources; without the run's config.json beside the "
            f"checkpoint their names are unknown (the default is {','.join(default_sources)})"
        )
    return settings


def _default_config():
    from train.config import ModelConfig

    return ModelConfig()


def _check_core_shapes(model, config, checkpoint: Path) -> None:
    """The core network's input/output shapes must be the ones ``config`` implies."""
    from train.model import core_network_of

    core = core_network_of(model)
    contract = contract_for(config)
    shapes = {
        "input": (tuple(core.inputs[0].shape), contract.input_shape),
        "output": (tuple(core.outputs[0].shape), contract.output_shape),
    }
    for role, (got, want) in shapes.items():
        if tuple(got[1:]) != tuple(want[1:]):
            raise UserError(
                f"checkpoint {checkpoint}: the core network's {role} is {got[1:]}, but its "
                f"configuration (window_samples={config.window_samples}, n_fft={config.n_fft}, "
                f"hop_length={config.hop_length}, {len(config.sources)} sources) implies {want[1:]}"
            )


def contract_for(config) -> ModelContract:
    """The host contract of a ``train.config.ModelConfig``: every number comes from it."""
    return ModelContract(
        sample_rate=config.sample_rate,
        n_fft=config.n_fft,
        hop_length=config.hop_length,
        window_samples=config.window_samples,
        sources=tuple(config.sources),
    )


def read_provenance(checkpoint: Path, config) -> dict[str, str]:
    """Where the weights came from, from the run directory when the checkpoint sits in one.

    Keys (all prefixed ``provenance.``): preset, dataset, epochs, steps, best_val_sdr,
    git_commit (of the training code), export_git_commit, export_date, checkpoint,
    model_config. Values a bare checkpoint cannot tell are ``"unknown"``.
    """
    run_dir = checkpoint.parent
    run_config = _read_json(run_dir / "config.json")
    training = run_config.get("training") or {}
    # Without the run's config the network's structure was not read, only its signal settings.
    known = _model_section(run_config) is not None
    state = _read_json(run_dir / "state.json")
    logged_epochs, logged_best = _read_log(run_dir / "log.csv")
    epochs = state.get("epochs_done", logged_epochs)
    best = state.get("best_val_sdr", logged_best)
    commit_file = run_dir / "commit.txt"
    values = {
        "preset": preset_of(config) if known else "unknown",
        "dataset": _dataset_of(training),
        "epochs": _or_unknown(epochs),
        "steps": _or_unknown(state.get("steps_done")),
        "best_val_sdr": f"{best:.3f}" if isinstance(best, int | float) else "unknown",
        "git_commit": commit_file.read_text().strip() if commit_file.is_file() else "unknown",
        "export_git_commit": _git_commit(),
        "export_date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "checkpoint": checkpoint.name,
        "model_config": json.dumps(config.to_dict(), sort_keys=True) if known else "unknown",
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


def _or_unknown(value) -> str:
    return "unknown" if value is None else str(value)


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        log.warning("ignoring %s: %s", path, error)
        return {}
    return data if isinstance(data, dict) else {}


def _read_log(path: Path) -> tuple[int | None, float | None]:
    """(epochs logged, best val_sdr) from a Keras CSVLogger file."""
    if not path.is_file():
        return None, None
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    scores = [float(row["val_sdr"]) for row in rows if row.get("val_sdr") not in (None, "")]
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


# ---------------------------------------------------------------------- conversion


def convert_core(core, contract: ModelContract, opset: int = DEFAULT_OPSET):
    """tf2onnx on the core network -> ``onnx.ModelProto`` named after the contract.

    core: keras.Model, (B, frames, n_bins, 2) -> (B, S, frames, 2 * n_bins). The batch axis
    of the graph is the dynamic dimension ``batch``; the other axes are fixed.
    """
    import tensorflow as tf
    import tf2onnx

    tf2onnx.logging.set_level(
        logging.ERROR if log.getEffectiveLevel() > logging.DEBUG else logging.INFO
    )
    signature = (
        tf.TensorSpec((None,) + contract.input_shape[1:], tf.float32, name=contract.input_name),
    )
    function = tf.function(
        lambda spectrogram: core(spectrogram, training=False), input_signature=signature
    )
    try:
        proto, _ = tf2onnx.convert.from_function(function, input_signature=signature, opset=opset)
    except Exception as error:  # tf2onnx raises bare Exception/ValueError/KeyError types
        raise ExportFailed(
            f"tf2onnx could not convert the core network: {_first_line(error)}"
        ) from error
    name_graph_tensors(proto, contract)
    split_strided_means(proto)
    check_graph(proto)
    return proto


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
        raise ExportFailed(f"the ONNX checker refused the graph: {_first_line(error)}") from None


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


def save_self_contained(proto, path: Path) -> int:
    """Write one .onnx file with the weights inside; returns its size in bytes."""
    size = proto.ByteSize()
    if size > MAX_SELF_CONTAINED_BYTES:
        raise ExportFailed(
            f"the model is {size / 1e9:.2f} GB; a self-contained ONNX file must stay under 2 GB"
        )
    path.write_bytes(proto.SerializeToString())
    return path.stat().st_size


# -------------------------------------------------------------------------- parity


def parity_signal(contract: ModelContract, batch: int = 2, seed: int = 0) -> np.ndarray:
    """A deterministic, loud, voice-like test chunk: (batch, window_samples) float32.

    Harmonic tones with vibrato (a sung note), a low bass line, white noise and a click,
    different per channel, peaking at 0.95 so float16 overflow would show.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(contract.window_samples) / contract.sample_rate
    channels = []
    for channel in range(batch):
        pitch = 220.0 * 2 ** (channel / 12) * (1 + 0.01 * np.sin(2 * np.pi * 5.5 * t))
        phase = 2 * np.pi * np.cumsum(pitch) / contract.sample_rate
        voice = sum(np.sin(k * phase) / k for k in range(1, 8))
        bass = 0.8 * np.sin(2 * np.pi * 55.0 * t)
        hiss = 0.1 * rng.standard_normal(t.size)
        click = np.zeros(t.size)
        click[t.size // 3 + channel] = 2.0
        channels.append(voice + bass + hiss + click)
    audio = np.stack(channels)
    return (0.95 * audio / np.abs(audio).max()).astype(np.float32)


def keras_waveforms(model, audio: np.ndarray, contract: ModelContract) -> np.ndarray:
    """The Keras reference: ``ops.stft -> core -> ops.istft``.

    model: the checkpoint's model, either the training model (waveform in, its own
    ``ops.stft`` inside) or the bare core network (spectrogram in).
    audio: (B, window_samples) float32. Returns (B, S, window_samples) float32.
    """
    from keras import ops

    n_fft, hop = contract.n_fft, contract.hop_length
    if len(model.inputs[0].shape) == 2:
        output = model(audio, training=False)
    else:
        real, imag = ops.stft(audio, n_fft, hop, n_fft)
        # (B, T, n_fft // 2 + 1) x2 -> (B, T, n_bins, 2): drop Nyquist, stack real/imag.
        spectrogram = ops.stack([real[..., :-1], imag[..., :-1]], axis=-1)
        output = model(spectrogram, training=False)
    batch, n_sources, frames, width = output.shape
    # (B, S, T, 2F) -> (B*S, T, F, 2): real/imag are interleaved per bin.
    pairs = ops.reshape(output, (batch * n_sources, frames, width // 2, 2))
    # The Nyquist bin was dropped: give it back as zero.
    pairs = ops.pad(pairs, ((0, 0), (0, 0), (0, 1), (0, 0)))
    waves = ops.istft((pairs[..., 0], pairs[..., 1]), n_fft, hop, n_fft)
    return np.asarray(ops.convert_to_numpy(waves)).reshape(batch, n_sources, -1)


def compare(host: np.ndarray, reference: np.ndarray, tolerance: Tolerance) -> Parity:
    finite = bool(np.isfinite(host).all())
    difference = np.abs(host.astype(np.float64) - reference.astype(np.float64))
    return Parity(
        max_abs=float(difference.max()) if finite else float("nan"),
        peak=float(np.abs(reference).max()),
        tolerance=tolerance,
        finite=finite,
    )


def verify(path: Path, model, precision: str) -> Parity:
    """Load ``path`` with the host, run the parity chunk, compare with Keras.

    Raises :class:`ExportFailed` if the host refuses the file or the parity fails.
    """
    from stream_sep.inference import load_model

    try:
        host_model = load_model(path, provider="cpu")
    except UserError as error:
        raise ExportFailed(f"the host cannot load the exported model: {error}") from None
    contract = host_model.contract
    audio = parity_signal(contract)
    host = host_model.separate(audio)
    reference = keras_waveforms(model, audio, contract)
    parity = compare(host, reference, TOLERANCES[precision])
    if parity.peak == 0:
        log.warning("the model outputs silence for the test chunk: the parity check is vacuous")
    if not parity.passed:
        raise ExportFailed(f"parity check failed ({precision}): {parity.describe()}")
    check_finite_when_loud(host_model)
    return parity


def stress_signals(contract: ModelContract) -> dict[str, np.ndarray]:
    """Full-scale signals that push activations hardest: name -> (window_samples,) float32."""
    t = np.arange(contract.window_samples) / contract.sample_rate
    rng = np.random.default_rng(1)
    signals = {
        "100 Hz sine": np.sin(2 * np.pi * 100.0 * t),
        "220 Hz square": np.sign(np.sin(2 * np.pi * 220.0 * t)),
        "clipped noise": np.clip(rng.standard_normal(t.size), -1.0, 1.0),
    }
    return {name: signal.astype(np.float32) for name, signal in signals.items()}


def check_finite_when_loud(host_model) -> None:
    """Raise :class:`ExportFailed` if any full-scale stress signal gives NaN or Inf."""
    signals = stress_signals(host_model.contract)
    output = host_model.separate(np.stack(list(signals.values())))
    for name, estimate in zip(signals, output, strict=True):
        if not np.isfinite(estimate).all():
            raise ExportFailed(f"the ONNX model outputs NaN or Inf for a full-scale {name}")


# ---------------------------------------------------------------------------- main


def export_checkpoint(
    checkpoint: Path, output: Path, opset: int = DEFAULT_OPSET, fp16: bool = False
) -> ExportReport:
    """Convert, describe, write and prove one checkpoint; see the module docstring."""
    started = time.perf_counter()
    precision = "float16" if fp16 else "float32"
    with staged_output(output) as staged:
        train_model = import_train("model")
        model = train_model.load_checkpoint(checkpoint)
        config = model_config_of(model, checkpoint)
        contract = contract_for(config)
        proto = convert_core(train_model.core_network_of(model), contract, opset)
        if fp16:
            proto = to_float16(proto)
            check_graph(proto)
        provenance = read_provenance(checkpoint, config)
        provenance[PROVENANCE + "precision"] = precision
        metadata = attach_metadata(proto, contract, provenance)
        size = save_self_contained(proto, staged)
        parity = verify(staged, model, precision)
    return ExportReport(
        path=output,
        precision=precision,
        seconds=time.perf_counter() - started,
        size_bytes=size,
        parity=parity,
        metadata=metadata,
    )


def get_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog=PROG,
        description=(
            "Export a trained checkpoint's core network to ONNX for the stream-sep host, "
            "then load the file with ONNX Runtime and check it against Keras. Without "
            "arguments it takes the newest run under ./runs, its best checkpoint, and writes "
            "the .onnx next to it (best.onnx, or best.fp16.onnx with --fp16). Run it from "
            "the repository root."
        ),
    )
    parser.add_argument(
        "--checkpoint",
        metavar="PATH",
        help="a .keras checkpoint (default: the best checkpoint of the newest run in --runs-root)",
    )
    parser.add_argument(
        "--output",
        metavar="PATH",
        help="the .onnx file to write (default: next to the checkpoint, same name, .onnx)",
    )
    parser.add_argument(
        "--runs-root",
        metavar="DIR",
        type=Path,
        default=DEFAULT_RUNS_ROOT,
        help="where training runs live, for the default checkpoint (default: ./runs)",
    )
    parser.add_argument(
        "--opset",
        type=int,
        default=DEFAULT_OPSET,
        help=f"ONNX opset, {OPSET_RANGE[0]}..{OPSET_RANGE[1]} (default: {DEFAULT_OPSET})",
    )
    parser.add_argument(
        "--fp16",
        action="store_true",
        help="store float16 weights (float32 inputs and outputs), for GPUs",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    return parser


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str):
        raise UserError(f"{message} (see {self.prog} --help)")


def run(args: argparse.Namespace) -> ExportReport:
    if not OPSET_RANGE[0] <= args.opset <= OPSET_RANGE[1]:
        raise UserError(f"--opset must be in {OPSET_RANGE[0]}..{OPSET_RANGE[1]}, got {args.opset}")
    checkpoint = resolve_checkpoint(args.checkpoint, args.runs_root)
    output = Path(args.output) if args.output else default_output(checkpoint, args.fp16)
    if output.resolve() == checkpoint.resolve():
        raise UserError(f"--output {str(output)!r} is the checkpoint itself")
    print(
        f"exporting {checkpoint} -> {output} (opset {args.opset}, "
        f"{'float16' if args.fp16 else 'float32'} weights)"
    )
    report = export_checkpoint(checkpoint, output, args.opset, args.fp16)
    print(f"parity: {report.parity.describe()}")
    print(f"wrote {report.path}: {report.size_bytes / 1e6:.1f} MB in {report.seconds:.1f} s")
    return report


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status (2 for user errors, 1 for failed exports)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        args = get_parser().parse_args(argv)
        logging.basicConfig(
            level=logging.DEBUG if args.verbose else logging.WARNING,
            format=f"{PROG}: %(message)s",
        )
        run(args)
    except UserError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    except ExportFailed as error:
        log.debug("export failed", exc_info=error)
        print(f"{PROG}: export failed: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    return 0


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:300] if text else type(error).__name__
