"""The README's Python API examples run as pasted, with the bundled model."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

import stream_sep
from tests.live_check import ATTEMPTS, MIN_SEPARATED, recording_equals_engine

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
    recording is the input plus the latency, at the input's rate. Outside the frames the
    summary gives as dry (late windows) it is separate's streaming karaoke after the fade-in
    (the example's own comparison, to 1e-6), and on every frame what the inline engine gives
    with the same windows falling back, the delayed input where no window arrived
    (live_check.recording_equals_engine). Checked in every run; a run with under half of
    the song separated checks too little and is repeated (at most ATTEMPTS runs)."""
    code = api_example(1)
    assert "stream_sep.live(" in code and "like_live=True" in code
    assert "summary.dry_ranges" in code
    # the run's engine: the bundled model, hop=1.0 (the plan fixed), karaoke without vocals
    reference = stream_sep.Separator(
        None, 44100, 1, settings=stream_sep.Settings(hop=1.0), blocking=True, vocal_level=0.0
    )
    for _attempt in range(ATTEMPTS):
        run = subprocess.run(
            [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600
        )
        assert run.returncode == 0, run.stderr
        first, second = run.stdout.strip().splitlines()
        words = first.split()
        reason, misses, latency = " ".join(words[:-3]), int(words[-3]), int(words[-2])
        difference, printed_ranges = second.split(" ", 1)
        dry = [tuple(pair) for pair in ast.literal_eval(printed_ranges)]
        assert reason == "end of input" and (misses == 0 or dry), run.stdout
        assert latency == reference.latency_samples, run.stdout
        song, recording = sf.info(tmp_path / "live-in.wav"), sf.info(tmp_path / "live-out.wav")
        assert recording.samplerate == song.samplerate == 44100 and recording.channels == 1
        assert recording.frames == song.frames + latency
        assert float(words[-1]) == latency / song.samplerate
        assert float(difference) <= 1e-6, run.stdout
        audio = sf.read(tmp_path / "live-in.wav", dtype="float32", always_2d=True)[0].T
        recorded = sf.read(tmp_path / "live-out.wav", dtype="float32", always_2d=True)[0].T
        heard = np.pad(audio, ((0, 0), (0, latency)))  # the file, then the latency's silence
        # a mono stream without denoise has no cheaper way to run a window: none is lighter
        separated, _ = recording_equals_engine(recorded, reference, heard, dry)
        if separated >= MIN_SEPARATED:
            break
    assert separated >= MIN_SEPARATED, f"{separated:.0%} separated; dry {dry}"
