"""benchmarks/: one entry (``python -m benchmarks NAME``) that reaches every scenario, and one
report writer (:class:`benchmarks.harness.Run`) whose JSON and Markdown both say when, where,
under what load and by which command they were measured. Nothing here is timed."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import __main__ as entry
from benchmarks import harness

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = sorted(entry.scenarios())
# What only the harness may do: read the clock, describe the machine, read the load average,
# write a report. A scenario that does it itself has a second copy of the harness.
HARNESS_ONLY = {
    "time.perf_counter": "harness.Stopwatch / timed / timings",
    "os.getloadavg": "harness.Run (load_average)",
    "providers.cpu_description": "harness.machine",
    "import platform": "harness.machine",
    "json.dump(": "harness.Run.write",
    ".write_text(": "harness.Run.write (stream_sep.atomic for other files)",
    "os.replace(": "stream_sep.atomic",
}


def test_the_package_has_the_scenarios_and_the_shared_modules():
    modules = {path.stem for path in (REPO / "benchmarks").glob("*.py")}
    assert set(SCENARIOS) == modules - entry.NOT_SCENARIOS
    assert len(SCENARIOS) >= 20 and "bench_engine" in SCENARIOS and "harness" not in SCENARIOS


def test_help_names_every_scenario():
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    listed = [line.split()[0] for line in done.stdout.split("scenarios:\n", 1)[1].splitlines()]
    assert listed == SCENARIOS


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_scenario_answers_help_through_the_entry(name, capsys, monkeypatch):
    """``python -m benchmarks NAME --help``, in this process (the entry is the same
    function): the module imports, parses its options and measures nothing."""
    monkeypatch.setattr(sys, "argv", list(sys.argv))  # the entry sets the scenario's argv
    try:
        status = entry.main([name, "--help"])
    except SystemExit as exit_:
        status = exit_.code
    assert status in (0, None)
    out = capsys.readouterr().out
    assert out.startswith("usage: ") and "--help" in out, out[:200]


def test_an_unknown_scenario_is_one_line_naming_them(capsys):
    assert entry.main(["no_such_scenario"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "'no_such_scenario'" in error and "bench_engine" in error


@pytest.mark.parametrize("name", [*SCENARIOS, "fixtures"])
def test_no_scenario_keeps_its_own_clock_machine_or_writer(name):
    source = (REPO / "benchmarks" / f"{name}.py").read_text()
    source = source.replace("atomic.write_text(", "")  # the atomic writer is the shared one
    found = {text: instead for text, instead in HARNESS_ONLY.items() if text in source}
    assert not found, f"benchmarks/{name}.py does itself what the shared code does: {found}"


def test_a_run_writes_both_files_with_its_date_machine_load_and_command(tmp_path):
    argv = ["--smoke", "--out", str(tmp_path / "out dir")]
    run = harness.Run("example", argv)
    json_path, md_path = harness.in_folder(tmp_path / "out dir", "example")
    body = ["Intro line.", "", *harness.table(["a", "b"], [[1, "x"], [2, "y"]])]
    text = run.write(json_path, md_path, {"rows": [1, 2]}, body, title="Example")

    report = json.loads(json_path.read_text())
    facts = report["run"]
    assert report["rows"] == [1, 2]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", facts["date"])
    assert facts["machine"] == harness.machine() and re.search(r"\d+ cores?$", facts["machine"])
    assert facts["load_average_before"] >= 0 and facts["load_average_after"] >= 0
    command = f"python -m benchmarks example --smoke --out '{tmp_path / 'out dir'}'"
    assert facts["command"] == command

    markdown = md_path.read_text()
    assert markdown == text
    lines = markdown.splitlines()
    assert lines[0] == "# Example"
    assert lines[2] == (
        f"Measured {facts['date']} on {facts['machine']}; load average (1 min) before / after: "
        f"{facts['load_average_before']:.2f} / {facts['load_average_after']:.2f}."
    )
    assert lines[4:9] == ["Intro line.", "", "| a | b |", "| --- | --- |", "| 1 | x |"]
    assert lines[-1] == f"Written by `{command}`."


def test_a_path_that_is_none_is_not_written_and_the_markdown_is_still_returned(tmp_path):
    run = harness.Run("example", [])
    text = run.write(None, tmp_path / "only.md", {"x": 1}, ["body"])
    assert sorted(path.name for path in tmp_path.iterdir()) == ["only.md"]
    assert text == (tmp_path / "only.md").read_text() and "\nbody\n" in text
    assert text.rstrip().endswith("Written by `python -m benchmarks example`.")


def test_a_report_written_again_keeps_the_facts_of_the_run_that_measured_it(tmp_path):
    measured = harness.Run("example", ["--seconds", "3"])
    json_path, md_path = harness.at_stem(tmp_path / "first")
    measured.write(json_path, md_path, {"score": 1.5}, ["first"])
    earlier, data = harness.Run.recorded(json.loads(json_path.read_text()))
    assert data == {"score": 1.5}
    again = tmp_path / "again.md"
    earlier.write(None, again, data, ["Recomputed.", "first"])
    first_facts = json.loads(json_path.read_text())["run"]
    assert earlier.facts() == first_facts
    assert "python -m benchmarks example --seconds 3" in again.read_text()


def test_a_report_from_before_the_harness_is_read_with_its_top_level_facts():
    legacy = {
        "date": "2026-11-28 16:11",
        "machine": "AMD EPYC, 2 cores",
        "command": "python benchmarks/offline_quality.py --every 6",
        "load_average_before_after": [3.3, 4.0],
        "summaries": {"MIR-1K": {}},
    }
    run, data = harness.Run.recorded(legacy)
    assert data == {"summaries": {"MIR-1K": {}}}
    assert run.facts() == {
        "date": "2026-11-28 16:11",
        "machine": "AMD EPYC, 2 cores",
        "load_average_before": 3.3,
        "load_average_after": 4.0,
        "command": "python benchmarks/offline_quality.py --every 6",
    }
    without_load = harness.markdown({**run.facts(), "load_average_after": None}, ["x"])
    assert "before / after: 3.30 / ?." in without_load


def test_timings_warm_up_once_then_time_each_call():
    calls = []
    seconds = harness.timings(lambda: calls.append(1), repeats=4)
    assert len(calls) == 5 and len(seconds) == 4 and all(value >= 0 for value in seconds)
    calls.clear()
    seconds = harness.timings(lambda: calls.append(1), repeats=3, warm_up=False)
    assert len(seconds) == len(calls) == 3
    with harness.Stopwatch() as watch:
        inside = watch.elapsed
    assert 0 <= inside <= watch.seconds
