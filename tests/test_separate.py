"""`stream-sep separate` end to end on generated audio in several formats and rates."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from helpers import gain_model, noise, sine

from stream_sep.cli import main
from stream_sep.engine import Separator
from stream_sep.inference import load_model
from stream_sep.separate import separate_array

FAST = ["--hop", "0.1", "--lookahead", "0.05", "--crossfade", "0.02"]


@pytest.fixture(scope="module")
def half_path(tmp_path_factory):
    return gain_model(tmp_path_factory.mktemp("m") / "half.onnx", 0.5)


@pytest.mark.parametrize(
    "suffix, rate, channels, subtype",
    [(".wav", 16000, 1, "PCM_16"), (".flac", 44100, 2, "PCM_24"), (".ogg", 48000, 2, "VORBIS")],
)
def test_separate_writes_aligned_stems(tmp_path, half_path, suffix, rate, channels, subtype):
    audio = np.stack([sine(220 * (c + 1), 1.3, rate, 0.4) for c in range(channels)])
    source = tmp_path / f"song{suffix}"
    sf.write(source, audio.T, rate, subtype=subtype)
    read, _ = sf.read(source, dtype="float32", always_2d=True)
    code = main(
        [
            "separate",
            str(source),
            "-o",
            str(tmp_path / "out"),
            "--model",
            str(half_path),
            "--quiet",
            *FAST,
        ]
    )
    assert code == 0
    vocals, vocals_rate = sf.read(
        tmp_path / "out" / "song" / "vocals.wav", dtype="float32", always_2d=True
    )
    karaoke, _ = sf.read(tmp_path / "out" / "song" / "karaoke.wav", dtype="float32", always_2d=True)
    assert vocals_rate == rate and vocals.shape == karaoke.shape == read.shape
    # The half model: vocals = 0.5 * input (band-limited to 8 kHz; these sines are far below).
    interior = slice(int(0.05 * rate), -int(0.05 * rate))
    assert np.max(np.abs(vocals[interior] - 0.5 * read[interior])) < 5e-3
    assert np.max(np.abs(karaoke + vocals - read)) < 1e-6
    assert not list((tmp_path / "out" / "song").glob(".*"))  # no temporary files left


def test_offline_equals_the_streaming_engine(half_path):
    model = load_model(half_path)
    audio = noise(2, 30000, seed=11, amplitude=0.1)
    result = separate_array(model, audio, 16000, hop=0.1, lookahead=0.05, crossfade=0.02)
    engine = Separator(
        model,
        16000,
        2,
        mode="karaoke",
        blocking=True,
        hop=0.1,
        lookahead=0.05,
        crossfade=0.02,
        fade_in=0.0,  # separate_array (limit=False) has no start fade either
    )
    streamed = engine.process(
        np.concatenate([audio, np.zeros((2, engine.latency_samples), np.float32)], axis=1)
    )
    assert np.max(np.abs(result["karaoke"] - streamed[:, engine.latency_samples :])) <= 1e-7


def test_mode_vocals_writes_only_vocals(tmp_path, half_path):
    sf.write(tmp_path / "a.wav", noise(1, 16000, amplitude=0.1)[0], 16000)
    assert (
        main(
            [
                "separate",
                str(tmp_path / "a.wav"),
                "-o",
                str(tmp_path / "o"),
                "--mode",
                "vocals",
                "--model",
                str(half_path),
                "--quiet",
                *FAST,
            ]
        )
        == 0
    )
    assert sorted(p.name for p in (tmp_path / "o" / "a").iterdir()) == ["vocals.wav"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["missing.wav"], "input file 'missing.wav' does not exist"),
        (["bad.wav"], "cannot read audio file"),
        (
            ["good.wav", "--mode", "drums"],
            "--mode must be one of karaoke, vocals, both, got 'drums'",
        ),
        (["good.wav", "--hop", "-1"], "--hop must be a number of seconds > 0, got -1"),
        (["good.wav", "--model", "nope.onnx"], "model file 'nope.onnx' does not exist"),
        (["good.wav", "--provider", "cuda"], "--provider cuda cannot be used here"),
    ],
)
def test_user_errors_are_one_line_with_status_2(
    tmp_path, half_path, capsys, monkeypatch, args, message
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.wav").write_bytes(b"RIFF....not audio")
    sf.write(tmp_path / "good.wav", noise(1, 16000, amplitude=0.1)[0], 16000)
    if "--model" not in args:
        args = args + ["--model", str(half_path)]
    code = main(["separate", *args, "-o", "out"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("stream-sep: error: ")
    assert message in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.wav"))


def test_command_line_as_a_user_types_it(tmp_path, half_path):
    sf.write(tmp_path / "x.flac", noise(2, 20000, amplitude=0.1).T, 16000)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "stream_sep",
            "separate",
            str(tmp_path / "x.flac"),
            "-o",
            str(tmp_path / "o"),
            "--model",
            str(half_path),
            *FAST,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "separated in" in done.stderr
    assert (tmp_path / "o" / "x" / "karaoke.wav").is_file()


class _FailsOnLoudWindows:
    """The half model, except that windows louder than ``threshold`` come back as NaN
    (silence passes, so the model survives its warm-up and fails mid-file)."""

    def __init__(self, model, threshold: float = 0.1):
        self.model, self.contract, self.threshold = model, model.contract, threshold
        self.path, self.provider = model.path, model.provider

    def separate(self, audio: np.ndarray) -> np.ndarray:
        estimate = self.model.separate(audio)
        loud = np.max(np.abs(audio), axis=-1) > self.threshold
        estimate[loud] = np.nan
        return estimate


def test_a_model_failing_mid_file_writes_nothing_and_says_why(
    tmp_path, half_path, monkeypatch, capsys
):
    """Live, a failed window plays the dry mix; in a file that would be a silent defect."""
    rate = 16000
    quiet_then_loud = np.concatenate([sine(220, 1.0, rate, 0.05), sine(220, 1.0, rate, 0.5)])
    source = tmp_path / "song.wav"
    sf.write(source, quiet_then_loud, rate)
    half = load_model(half_path)
    monkeypatch.setattr("stream_sep.separate.load_model", lambda *a: _FailsOnLoudWindows(half))
    code = main(["separate", str(source), "-o", str(tmp_path / "out"), "--quiet", *FAST])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("stream-sep: error: the model failed on ") and "\n" not in err
    assert "NaN/Inf" in err
    assert not (tmp_path / "out" / "song").exists() or not any(
        (tmp_path / "out" / "song").iterdir()
    )


@pytest.mark.parametrize("seconds, rate", [(2.7, 44100), (0.3, 16000)])
def test_files_are_separated_block_by_block_into_the_samples_of_the_whole_signal(
    tmp_path, half_path, seconds, rate
):
    """``separate`` streams the file (memory of a block, not of the song); the stems equal
    separate_array on the whole signal, output guard included, across block boundaries and
    for a file shorter than the engine's delay."""
    from stream_sep.separate import separate_file

    audio = noise(2, int(seconds * rate), seed=4, amplitude=0.45)  # loud: the guard acts
    source = tmp_path / "song.wav"
    sf.write(source, audio.T, rate, subtype="FLOAT")
    model = load_model(half_path)
    options = {"hop": 0.1, "lookahead": 0.05, "crossfade": 0.02}
    assert separate_file(model, source, tmp_path / "out", **options) == pytest.approx(
        seconds, abs=1e-4
    )
    whole = separate_array(model, audio, rate, **options)
    for stem in ("vocals", "karaoke"):
        written, written_rate = sf.read(
            tmp_path / "out" / f"{stem}.wav", dtype="float32", always_2d=True
        )
        assert written_rate == rate and written.shape == audio.T.shape
        np.testing.assert_array_equal(written.T, whole[stem])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["karaoke.wav", "vocals.wav"]


def test_written_stems_follow_the_users_umask(tmp_path, half_path):
    """Hidden files are made with os.open(0o666), not mkstemp (which would make them 0600)."""
    import os
    import stat

    from stream_sep.separate import separate_file

    source = tmp_path / "song.wav"
    sf.write(source, noise(1, 8000, seed=2)[0], 16000)
    previous = os.umask(0o022)
    try:
        separate_file(
            load_model(half_path), source, tmp_path / "out", hop=0.1, lookahead=0.05, crossfade=0.02
        )
    finally:
        os.umask(previous)
    for stem in ("vocals", "karaoke"):
        assert stat.S_IMODE((tmp_path / "out" / f"{stem}.wav").stat().st_mode) == 0o644
