"""The inference runner: IOBinding with preallocated buffers, per-batch sessions, fp16 exports.

The GPU path (device buffers, host<->device copies, one static-shape session per batch size)
is the same code with ``device="cuda"``; here it runs with CPU OrtValues, which ONNX Runtime
allows, so everything but the device itself is exercised.
"""

from __future__ import annotations

import logging
import threading

import numpy as np
import onnx
import pytest

from stream_sep.dsp import spectral
from stream_sep.errors import UserError
from stream_sep.models import providers
from stream_sep.models.loading import load_model
from stream_sep.models.runtime import Runner, SeparationModel
from tests.helpers import gain_model, noise, small_contract

# fp16 I/O and weights: 11-bit mantissas, so ~1e-3 relative; the signals here peak near 1.
FP16_ABSOLUTE = 5e-3


@pytest.fixture
def model_path(tmp_path):
    bins = small_contract().n_bins
    gain = np.linspace(0.1, 0.9, bins)  # a known per-bin "vocal" share
    return gain_model(tmp_path / "gain.onnx", gain=gain)


def expected_vocals(audio: np.ndarray, path) -> np.ndarray:
    """What the gain model must return: (B, W) -> (B, 1, W), via the host's own DSP."""
    model = onnx.load(path)
    gain = onnx.numpy_helper.to_array(model.graph.initializer[1])  # (1, 1, 1, 2F)
    contract = small_contract()
    spectrogram = spectral.to_network_input(audio, contract)
    batch = audio.shape[0]
    output = spectrogram.reshape(batch, 1, contract.frames, 2 * contract.n_bins) * gain
    return spectral.from_network_output(output, contract)


def gpu_style_model(path) -> SeparationModel:
    """The GPU code path on CPU OrtValues: staged device buffers, a session per batch size."""
    plain = load_model(path, "cpu")
    runner = Runner(
        path.read_bytes(),
        plain.session,
        providers.choose("cpu"),
        plain.contract,
        staged=True,
        per_batch_sessions=True,
        model_folder=path.parent,
    )
    return SeparationModel(runner, plain.contract, path, "test")


def test_separate_matches_the_known_model(model_path):
    model = load_model(model_path, "cpu")
    audio = noise(2, model.contract.window_samples)
    got = model.separate(audio)
    assert got.shape == (2, 1, model.contract.window_samples)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected_vocals(audio, model_path), atol=1e-6)


def save_with_external_data(source, folder):
    """Re-save ``source`` with its weights in ``weights.bin`` beside the model file."""
    folder.mkdir()
    target = folder / "external.onnx"
    onnx.save_model(
        onnx.load(source),
        target,
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="weights.bin",
        size_threshold=256,  # the weights, not the small shape constants
    )
    assert (folder / "weights.bin").stat().st_size > 0
    return target


def test_external_data_is_found_beside_the_model_from_any_working_directory(
    model_path, tmp_path, monkeypatch
):
    external = save_with_external_data(model_path, tmp_path / "models")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    audio = noise(2, small_contract().window_samples)
    for model in (load_model(external, "cpu"), gpu_style_model(external)):
        np.testing.assert_allclose(
            model.separate(audio), expected_vocals(audio, model_path), atol=1e-6
        )


def test_missing_external_data_is_one_clear_line(model_path, tmp_path):
    external = save_with_external_data(model_path, tmp_path / "models")
    (tmp_path / "models" / "weights.bin").unlink()
    with pytest.raises(UserError) as raised:
        load_model(external, "cpu")
    message = str(raised.value)
    assert "\n" not in message
    assert "external.onnx is not a loadable ONNX model" in message and "weights.bin" in message


def test_gpu_code_path_gives_the_same_samples(model_path):
    plain = load_model(model_path, "cpu")
    staged = gpu_style_model(model_path)
    for batch in (1, 2):
        audio = noise(batch, plain.contract.window_samples, seed=batch)
        np.testing.assert_array_equal(staged.separate(audio), plain.separate(audio))
    # One static-shape session per batch size, the batch axis pinned in each.
    for batch in (1, 2):
        session = staged.runner.slot(batch).session
        assert session is not plain.session
        assert session.get_inputs()[0].shape[0] == batch


def test_buffers_are_preallocated_and_reused(model_path):
    for model in (load_model(model_path, "cpu"), gpu_style_model(model_path)):
        contract = model.contract
        first_in = model.runner.input_buffer(2)
        first = model.run_network(
            spectral.to_network_input(noise(2, contract.window_samples), contract)
        )
        for seed in (1, 2, 3):
            audio = noise(2, contract.window_samples, seed=seed)
            spectrogram = spectral.to_network_input(audio, contract)
            output = model.run_network(spectrogram)
            # Same arrays every call, and the contents follow the new input.
            assert output is first
            assert model.runner.input_buffer(2) is first_in
            gain = onnx.numpy_helper.to_array(onnx.load(model_path).graph.initializer[1])
            expected = spectrogram.reshape(output.shape) * gain
            np.testing.assert_allclose(output, expected, rtol=1e-6)


def test_cpu_path_binds_host_arrays_without_copies(model_path):
    model = load_model(model_path, "cpu")
    slot = model.runner.slot(1)
    assert model.runner.staged is False
    assert slot.session is model.session  # one session per model on the CPU
    # The STFT writes straight into the bound input; the output is the bound array.
    assert slot.staging is slot.host_in
    assert slot.output is slot.host_out
    assert slot.device_in.data_ptr() == slot.host_in.ctypes.data
    assert slot.device_out.data_ptr() == slot.host_out.ctypes.data


@pytest.mark.parametrize("batch", [1, 2])
def test_warm_up_prepares_the_batch(model_path, batch):
    model = load_model(model_path, "cpu")
    seconds = model.warm_up(batch)
    assert seconds > 0
    assert batch in model.runner._slots


def _fp16_copy(path, tmp_path, keep_io_types: bool):
    from onnxruntime.transformers.float16 import convert_float_to_float16

    half = convert_float_to_float16(onnx.load(path), keep_io_types=keep_io_types)
    target = tmp_path / f"half-{keep_io_types}.onnx"
    onnx.save(half, target)
    return target


@pytest.mark.parametrize("keep_io_types", [False, True])
def test_fp16_export_runs_and_matches(model_path, tmp_path, caplog, keep_io_types):
    half_path = _fp16_copy(model_path, tmp_path, keep_io_types)
    with caplog.at_level(logging.WARNING, logger="stream_sep.models.loading"):
        half = load_model(half_path, "cpu")
    full = load_model(model_path, "cpu")
    if keep_io_types:
        assert half.io_dtype == np.float32
    else:
        assert half.io_dtype == np.float16
        assert "float16 export: on the CPU it runs slower" in caplog.text
    audio = noise(2, full.contract.window_samples, amplitude=0.3)
    got = half.separate(audio)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, full.separate(audio), atol=FP16_ABSOLUTE)
    # The GPU code path converts on the host too.
    staged = Runner(
        half_path.read_bytes(), half.session, providers.choose("cpu"), half.contract, staged=True
    )
    again = SeparationModel(staged, half.contract, half_path).separate(audio)
    np.testing.assert_array_equal(again, got)


def test_model_reports_the_provider_and_why(model_path):
    model = load_model(model_path, "auto")
    assert model.provider == "cpu"
    assert model.provider_reason.startswith("CPU")
    assert model.runner.device == "cpu"


@pytest.mark.skipif(providers.cuda_device_count() > 0, reason="a CUDA GPU is present")
def test_load_model_with_cuda_here_is_a_user_error(model_path):
    with pytest.raises(UserError, match=r"^--provider cuda cannot be used here: no CUDA GPU"):
        load_model(model_path, "cuda")


def test_mixed_input_and_output_types_are_refused(model_path, tmp_path):
    model = onnx.load(model_path)
    model.graph.output[0].type.tensor_type.elem_type = onnx.TensorProto.FLOAT16
    cast = onnx.helper.make_node("Cast", ["sources_f32"], ["sources"], to=onnx.TensorProto.FLOAT16)
    model.graph.node[-1].output[0] = "sources_f32"
    model.graph.node.append(cast)
    target = tmp_path / "mixed.onnx"
    onnx.save(model, target)
    with pytest.raises(
        UserError, match=r"input is tensor\(float\) but output is tensor\(float16\)"
    ):
        load_model(target, "cpu")


def test_calls_from_several_threads_take_turns(model_path):
    """The buffers are per model, not per call: concurrent callers must not mix them."""
    model = load_model(model_path, "cpu")
    inputs = [noise(2, model.contract.window_samples, seed=seed) for seed in range(4)]
    expected = [expected_vocals(audio, model_path) for audio in inputs]
    errors = []

    def worker(index: int) -> None:
        for _ in range(5):
            got = model.separate(inputs[index])
            if not np.allclose(got, expected[index], atol=1e-6):
                errors.append(index)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
