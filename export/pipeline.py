"""Stage 5 of the export: the stages composed into one call, writing the file atomically.

:func:`export_checkpoint` loads the checkpoint, converts its core network, optionally to
float16 (arithmetic or storage only), attaches the contract and provenance, writes the file
under a hidden name beside the output and proves it (:func:`export.parity.verify`) before
moving it into place.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

from export.checkpoint import contract_for, import_train, model_config_of, model_section, read_json
from export.convert import DEFAULT_OPSET, convert_core
from export.errors import ExportFailed
from export.fp16 import store_weights_as_float16, to_float16
from export.graph_passes import attach_metadata, check_graph
from export.parity import TOLERANCES, Parity, verify
from export.provenance import PROVENANCE, read_provenance
from stream_sep import atomic
from stream_sep.errors import UserError

# A protobuf message cannot exceed 2 GiB: larger models would need external data files.
MAX_SELF_CONTAINED_BYTES = 2 * 1024**3 - 1


@dataclasses.dataclass(frozen=True)
class ExportReport:
    path: Path
    precision: str
    seconds: float
    size_bytes: int
    parity: Parity
    metadata: dict[str, str]


# The precisions an export can have: those the parity check has a tolerance for (each also
# has an output suffix in export.checkpoint and a description in export.to_onnx).
PRECISIONS = tuple(TOLERANCES)


def export_checkpoint(
    checkpoint: Path,
    output: Path,
    opset: int = DEFAULT_OPSET,
    precision: str = "float32",
    window_samples: int | None = None,
) -> ExportReport:
    """Convert, describe, write and prove one checkpoint; see :mod:`export`.

    precision: float32; float16 (weights and arithmetic, ``--fp16``); float16-weights
    (float16 storage, float32 arithmetic, ``--fp16-weights``).
    window_samples: the model's window in samples at its rate, when not the checkpoint's
    own: the same weights on another window (a shorter one costs less per window, live),
    recorded as ``provenance.trained_window_samples``.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    started = time.perf_counter()
    with staged_output(output) as staged:
        train_model = import_train("model")
        model = train_model.load_checkpoint(checkpoint)
        config = model_config_of(model, checkpoint)
        trained_window = config.window_samples
        if window_samples is not None and window_samples != trained_window:
            if model_section(read_json(checkpoint.parent / "config.json")) is None:
                raise UserError(
                    f"--window-samples needs the checkpoint's run folder: no config.json "
                    f"beside {checkpoint} says how its network was built"
                )
            model, config = on_window(train_model, model, config, window_samples)
        contract = contract_for(config)
        proto = convert_core(train_model.core_network_of(model), contract, opset)
        if precision == "float16":
            proto = to_float16(proto)
            check_graph(proto)
        elif precision == "float16-weights":
            store_weights_as_float16(proto)
            check_graph(proto)
        provenance = read_provenance(checkpoint, config)
        provenance[PROVENANCE + "precision"] = precision
        if config.window_samples != trained_window:
            provenance[PROVENANCE + "trained_window_samples"] = str(trained_window)
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


def on_window(train_model, model, config, window_samples: int):
    """The checkpoint's network on ``window_samples``: a training model built for that
    window with the same weights (every layer works along time with shared kernels or along
    frequency alone). UserError for a window the network cannot take."""
    try:
        config = dataclasses.replace(config, window_samples=window_samples)
        config.validate()
    except UserError as error:
        raise UserError(f"--window-samples {window_samples}: {error}") from None
    windowed = train_model.build_training_model(config)
    core = train_model.core_network_of(windowed)
    core.set_weights(train_model.core_network_of(model).get_weights())
    return windowed, config


@contextlib.contextmanager
def staged_output(output: Path) -> Iterator[Path]:
    """A hidden file beside ``output`` (:func:`stream_sep.atomic.write_path`); moved onto it
    only if the block succeeds.

    Creating it first also proves the output's folder is writable before any slow work.
    """
    if output.is_dir():
        raise UserError(f"--output {str(output)!r} is a directory; give a file name")
    with contextlib.ExitStack() as stack:
        try:
            staged = stack.enter_context(atomic.write_path(output))
        except OSError as error:
            raise UserError(
                f"cannot write --output {str(output)!r}: {error.strerror or error}"
            ) from None
        yield staged


def save_self_contained(proto, path: Path) -> int:
    """Write one .onnx file with the weights inside; returns its size in bytes."""
    size = proto.ByteSize()
    if size > MAX_SELF_CONTAINED_BYTES:
        raise ExportFailed(
            f"the model is {size / 1e9:.2f} GB; a self-contained ONNX file must stay under 2 GB"
        )
    path.write_bytes(proto.SerializeToString())
    return path.stat().st_size
