"""train/warm_start.py: an exported ONNX model's weights in a fresh Keras network
(``python -m train --init-from``), checked against ONNX Runtime on the bundled model."""

from __future__ import annotations

import dataclasses
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import pytest  # noqa: E402

from stream_sep.errors import UserError  # noqa: E402
from stream_sep.models.bundled import BUNDLED_MODEL  # noqa: E402
from tests.test_train_data import write_mir1k  # noqa: E402
from train import runs  # noqa: E402
from train.cli import main  # noqa: E402
from train.config import preset_config  # noqa: E402
from train.model import build_core_network, core_network_of, load_checkpoint  # noqa: E402
from train.warm_start import (  # noqa: E402
    MODEL_CONFIG_KEY,
    check_parity,
    check_same_architecture,
    keras_weights,
    load_onnx_weights,
    onnx_model_config,
    read_onnx,
    start_from,
)

TOLERANCE = 1e-4  # max |Keras - ONNX Runtime| relative to max |ONNX Runtime|


@pytest.fixture(scope="module")
def bundled():
    proto = read_onnx(BUNDLED_MODEL)
    return proto, onnx_model_config(proto, BUNDLED_MODEL)


def spectrograms(config, seed: int = 1) -> np.ndarray:
    """Two random spectrograms at the scale of real ones (|X| up to ~100): (2, T, F, 2)."""
    rng = np.random.default_rng(seed)
    scale = np.stack([np.full((config.frames, config.n_bins, 2), s) for s in (1.0, 20.0)])
    return (rng.normal(0.0, 1.0, scale.shape) * scale).astype(np.float32)


def onnx_runtime(path, spectrogram: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: spectrogram})[0]


def relative_error(ours, reference) -> float:
    return float(np.max(np.abs(np.asarray(ours) - reference)) / np.max(np.abs(reference)))


def test_the_bundled_model_loads_and_matches_onnx_runtime(bundled):
    _, config = bundled
    assert config.channels == 16 and config.sources == ("vocals",)
    core = build_core_network(config)
    x = spectrograms(config)
    reference = onnx_runtime(BUNDLED_MODEL, x)
    assert relative_error(core(x), reference) > 0.5  # a fresh network is nothing like it
    assert load_onnx_weights(core, BUNDLED_MODEL, verify=False) == len(core.weights) == 261
    for example in range(len(x)):  # each example at its own scale
        error = relative_error(core(x[example : example + 1]), reference[example : example + 1])
        assert error < TOLERANCE, (example, error)


def test_a_wrong_mapping_is_caught_by_the_parity_check(bundled):
    _, config = bundled
    core = build_core_network(config)
    load_onnx_weights(core, BUNDLED_MODEL)  # verify=True: passes for the right mapping
    # swap two weights of the same shape: every shape check still passes
    weights = keras_weights(core)
    same_shape = [v for k, v in sorted(weights.items()) if tuple(v.shape) == (3, 3, 16, 16)]
    first, second = np.asarray(same_shape[0]), np.asarray(same_shape[1])
    same_shape[0].assign(second)
    same_shape[1].assign(first)
    with pytest.raises(UserError, match="differs from ONNX Runtime by"):
        check_parity(core, BUNDLED_MODEL)


def test_a_float16_export_loads_within_its_tolerance(bundled, tmp_path):
    from export.fp16 import to_float16

    proto, config = bundled
    half = tmp_path / "half.onnx"
    onnx.save(to_float16(onnx.ModelProto.FromString(proto.SerializeToString())), str(half))
    core = build_core_network(config)
    assert load_onnx_weights(core, half) == 261  # verify=True, float16 tolerance
    assert relative_error(core(spectrograms(config)[:1]), onnx_runtime(half, spectrograms(config)[:1])) < 1e-2  # fmt: skip


def test_models_that_cannot_be_loaded_are_refused_in_one_line(bundled, tmp_path):
    proto, config = bundled
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model")
    with pytest.raises(UserError, match="not an ONNX model"):
        read_onnx(garbage)
    with pytest.raises(UserError, match="no such file"):
        read_onnx(tmp_path / "missing.onnx")

    anonymous = onnx.ModelProto.FromString(proto.SerializeToString())
    kept = [p for p in anonymous.metadata_props if p.key != MODEL_CONFIG_KEY]
    del anonymous.metadata_props[:]
    anonymous.metadata_props.extend(kept)
    with pytest.raises(UserError, match=f"no {MODEL_CONFIG_KEY} in its metadata"):
        onnx_model_config(anonymous, "community.onnx")

    with pytest.raises(UserError, match=r"channels 16 \(not 32\), growth 32 \(not 64\)") as error:
        check_same_architecture(preset_config("small"), config, BUNDLED_MODEL)
    assert "\n" not in str(error.value)
    check_same_architecture(preset_config("tiny", zero_init_output=False), config, "x")  # same

    shallower = build_core_network(preset_config("tiny", n_scales=3))
    with pytest.raises(UserError, match="do not map onto the network") as error:
        load_onnx_weights(shallower, BUNDLED_MODEL)
    assert "\n" not in str(error.value)


def test_the_command_line_refuses_a_mismatch_and_a_resume(tmp_path, capsys):
    data = write_mir1k(tmp_path / "mir1k", singers=("ann", "bob"))
    common = ["--data", str(data), "--format", "mir1k", "--runs-dir", str(tmp_path / "runs")]
    assert main([*common, "--init-from", str(BUNDLED_MODEL), "--preset", "small"]) == 2
    assert "channels 16 (not 32)" in capsys.readouterr().err
    assert main(["--resume", "--run-name", "r", *common, "--init-from", str(BUNDLED_MODEL)]) == 2
    err = capsys.readouterr().err
    assert "drop --init-from" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_a_run_started_from_the_bundled_model_carries_its_weights(tmp_path, bundled):
    _, config = bundled
    data = write_mir1k(tmp_path / "mir1k", singers=("ann", "bob"), seconds=4.5)
    # one step at a negligible learning rate: the checkpoint must still be the bundled model
    code = main(["--data", str(data), "--format", "mir1k", "--val-singers", "bob",
                 "--init-from", str(BUNDLED_MODEL), "--epochs", "1", "--steps-per-epoch", "1",
                 "--batch-size", "1", "--accumulation-steps", "0", "--lr", "1e-12",
                 "--val-examples", "1", "--progress", "none",
                 "--runs-dir", str(tmp_path / "runs"), "--run-name", "warm"])  # fmt: skip
    assert code == 0
    run_dir = tmp_path / "runs" / "warm"
    saved = runs.read_run_config(run_dir)
    assert saved["training"]["init_from"] == str(BUNDLED_MODEL)
    assert saved["model"] == config.to_dict()
    core = core_network_of(load_checkpoint(run_dir / "last.keras"))
    x = spectrograms(config)[:1]
    assert relative_error(core(x), onnx_runtime(BUNDLED_MODEL, x)) < TOLERANCE


def test_the_weights_start_a_run_on_another_window(bundled):
    """The window is not part of the weights: --init-from with --window-samples alone keeps
    the model's network (and preset) on a shorter window, whose core takes every weight."""
    from train.cli import warm_start_config

    _, config = bundled
    given = {"init_from": str(BUNDLED_MODEL), "window_samples": 32256}
    short, preset = warm_start_config(given, preset_config("full", window_samples=32256))
    assert short == dataclasses.replace(config, window_samples=32256)
    assert preset == "tiny" and short.frames == 64
    core = build_core_network(short)
    # start_from checks parity at the model's own window, then copies the same arrays
    assert start_from(core, short, BUNDLED_MODEL) == len(core.weights) == 261
    own = build_core_network(config)
    load_onnx_weights(own, BUNDLED_MODEL)
    for ours, theirs in zip(core.get_weights(), own.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    x = spectrograms(short)
    estimate = np.asarray(core(x))
    assert x.shape[:2] == (2, 64) and estimate.shape[:3] == (2, len(short.sources), 64)
    assert np.isfinite(estimate).all()
    with pytest.raises(UserError, match="must be divisible by"):
        warm_start_config({**given, "window_samples": 32768}, None)
