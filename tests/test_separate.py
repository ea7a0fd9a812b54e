"""`stream-sep separate` end to end on generated audio in several formats and rates."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stream_sep.cli import main
from stream_sep.engine import Separator
from stream_sep.models.loading import load_model
from stream_sep.offline import CLIP_MODES, output_folders, separate_array
from tests.helpers import FAST_ARGS, gain_model, noise, sine

FAST = FAST_ARGS


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
    result = separate_array(
        model, audio, 16000, like_live=True, hop=0.1, lookahead=0.05, crossfade=0.02
    )
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
        (
            ["good.wav", "--clip-mode", "soft"],
            "--clip-mode must be one of none, clamp, rescale, got 'soft'",
        ),
        (["good.wav", "./good.wav"], "input 'good.wav' is given twice"),
        (["good.wav", "link.wav"], "inputs 'good.wav' and 'link.wav' are the same file"),
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
    (tmp_path / "link.wav").symlink_to("good.wav")
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
    monkeypatch.setattr(
        "stream_sep.commands.separate.load_model", lambda *a: _FailsOnLoudWindows(half)
    )
    code = main(["separate", str(source), "-o", str(tmp_path / "out"), "--quiet", *FAST])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("stream-sep: error: the model failed on ") and "\n" not in err
    assert "NaN/Inf" in err
    assert not (tmp_path / "out" / "song").exists() or not any(
        (tmp_path / "out" / "song").iterdir()
    )


@pytest.mark.parametrize("clip_mode", CLIP_MODES)
@pytest.mark.parametrize("seconds, rate", [(2.7, 44100), (0.3, 16000)])
def test_files_are_separated_block_by_block_into_the_samples_of_the_whole_signal(
    tmp_path, half_path, seconds, rate, clip_mode
):
    """``separate`` streams the file (memory of a block, not of the song); the stems equal
    separate_array on the whole signal in every clip mode (rescale: a second pass over the
    written file, once its peak is known), across block boundaries and for a file shorter
    than the engine's delay."""
    from stream_sep.offline import separate_file

    audio = noise(2, int(seconds * rate), seed=4, amplitude=0.9)  # stems peak beyond 1
    source = tmp_path / "song.wav"
    sf.write(source, audio.T, rate, subtype="FLOAT")
    model = load_model(half_path)
    options = {"hop": 0.1, "lookahead": 0.05, "crossfade": 0.02, "clip_mode": clip_mode}
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
        assert (np.max(np.abs(written)) > 1.0) == (clip_mode == "none")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["karaoke.wav", "vocals.wav"]


def test_written_stems_follow_the_users_umask(tmp_path, half_path):
    """Hidden files are made with os.open(0o666), not mkstemp (which would make them 0600)."""
    import os
    import stat

    from stream_sep.offline import separate_file

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


def _separate(*args: str) -> int:
    """``stream-sep separate ARGS`` in-process with the fast engine settings."""
    return main(["separate", *args, "--quiet", *FAST])


def _files(root) -> dict[str, bytes]:
    """Every file and folder under ``root`` (hidden ones too): relative path -> its bytes
    (b"<dir>" for a folder)."""
    return {
        str(path.relative_to(root)): b"<dir>" if path.is_dir() else path.read_bytes()
        for path in sorted(root.rglob("*"))
    }


def _sum_back(folder) -> np.ndarray:
    """karaoke + vocals of a result folder: (samples, channels) float32."""
    karaoke, _ = sf.read(folder / "karaoke.wav", dtype="float32", always_2d=True)
    vocals, _ = sf.read(folder / "vocals.wav", dtype="float32", always_2d=True)
    return karaoke + vocals


def test_inputs_with_the_same_name_go_to_two_folders(tmp_path, half_path):
    """Every MUSDB song is mixture.wav: each keeps its path from the inputs' common folder."""
    songs = {}
    for seed, name in enumerate(("Artist - One", "Artist - Two")):
        (tmp_path / "musdb" / name).mkdir(parents=True)
        songs[name] = noise(2, 12000, seed=seed, amplitude=0.1 * (seed + 1))
        sf.write(tmp_path / "musdb" / name / "mixture.wav", songs[name].T, 16000, subtype="FLOAT")
    inputs = [str(tmp_path / "musdb" / name / "mixture.wav") for name in songs]
    assert _separate(*inputs, "-o", str(tmp_path / "out"), "--model", str(half_path)) == 0
    for name, audio in songs.items():
        folder = tmp_path / "out" / name / "mixture"
        assert sorted(p.name for p in folder.iterdir()) == ["karaoke.wav", "vocals.wav"]
        assert np.max(np.abs(_sum_back(folder) - audio.T)) <= 1e-6  # each folder, its own song
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(songs)


def test_the_folder_rule_keeps_the_stem_unless_stems_collide(tmp_path):
    out = tmp_path / "out"
    assert output_folders([Path("x/a.wav"), Path("y/b.flac")], out) == [out / "a", out / "b"]
    assert output_folders([Path("d/a/mix.wav"), Path("d/b/c/mix.wav"), Path("d/e.wav")], out) == [
        out / "a" / "mix",
        out / "b" / "c" / "mix",
        out / "e",
    ]
    # The same stem side by side: the suffix keeps them apart.
    assert output_folders([Path("d/song.wav"), Path("d/song.flac")], out) == [
        out / "song.wav",
        out / "song.flac",
    ]


def test_a_second_run_changes_nothing_without_overwrite(tmp_path, half_path, capsys, monkeypatch):
    source = tmp_path / "song.wav"
    sf.write(source, noise(2, 12000, seed=1, amplitude=0.2).T, 16000, subtype="FLOAT")
    assert _separate(str(source), "-o", str(tmp_path / "out"), "--model", str(half_path)) == 0
    before = _files(tmp_path / "out")
    capsys.readouterr()

    def no_model(*args):
        raise AssertionError("the model was loaded before the refusal")

    with monkeypatch.context() as patch:
        patch.setattr("stream_sep.commands.separate.load_model", no_model)
        code = _separate(str(source), "-o", str(tmp_path / "out"), "--model", str(half_path))
    err = capsys.readouterr().err
    assert code == 2
    assert err == (
        f"stream-sep: error: {str(tmp_path / 'out' / 'song' / 'karaoke.wav')!r} already "
        "exists; pass --overwrite to replace it\n"
    )
    assert _files(tmp_path / "out") == before

    # --overwrite replaces the stems (atomically: no hidden file is left) with the new song's.
    louder = noise(2, 12000, seed=2, amplitude=0.3)
    sf.write(source, louder.T, 16000, subtype="FLOAT")
    args = (str(source), "-o", str(tmp_path / "out"), "--model", str(half_path), "--overwrite")
    assert _separate(*args) == 0
    after = _files(tmp_path / "out")
    assert sorted(after) == sorted(before) and after != before
    assert np.max(np.abs(_sum_back(tmp_path / "out" / "song") - louder.T)) <= 1e-6


@contextlib.contextmanager
def _unusable_output(kind: str, tmp_path: Path):
    """(-o value, command prefix) for an output that cannot be written, even as root."""
    if kind == "non-directory":
        (tmp_path / "a-file").write_text("not a folder")
        yield tmp_path / "a-file" / "out", []
    elif kind == "proc":
        yield Path(f"/proc/stream-sep-test-{os.getpid()}"), []
    elif kind == "unwritable":  # an existing result folder whose mode forbids writing
        (tmp_path / "locked" / "song").mkdir(parents=True)
        (tmp_path / "locked" / "song").chmod(0o555)
        prefix = []
        if os.geteuid() == 0:  # root ignores mode bits: drop the capability that lets it
            prefix = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--"]
            if shutil.which("setpriv") is None:
                pytest.skip("running as root and setpriv (util-linux) is not installed")
            probe = subprocess.run([*prefix, "true"], capture_output=True, text=True)
            if probe.returncode != 0:
                pytest.skip(f"cannot drop root's DAC override here: {probe.stderr.strip()}")
        try:
            yield tmp_path / "locked", prefix
        finally:
            (tmp_path / "locked" / "song").chmod(0o755)
    elif kind == "immutable":
        (tmp_path / "frozen").mkdir()
        done = subprocess.run(
            ["chattr", "+i", str(tmp_path / "frozen")], capture_output=True, text=True
        )
        if done.returncode != 0:
            pytest.skip(f"chattr +i is not available on this file system: {done.stderr.strip()}")
        try:
            yield tmp_path / "frozen", []
        finally:
            subprocess.run(["chattr", "-i", str(tmp_path / "frozen")], check=True)


@pytest.mark.parametrize(
    "kind, message",
    [
        ("unwritable", "cannot write in output folder {folder}: Permission denied"),
        ("immutable", "cannot create output folder {folder}: Operation not permitted"),
        ("non-directory", "cannot create output folder {folder}: {file} is a file, not a folder"),
        ("proc", "cannot create output folder {folder}: No such file or directory"),
    ],
)
def test_an_output_folder_that_cannot_be_written_is_one_line_and_nothing_written(
    tmp_path, half_path, kind, message
):
    source = tmp_path / "song.wav"
    sf.write(source, noise(1, 8000, seed=3)[0], 16000)
    with _unusable_output(kind, tmp_path) as (outdir, prefix):
        before = _files(tmp_path)
        done = subprocess.run(
            [*prefix, sys.executable, "-m", "stream_sep", "separate", str(source)]
            + ["-o", str(outdir), "--model", str(half_path), *FAST],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert _files(tmp_path) == before  # nothing written, no folder left
    assert not os.path.lexists(f"/proc/stream-sep-test-{os.getpid()}")
    expected = message.format(
        folder=repr(str(outdir / "song")), file=repr(str(tmp_path / "a-file"))
    )
    assert done.returncode == 2
    assert done.stderr == f"stream-sep: error: {expected}\n"  # one line, no traceback


def test_a_write_failing_mid_file_keeps_the_previous_stems(tmp_path, half_path):
    """Writes that fail half-way (here: a file-size limit, as on a full disk) are one line,
    exit 2, and the stems of an earlier run stay as they were."""
    source = tmp_path / "song.wav"
    sf.write(source, noise(2, 16000, seed=5).T, 16000, subtype="FLOAT")
    assert _separate(str(source), "-o", str(tmp_path / "out"), "--model", str(half_path)) == 0
    before = _files(tmp_path / "out")
    argv = ["separate", str(source), "-o", str(tmp_path / "out"), "--model", str(half_path)]
    argv += ["--overwrite", "--quiet", *FAST]
    # 20 kB: the probe (an empty file) passes, a 128 kB stem cannot be written whole.
    limited = (
        "import resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000)); "
        f"from stream_sep.cli import main; sys.exit(main({argv!r}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", limited], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert done.stderr.startswith(
        f"stream-sep: error: cannot write stems to {str(tmp_path / 'out' / 'song')!r}: "
    )
    assert done.stderr.count("\n") == 1
    assert _files(tmp_path / "out") == before


def test_a_loud_files_stems_sum_back_to_it_unless_a_clip_mode_bounds_them(tmp_path, half_path):
    """Default: exact float stems, beyond 1.0 where the song is (no limiter on files);
    clamp clips each sample to [-1, 1]; rescale divides a stem by its peak."""
    loud = noise(2, 20000, seed=6, amplitude=0.9)  # peaks near 4: both stems beyond 1
    source = tmp_path / "loud.wav"
    sf.write(source, loud.T, 16000, subtype="FLOAT")
    stems = {}
    for mode in CLIP_MODES:
        args = (str(source), "-o", str(tmp_path / mode), "--model", str(half_path))
        assert _separate(*args, "--clip-mode", mode) == 0
        stems[mode] = {
            name: sf.read(tmp_path / mode / "loud" / f"{name}.wav", dtype="float32")[0]
            for name in ("karaoke", "vocals")
        }
    exact = stems["none"]
    peak = np.max(np.abs(loud))
    # float32 rounding of one subtraction and one addition, relative to the peak.
    assert np.max(np.abs(exact["karaoke"] + exact["vocals"] - loud.T)) <= 1e-6 * peak
    for name, stem in exact.items():
        stem_peak = np.max(np.abs(stem))
        assert stem_peak > 1.2, name  # a limiter would have changed these samples
        np.testing.assert_array_equal(stems["clamp"][name], np.clip(stem, -1.0, 1.0))
        rescaled = stems["rescale"][name]
        assert np.max(np.abs(rescaled)) == 1.0
        # The ratio between samples is kept: rescaled * peak is the exact stem.
        assert np.max(np.abs(rescaled * stem_peak - stem)) <= 1e-6 * stem_peak


def test_separate_array_clip_modes(half_path):
    model = load_model(half_path)
    audio = noise(2, 16000, seed=7, amplitude=0.9)
    options = {"hop": 0.1, "lookahead": 0.05, "crossfade": 0.02}
    exact = separate_array(model, audio, 16000, **options)
    assert np.max(np.abs(exact["karaoke"] + exact["vocals"] - audio)) <= 1e-6 * np.max(
        np.abs(audio)
    )
    clamped = separate_array(model, audio, 16000, clip_mode="clamp", **options)
    rescaled = separate_array(model, audio, 16000, clip_mode="rescale", **options)
    for name, stem in exact.items():
        assert np.max(np.abs(stem)) > 1.2
        np.testing.assert_array_equal(clamped[name], np.clip(stem, -1.0, 1.0))
        np.testing.assert_array_equal(rescaled[name], stem / np.max(np.abs(stem)))
