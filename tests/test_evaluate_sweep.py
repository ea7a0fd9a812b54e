"""benchmarks/sdr_vs_latency.py on a tiny generated MIR-1K folder: rows, skips, PNG, JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from tests.helpers import gain_model, voice_over_band


def _load_script():
    from benchmarks import sdr_vs_latency

    return sdr_vs_latency


def test_sweep_writes_a_png_and_one_row_per_fitting_setting(tmp_path, capsys):
    data = tmp_path / "mir1k"
    data.mkdir()
    _, vocals, accompaniment = voice_over_band(1.0, 16000, 5)
    sf.write(data / "amy_1_01.wav", np.stack([accompaniment, vocals], 1), 16000, "FLOAT")
    model = gain_model(tmp_path / "half.onnx", 0.5)  # 0.48-s window: hop + lookahead <= 0.35
    png, report = tmp_path / "plot.png", tmp_path / "sweep.json"
    code = _load_script().main(
        ["--model", str(model), "--data", str(data), "--format", "mir1k",
         "--hops", "0.1,0.2", "--lookaheads", "0.05,0.3", "--out", str(png),
         "--json", str(report)]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    written = json.loads(report.read_text())
    rows = written["rows"]
    settings = [(row["hop_seconds"], row["lookahead_seconds"]) for row in rows]
    assert settings == [(0.1, 0.05), (0.2, 0.05)]  # 0.3 s lookahead does not fit
    mixture = (vocals + accompaniment).astype(np.float64)
    half = 10 * np.log10(np.sum(vocals**2.0) / np.sum((vocals - 0.5 * mixture) ** 2))
    for row in rows:
        assert row["vocals_sdr"]["mean"] == pytest.approx(half, abs=0.02)
        assert row["algorithmic_latency_seconds"] == pytest.approx(
            row["hop_seconds"] + row["lookahead_seconds"]
        )
    assert [(entry["hop"], entry["lookahead"]) for entry in written["skipped"]] == [
        (0.1, 0.3),
        (0.2, 0.3),
    ]
    assert "skipping hop 0.1 s, lookahead 0.3 s" in capsys.readouterr().out
