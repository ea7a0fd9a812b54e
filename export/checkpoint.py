"""Stage 1 of the export: which checkpoint, which output file, and what the model is.

The checkpoint's :class:`train.config.ModelConfig` (from its run's ``config.json``, else read
off the model) and the host contract it implies (:func:`contract_for`). ``train`` is
imported inside the functions that need it (it loads TensorFlow and Keras).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path

from stream_sep.errors import UserError
from stream_sep.models.contract import ModelContract

log = logging.getLogger(__name__)

DEFAULT_RUNS_ROOT = Path("runs")


def import_train(module: str):
    """Import ``train.<module>`` (TensorFlow/Keras load here)."""
    try:
        return importlib.import_module(f"train.{module}")
    except ModuleNotFoundError as error:
        raise UserError(
            f"cannot import train.{module} ({error}); install the project with the training "
            "extra: pip install -e '.[train]'"
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


OUTPUT_SUFFIXES = {"float32": ".onnx", "float16": ".fp16.onnx", "float16-weights": ".fp16w.onnx"}


def default_output(checkpoint: Path, precision: str = "float32") -> Path:
    """``runs/<run>/best.keras`` -> ``runs/<run>/best.onnx`` (``best.fp16.onnx`` for
    float16, ``best.fp16w.onnx`` for float16 weights)."""
    return checkpoint.with_name(checkpoint.stem + OUTPUT_SUFFIXES[precision])


def model_config_of(model, checkpoint: Path):
    """The checkpoint's ``train.config.ModelConfig``.

    From the run directory's ``config.json`` when the checkpoint sits in one; otherwise
    the signal settings are read off the model itself (the window from the waveform input,
    n_fft and hop from its STFT layer) over the preset defaults. Either way the core
    network's tensor shapes must agree with the result.
    """
    from train.config import ModelConfig

    section = model_section(read_json(checkpoint.parent / "config.json"))
    if section is not None:
        try:
            config = ModelConfig.from_dict(section)
        except (TypeError, ValueError) as error:
            raise UserError(f"{checkpoint.parent / 'config.json'}: {error}") from None
    else:
        config = ModelConfig(**_signal_settings(model))
    _check_core_shapes(model, config, checkpoint)
    return config


def model_section(run_config: Mapping) -> dict | None:
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


def read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        log.warning("ignoring %s: %s", path, error)
        return {}
    return data if isinstance(data, dict) else {}
