"""train/model.py and train/losses.py: the seed's network, its presets, saving and the STFT."""

from __future__ import annotations

import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from stream_sep.dsp.spectral import from_network_output, to_network_input  # noqa: E402
from stream_sep.errors import UserError  # noqa: E402
from stream_sep.models.contract import ModelContract  # noqa: E402
from train.config import PRESETS, ModelConfig, preset_config  # noqa: E402
from train.losses import SignalToDistortionRatio, SpectralLoss, prediction_to_waveform, sdr  # noqa: E402
from train.model import (  # noqa: E402
    build_core_network,
    build_training_model,
    core_network_of,
    gelu_erf,
    load_checkpoint,
)

# 16 STFT frames: the smallest window the 4 scales of (2, 2) accept; keeps every test fast.
WINDOW = 7680

# Tolerances, and why:
# - Keras' float32 STFT against the host's numpy one: float32 FFT rounding (~1e-6 relative).
STFT_ATOL = 1e-4
# - erf-written gelu against Keras' exact gelu: both exact, float32 rounding only.
GELU_ATOL = 1e-6


def trainable_count(model: keras.Model) -> int:
    return sum(math.prod(w.shape) for w in model.trainable_weights)


def tiny(**changes) -> ModelConfig:
    return preset_config("tiny", window_samples=WINDOW, **changes)


def test_full_preset_has_the_seeds_parameter_count():
    assert trainable_count(build_training_model(preset_config("full"))) == 55_697_408


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_maps_a_spectrogram_to_one_per_source(preset):
    config = preset_config(preset, window_samples=WINDOW, sources=("vocals", "drums"))
    core = build_core_network(config)
    assert core.name == "core_network"
    assert core.inputs[0].name == "spectrogram"
    assert tuple(core.input_shape) == (None, 16, 1024, 2)
    assert tuple(core.output_shape) == (None, 2, 16, 2048)


def test_training_model_runs_on_waveforms_and_shares_the_core():
    config = tiny(zero_init_output=False)
    model = build_training_model(config)
    audio = np.random.default_rng(0).normal(0, 0.1, (2, WINDOW)).astype(np.float32)
    out = model.predict(audio, verbose=0)
    assert out.shape == (2, 1, 16, 2048)
    core = core_network_of(model)
    spectrogram = to_network_input(audio, ModelContract(window_samples=WINDOW))
    np.testing.assert_allclose(core.predict(spectrogram, verbose=0), out, atol=STFT_ATOL)


def test_zero_init_starts_from_silence_and_seed_init_does_not():
    audio = np.random.default_rng(1).normal(0, 0.1, (1, WINDOW)).astype(np.float32)
    zero = build_training_model(tiny()).predict(audio, verbose=0)
    seeded = build_training_model(tiny(zero_init_output=False)).predict(audio, verbose=0)
    assert np.all(zero == 0)
    assert np.abs(seeded).max() > 1e-3


def test_gelu_written_with_erf_is_keras_exact_gelu():
    x = np.linspace(-6, 6, 1001, dtype=np.float32)
    exact = keras.ops.convert_to_numpy(keras.activations.gelu(x, approximate=False))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(gelu_erf(x)), exact, atol=GELU_ATOL)


def test_save_and_load_give_identical_outputs(tmp_path):
    model = build_training_model(tiny(zero_init_output=False))
    audio = np.random.default_rng(2).normal(0, 0.1, (2, WINDOW)).astype(np.float32)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = load_checkpoint(path)
    np.testing.assert_array_equal(loaded.predict(audio, verbose=0), model.predict(audio, verbose=0))
    assert core_network_of(loaded).name == "core_network"


def test_load_checkpoint_refuses_missing_and_foreign_files(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_checkpoint(tmp_path / "none.keras")
    text = tmp_path / "notes.keras"
    text.write_text("not a model")
    with pytest.raises(UserError, match="not a .keras model file"):
        load_checkpoint(text)


def test_sdr_and_loss_of_the_mixture_spectrum_and_of_silence():
    config = tiny()
    contract = ModelContract(window_samples=WINDOW)
    target = np.random.default_rng(3).normal(0, 0.1, (2, 1, WINDOW)).astype(np.float32)
    # (B, T, F, 2) -> (B, 1, T, 2F): the network's interleaved layout
    estimate = to_network_input(target[:, 0], contract).reshape(2, 1, 16, 2048)
    silence = np.zeros_like(estimate)
    loss = SpectralLoss(config.n_fft, config.hop_length)
    assert float(loss(target, estimate)) < 1e-5
    assert float(loss(target, silence)) > 0.01
    # The metric's iSTFT is the host's: the SDR of the host's reconstruction, in numpy.
    host = from_network_output(estimate, contract)
    expected = 10 * np.log10((target**2).sum(-1) / ((target - host) ** 2).sum(-1))
    got = keras.ops.convert_to_numpy(sdr(target, estimate, 2048, 512))
    np.testing.assert_allclose(got, expected, atol=0.01)
    # white noise loses its Nyquist bin and the window edges: ~31 dB, not infinity
    assert np.all(got > 25)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(sdr(target, silence, 2048, 512)), 0, atol=1e-4
    )
    metric = SignalToDistortionRatio(2048, 512)
    metric.update_state(target, silence)
    metric.update_state(target, estimate)
    assert float(metric.result()) == pytest.approx(got.mean() / 2, abs=0.01)
    waves = keras.ops.convert_to_numpy(prediction_to_waveform(estimate, 2048, 512))
    assert waves.shape == (2, 1, WINDOW)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"window_samples": 8192}, "divisible by"),
        ({"window_samples": 7000}, "multiple of hop_length"),
        ({"channels": 0}, "channels must be a positive integer"),
        ({"sources": ()}, "at least one stem"),
    ],
)
def test_bad_configs_are_refused_with_a_reason(changes, message):
    with pytest.raises(UserError, match=message):
        preset_config("tiny", **changes)


def test_config_round_trips_through_a_dict():
    config = tiny(sources=("vocals", "bass"))
    assert ModelConfig.from_dict(config.to_dict()) == config
    with pytest.raises(UserError, match="unknown preset"):
        preset_config("huge")


def test_a_compiled_checkpoint_with_a_schedule_loads_in_a_fresh_process(tmp_path):
    # A fresh interpreter: nothing but load_checkpoint may register the schedule and losses.
    import subprocess
    import sys
    from pathlib import Path

    from train.fit import TrainSettings, compile_model

    config = tiny(n_scales=1, block_size=1)
    model = build_training_model(config)
    compile_model(model, config, TrainSettings(lr=1e-3, warmup_steps=10, accumulation_steps=0))
    path = tmp_path / "scheduled.keras"
    model.save(path)
    script = (
        "import sys; from train.model import load_checkpoint; "
        "m = load_checkpoint(sys.argv[1], compile=True); "
        "print(type(m.optimizer._learning_rate).__name__, m.loss.name)"
    )
    repo = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-c", script, str(path)],
        capture_output=True,
        text=True,
        cwd=repo,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["WarmupDecay", "spectral_loss"]
