"""benchmarks/bench_providers.py: every variant is timed at both batches in one interleaved
run, the other-environment worker answers in the same round-robin, and the SDR cost is
scored against the default on the same clips (smoke runs: no timing assertions)."""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from benchmarks import bench_providers
from stream_sep.models.contract import ModelContract
from stream_sep.models.loading import load_model
from tests.helpers import gain_model

REPO = Path(__file__).resolve().parent.parent

LOCAL = [
    "default",
    "intra-op 1",
    "spinning on",
    "level EXTENDED",
    "level BASIC",
    "NCHWc off",
    "saved optimised",
    "float16",
    "int8 dynamic",
    "int8 MatMul",
]
RATE = 16000


def _mir1k_folder(folder: Path) -> Path:
    """One MIR-1K-style clip: channel 0 accompaniment, channel 1 vocals, independent noise of
    equal power, so 0.5 x the mixture scores 10 log10(2) = 3.01 dB of vocals SDR."""
    folder.mkdir()
    rng = np.random.default_rng(3)
    sf.write(folder / "abjones_1_01.wav", 0.1 * rng.standard_normal((3 * RATE, 2)), RATE)
    sf.write(folder / "bobo_1_01.wav", 0.1 * rng.standard_normal((3 * RATE, 2)), RATE)
    return folder


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    folder = tmp_path_factory.mktemp("providers")
    mir1k = _mir1k_folder(folder / "mir1k")
    argv = ["--smoke", "--out", str(folder / "providers"), "--other-python", sys.executable,
            "--mir1k", str(mir1k), "--singers", "abjones"]  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_providers", *argv],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((folder / "providers.json").read_text())
    return report, (folder / "providers.md").read_text(), result.stdout


def test_every_variant_is_timed_at_both_batches_in_the_same_rounds(smoke):
    report, _, _ = smoke
    names = [variant["name"] for variant in report["variants"]]
    version = next(v["onnxruntime"] for v in report["variants"] if v["name"] == "default")
    other = [f"{name}, onnxruntime {version}" for name in ("cpu", "openvino", "openvino static")]
    assert names == LOCAL + other
    ran = [v["name"] for v in report["variants"] if v["error"] is None]
    assert ran == LOCAL + other[:1]  # this environment's onnxruntime has no OpenVINO
    assert [(row["variant"], row["batch"]) for row in report["rows"]] == [
        (name, batch) for batch in (1, 2) for name in ran
    ]
    for row in report["rows"]:
        times = report["times_s"][row["variant"]][str(row["batch"])]
        assert len(times) == row["runs"] == report["rounds"] == 2
        assert all(math.isfinite(t) and t > 0 for t in times)
        assert row["median_ms"] == pytest.approx(1000 * np.median(times))
        assert row["min_ms"] <= row["median_ms"] <= row["p90_ms"]
        default = np.median(report["times_s"]["default"][str(row["batch"])])
        assert row["ratio_to_default"] == pytest.approx(np.median(times) / default)


def test_the_variants_compute_the_default_model(smoke):
    """On the gain model every float32 variant (and the other wheel's CPU provider) gives
    the default's output exactly; float16 rounds the input and gain to 11 bits."""
    report, _, _ = smoke
    by_name = {variant["name"]: variant for variant in report["variants"]}
    for name in LOCAL[:7] + LOCAL[8:] + [next(n for n in by_name if n.startswith("cpu, "))]:
        assert by_name[name]["output_identical"], name
    assert not by_name["float16"]["output_identical"]
    assert 50 < by_name["float16"]["output_snr_db"] < 120
    openvino = [v for n, v in by_name.items() if n.startswith("openvino")]
    assert len(openvino) == 2
    for variant in openvino:
        assert variant["error"] == "OpenVINOExecutionProvider is not in this onnxruntime build"
    assert set(report["facts"]["nchwc_nodes"]) == {"default", "NCHWc off"}
    assert report["facts"]["load_s"]["saved_optimised_s"] > 0


def test_the_default_is_scored_on_the_held_out_clips(smoke):
    report, _, _ = smoke
    # The default and the other precisions; every other output equals the default's.
    assert list(report["quality"]) == ["default", "float16", "int8 dynamic", "int8 MatMul"]
    for name, item in report["quality"].items():
        assert [clip["name"] for clip in item["per_clip"]] == ["abjones_1_01"]
        assert item["vocals_sdr"] == pytest.approx(10 * np.log10(2), abs=0.1)
        assert item["cost_db"] == pytest.approx(0.0, abs=0.01), name


def test_the_results_say_where_and_when_and_print_the_table(smoke):
    report, markdown, stdout = smoke
    run = report["run"]
    assert "cores" in run["machine"] and run["date"] and run["load_average_before"] >= 0
    assert run["command"].startswith("python -m benchmarks bench_providers --smoke")
    assert f"on {run['machine']}" in markdown and f"`{run['command']}`" in markdown
    assert "| default | 1 |" in markdown and "| float16 | 2 |" in markdown
    assert "| openvino, onnxruntime" in markdown and "**not run**" in markdown
    assert "### Quality: vocals SDR on MIR-1K" in markdown
    assert markdown in stdout


def test_sdr_cost_is_paired_against_the_default_also_through_the_worker(tmp_path):
    """A variant at gain 0.25 scores 10 log10(1 / 0.625) = 2.04 dB where the default (0.5)
    scores 3.01: a cost of -0.97 dB, computed by the worker process."""
    mir1k = _mir1k_folder(tmp_path / "mir1k")
    half = gain_model(tmp_path / "half.onnx", 0.5, ModelContract())
    quarter = gain_model(tmp_path / "quarter.onnx", 0.25, ModelContract())
    default = bench_providers.Variant("default", "", load_model(half, "cpu"))
    remote, worker, error = bench_providers.remote_variants(sys.executable, quarter)
    assert error is None
    try:
        args = argparse.Namespace(mir1k=str(mir1k), singers="abjones", every=1)
        snr = {"default": math.inf, remote[0].name: 6.0, remote[1].name: 0.0}
        summary = bench_providers.quality([default, remote[0]], snr, args)
    finally:
        worker.close()
    assert summary["default"]["vocals_sdr"] == pytest.approx(10 * np.log10(2), abs=0.1)
    assert summary[remote[0].name]["vocals_sdr"] == pytest.approx(10 * np.log10(1.6), abs=0.1)
    assert summary[remote[0].name]["cost_db"] == pytest.approx(10 * np.log10(0.8), abs=0.05)


def test_a_wrong_singer_is_one_line_before_any_timing(tmp_path):
    mir1k = _mir1k_folder(tmp_path / "mir1k")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.bench_providers",
            "--smoke",
            "--out",
            str(tmp_path / "p"),
            "--mir1k",
            str(mir1k),
        ],  # fmt: skip
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr == (
        "bench_providers: --singers: no clips of 'amy' in "
        f"{str(mir1k)!r}; singers there: abjones, bobo\n"
    )
    assert not (tmp_path / "p.json").exists()


def test_each_round_starts_one_variant_later():
    assert bench_providers.rotated(["a", "b", "c"], 0) == ["a", "b", "c"]
    assert bench_providers.rotated(["a", "b", "c"], 1) == ["b", "c", "a"]
    assert bench_providers.rotated(["a", "b", "c"], 5) == ["c", "a", "b"]
