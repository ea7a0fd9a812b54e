"""benchmarks/compare_cross_validation.py: paired comparison of two cross-validation reports,
on the repository's own reports (the real schema cross_validate.py writes)."""

from __future__ import annotations

import copy
import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = ["-m", "benchmarks.compare_cross_validation"]
CHEAP = REPO / "benchmarks" / "results" / "cross-validation-cheap.json"


def load_script():
    from benchmarks import compare_cross_validation

    return compare_cross_validation


@pytest.fixture(scope="module")
def script():
    return load_script()


@pytest.fixture
def cheap():
    return json.loads(CHEAP.read_text())


def shifted(report: dict, fold_index: int, shift: float) -> dict:
    """A copy of the report with ``shift`` dB added to every clip of one fold."""
    other = copy.deepcopy(report)
    for clip in other["folds"][fold_index]["clips"]:
        clip["vocals_sdr"] += shift
    return other


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *SCRIPT, *map(str, args)], capture_output=True, text=True, cwd=REPO
    )


def test_a_report_against_itself_gains_nothing_on_every_clip(script, cheap):
    result = script.compare(cheap, copy.deepcopy(cheap))
    assert len(result["folds"]) == 6 and result["not_compared"] == []
    assert result["clips"] == sum(len(fold["clips"]) for fold in cheap["folds"]) == 106
    assert result["clips_better"] == 0 and result["folds_better"] == 0
    assert result["gain_over_folds"]["mean"] == 0.0 and result["differences"] == []
    for row, fold in zip(result["folds"], cheap["folds"], strict=True):
        assert row["base"] == pytest.approx(fold["vocals_sdr"]["mean"])  # the report's own mean


def test_a_gain_on_one_fold_shows_there_and_in_its_singers_only(script, cheap):
    result = script.compare(cheap, shifted(cheap, 2, 0.5))
    gains = [row["gain"] for row in result["folds"]]
    assert gains == pytest.approx([0, 0, 0.5, 0, 0, 0])
    assert result["folds_better"] == 1
    assert result["clips_better"] == len(cheap["folds"][2]["clips"])
    assert result["gain_over_folds"]["mean"] == pytest.approx(0.5 / 6)
    assert result["gain_over_folds"]["stdev"] == pytest.approx(statistics.stdev(gains))
    by_singer = result["by_singer"]
    assert set(by_singer) == set(cheap["by_singer"])
    for singer, cell in by_singer.items():
        assert cell["gain"] == pytest.approx(0.5 if singer in ("bug", "fdps") else 0.0), singer
        assert cell["clips"] == cheap["by_singer"][singer]["clips"]
        assert cell["base"] == pytest.approx(cheap["by_singer"][singer]["mean"])


def test_only_common_folds_and_clips_are_compared(script, cheap):
    other = shifted(cheap, 0, -1.0)
    other["folds"] = other["folds"][:2]  # a partial run: two folds so far
    first = other["folds"][0]
    first["clips"] = first["clips"][::2]  # and fewer clips of the first
    result = script.compare(cheap, other)
    assert [row["fold"] for row in result["folds"]] == [0, 1]
    assert result["folds"][0]["clips"] == len(first["clips"])
    assert result["folds"][0]["gain"] == pytest.approx(-1.0)
    names = {clip["name"] for clip in first["clips"]}
    kept = [clip["vocals_sdr"] for clip in cheap["folds"][0]["clips"] if clip["name"] in names]
    assert result["folds"][0]["base"] == pytest.approx(statistics.fmean(kept))
    assert result["not_compared"] == [
        "bug, fdps", "heycat, jmzen", "Kenshin, stool", "tammy, yifen"
    ]  # fmt: skip


def test_what_differs_between_the_runs_is_named(script, cheap):
    other = copy.deepcopy(cheap)
    other["recipe"] += " --channels 24"
    other["evaluation"]["hop_seconds"] = 0.25
    for fold in other["folds"]:
        fold["steps"] = 5550
    assert script.compare(cheap, other)["differences"] == [
        "steps trained per fold: 600 -> 5550",
        f"recipe: {cheap['recipe']} -> {other['recipe']}",
        "evaluation hop_seconds: 0.5 -> 0.25",
    ]


def test_command_line_prints_and_writes_both_reports(tmp_path, cheap):
    other_path = tmp_path / "other.json"
    other_path.write_text(json.dumps(shifted(cheap, 1, 1.0)))
    out_json, out_md = tmp_path / "cmp.json", tmp_path / "cmp.md"
    done = run_cli(CHEAP, other_path, "--json", out_json, "--md", out_md)
    assert done.returncode == 0, done.stderr
    assert "fold 1 (Ani, bobon): 15 clips" in done.stdout
    assert "gain +1.00 dB (15/15 clips better)" in done.stdout
    assert json.loads(out_json.read_text())["folds"][1]["gain"] == pytest.approx(1.0)
    markdown = out_md.read_text()
    assert "| 1 | Ani, bobon | 15 | 8.47 | 9.47 | +1.00 | 15/15 |" in markdown
    assert "Gain over 6 fold(s) **+0.17 dB**" in markdown


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "cannot read it (No such file or directory)"),
        ("{not json", "is not JSON"),
        ('{"folds": [{"held_out": ["amy"]}]}', "is not a report of cross_validate.py --json"),
        ("[1, 2]", "is not a report of cross_validate.py --json"),
    ],
)
def test_bad_reports_get_one_line_and_exit_2(tmp_path, content, message):
    path = tmp_path / "bad.json"
    if content is not None:
        path.write_text(content)
    out = tmp_path / "cmp.md"
    done = run_cli(CHEAP, path, "--md", out)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and not out.exists()


def test_reports_without_a_common_fold_are_refused(tmp_path, cheap):
    other = copy.deepcopy(cheap)
    for fold in other["folds"]:
        fold["held_out"] = [singer + "x" for singer in fold["held_out"]]
    path = tmp_path / "other.json"
    path.write_text(json.dumps(other))
    done = run_cli(CHEAP, path)
    assert done.returncode == 2
    assert "share no fold with common clips" in done.stderr and done.stderr.count("\n") == 1
