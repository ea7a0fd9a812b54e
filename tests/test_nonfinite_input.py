"""NaN/Inf in the input of offline separation: replaced by silence with a short fade, counted
in one line, never in a stem; the stems stay exact wherever the input was left as it was."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from stream_sep import api
from stream_sep.dsp.finite import FADE_SECONDS, FiniteReader, fade_frames, replace_nonfinite
from stream_sep.models.loading import load_model
from tests.helpers import FAST_ARGS, fast_settings, gain_model, sine

RATE = 16000
BAD = {  # frame: value, 30 non-finite samples in all (10 frames x 2 channels + 10 in one)
    **{4000 + k: np.nan for k in range(5)},
    **{9000 + k: np.inf for k in range(5)},
    **{15001 + 3 * k: -np.inf for k in range(10)},
}


@pytest.fixture(scope="module")
def half_path(tmp_path_factory):
    return gain_model(tmp_path_factory.mktemp("m") / "half.onnx", 0.5)


def song_with_holes() -> tuple[np.ndarray, int]:
    """(2, 1.5 s) float32: two loud sines, 30 samples of them NaN or +-Inf."""
    audio = np.stack([sine(220.0, 1.5, RATE, 0.6), sine(330.0, 1.5, RATE, 0.6)])
    for frame, value in BAD.items():
        channels = [1] if frame >= 15000 else [0, 1]
        audio[channels, frame] = value
    return audio, int(sum(1 if frame >= 15000 else 2 for frame in BAD))


def near_a_hole(samples: int) -> np.ndarray:
    """(samples,) bool: the frames the fade may touch (within fade frames of a bad one)."""
    near = np.zeros(samples, bool)
    fade = fade_frames(RATE)
    for frame in BAD:
        near[max(0, frame - fade) : frame + fade + 1] = True
    return near


def largest_step(audio: np.ndarray) -> float:
    return float(np.abs(np.diff(audio, axis=-1)).max())


def check_stems(karaoke: np.ndarray, vocals: np.ndarray, audio: np.ndarray) -> None:
    """(C, n) stems of ``audio`` (with its holes): finite, exact away from the holes, no
    click at them (no step larger than the clean song's own largest step plus the fade's)."""
    assert np.isfinite(karaoke).all() and np.isfinite(vocals).all()
    kept = ~near_a_hole(audio.shape[1])
    assert np.isfinite(audio[:, kept]).all()
    np.testing.assert_allclose((karaoke + vocals)[:, kept], audio[:, kept], rtol=0, atol=1e-6)
    clean = audio.copy()
    clean[~np.isfinite(clean)] = 0.0
    steepest = largest_step(clean[:, kept])  # the song itself, away from its holes
    fade_step = 0.6 / fade_frames(RATE)  # a full-scale (0.6) sample faded over the fade
    for stem in (karaoke, vocals):
        assert largest_step(stem) <= steepest + fade_step + 1e-3, largest_step(stem)


def test_the_command_replaces_nan_and_inf_and_says_how_many(tmp_path, half_path):
    audio, count = song_with_holes()
    source = tmp_path / "holes.wav"
    sf.write(source, audio.T, RATE, subtype="FLOAT")
    done = subprocess.run(
        [sys.executable, "-m", "stream_sep", "separate", str(source), "-o", str(tmp_path / "o"),
         "--model", str(half_path), "--quiet", *FAST_ARGS],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert lines == [f"stream-sep: holes.wav: {count} NaN/Inf input samples replaced by silence"]
    read, _ = sf.read(source, dtype="float32", always_2d=True)
    assert np.count_nonzero(~np.isfinite(read)) == count == 30
    stems = {
        name: sf.read(tmp_path / "o" / "holes" / f"{name}.wav", dtype="float32")[0].T
        for name in ("karaoke", "vocals")
    }
    check_stems(stems["karaoke"], stems["vocals"], read.T)


def test_like_live_files_are_finite_too(tmp_path, half_path, caplog):
    from stream_sep.cli import main

    audio, count = song_with_holes()
    source = tmp_path / "holes.wav"
    sf.write(source, audio.T, RATE, subtype="FLOAT")
    argv = ["separate", str(source), "-o", str(tmp_path / "o"), "--model", str(half_path)]
    assert main(argv + ["--quiet", "--like-live", *FAST_ARGS]) == 0
    assert f"{count} NaN/Inf input samples replaced by silence" in caplog.text
    karaoke = sf.read(tmp_path / "o" / "holes" / "karaoke.wav", dtype="float32")[0].T
    vocals = sf.read(tmp_path / "o" / "holes" / "vocals.wav", dtype="float32")[0].T
    check_stems(karaoke, vocals, audio)


@pytest.mark.parametrize("like_live", [False, True])
def test_the_python_api_never_returns_nan(half_path, like_live, caplog):
    audio, count = song_with_holes()
    model = load_model(half_path)
    stems = api.separate(audio, RATE, model, settings=fast_settings(), like_live=like_live)
    check_stems(stems["karaoke"], stems["vocals"], audio)
    assert f"{count} NaN/Inf input samples replaced by silence" in caplog.text


def test_api_separate_file_writes_finite_stems(tmp_path, half_path):
    audio, _ = song_with_holes()
    source = tmp_path / "holes.wav"
    sf.write(source, audio.T, RATE, subtype="FLOAT")
    folder = api.separate_file(source, tmp_path / "o", load_model(half_path))
    for name in ("karaoke", "vocals"):
        assert np.isfinite(sf.read(folder / f"{name}.wav", dtype="float32")[0]).all()


class _ArrayReader:
    def __init__(self, audio):
        self.audio, self.position = audio, 0

    def read_into(self, out):
        n = out.shape[1]
        piece = self.audio[:, self.position : self.position + n]
        out[:, : piece.shape[1]] = piece
        out[:, piece.shape[1] :] = 0.0
        self.position += n


@pytest.mark.parametrize("block", [1, 7, 80, 1000, 30000])
def test_block_by_block_replacement_equals_the_whole_signals(block):
    """The file readers give, for any block size, exactly what the whole-array replacement
    gives: the gain depends only on where the holes are. Silence at the holes, a linear fade
    of FADE_SECONDS to them, the rest bit-exact."""
    audio, count = song_with_holes()
    whole, replaced = replace_nonfinite(audio, RATE)
    assert replaced == count
    reader = FiniteReader(_ArrayReader(audio), 2, RATE)
    pieces = np.zeros_like(audio)
    for start in range(0, audio.shape[1], block):
        reader.read_into(pieces[:, start : start + block])
    np.testing.assert_array_equal(pieces, whole)
    assert reader.replaced == count
    fade = fade_frames(RATE)
    assert fade == round(FADE_SECONDS * RATE)
    assert not whole[:, 4000:4005].any()
    np.testing.assert_array_equal(whole[0, 4000 - fade], audio[0, 4000 - fade])
    assert whole[0, 3999] == pytest.approx(audio[0, 3999] / fade, rel=1e-6)
    kept = ~near_a_hole(audio.shape[1])
    np.testing.assert_array_equal(whole[:, kept], audio[:, kept])
    assert replace_nonfinite(whole, RATE)[1] == 0
