"""`stream-sep separate` starts quickly: no live-only module imported, no silent warm-up
window, one final line with the wall time (start-up included) and its real-time factor."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from benchmarks import separate_process
from stream_sep.cli import main
from stream_sep.commands.separate import final_line
from stream_sep.models.loading import load_model
from stream_sep.offline import separate_file
from tests.helpers import FAST_ARGS, noise
from tests.test_reliability import _allocates_a_terabyte

REPO = Path(__file__).resolve().parent.parent
FINAL = re.compile(
    r"^separated (\d+) files? \((\d+\.\d) s of audio\) in (\d+\.\d) s, "
    r"(\d+\.\d{3}) x real time including start-up$"
)
PER_FILE = re.compile(r"^\S+: \d+\.\d s separated in (\d+\.\d) s ")
# What only the live host or a batch job uses: none of it may load for files alone.
LIVE_ONLY = (
    "stream_sep.live",
    "stream_sep.live.panel",
    "stream_sep.commands.live",
    "stream_sep.batch",
    "sounddevice",
    "_sounddevice",
    "jack",
    "pedalboard",
    "http.server",
    "socketserver",
    "multiprocessing",
    "selenium",
    "onnx",
    "ray",
    "tensorflow",
    "keras",
    "tf2onnx",
    "torch",
)


def _song(path: Path, seconds: float, rate: int, channels: int, seed: int = 0) -> Path:
    subtype = "FLOAT" if path.suffix == ".wav" else "PCM_24"
    sf.write(path, noise(channels, int(seconds * rate), seed=seed).T, rate, subtype=subtype)
    return path


def test_final_line_matches_the_documented_example():
    line = final_line(1, 120.0, 9.4)
    assert line == (
        "separated 1 file (120.0 s of audio) in 9.4 s, 0.078 x real time including start-up"
    )
    assert final_line(3, 30.0, 60.0).startswith("separated 3 files (30.0 s of audio) in 60.0 s")
    assert final_line(3, 30.0, 60.0).endswith(", 2.000 x real time including start-up")


def test_final_line_counts_the_files_audio_and_wall(tmp_path, half_path, capsys):
    songs = [
        _song(tmp_path / "a.wav", 1.3, 16000, 1),
        _song(tmp_path / "b.flac", 2.05, 44100, 2, seed=1),
    ]
    before = time.perf_counter()
    code = main(
        ["separate", *map(str, songs), "-o", str(tmp_path / "out"), "--model", str(half_path)]
    )
    outside = time.perf_counter() - before
    assert code == 0
    lines = capsys.readouterr().err.strip().splitlines()
    match = FINAL.match(lines[-1])
    assert match, lines[-1]
    files, audio, wall, factor = match.groups()
    expected_audio = sum(sf.info(song).frames / sf.info(song).samplerate for song in songs)
    assert int(files) == 2
    assert float(audio) == pytest.approx(expected_audio, abs=0.05)
    assert 0.0 < float(wall) <= outside + 0.05
    per_file = [float(PER_FILE.match(line).group(1)) for line in lines[:-1]]
    assert len(per_file) == 2
    assert float(wall) >= sum(per_file) - 0.1  # the whole run holds every file's time
    # The factor is the printed wall over the printed audio, within their rounding.
    assert float(factor) == pytest.approx(float(wall) / float(audio), abs=0.05 / 3.3 + 0.001)


def test_quiet_prints_no_final_line(tmp_path, half_path, capsys):
    song = _song(tmp_path / "a.wav", 0.5, 16000, 1)
    assert (
        main(
            ["separate", str(song), "-o", str(tmp_path / "o"), "--model", str(half_path), "--quiet"]
        )
        == 0
    )
    assert capsys.readouterr().err == ""


def test_the_process_wall_time_counts_from_start_up(tmp_path, half_path):
    """Run as a process, the wall time starts at the package's import: it holds the model's
    load and the imports, so it exceeds the file's own time, and never the process' time."""
    song = _song(tmp_path / "a.wav", 1.0, 16000, 2)
    before = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "stream_sep", "separate", str(song), "-o", str(tmp_path / "o"),
         "--model", str(half_path)],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )  # fmt: skip
    outside = time.perf_counter() - before
    assert result.returncode == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    wall = float(FINAL.match(lines[-1]).group(3))
    per_file = float(PER_FILE.match(lines[0]).group(1))
    assert per_file <= wall <= outside + 0.05
    # The whole-process benchmark reads the same lines (python -m benchmarks separate_process).
    figures = separate_process.parse(result.stderr, outside)
    assert figures["reported_s"] == wall and figures["separation_s"] == per_file
    assert figures["start_up_s"] == pytest.approx(outside - per_file)
    assert figures["outside_rtf"] == pytest.approx(outside / 1.0)


_PROBE = """
import json, sys
from benchmarks import separate_process
from stream_sep.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exit:  # --help
    code = exit.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def _modules_after(*argv: str) -> tuple[int, set[str]]:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, *argv],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    return report["code"], set(report["modules"])


def test_separate_imports_no_live_only_module(tmp_path, half_path):
    song = _song(tmp_path / "a.wav", 1.0, 44100, 2)
    code, modules = _modules_after(
        "separate", str(song), "-o", str(tmp_path / "o"), "--model", str(half_path)
    )
    assert code == 0 and (tmp_path / "o" / "a" / "vocals.wav").exists()
    # The probe sees the run's own process: what separating needs is there.
    assert {"stream_sep.offline", "onnxruntime", "soxr", "soundfile"} <= modules
    assert sorted(modules & set(LIVE_ONLY)) == []


def test_separate_help_imports_no_live_only_module():
    code, modules = _modules_after("separate", "--help")
    assert code == 0 and "stream_sep.commands.separate" in modules
    assert sorted(modules & set(LIVE_ONLY)) == []
    assert "onnxruntime" not in modules  # no model is loaded for --help


def test_a_batch_job_still_finds_the_batch_runner(tmp_path, half_path, capsys):
    folder = tmp_path / "songs"
    folder.mkdir()
    _song(folder / "a.wav", 0.5, 16000, 1)
    code = main(["separate", str(folder), "-o", str(tmp_path / "o"), "--model", str(half_path)])
    assert code == 0
    assert "separated 1 song" in capsys.readouterr().err


class _Recording:
    """The real model, with every batch it was given kept (rows, samples)."""

    def __init__(self, model):
        self.model, self.contract, self.batches = model, model.contract, []

    def separate(self, audio):
        self.batches.append(np.array(audio))
        return self.model.separate(audio)


def test_no_silent_window_runs_before_the_song(tmp_path, half):
    song = _song(tmp_path / "a.wav", 3.0, 44100, 2)
    model = _Recording(half)
    separate_file(model, song, tmp_path / "o", stereo="batch")
    assert model.batches
    assert not [batch for batch in model.batches if not batch.any()]
    assert (tmp_path / "o" / "karaoke.wav").exists()


@pytest.mark.parametrize("like_live", [False, True])
def test_a_model_that_cannot_run_is_still_refused_in_one_line(tmp_path, capsys, like_live):
    model = _allocates_a_terabyte(tmp_path / "huge.onnx")
    load_model(model)
    song = _song(tmp_path / "song.wav", 0.5, 16000, 1)
    argv = ["separate", str(song), "-o", str(tmp_path / "out"), "--model", str(model)]
    code = main(argv + (["--like-live", *FAST_ARGS] if like_live else []))
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("stream-sep: error: the model cannot separate a silent window: ")
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_batch_windows_is_checked_and_keeps_the_stems(tmp_path, half_path, capsys):
    song = _song(tmp_path / "a.wav", 4.0, 44100, 2)
    stems = {}
    for windows in ("1", "3"):
        out = tmp_path / windows
        argv = ["separate", str(song), "-o", str(out), "--model", str(half_path), "--quiet"]
        assert main([*argv, "--batch-windows", windows]) == 0
        stems[windows] = sf.read(out / "a" / "vocals.wav", dtype="float32")[0]
    np.testing.assert_allclose(stems["1"], stems["3"], atol=1e-6)
    for bad in ("0", "65", "two"):
        assert main(["separate", str(song), "-o", str(tmp_path / "x"), "--batch-windows", bad]) == 2
        assert f"--batch-windows must be a whole number of windows in [1, 64], got {bad}" in (
            capsys.readouterr().err
        )
    code = main(
        ["separate", str(song), "-o", str(tmp_path / "x"), "--batch-windows", "2", "--like-live"]
    )
    assert code == 2
    assert "--batch-windows sets the throughput plan" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
