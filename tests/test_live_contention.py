"""benchmarks/live_contention.py runs every condition through a real JACK dummy server and
reads the live command's own summary (smoke run: a gain model, no timing assertions)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.jack_harness import unavailable

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.jack


def test_live_contention_smoke_times_every_condition(tmp_path):
    if shutil.which("jackd") is None:
        unavailable("jackd is not installed (apt-get install jackd2)")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.live_contention",
            "--smoke",
            "--use-running-server",
            "--out",
            str(tmp_path / "live"),
        ],  # fmt: skip
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "live.json").read_text())
    rows = report["rows"]
    assert [(row["mode"], row["threads"]) for row in rows] == [
        (mode, threads) for threads in (2, 1) for mode in ("back to back", "paced", "live")
    ]
    for row in rows:
        assert row["mean_ms"] > 0 and row["max_ms"] >= row["mean_ms"] * 0.999, row
        if row["mode"] != "live":
            assert row["windows"] == 3, row  # --smoke: 3 windows per timed run
        if row["mode"] == "back to back":
            assert row["ratio_to_back_to_back"] == 1.0
    for row in (r for r in rows if r["mode"] == "live"):
        # 3 s at a 0.5 s hop: the engine ran windows, and stopped at --duration.
        assert row["windows"] >= 3, row
        assert row["exit_status"] == [0], row
        assert row["stopped"] == [row["stopped"][0]] and row["stopped"][0].startswith(
            "duration reached after 3."
        ), row
    # Under .ci/test (STREAM_SEP_JACK=1) the suite's own server is used; else one is started.
    assert report["server"].startswith(("the running server ", "jackd -n live-contention-"))
    markdown = (tmp_path / "live.md").read_text()
    assert "| live | 1 |" in markdown and "| paced | 2 |" in markdown
    assert markdown in result.stdout
