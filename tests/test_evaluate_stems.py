"""``stream-sep evaluate --format stems`` on generated songs: folders of stem files (WAV, FLAC,
MP3) at 44.1 kHz stereo, scored against sums computed here from the files as read back.

The model is a gain model (vocal estimate = 0.5 x mixture), so each model score has a closed
form; the mixture and L-R baselines have exact ones. Every song's accompaniment starts with a
loud burst inside the 50 ms that the scores leave out, so an untrimmed score would differ.
"""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from stream_sep.cli import main
from stream_sep.models.contract import ModelContract
from tests.helpers import band_noise, gain_model, write_mir1k_like

RATE = 44100
SECONDS = 1.0
TRIM = int(0.05 * RATE)  # the default --trim for stems, in samples
STREAMING = ["--streaming", "--hop", "0.1", "--lookahead", "0.05"]
# Tolerances, in dB: the model's estimate passes soxr down to 16 kHz and back (the stems are
# band-limited below 5 kHz, inside the model's band; off by ~0.001 dB); the baselines are exact.
RESAMPLED = 0.01
EXACT = 1e-6
CAN_WRITE_MP3 = "MP3" in sf.available_formats()


def _sdr(reference, estimate) -> float:
    reference, estimate = np.asarray(reference, np.float64), np.asarray(estimate, np.float64)
    return 10 * math.log10(np.sum(reference**2) / np.sum((reference - estimate) ** 2))


def _trimmed(audio: np.ndarray) -> np.ndarray:
    return audio[:, TRIM : audio.shape[1] - TRIM]


def _song(seed: int, seconds: float = SECONDS) -> dict[str, np.ndarray]:
    """{vocals, drums, bass, other}: (2, samples) float32 stems, stereo, below 5 kHz; the
    drums start with a loud 30 ms burst."""
    rng = np.random.default_rng(seed)
    samples = int(round(seconds * RATE))
    t = np.arange(samples) / RATE
    pitch = 300.0 + 40.0 * seed
    voice = np.stack([0.2 * np.sin(2 * np.pi * pitch * t), 0.15 * np.sin(2 * np.pi * pitch * t)])
    voice += 0.02 * np.stack([band_noise(samples, RATE, 200, 4000, rng) for _ in range(2)])
    drums = 0.04 * np.stack([band_noise(samples, RATE, 100, 5000, rng) for _ in range(2)])
    burst = min(samples, int(0.03 * RATE))
    drums[:, :burst] *= 12.0
    bass = np.stack([0.15 * np.sin(2 * np.pi * 110 * t), 0.1 * np.sin(2 * np.pi * 110 * t + 1)])
    other = np.stack([0.03 * np.sin(2 * np.pi * 660 * t + 0.5), 0.06 * np.sin(2 * np.pi * 660 * t)])
    stems = {"vocals": voice, "drums": drums, "bass": bass, "other": other}
    return {name: audio.astype(np.float32) for name, audio in stems.items()}


def _write(path, audio: np.ndarray, rate: int = RATE) -> None:
    """(channels, samples) to a file, float WAV, 24-bit FLAC or MP3 by the suffix."""
    subtype = {".wav": "FLOAT", ".flac": "PCM_24", ".mp3": "MPEG_LAYER_III"}[path.suffix]
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio.T, rate, subtype=subtype)


def write_pair_song(folder, seed: int, suffix: str = ".wav", mixture_gain: float | None = None):
    """vocals + accompaniment files (and a mixture file = gain x their sum, when asked)."""
    stems = _song(seed)
    accompaniment = stems["drums"] + stems["bass"] + stems["other"]
    _write(folder / f"vocals{suffix}", stems["vocals"])
    _write(folder / f"accompaniment{suffix}", accompaniment)
    if mixture_gain is not None:
        _write(folder / f"mixture{suffix}", mixture_gain * (stems["vocals"] + accompaniment))


def write_four_stem_song(folder, seed: int, suffix: str = ".flac", seconds: float = SECONDS):
    """vocals, drums, bass and other files, no mixture."""
    for name, audio in _song(seed, seconds).items():
        _write(folder / f"{name}{suffix}", audio)


def read_back(folder, *names) -> list[np.ndarray]:
    """The files of a song as soundfile reads them: (channels, samples) float64 each."""
    arrays = []
    for name in names:
        (path,) = folder.glob(f"{name}.*")
        arrays.append(sf.read(path, dtype="float64", always_2d=True)[0].T)
    return arrays


def references(folder) -> tuple[np.ndarray, np.ndarray]:
    """(vocals, accompaniment) of a song folder, the accompaniment summed from the parts."""
    if list(folder.glob("accompaniment.*")):
        vocals, accompaniment = read_back(folder, "vocals", "accompaniment")
    else:
        vocals, *parts = read_back(folder, "vocals", "drums", "bass", "other")
        accompaniment = sum(parts)
    return vocals, accompaniment


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(["evaluate", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def evaluate(capsys, model, data, report_path, *extra) -> tuple[dict, str]:
    code, out, err = run_cli(
        capsys, "--model", model, "--data", data, "--format", "stems", "--json", report_path,
        *extra,
    )  # fmt: skip
    assert code == 0, err
    return json.loads(report_path.read_text()), out


def check_song_scores(clip: dict, vocals, accompaniment, mixture) -> None:
    """The model (0.5 x mixture), mixture and L-R centre scores of one song against their
    closed forms on the trimmed arrays."""
    vocals, accompaniment, mixture = _trimmed(vocals), _trimmed(accompaniment), _trimmed(mixture)
    scores = clip["scores"]
    model = scores["model"]
    assert model["vocals"]["sdr"] == pytest.approx(_sdr(vocals, 0.5 * mixture), abs=RESAMPLED)
    assert model["accompaniment"]["sdr"] == pytest.approx(
        _sdr(accompaniment, 0.5 * mixture), abs=RESAMPLED
    )
    baseline = scores["mixture"]
    assert baseline["vocals"]["sdr"] == pytest.approx(_sdr(vocals, mixture), abs=EXACT)
    assert baseline["accompaniment"]["sdr"] == pytest.approx(
        _sdr(accompaniment, mixture), abs=EXACT
    )
    mid = np.repeat(mixture.mean(axis=0, keepdims=True), 2, axis=0)
    centre = scores["centre-cancel"]
    assert centre["vocals"]["sdr"] == pytest.approx(_sdr(vocals, mid), abs=EXACT)
    assert centre["accompaniment"]["sdr"] == pytest.approx(
        _sdr(accompaniment, mixture - mid), abs=EXACT
    )


@pytest.fixture(scope="module")
def two_songs(tmp_path_factory):
    """A WAV song with a mixture file at 0.8 x the stems' sum, and a 4-stem FLAC song without
    a mixture file."""
    root = tmp_path_factory.mktemp("stems")
    write_pair_song(root / "A pair song", 1, ".wav", mixture_gain=0.8)
    write_four_stem_song(root / "B four stems", 2, ".flac")
    return root


def test_each_song_scores_its_closed_forms_at_its_own_rate(two_songs, half_path, tmp_path, capsys):
    report, out = evaluate(capsys, half_path, two_songs, tmp_path / "r.json", *STREAMING)
    assert report["format"] == "stems" and report["trim_seconds"] == 0.05
    assert report["skipped"] == [] and report["mix_from_stems"] is False
    pair, four = report["clips"]
    assert (pair["name"], four["name"]) == ("A pair song", "B four stems")
    assert pair["sample_rate"] == four["sample_rate"] == RATE and pair["channels"] == 2
    assert pair["scored_seconds"] == pytest.approx(SECONDS - 2 * TRIM / RATE)

    vocals, accompaniment = references(two_songs / "A pair song")
    (mixture,) = read_back(two_songs / "A pair song", "mixture")
    assert pair["mixture"] == "file"
    check_song_scores(pair, vocals, accompaniment, mixture)
    # The burst in the first 50 ms is left out: scored whole, the baseline would differ.
    whole = _sdr(accompaniment, mixture)
    assert abs(pair["scores"]["mixture"]["accompaniment"]["sdr"] - whole) > 0.5

    vocals, accompaniment = references(two_songs / "B four stems")
    assert four["mixture"] == "sum of stems"
    check_song_scores(four, vocals, accompaniment, vocals + accompaniment)
    assert four["scores"]["model"]["vocals"]["museval_sdr"] is not None

    for stem in ("vocals", "accompaniment"):
        per_song = [clip["scores"]["model"][stem]["sdr"] for clip in report["clips"]]
        assert report["summary"]["model"][stem]["sdr"]["mean"] == pytest.approx(np.mean(per_song))
        assert report["summary"]["model"][stem]["sdr"]["clips"] == 2
    assert report["by_group"] == {}
    assert "A pair song" in out and "overall (dB)" in out and "L-R centre   mean" in out
    assert "1 song(s) have no mixture file" in out and "B four stems" in out
    assert "scored without the first and last 0.05 s" in out


def test_mix_from_stems_separates_the_stems_sum_offline(two_songs, tmp_path, capsys):
    model = gain_model(tmp_path / "full-window.onnx", 0.5, contract=ModelContract())
    report, out = evaluate(
        capsys, model, two_songs, tmp_path / "r.json", "--mix-from-stems", "--no-museval"
    )
    assert report["mode"] == "offline" and report["mix_from_stems"] is True
    for clip in report["clips"]:
        assert clip["mixture"] == "sum of stems"
        vocals, accompaniment = references(two_songs / clip["name"])
        check_song_scores(clip, vocals, accompaniment, vocals + accompaniment)
    assert "sum of the stems (--mix-from-stems)" in out


@pytest.mark.skipif(not CAN_WRITE_MP3, reason="this libsndfile cannot write MP3")
def test_mp3_stems_are_read_and_scored(half_path, tmp_path, capsys):
    write_pair_song(tmp_path / "data" / "mp3 song", 3, ".mp3")
    report, _ = evaluate(
        capsys, half_path, tmp_path / "data", tmp_path / "r.json", *STREAMING, "--no-museval"
    )
    (clip,) = report["clips"]
    vocals, accompaniment = references(tmp_path / "data" / "mp3 song")
    assert clip["seconds"] == pytest.approx(vocals.shape[1] / RATE)
    check_song_scores(clip, vocals, accompaniment, vocals + accompaniment)


def _no_vocals(song):
    write_pair_song(song, 5)
    (song / "vocals.wav").unlink()
    return str(song), "no vocals file"


def _short_drums(song):
    write_four_stem_song(song, 5, ".wav")
    _write(song / "drums.wav", _song(5)["drums"][:, :-100])
    return "drums.wav", "44000 samples, but vocals.wav has 44100"


def _other_rate(song):
    write_pair_song(song, 5)
    _write(song / "accompaniment.wav", _song(5)["bass"], rate=48000)
    return "accompaniment.wav", "48000 Hz, but vocals.wav is at 44100 Hz"


def _unreadable(song):
    write_pair_song(song, 5)
    (song / "vocals.wav").write_bytes(b"this is not a wave file")
    return "vocals.wav", "cannot read audio file"


def _long_mixture(song):
    write_pair_song(song, 5, mixture_gain=1.0)
    _write(song / "mixture.wav", np.zeros((2, 50000), np.float32))
    return "mixture.wav", "50000 samples, but vocals.wav has 44100"


def _nan_samples(song):
    write_pair_song(song, 5)
    vocals = _song(5)["vocals"]
    vocals[0, 100] = np.nan
    _write(song / "vocals.wav", vocals)
    return "vocals.wav", "NaN or Inf"


def _two_vocals(song):
    write_pair_song(song, 5)
    _write(song / "vocals.flac", _song(5)["vocals"])
    return str(song), "2 vocals files (vocals.flac, vocals.wav)"


def _too_short(song):
    write_four_stem_song(song, 5, ".wav", seconds=0.08)
    return song.name, "too short to score with 0.05 s trimmed at both ends"


# Each writes a bad song into the folder given and returns (what names the file, the reason).
# The first four are found from the files' headers before the table, the others once read.
BAD_SONGS = {
    "no vocals": _no_vocals,
    "stems of different lengths": _short_drums,
    "stems at different rates": _other_rate,
    "two files for one stem": _two_vocals,
    "an unreadable file": _unreadable,
    "a mixture of another length": _long_mixture,
    "NaN samples": _nan_samples,
    "too short for the trim": _too_short,
}


def _skip_warnings(caplog) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.levelno == logging.WARNING and record.name == "stream_sep.commands.evaluate"
    ]


@pytest.mark.parametrize("case", list(BAD_SONGS))
def test_a_bad_song_is_one_warning_and_the_rest_is_evaluated(
    case, half_path, tmp_path, capsys, caplog
):
    root = tmp_path / "data"
    write_pair_song(root / "good", 4)
    names_file, reason = BAD_SONGS[case](root / "bad")
    report, out = evaluate(capsys, half_path, root, tmp_path / "r.json", *STREAMING, "--no-museval")
    assert [clip["name"] for clip in report["clips"]] == ["good"]
    (skipped,) = report["skipped"]
    assert skipped["name"] == "bad"
    assert names_file in skipped["reason"] and reason in skipped["reason"]
    (warning,) = _skip_warnings(caplog)
    assert warning == f"skipping song 'bad': {skipped['reason']}" and "\n" not in warning
    assert report["summary"]["model"]["vocals"]["sdr"]["clips"] == 1
    assert "1 song(s) skipped (see the warnings): bad" in out


def test_with_mix_from_stems_a_bad_mixture_file_is_not_read(half_path, tmp_path, capsys, caplog):
    root = tmp_path / "data"
    _long_mixture(root / "song")
    (root / "song" / "mixture.wav").write_bytes(b"not audio either")
    report, _ = evaluate(
        capsys, half_path, root, tmp_path / "r.json", *STREAMING, "--no-museval",
        "--mix-from-stems",
    )  # fmt: skip
    assert [clip["name"] for clip in report["clips"]] == ["song"] and report["skipped"] == []
    assert _skip_warnings(caplog) == []


@pytest.mark.parametrize("cases", [["no vocals", "an unreadable file"], ["NaN samples"]])
def test_nothing_left_is_exit_2_with_one_error_line(cases, half_path, tmp_path, capsys, caplog):
    root = tmp_path / "data"
    for index, case in enumerate(cases):
        BAD_SONGS[case](root / f"bad{index}")
    report = tmp_path / "r.json"
    code, _, err = run_cli(
        capsys, "--model", half_path, "--data", root, "--format", "stems", *STREAMING,
        "--no-museval", "--json", report,
    )  # fmt: skip
    assert code == 2
    assert len(_skip_warnings(caplog)) == len(cases)
    assert err == (
        f"stream-sep: error: no song left to evaluate: all {len(cases)} song folder(s) were "
        "skipped (see the warnings above)\n"
    )
    assert not report.exists() and not list(tmp_path.glob(".r.json*"))


def test_the_command_prints_one_line_per_bad_song_then_the_error(half_path, tmp_path):
    """The real process's stderr, as a user sees it."""
    root = tmp_path / "data"
    _other_rate(root / "rate")
    _unreadable(root / "unreadable")
    argv = ["evaluate", "--model", half_path, "--data", root, "--format", "stems", *STREAMING]
    done = subprocess.run(
        [sys.executable, "-m", "stream_sep", *map(str, argv), "--no-museval"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 3, done.stderr
    assert lines[0].startswith("stream-sep: skipping song 'rate': ")
    assert str(root / "rate" / "accompaniment.wav") in lines[0] and "48000 Hz" in lines[0]
    assert lines[1].startswith("stream-sep: skipping song 'unreadable': cannot read audio file")
    assert str(root / "unreadable" / "vocals.wav") in lines[1]
    assert lines[2].startswith("stream-sep: error: no song left to evaluate")


def test_without_museval_it_stops_before_the_header(two_songs, half_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "museval", None)  # `import museval` raises ImportError
    argv = ["--model", half_path, "--data", two_songs, "--format", "stems", *STREAMING]
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("stream-sep: error: the museval package")
    assert "pip install 'stream-sep[eval]'" in err and "--no-museval" in err
    code, out, err = run_cli(capsys, *argv, "--no-museval")
    assert code == 0, err
    assert "overall (dB)" in out


def test_mir1k_is_scored_whole_unless_asked(half_path, tmp_path, capsys):
    write_mir1k_like(tmp_path / "mir1k", ["amy"], clips=1)
    argv = ["--model", half_path, "--data", tmp_path / "mir1k", "--format", "mir1k", *STREAMING]
    code, _, err = run_cli(capsys, *argv, "--no-museval", "--json", tmp_path / "r.json")
    assert code == 0, err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["trim_seconds"] == 0.0
    (clip,) = report["clips"]
    assert clip["scored_seconds"] == clip["seconds"] and "mixture" not in clip
    code, _, err = run_cli(capsys, *argv, "--no-museval", "--trim", "0.1", "--json", tmp_path / "t")
    assert code == 0, err
    trimmed = json.loads((tmp_path / "t").read_text())["clips"][0]
    assert trimmed["scored_seconds"] == pytest.approx(clip["seconds"] - 0.2)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--format", "mir1k", "--mix-from-stems"], "--mix-from-stems applies to --format stems"),
        (["--format", "stems", "--trim", "-1"], "must be a number of seconds >= 0, got '-1'"),
        (["--format", "stems", "--split", "test"], "--split applies to the musdb formats only"),
    ],
)
def test_options_that_do_not_apply_are_refused(arguments, message, half_path, tmp_path, capsys):
    write_pair_song(tmp_path / "data" / "song", 1)
    argv = ["--model", half_path, "--data", tmp_path / "data", *arguments, "--no-museval"]
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and message in err, err


def test_stereo_mid_scores_the_mid_estimate_on_both_channels(
    two_songs, half_path, tmp_path, capsys
):
    """--stereo mid: the model hears (L + R) / 2 and its estimate (here 0.5 x the mid) stands
    for the vocals of both channels; batch (the default) would score 0.5 x each channel."""
    report, _ = evaluate(
        capsys, half_path, two_songs, tmp_path / "r.json", *STREAMING, "--stereo", "mid"
    )
    clip = report["clips"][0]
    vocals, accompaniment = (_trimmed(a) for a in references(two_songs / "A pair song"))
    (mixture,) = read_back(two_songs / "A pair song", "mixture")
    mixture = _trimmed(mixture)
    mid = np.repeat(mixture.mean(axis=0, keepdims=True), 2, axis=0)
    model = clip["scores"]["model"]
    assert model["vocals"]["sdr"] == pytest.approx(_sdr(vocals, 0.5 * mid), abs=RESAMPLED)
    assert model["accompaniment"]["sdr"] == pytest.approx(
        _sdr(accompaniment, mixture - 0.5 * mid), abs=RESAMPLED
    )
    # and the batch closed form is not what was scored
    assert abs(model["vocals"]["sdr"] - _sdr(vocals, 0.5 * mixture)) > 5 * RESAMPLED
