"""Smoke runs of the quality benchmarks (post-filter, high band) with the bundled model on
generated audio: they run end to end and write what they promise."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

from tests.helpers import write_mir1k_like

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def load_benchmark(name: str):
    return importlib.import_module(f"benchmarks.{name}")


def test_postfilter_benchmark_scores_every_variant_and_times_it(tmp_path):
    data = tmp_path / "mir1k"
    write_mir1k_like(data, ["ann", "bo"], clips=1, seconds=1.0)
    report_path, table = tmp_path / "pf.json", tmp_path / "pf.md"
    benchmark = load_benchmark("postfilter_quality")
    status = benchmark.main(
        ["--data", str(data), "--singers", "ann", "--also", "bo", "--also-every", "1",
         "--variants", "none,wiener", "--timing-runs", "1",
         "--json", str(report_path), "--md", str(table)]
    )  # fmt: skip
    assert status == 0
    report = json.loads(report_path.read_text())
    assert report["clips"] == 2
    assert set(report["summary"]) == {"all clips", "--singers ann", "--also bo"}
    assert report["model_calls"] > 0
    row = report["summary"]["all clips"]["wiener"]
    assert row["clips"] == 2 and row["gain_mean"] != 0.0
    assert report["costs"]["48 kHz x2"]["wiener"]["postfilter_seconds"] > 0
    assert "| wiener |" in table.read_text()


def test_high_band_benchmark_measures_each_removal(tmp_path):
    report_path, table = tmp_path / "hb.json", tmp_path / "hb.md"
    benchmark = load_benchmark("high_band_voice")
    status = benchmark.main(
        ["--songs", "1", "--seconds", "3", "--removals", "0,1",
         "--json", str(report_path), "--md", str(table)]
    )  # fmt: skip
    assert status == 0
    summary = json.loads(report_path.read_text())["summary"]
    assert summary["0.0"]["voice_kept_db"] == pytest.approx(0.0, abs=0.2)  # all of it stays
    assert summary["1.0"]["voice_kept_db"] < summary["0.0"]["voice_kept_db"]
    assert "| 1.0 |" in table.read_text()
