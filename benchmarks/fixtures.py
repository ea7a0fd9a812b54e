"""Inputs several scenarios share: a generated stereo song, a gain model at the full window,
and the training presets exported with random weights (cached).

Nothing here measures or writes a report; the scenarios import what they use by package
name (``from benchmarks.fixtures import song``).
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np
import soxr

from benchmarks.harness import REPO, Stopwatch
from stream_sep import atomic
from stream_sep.models import providers

log = logging.getLogger("benchmarks.fixtures")

SONG_RATE = 44100
SEED = 0  # the presets' random weights
# Source files whose change invalidates a cached export.
MODEL_SOURCES = ("train/model.py", "train/config.py", "export/convert.py", "export/graph_passes.py",
                 "export/fp16.py", "export/pipeline.py")  # fmt: skip


# ---------------------------------------------------------------------------- audio
def song(seconds: float, rate: int = SONG_RATE) -> np.ndarray:
    """(2, samples) float32 at ``rate``: a generated voice in the centre over two different
    bands. Generated at 16 kHz (the generator's cost grows with the rate's harmonics) and
    resampled: no content above 8 kHz, which changes nothing in the time a plan takes."""
    from tests.helpers import voice_over_band

    _, vocals, left = voice_over_band(seconds, 16000, seed=0)
    _, _, right = voice_over_band(seconds, 16000, seed=1)
    stereo = soxr.resample(np.stack([vocals + left, vocals + right]).T, 16000, rate, "HQ").T
    return np.ascontiguousarray(stereo * (0.9 / max(np.abs(stereo).max(), 1e-9)), np.float32)


# ---------------------------------------------------------------------------- models
def full_window_gain_model(folder: Path, name: str = "gain.onnx") -> Path:
    """The tests' gain model (x 0.5) with the bundled model's full contract, its nodes
    named uniquely as every export's are (the float16 pass checks them): the host's fixed
    costs at the real window, without a network's."""
    import onnx

    from stream_sep.models.contract import ModelContract
    from tests.helpers import gain_model

    path = gain_model(Path(folder) / name, 0.5, ModelContract())
    proto = onnx.load(path)
    for number, node in enumerate(proto.graph.node):
        node.name = f"{node.op_type}_{number}"
    onnx.save(proto, path)
    return path


def _keras_modules():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    from train.config import preset_config
    from train.model import build_core_network

    return keras, preset_config, build_core_network


def model_config(preset: str):
    """The preset with the seed's random output init: a zero kernel would time the same but
    make every output zero, which hides denormal or NaN trouble."""
    _, preset_config, _ = _keras_modules()
    return preset_config(preset, zero_init_output=False)


def build_core(preset: str):
    """The preset's core network with seeded random weights (the same on every call)."""
    keras, _, build_core_network = _keras_modules()
    keras.utils.set_random_seed(SEED)
    config = model_config(preset)
    core = build_core_network(config)
    core(np.zeros((1, config.frames, config.n_bins, 2), np.float32))
    return core, config


def source_digest(preset: str) -> str:
    digest = hashlib.sha256(f"{preset} seed={SEED}".encode())
    for name in MODEL_SOURCES:
        path = REPO / name
        digest.update(path.read_bytes() if path.exists() else b"")
    return digest.hexdigest()[:12]


def export_path(preset: str, precision: str) -> Path:
    """Where the preset's export is cached (``~/.cache/stream-sep/bench/``), keyed by the
    source of the model and export code."""
    return providers.cache_dir() / "bench" / f"{preset}-{precision}-{source_digest(preset)}.onnx"


def cached_export(preset: str, precision: str, core=None, config=None) -> Path:
    """The preset exported to ONNX (cached); builds the Keras model only when needed."""
    path = export_path(preset, precision)
    if path.is_file():
        return path
    from export.checkpoint import contract_for
    from export.convert import convert_core
    from export.fp16 import to_float16
    from export.graph_passes import attach_metadata
    from export.pipeline import save_self_contained
    from export.provenance import PROVENANCE

    if core is None:
        core, config = build_core(preset)
    with Stopwatch() as watch:
        contract = contract_for(config)
        proto = convert_core(core, contract)
        if precision == "fp16":
            proto = to_float16(proto)
        attach_metadata(
            proto, contract, {PROVENANCE + "weights": f"random, seed {SEED} (benchmark)"}
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic.write_path(path) as temporary:
            save_self_contained(proto, temporary)
    log.info("exported %s %s in %.1f s -> %s", preset, precision, watch.seconds, path)
    return path
