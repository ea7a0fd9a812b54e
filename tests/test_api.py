"""The public Python API: import stream_sep; arrays are (channels, samples) float32."""

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

import stream_sep
from stream_sep.errors import UserError
from tests.helpers import fast_settings, noise

FAST = fast_settings()


@pytest.mark.parametrize("block_sizes", [[1], [65], [441], [512], [8193], "random"])
def test_streaming_equals_whole_array_separation_shifted_by_the_latency(half, block_sizes):
    rate = 16000
    audio = noise(2, 3 * rate, seed=11)
    whole = stream_sep.separate(audio, rate, half, settings=FAST, like_live=True)
    with stream_sep.Separator(
        half, rate, 2, settings=FAST, mode="vocals", blocking=True, limit=False, fade_in=0.0
    ) as live:
        latency = live.latency_samples
        padded = np.concatenate([audio, np.zeros((2, latency), np.float32)], axis=1)
        sizes = block_sizes
        if sizes == "random":
            sizes = list(np.random.default_rng(5).integers(1, 3000, size=64))
        out, start, turn = np.zeros_like(padded), 0, 0
        while start < padded.shape[1]:
            size = int(sizes[turn % len(sizes)])
            out[:, start : start + size] = live.process(padded[:, start : start + size])
            start, turn = start + size, turn + 1
    np.testing.assert_array_equal(out[:, latency:], whole["vocals"])
    np.testing.assert_allclose(whole["karaoke"] + whole["vocals"], audio, atol=1e-6)


def test_separate_file_equals_the_command(half_path, tmp_path):
    rate = 22050
    sf.write(tmp_path / "song.wav", noise(2, rate * 2, seed=12).T, rate, subtype="FLOAT")
    folder = stream_sep.separate_file(
        tmp_path / "song.wav", tmp_path / "api", half_path, settings=FAST
    )
    command = [
        sys.executable,
        "-m",
        "stream_sep",
        "separate",
        str(tmp_path / "song.wav"),
        "-o",
        str(tmp_path / "cli"),
        "--model",
        str(half_path),
        "--hop",
        "0.1",
        "--lookahead",
        "0.05",
        "--crossfade",
        "0.02",
        "--quiet",
    ]
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    for stem in ("karaoke", "vocals"):  # equal samples (a silent start may be -0.0 or 0.0)
        ours, rate_ours = sf.read(folder / f"{stem}.wav", dtype="float32")
        theirs, rate_theirs = sf.read(tmp_path / "cli" / "song" / f"{stem}.wav", dtype="float32")
        assert rate_ours == rate_theirs == rate
        np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("shape", [(44100, 2), (3,), (2, 3, 4), (9, 100)])
def test_an_ambiguous_or_wrong_shape_is_refused_in_one_line(half, shape):
    with pytest.raises(UserError) as caught:
        stream_sep.separate(np.zeros(shape, np.float32), 16000, half)
    assert "\n" not in str(caught.value) and str(shape) in str(caught.value)
    if shape == (44100, 2):
        assert "audio.T" in str(caught.value)


def test_the_api_is_what_the_package_exports():
    assert set(stream_sep.__all__) >= {
        "Separator",
        "Settings",
        "load_model",
        "separate",
        "separate_file",
    }
    with pytest.raises(UserError, match="--hop must be a number of seconds > 0, got 0"):
        stream_sep.Settings(hop=0)


def _imported_modules(path):
    import ast

    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_no_command_imports_another_and_the_library_imports_no_command():
    from pathlib import Path

    package = Path(stream_sep.__file__).parent
    commands = {path.stem for path in (package / "commands").glob("*.py")} - {"__init__"}
    assert commands >= {"live", "separate", "evaluate", "models"}
    offenders = {}
    for path in package.rglob("*.py"):
        imported = {n for n in _imported_modules(path) if n.startswith("stream_sep.commands.")}
        if path.parent.name == "commands":  # a command may import its own module only
            bad = {name for name in imported if name.split(".")[2] != path.stem}
        elif path.parent == package and path.stem in ("cli", "__main__"):
            bad = set()  # the entry points dispatch to the commands
        else:
            bad = imported
        if bad:
            offenders[str(path.relative_to(package))] = sorted(bad)
    assert offenders == {}
