"""The benchmarks run (smoke runs, no timing assertions) and count FLOPs correctly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from benchmarks import bench_inference
from stream_sep.engine import fitting
from stream_sep.settings import Settings

REPO = Path(__file__).resolve().parent.parent


def _graph_with_known_flops(path: Path) -> float:
    """x (B, 4, 8, 8) -> Conv 3x3 to 6 channels -> ConvTranspose 2x2/2 to 5 -> MatMul (16 -> 3)
    -> Gemm-free reshape. Returns the FLOPs at batch 1, counted by hand."""
    rng = np.random.default_rng(0)
    weights = {
        "conv_w": rng.standard_normal((6, 4, 3, 3)).astype(np.float32),
        "deconv_w": rng.standard_normal((6, 5, 2, 2)).astype(np.float32),
        "dense_w": rng.standard_normal((16, 3)).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "conv_w"], ["c"], pads=[1, 1, 1, 1]),  # (B, 6, 8, 8)
        helper.make_node("ConvTranspose", ["c", "deconv_w"], ["d"], strides=[2, 2]),  # (B,5,16,16)
        helper.make_node("MatMul", ["d", "dense_w"], ["y"]),  # (B, 5, 16, 3)
    ]
    graph = helper.make_graph(
        nodes,
        "known",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 5, 16, 3])],
        [numpy_helper.from_array(v, k) for k, v in weights.items()],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    conv = 2 * (6 * 8 * 8) * (4 * 3 * 3)  # every output element: a 4x3x3 dot product
    deconv = 2 * (6 * 8 * 8) * (5 * 2 * 2)  # every input element scatters into 5x2x2 outputs
    dense = 2 * (5 * 16 * 3) * 16
    return float(conv + deconv + dense)


def test_count_flops_matches_a_hand_count(tmp_path):
    expected = _graph_with_known_flops(tmp_path / "known.onnx")
    flops, params = bench_inference.count_flops(tmp_path / "known.onnx", batch=1)
    assert flops == expected
    assert params == 6 * 4 * 9 + 6 * 5 * 4 + 16 * 3
    assert bench_inference.count_flops(tmp_path / "known.onnx", batch=2)[0] == 2 * expected


def _run(name: str, out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", name, "--smoke", "--out", str(out), *extra],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=600,
    )


def test_engine_benchmark_smoke(tmp_path):
    result = _run("bench_engine", tmp_path)
    assert result.returncode == 0, result.stderr
    data = json.loads((tmp_path / "engine.json").read_text())
    (row,) = data["rows"]
    assert row["model"] == "test"
    for key in ("stft_ms", "core_ms", "istft_ms", "resample_down_ms", "resample_up_ms"):
        assert np.isfinite(row[key]) and row[key] > 0, key
    # A 0.5 s hop at 48 kHz runs two windows per second of audio.
    assert row["windows_per_audio_s"] == pytest.approx(2.0, abs=0.3)
    assert row["total_ms_per_audio_s"] > row["engine_ms_per_audio_s"] > 0
    markdown = (tmp_path / "engine.md").read_text()
    assert markdown.count("\n| test |") == 1
    assert "| test |" in result.stdout


@pytest.mark.slow
def test_inference_benchmark_smoke_on_the_tiny_preset(tmp_path):
    """Exports the tiny preset (cached in ~/.cache/stream-sep/bench), runs it through the
    host and through Keras; about a minute when the export is not cached yet."""
    pytest.importorskip("tf2onnx", reason="the train extra is needed to export the presets")
    result = _run("bench_inference", tmp_path)
    assert result.returncode == 0, result.stderr
    data = json.loads((tmp_path / "inference.json").read_text())
    (row,) = data["rows"]
    assert (row["preset"], row["precision"], row["batch"]) == ("tiny", "fp32", 1)
    assert row["provider"] in ("cpu", "cuda", "tensorrt")
    assert 3.0 < row["params_m"] < 5.0  # the tiny preset: 3.8 M parameters
    assert row["gflop"] > 1.0
    for key in ("host_median_ms", "model_median_ms", "keras_host_ms", "keras_model_ms"):
        assert np.isfinite(row[key]) and row[key] > 0, key
    assert row["host_median_ms"] >= row["model_median_ms"]
    assert row["speedup"] == pytest.approx(row["keras_host_ms"] / row["host_median_ms"])
    markdown = (tmp_path / "inference.md").read_text()
    assert bench_inference.HEADER in markdown
    assert "| tiny | 3.8 M | fp32 |" in markdown


def test_inference_benchmark_measures_a_given_model_file(tmp_path):
    """--model: the shipped model itself (trained weights), with the default hop's load."""
    result = _run("bench_inference", tmp_path, "--model", "bundled")
    assert result.returncode == 0, result.stderr
    data = json.loads((tmp_path / "inference.json").read_text())
    (row,) = data["rows"]
    assert (row["preset"], row["precision"], row["batch"]) == ("vocals-mir1k.onnx", "fp32", 1)
    assert row["keras_host_ms"] is None
    assert row["load"]["0.5"] == pytest.approx(row["host_median_ms"] / 1e3 / 0.5)
    assert "load @0.5 s hop (default)" in (tmp_path / "inference.md").read_text()


def test_memory_benchmark_smoke(tmp_path):
    result = _run("bench_memory", tmp_path)
    assert result.returncode == 0, result.stderr
    rows = json.loads((tmp_path / "memory.json").read_text())["rows"]
    assert [(r["command"], r["minutes"]) for r in rows] == [
        ("separate", 0.1),
        ("live file input", 0.1),
        ("separate", 0.3),
        ("live file input", 0.3),
    ]
    for row in rows:
        assert 10 < row["peak_rss_mb"] < 4000 and row["seconds"] > 0, row
    assert "| separate | 0.1 min |" in (tmp_path / "memory.md").read_text()


def test_latency_benchmark_smoke_reports_both_plans_and_a_fitted_live_plan(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.bench_latency",
            "--smoke",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "latency.json").read_text())
    live_plan, throughput, ratio = report["offline"]
    # The throughput plan computes fewer model rows per second of audio than the live plan
    # (a window every half window instead of every 0.5 s): counted, not timed.
    assert throughput["model_rows_per_audio_s"] < live_plan["model_rows_per_audio_s"] / 2
    for row in report["live"]:
        assert row["load"] <= fitting.LOAD_CEILING and row["compute_s"] <= row["hop_s"]
        total = row["lookahead_s"] + row["hop_s"] + row["crossfade_s"] + row["compute_s"]
        assert abs(total - row["latency_s"]) < 1e-3
    assert (tmp_path / "latency.md").read_text().startswith("# Fitting the machine")
    # it times what the host runs: its default window options (the Wiener post-filter)
    assert report["window_options"] == Settings().window_options()
    assert report["window_options"]["postfilter"] == "wiener"
