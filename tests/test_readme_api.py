"""The README's Python API example runs as pasted, with the bundled model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import soundfile as sf

README = Path(__file__).resolve().parent.parent / "README.md"


def api_example() -> str:
    """The first ```python block of the README's "Python API" section."""
    section = README.read_text().split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


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
