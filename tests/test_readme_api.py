"""The README's Python API examples run as pasted, with the bundled model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import soundfile as sf

README = Path(__file__).resolve().parent.parent / "README.md"


def api_example(number: int = 0) -> str:
    """The ``number``-th ```python block of the README's "Python API" section."""
    section = README.read_text().split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    return section.split("```python\n")[1 + number].split("```", 1)[0]


def test_the_readme_api_example_runs_as_pasted(tmp_path):
    code = api_example()
    assert "stream_sep.separate_file(" in code and "stream_sep.Separator(" in code
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr
    song = sf.info(tmp_path / "song.wav")
    for stem in ("karaoke", "vocals"):
        written = sf.info(tmp_path / "out" / "song" / f"{stem}.wav")
        assert (written.frames, written.samplerate) == (song.frames, song.samplerate)
    assert run.stdout.split()[:2] == ["(2,", f"{song.frames})"]


def test_the_readme_live_example_runs_as_pasted_and_equals_separate(tmp_path):
    """File to file through stream_sep.live with the bundled model, in real time: the
    recording is the input plus the latency, at the input's rate, and after the fade-in it
    is separate's streaming karaoke sample for sample (when no window was late: a busy
    machine gets three tries, as the live command's own file test does)."""
    code = api_example(1)
    assert "stream_sep.live(" in code and "like_live=True" in code
    for _attempt in range(3):
        run = subprocess.run(
            [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600
        )
        assert run.returncode == 0, run.stderr
        first, difference = run.stdout.strip().splitlines()
        words = first.split()
        reason, misses, latency = " ".join(words[:-3]), int(words[-3]), int(words[-2])
        if misses == 0:
            break
    assert reason == "end of input" and misses == 0, run.stdout
    song, recording = sf.info(tmp_path / "live-in.wav"), sf.info(tmp_path / "live-out.wav")
    assert recording.samplerate == song.samplerate == 44100 and recording.channels == 1
    assert recording.frames == song.frames + latency
    assert float(words[-1]) == latency / song.samplerate
    assert float(difference) <= 1e-6, run.stdout
