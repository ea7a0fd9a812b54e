"""benchmarks/singer_pitch.py: each singer's pitch and level, on generated MIR-1K-style
clips of known pitch (real files, real reading)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
SCRIPT = ["-m", "benchmarks.singer_pitch"]
RATE = 16000


@pytest.fixture(scope="module")
def script():
    from benchmarks import singer_pitch

    return singer_pitch


def sung(f0: float, seconds: float, seed: int) -> np.ndarray:
    """A harmonic tone with vibrato in syllables (silent gaps between them)."""
    t = np.arange(int(seconds * RATE)) / RATE
    pitch = f0 * (1 + 0.01 * np.sin(2 * np.pi * 5 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / RATE + seed
    tone = sum(np.sin(k * phase) / k for k in range(1, 6))
    return tone * (np.sin(2 * np.pi * 1.5 * t) > -0.3)


def write_singers(folder: Path, singers: dict[str, tuple[float, float]]) -> None:
    """Two clips per singer: {singer: (f0 Hz, vocal-to-accompaniment dB)}."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for singer, (f0, level) in singers.items():
        for clip in (1, 2):
            vocals = sung(f0, 2.0, clip)
            band = rng.normal(size=vocals.size)
            band *= np.sqrt(np.mean(vocals**2) / np.mean(band**2)) / 10 ** (level / 20)
            stereo = np.stack([band, vocals], axis=1) * 0.2
            sf.write(folder / f"{singer}_1_{clip:02d}.flac", stereo, RATE)


SINGERS = {"low": (110.0, -3.0), "mid": (220.0, 0.0), "high": (330.0, 4.0), "top": (440.0, 2.0)}


def test_each_singers_pitch_and_level(script, tmp_path):
    write_singers(tmp_path / "mir1k", SINGERS)
    table = script.singer_table(script.clip_measures(tmp_path / "mir1k"))
    assert list(table) == ["high", "low", "mid", "top"]
    for singer, (f0, level) in SINGERS.items():
        assert table[singer]["clips"] == 2
        assert table[singer]["median_f0_hz"] == pytest.approx(f0, rel=0.03), singer
        assert table[singer]["vocal_to_accompaniment_db"] == pytest.approx(level, abs=0.1)


def test_silence_and_noise_give_no_pitch(script):
    assert script.frame_pitches(np.zeros(RATE), RATE).size == 0
    noise = np.random.default_rng(1).normal(size=RATE)
    assert script.frame_pitches(noise, RATE).size < 5  # white noise is not voiced
    assert script.frame_pitches(np.ones(10), RATE).size == 0  # shorter than a frame


def test_rank_correlation(script):
    assert script.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert script.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert script.spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)


def test_command_line_with_a_report(tmp_path):
    write_singers(tmp_path / "mir1k", SINGERS)
    report = {"folds": [{"held_out": ["low"], "clips": []}],
              "by_singer": {"low": {"mean": 5.0}, "mid": {"mean": 6.0},
                            "high": {"mean": 8.0}, "top": {"mean": 7.0}}}  # fmt: skip
    (tmp_path / "cv.json").write_text(json.dumps(report))
    out = tmp_path / "pitch.json"
    done = subprocess.run(
        [sys.executable, *SCRIPT, "--data", str(tmp_path / "mir1k"),
         "--report", str(tmp_path / "cv.json"), "--json", str(out), "--md", str(tmp_path / "p.md")],
        capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["pitch_sdr_spearman"] == pytest.approx(0.8)
    assert result["singers"]["top"]["sdr"] == 7.0
    lines = (tmp_path / "p.md").read_text().splitlines()
    header = next(number for number, line in enumerate(lines) if line.startswith("| singer |"))
    rows = lines[header + 2 : header + 6]
    assert [line.split(" | ")[0] for line in rows] == ["| low", "| mid", "| top", "| high"]
    assert "| low | 2 | 110 Hz | -3.0 dB | 5.00 dB |" in lines
    assert "Rank correlation (Spearman) of median f0 and SDR: **+0.80**" in lines


def test_pitch_against_sdr_inside_each_singer(script, tmp_path):
    """Six clips per singer at six pitches: one singer scores 3 dB more per octave higher,
    the other 2 dB less; a singer with too few scored clips is left out."""
    folder = tmp_path / "mir1k"
    folder.mkdir()
    pitches = [150.0, 180.0, 210.0, 250.0, 300.0, 360.0]
    scored = []
    for singer, per_octave in (("rises", 3.0), ("falls", -2.0), ("few", 1.0)):
        for number, f0 in enumerate(pitches, start=1):
            name = f"{singer}_1_{number:02d}"
            voice = sung(f0, 1.0, number)
            sf.write(folder / f"{name}.flac", np.stack([0.01 * voice, voice], 1) * 0.2, RATE)
            sdr = 6.0 + per_octave * np.log2(f0 / 200.0)
            if singer != "few" or number <= 4:
                scored.append({"name": name, "vocals_sdr": sdr})
    report = {"folds": [{"held_out": ["falls", "few", "rises"], "clips": scored}]}
    within = script.within_singers(script.clip_measures(folder), report)
    assert list(within["singers"]) == ["falls", "rises"]  # "few": 4 scored clips, under 5
    rises, falls = within["singers"]["rises"], within["singers"]["falls"]
    assert rises["clips"] == falls["clips"] == 6
    assert rises["spearman"] == pytest.approx(1.0) and falls["spearman"] == pytest.approx(-1.0)
    assert rises["db_per_octave"] == pytest.approx(3.0, abs=0.15)
    assert falls["db_per_octave"] == pytest.approx(-2.0, abs=0.1)
    assert rises["f0_p10_hz"] == pytest.approx(165, rel=0.04)  # between 150 and 180 Hz
    assert rises["f0_p90_hz"] == pytest.approx(330, rel=0.04)
    assert within["mean_spearman"] == pytest.approx(0.0)
    assert -1 < within["all_clips_spearman"] < 1
    lines = script.within_lines(within)
    span = f"{rises['f0_p10_hz']:.0f}-{rises['f0_p90_hz']:.0f} Hz"  # checked just above
    rows = [line for line in lines if line.startswith(("| rises", "| falls"))]
    assert rows == [f"| rises | 6 | {span} | +1.00 | +3.0 dB |",
                    f"| falls | 6 | {span} | -1.00 | -2.0 dB |"]  # fmt: skip
    assert lines[-1].startswith("Mean within-singer rank correlation **+0.00**")
    assert script.within_lines(script.within_singers({}, report)) == []


def test_table_order_weakest_first_then_lowest_voice(script):
    table = {"a": {"median_f0_hz": 300.0, "sdr": 7.0}, "b": {"median_f0_hz": 100.0},
             "c": {"median_f0_hz": 200.0, "sdr": 6.0}, "d": {"median_f0_hz": None},
             "e": {"median_f0_hz": 90.0}}  # fmt: skip
    assert sorted(table, key=lambda s: script.table_order(table[s])) == ["c", "a", "e", "b", "d"]


def test_a_folder_without_clips_is_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    done = subprocess.run(
        [sys.executable, *SCRIPT, "--data", str(tmp_path / "empty")],
        capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "singer_pitch.py: error:" in done.stderr and "Traceback" not in done.stderr


def test_a_report_that_is_not_one_is_named_with_its_option(tmp_path):
    write_singers(tmp_path / "mir1k", {"low": (110.0, 0.0)})
    bad = tmp_path / "cv.json"
    bad.write_text('{"folds": [{"held_out": ["low"]}]}')  # no per-clip scores
    out = tmp_path / "pitch.json"
    done = subprocess.run(
        [sys.executable, *SCRIPT, "--data", str(tmp_path / "mir1k"),
         "--report", str(bad), "--json", str(out)],
        capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 2 and done.stdout == "" and not out.exists()
    assert done.stderr == (
        f"singer_pitch.py: error: --report {bad} is not a report of cross_validate.py --json\n"
    )
