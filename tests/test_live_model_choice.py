"""Which bundled model a live run takes: the full-window model unless its plan misses the
latency asked for (auto: 0.6 s) and the live variant (half the window) does better.

The models are real ONNX models with the bundled contracts (4.064 s and 2.016 s windows),
made slow by a fixed sleep per window: a machine where the full window costs 0.4 s and the
short one 0.05 s, the same on every machine the suite runs on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stream_sep import cli
from stream_sep.live import host
from stream_sep.models import loading
from stream_sep.models.contract import ModelContract
from tests.helpers import Sleepy, gain_model

RATE = 48000
FULL_SECONDS, LIVE_SECONDS = 0.4, 0.05  # per window, on the pretended machine


@pytest.fixture
def bundled_pair(tmp_path, monkeypatch):
    """The bundled model and its live variant, replaced by slow gain models; returns the
    paths of the models the host loaded, in order."""
    full = gain_model(tmp_path / "vocals-mir1k.onnx", 0.5, ModelContract())
    live = gain_model(tmp_path / "vocals-live.onnx", 0.5, ModelContract(window_samples=32256))
    loaded = []

    def load(path, provider="auto"):
        chosen = full if path is None else Path(path)
        loaded.append(chosen.name)
        seconds = LIVE_SECONDS if chosen == live else FULL_SECONDS
        return Sleepy(loading.load_model(chosen, "cpu"), seconds)

    monkeypatch.setattr(host, "load_model", load)
    monkeypatch.setattr(host, "bundled_live_model_path", lambda: live)
    monkeypatch.setattr(host, "bundled_model_path", lambda: full)
    return loaded


@pytest.fixture
def song(tmp_path):
    path = tmp_path / "in.wav"
    tone = 0.2 * np.sin(2 * np.pi * 220 * np.arange(RATE // 2) / RATE)
    sf.write(path, tone.astype(np.float32), RATE, subtype="FLOAT")
    return path


def run(song, tmp_path, capsys, *options) -> tuple[int, str]:
    argv = ["--input", str(song), "--output", str(tmp_path / "out.wav"), "--quiet", *options]
    return cli.main(argv), capsys.readouterr().err


def latency(err: str) -> float:
    line = next(text for text in err.splitlines() if "algorithmic latency" in text)
    return float(line.split("algorithmic latency ")[1].split(" s")[0])


def test_auto_takes_the_live_variant_when_the_full_window_plan_is_over_0_6_s(
    bundled_pair, song, tmp_path, capsys
):
    rc, err = run(song, tmp_path, capsys, "--latency", "auto")
    assert rc == 0, err
    assert bundled_pair == ["vocals-mir1k.onnx", "vocals-live.onnx"]
    assert "model vocals-live.onnx on cpu" in err
    note = next(text for text in err.splitlines() if "aims at 0.6 s or less" in text)
    full, live = (float(part.split(" s")[0]) for part in note.split("plan here is ")[1:2]
                  + note.split("variant's ")[1:2])  # fmt: skip
    assert live < full and full > host.AUTO_TARGET
    assert latency(err) == pytest.approx(live, abs=0.001)


def test_a_latency_the_full_window_cannot_meet_takes_the_live_variant(
    bundled_pair, song, tmp_path, capsys
):
    rc, err = run(song, tmp_path, capsys, "--latency", "1.0")
    assert rc == 0, err
    assert "the full-window model cannot meet --latency 1 here" in err
    assert "model vocals-live.onnx on cpu" in err and latency(err) == pytest.approx(1.0)


def test_a_latency_the_full_window_meets_keeps_it(bundled_pair, song, tmp_path, capsys):
    rc, err = run(song, tmp_path, capsys, "--latency", "2.5")
    assert rc == 0, err
    assert bundled_pair == ["vocals-mir1k.onnx"]  # the live variant is not even loaded
    assert "model vocals-mir1k.onnx on cpu" in err and latency(err) == pytest.approx(2.5)


def test_below_both_is_one_line_naming_the_lower_of_the_two(bundled_pair, song, tmp_path, capsys):
    rc, err = run(song, tmp_path, capsys, "--latency", "0.15")
    assert rc == 2
    lines = [line for line in err.splitlines() if "error" in line or "must be" in line]
    assert len(lines) == 1 and "--latency must be at least" in lines[0], err
    lowest = float(lines[0].split("at least ")[1].split(" s")[0])
    assert lowest < 0.6  # the live variant's, not the full window's (about 1.8 s)


def test_model_forces_the_model(bundled_pair, song, tmp_path, capsys):
    chosen = gain_model(tmp_path / "mine.onnx", 0.5, ModelContract())
    rc, err = run(song, tmp_path, capsys, "--latency", "auto", "--model", str(chosen))
    assert rc == 0, err
    assert bundled_pair == ["mine.onnx"] and "model mine.onnx on cpu" in err


def test_auto_prefers_every_channel_then_the_full_window_within_the_target():
    """host.auto_choice on fitted (model, options, line, latency, stereo) tuples."""
    full_mid, full_batch = ("full", {}, "", 0.55, "mid"), ("full", {}, "", 0.5, "batch")
    live_batch, live_mid = ("live", {}, "", 0.58, "batch"), ("live", {}, "", 0.4, "mid")
    assert host.auto_choice(full_mid, live_batch) is live_batch  # both channels first
    assert host.auto_choice(full_batch, live_mid) is full_batch
    assert host.auto_choice(full_mid, live_mid) is full_mid  # then the full window
    slow_full, slow_live = ("full", {}, "", 1.2, "mid"), ("live", {}, "", 0.9, "batch")
    assert host.auto_choice(slow_full, slow_live) is slow_live  # none within: the lowest
