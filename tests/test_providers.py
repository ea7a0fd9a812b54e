"""Execution provider choice: truthful, quiet, and an explicit GPU request is never a silent
CPU run.

These tests run where there is no GPU (CI, this machine). ONNX Runtime here is the real
onnxruntime-gpu: asked for CUDA or TensorRT it prints library errors and falls back to the
CPU. Where a test needs "a GPU is present" it replaces only the driver's device count; the
provider failures that follow are ONNX Runtime's own.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stream_sep import cli
from stream_sep.errors import UserError
from stream_sep.models import providers
from stream_sep.models.loading import load_model
from tests.helpers import gain_model

pytestmark = pytest.mark.skipif(
    providers.cuda_device_count() > 0, reason="a CUDA GPU is present: these tests are for none"
)

# What ONNX Runtime prints when a GPU provider fails to start; none may reach the user.
ORT_NOISE = ("onnxruntime", "EP Error", "Failed to load", "provider_bridge", "[E:", "[W:")
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def model_path(tmp_path):
    return gain_model(tmp_path / "tiny.onnx", gain=0.5)


@pytest.fixture
def fake_gpu(monkeypatch):
    """The driver reports one CUDA device; ONNX Runtime's providers still fail for real."""
    monkeypatch.setattr(providers, "cuda_device_count", lambda: 1)


def assert_no_ort_text(text: str) -> None:
    for noise in ORT_NOISE:
        assert noise not in text, f"ONNX Runtime output reached the user: {text!r}"


def test_auto_picks_the_cpu_and_says_why():
    choice = providers.choose("auto")
    assert choice.name == "cpu"
    assert choice.providers == ["CPUExecutionProvider"]
    assert choice.reason == "CPU, because no CUDA GPU was found (no NVIDIA driver or device)"


@pytest.mark.parametrize("name", ["cuda", "tensorrt"])
def test_explicit_gpu_request_without_a_gpu_is_a_user_error(name):
    with pytest.raises(providers.ProviderUnavailable) as caught:
        providers.choose(name)
    message = str(caught.value)
    assert message.startswith(f"--provider {name} cannot be used here: no CUDA GPU")
    assert "\n" not in message
    assert isinstance(caught.value, UserError)


def test_unknown_provider_names_the_value_and_the_choices():
    with pytest.raises(
        UserError, match=r"--provider must be one of auto, tensorrt, cuda, cpu, got 'gpu'"
    ):
        providers.candidates("gpu")


def test_a_gpu_provider_that_falls_back_is_detected_and_kept_quiet(model_path, capfd):
    """Real onnxruntime-gpu, CUDA asked for, no GPU: it prints errors and runs on the CPU.
    create_session must notice (from the session, not from availability) and say it in
    one line, with ONNX Runtime's text captured."""
    choice = providers.ProviderChoice("cuda", providers.gpu_providers("cuda"), "test")
    options = providers.session_options(choice)
    with pytest.raises(providers.ProviderUnavailable) as caught:
        providers.create_session(model_path.read_bytes(), choice, options)
    message = str(caught.value)
    assert message.startswith("the cuda provider did not start (")
    assert "\n" not in message
    out, err = capfd.readouterr()
    assert_no_ort_text(out + err)


def test_auto_with_a_gpu_whose_providers_fail_runs_on_the_cpu_and_says_why(
    model_path, fake_gpu, capfd
):
    session, choice = providers.open_session(model_path.read_bytes(), "auto")
    assert providers.active_provider(session) == "cpu"
    assert choice.name == "cpu"
    assert choice.reason.startswith("CPU, because tensorrt: the tensorrt provider did not start")
    assert "cuda: the cuda provider did not start" in choice.reason
    assert "\n" not in choice.reason
    out, err = capfd.readouterr()
    assert_no_ort_text(out + err)


def test_explicit_cuda_with_a_gpu_whose_provider_fails_is_an_error(model_path, fake_gpu, capfd):
    with pytest.raises(providers.ProviderUnavailable) as caught:
        load_model(model_path, "cuda")
    assert str(caught.value).startswith(
        "--provider cuda cannot be used here: the cuda provider did not start ("
    )
    out, err = capfd.readouterr()
    assert_no_ort_text(out + err)


def test_summary_names_the_missing_library_and_requirement():
    text = (
        "\x1b[1;31m2026-11-24 [E:onnxruntime:Default, provider_bridge_ort.cc:2458 operator()] "
        "Failed to load library libonnxruntime_providers_cuda.so with error: libcudnn.so.9: "
        "cannot open shared object file: No such file or directory\n\x1b[m"
        "[W:onnxruntime:Default] Failed to create CUDAExecutionProvider. Require cuDNN 9.* "
        "and CUDA 13.*. Please install all dependencies"
    )
    assert providers.summarize_failure("cuda", text) == (
        "the cuda provider did not start (libcudnn.so.9 is missing; it needs cuDNN 9.* and CUDA 13.*)"
    )
    assert providers.summarize_failure("cuda", "") == (
        "the cuda provider did not start (ONNX Runtime could not start it)"
    )


def test_captured_native_output_takes_file_descriptor_writes(capfd):
    with providers.captured_native_output() as captured:
        os.write(2, b"native stderr\n")
        os.write(1, b"native stdout\n")
        print("python print")
    assert "native stderr" in captured.getvalue()
    assert "native stdout" in captured.getvalue()
    assert "python print" in captured.getvalue()
    os.write(2, b"after\n")
    out, err = capfd.readouterr()
    assert "native" not in out + err and "python print" not in out + err
    assert err == "after\n"


@pytest.mark.parametrize(("cores", "threads"), [(1, 1), (2, 2), (3, 2), (4, 3), (16, 15)])
def test_cpu_threads_leave_a_core_for_the_audio_thread(cores, threads):
    assert providers.cpu_threads(cores) == threads


def test_cpu_session_options_use_the_cores_and_do_not_spin(monkeypatch):
    monkeypatch.delenv(providers.THREADS_ENV, raising=False)
    options = providers.session_options(providers.choose("cpu"))
    assert options.intra_op_num_threads == providers.cpu_threads()
    assert options.inter_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.get_session_config_entry("session.set_denormal_as_zero") == "1"


@pytest.mark.parametrize("threads", [1, 3])
def test_threads_environment_variable_sets_the_intra_op_threads(monkeypatch, model_path, threads):
    monkeypatch.setenv(providers.THREADS_ENV, f" {threads} ")
    assert providers.session_options(providers.choose("cpu")).intra_op_num_threads == threads
    assert load_model(model_path, "cpu").session.get_session_options().intra_op_num_threads == (
        threads
    )


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
def test_cli_refuses_a_bad_threads_variable_in_one_line(tmp_path, model_path, capsys, value):
    audio = _wav(tmp_path / "in.wav")
    argv = ["separate", str(audio), "-o", str(tmp_path / "out"), "--model", str(model_path)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(providers.THREADS_ENV, value)
        status = cli.main([*argv, "--provider", "cpu"])
    err = capsys.readouterr().err
    assert status == 2
    assert err == (
        f"stream-sep: error: STREAM_SEP_THREADS must be a positive whole number of threads, "
        f"got {value!r}\n"
    )
    assert not (tmp_path / "out" / "in").exists()


def test_gpu_provider_options(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    trt, cuda, cpu = providers.gpu_providers("tensorrt", graph_capture=True)
    assert trt[0] == "TensorrtExecutionProvider"
    assert trt[1]["trt_engine_cache_path"] == str(tmp_path / "stream-sep" / "tensorrt")
    assert trt[1]["trt_engine_cache_enable"] == "True"
    assert trt[1]["trt_cuda_graph_enable"] == "True"
    # Under TensorRT the CUDA provider takes leftovers only: no CUDA graph there.
    assert cuda[1]["enable_cuda_graph"] == "0"
    assert cpu == "CPUExecutionProvider"
    cuda, cpu = providers.gpu_providers("cuda", graph_capture=True)
    assert cuda[1]["enable_cuda_graph"] == "1"
    assert cpu == "CPUExecutionProvider"
    assert cuda[1]["cudnn_conv_algo_search"] == "EXHAUSTIVE"
    assert providers.gpu_providers("cuda")[0][1]["enable_cuda_graph"] == "0"


def _wav(path: Path) -> Path:
    rng = np.random.default_rng(0)
    sf.write(path, (0.1 * rng.standard_normal((4000, 2))).astype(np.float32), 16000)
    return path


@pytest.mark.parametrize("name", ["cuda", "tensorrt"])
def test_cli_explicit_gpu_provider_fails_with_one_line(tmp_path, model_path, capsys, name):
    audio = _wav(tmp_path / "in.wav")
    argv = ["separate", str(audio), "-o", str(tmp_path / "out"), "--model", str(model_path)]
    status = cli.main([*argv, "--provider", name])
    captured = capsys.readouterr()
    assert status == 2
    assert captured.err.count("\n") == 1
    assert captured.err.startswith(f"stream-sep: error: --provider {name} cannot be used here: ")
    assert not (tmp_path / "out" / "in").exists()


def _run_separate(tmp_path, model_path, snippet_prefix: str = "") -> subprocess.CompletedProcess:
    audio = _wav(tmp_path / "in.wav")
    argv = [
        "separate", str(audio), "-o", str(tmp_path / "out"), "--model", str(model_path),
        "--provider", "auto", "-v", "--quiet",
        "--hop", "0.1", "--lookahead", "0.05", "--crossfade", "0.02",
    ]  # fmt: skip
    code = snippet_prefix + f"import sys; from stream_sep import cli; sys.exit(cli.main({argv!r}))"
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120
    )


def test_separate_auto_verbose_says_why_in_one_line_without_ort_text(tmp_path, model_path):
    result = _run_separate(tmp_path, model_path)
    assert result.returncode == 0, result.stderr
    lines = [
        line for line in result.stderr.splitlines() if line.startswith("stream-sep: provider ")
    ]
    assert lines == [
        "stream-sep: provider cpu: CPU, because no CUDA GPU was found (no NVIDIA driver or device)"
    ]
    assert_no_ort_text(result.stdout + result.stderr)
    assert (tmp_path / "out" / "in" / "karaoke.wav").is_file()


def test_separate_auto_with_failing_gpu_providers_is_quiet(tmp_path, model_path):
    """A process where the driver reports a GPU but ONNX Runtime cannot use it: all of
    ONNX Runtime's native output is caught, one line says why the CPU runs."""
    fake = "from stream_sep.models import providers; providers.cuda_device_count = lambda: 1; "
    result = _run_separate(tmp_path, model_path, fake)
    assert result.returncode == 0, result.stderr
    lines = [
        line for line in result.stderr.splitlines() if line.startswith("stream-sep: provider ")
    ]
    assert len(lines) == 1
    assert lines[0].startswith("stream-sep: provider cpu: CPU, because tensorrt: the tensorrt")
    assert_no_ort_text(result.stdout + result.stderr)


def test_cpu_description_names_the_processor_and_the_usable_cores(monkeypatch):
    names = [
        line.split(":", 1)[1].strip()
        for line in Path("/proc/cpuinfo").read_text().splitlines()
        if line.startswith("model name")
    ]
    cores = len(os.sched_getaffinity(0))
    assert providers.cpu_description() == f"{names[0] if names else 'CPU'}, {cores} cores"
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})  # a process held to one core
    assert providers.cpu_description().endswith(", 1 core")
