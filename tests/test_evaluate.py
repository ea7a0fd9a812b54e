"""``stream-sep evaluate`` end to end: generated datasets, tiny ONNX models, known answers.

A gain model's vocal estimate is ``g * mixture``, so every score has a closed form: with
``e = mixture - g * mixture`` ... the tests compute each expected value from the arrays.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile as sf
import soxr

from stream_sep import evaluation
from stream_sep.cli import main
from stream_sep.models.contract import ModelContract
from tests.helpers import gain_model, voice_over_band
from tests.test_evaluate_datasets import write_musdb

RATE = 16000
# Tolerances, in dB:
ENGINE = 0.02  # the model's estimate lacks the Nyquist bin (the contract drops it) and is
#                float32: a gain model's score is off its closed form by ~0.005 dB
RESAMPLED = 0.1  # at 44.1 kHz the estimate passes soxr down to 16 kHz and back
FILE = 1e-4  # references read back from float32 files


def _sdr(reference, estimate) -> float:
    reference, estimate = np.asarray(reference, np.float64), np.asarray(estimate, np.float64)
    return 10 * math.log10(np.sum(reference**2) / np.sum((reference - estimate) ** 2))


def _si_sdr(reference, estimate) -> float:
    reference, estimate = np.ravel(reference).astype(np.float64), np.ravel(estimate)
    target = np.dot(estimate, reference) / np.dot(reference, reference) * reference
    return 10 * math.log10(np.sum(target**2) / np.sum((target - estimate) ** 2))


@pytest.fixture(scope="module")
def mir1k(tmp_path_factory):
    """Three 1.5-s MIR-1K-layout clips of a formant voice over drums and bass.

    Returns (folder, {name: (vocals, accompaniment)}) with (samples,) float32 stems."""
    folder = tmp_path_factory.mktemp("mir1k")
    stems = {}
    for seed, name in enumerate(["amy_1_01", "amy_1_02", "bobon_3_04"]):
        _, vocals, accompaniment = voice_over_band(1.5, RATE, seed)
        sf.write(folder / f"{name}.wav", np.stack([accompaniment, vocals], 1), RATE, "FLOAT")
        stems[name] = (vocals, accompaniment)
    return folder, stems


@pytest.fixture(scope="module")
def small_half(tmp_path_factory):
    """A 0.48-s-window model whose vocal estimate is half the mixture."""
    return gain_model(tmp_path_factory.mktemp("models") / "half.onnx", 0.5)


STREAMING = ["--streaming", "--hop", "0.1", "--lookahead", "0.05"]


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(["evaluate", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_streaming_scores_on_mir1k_equal_their_closed_forms(mir1k, small_half, tmp_path, capsys):
    folder, stems = mir1k
    report_path = tmp_path / "report.json"
    code, out, err = run_cli(
        capsys, "--model", small_half, "--data", folder, "--format", "mir1k", *STREAMING,
        "--json", report_path,
    )  # fmt: skip
    assert code == 0, err
    report = json.loads(report_path.read_text())
    assert report["mode"] == "streaming"
    assert report["engine"]["hop_seconds"] == pytest.approx(0.1)
    assert report["engine"]["algorithmic_latency_seconds"] == pytest.approx(0.15)
    assert [clip["name"] for clip in report["clips"]] == list(stems)
    for clip in report["clips"]:
        vocals, accompaniment = stems[clip["name"]]
        mixture = vocals + accompaniment
        model, baseline = clip["scores"]["model"], clip["scores"]["mixture"]
        assert model["vocals"]["sdr"] == pytest.approx(_sdr(vocals, 0.5 * mixture), abs=ENGINE)
        assert model["accompaniment"]["sdr"] == pytest.approx(
            _sdr(accompaniment, 0.5 * mixture), abs=ENGINE
        )
        # SI-SDR rescales 0.5 * mixture to the best multiple of the reference.
        assert model["vocals"]["si_sdr"] == pytest.approx(_si_sdr(vocals, mixture), abs=ENGINE)
        # The mixture baseline's error is exactly the other stem.
        assert baseline["vocals"]["sdr"] == pytest.approx(
            10 * math.log10(np.sum(vocals.astype(float) ** 2) / np.sum(accompaniment**2.0)),
            abs=FILE,
        )
        assert baseline["vocals"]["museval_sdr"] is not None
        assert "centre-cancel" not in clip["scores"]  # MIR-1K's mixture is mono
    per_clip = [clip["scores"]["model"]["vocals"]["sdr"] for clip in report["clips"]]
    overall = report["summary"]["model"]["vocals"]["sdr"]
    assert overall["mean"] == pytest.approx(np.mean(per_clip))
    assert overall["median"] == pytest.approx(np.median(per_clip))
    assert overall["clips"] == 3
    by_singer = report["by_group"]
    assert list(by_singer) == ["amy", "bobon"]
    assert by_singer["amy"]["model"]["vocals"]["sdr"]["mean"] == pytest.approx(
        np.mean(per_clip[:2])
    )
    assert by_singer["bobon"]["model"]["vocals"]["sdr"]["median"] == pytest.approx(per_clip[2])
    assert by_singer["amy"]["model"]["vocals"]["sdr"]["clips"] == 2
    assert "overall (dB)" in out and "L-R centre   n/a" in out
    assert "vocals SDR by singer" in out and "bobon" in out
    assert "amy_1_02" in out and "mono" in out


def test_offline_uses_the_separate_commands_settings(mir1k, tmp_path, capsys):
    folder, stems = mir1k
    model = gain_model(tmp_path / "full-window.onnx", 0.5, contract=ModelContract())
    report_path = tmp_path / "offline.json"
    code, out, err = run_cli(
        capsys, "--model", model, "--data", folder, "--format", "mir1k", "--singers", "bobon",
        "--no-museval", "--json", report_path,
    )  # fmt: skip
    assert code == 0, err
    report = json.loads(report_path.read_text())
    assert report["mode"] == "offline" and report["museval"] is False
    assert report["engine"]["hop_seconds"] == pytest.approx(0.5)
    assert report["engine"]["lookahead_seconds"] == pytest.approx(0.25)
    (clip,) = report["clips"]
    vocals, accompaniment = stems["bobon_3_04"]
    scores = clip["scores"]["model"]["vocals"]
    assert scores["sdr"] == pytest.approx(_sdr(vocals, 0.5 * (vocals + accompaniment)), abs=ENGINE)
    assert scores["museval_sdr"] is None
    assert report["summary"]["model"]["vocals"]["museval_sdr"]["clips"] == 0


def test_stereo_musdb_adds_centre_cancellation_with_its_closed_form(small_half, tmp_path, capsys):
    """A centred voice (equal in both channels) over drums on the left and bass on the right:
    L-R cancellation leaves the voice out but takes half of each side's band along."""
    samples = int(1.2 * RATE)
    _, voice, _ = voice_over_band(1.2, RATE, 7)
    rng = np.random.default_rng(3)
    left, right = (0.05 * rng.standard_normal((2, samples))).astype(np.float32)
    silent = np.zeros(samples, np.float32)
    stems = {
        "vocals": np.stack([voice, voice]),
        "drums": np.stack([left, silent]),
        "bass": np.stack([silent, right]),
        "other": np.stack([silent, silent]),
    }
    write_musdb(tmp_path / "musdb", {"song": stems}, RATE, with_mixture=False)
    report_path = tmp_path / "musdb.json"
    code, out, err = run_cli(
        capsys, "--model", small_half, "--data", tmp_path / "musdb", "--format", "musdb",
        *STREAMING, "--json", report_path,
    )  # fmt: skip
    assert code == 0, err
    scores = json.loads(report_path.read_text())["clips"][0]["scores"]["centre-cancel"]
    accompaniment = np.stack([left, right]).astype(np.float64)
    leak = np.tile((left + right) / 2.0, (2, 1))  # what the mid takes of the band, per channel
    assert scores["vocals"]["sdr"] == pytest.approx(_sdr(stems["vocals"], stems["vocals"] + leak))
    assert scores["accompaniment"]["sdr"] == pytest.approx(
        _sdr(accompaniment, accompaniment - leak)
    )
    assert "L-R centre   mean" in out


def test_musdb_hq_is_measured_at_44_1_khz_through_the_resampler(small_half, tmp_path, capsys):
    """Band-limited stems (below 6 kHz, within the model's 16 kHz band) at 44.1 kHz."""
    rate = 44100
    _, voice, band = voice_over_band(1.0, 12000, 4)
    voice, band = (soxr.resample(x, 12000, rate) for x in (voice, band))
    silent = np.zeros_like(voice)
    stems = {
        "vocals": voice[np.newaxis],
        "drums": band[np.newaxis],
        "bass": silent[np.newaxis],
        "other": silent[np.newaxis],
    }
    write_musdb(tmp_path / "hq", {"song": stems}, rate)
    report_path = tmp_path / "hq.json"
    code, _, err = run_cli(
        capsys, "--model", small_half, "--data", tmp_path / "hq", "--format", "musdb-hq",
        *STREAMING, "--no-museval", "--json", report_path,
    )  # fmt: skip
    assert code == 0, err
    clip = json.loads(report_path.read_text())["clips"][0]
    assert clip["sample_rate"] == rate
    expected = _sdr(voice, 0.5 * (voice + band))
    assert clip["scores"]["model"]["vocals"]["sdr"] == pytest.approx(expected, abs=RESAMPLED)


def test_centre_cancel_estimates_sum_to_the_mixture():
    mixture = np.random.default_rng(0).standard_normal((2, 100))
    vocals, accompaniment = evaluation.centre_cancel(mixture)
    np.testing.assert_allclose(vocals[0], vocals[1])
    np.testing.assert_allclose(vocals + accompaniment, mixture)
    np.testing.assert_allclose(accompaniment[0], (mixture[0] - mixture[1]) / 2)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--data", "{tmp}/nowhere", "--format", "mir1k"], "is not a directory"),
        (["--data", "{tmp}/empty", "--format", "mir1k"], "no .wav or .flac files"),
        (["--data", "{tmp}/empty", "--format", "wav"], "invalid choice: 'wav'"),
        (["--data", "{tmp}/garbage", "--format", "mir1k", *STREAMING], "cannot read audio file"),
        (["--data", "{mir1k}", "--format", "mir1k", "--hop", "0.2"], "apply to --streaming only"),
        (["--data", "{mir1k}", "--format", "mir1k", "--limit", "0"], "positive integer, got '0'"),
        (
            ["--data", "{mir1k}", "--format", "mir1k", "--json", "{tmp}/no/dir/r.json"],
            "does not exist",
        ),
        (["--data", "{mir1k}", "--format", "mir1k", "--singers", "zed"], "no clips of 'zed'"),
        (["--data", "{mir1k}", "--format", "mir1k", "--model", "{tmp}/none.onnx"], "none.onnx"),
        (["--data", "{mir1k}", "--format", "mir1k"], "hop + lookahead + crossfade must be"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(arguments, message, mir1k, small_half, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / "amy_1_01.wav").write_bytes(b"this is not a wave file")
    argv = [part.format(tmp=tmp_path, mir1k=mir1k[0]) for part in arguments]
    if "--model" not in argv:
        argv += ["--model", str(small_half)]
    report = tmp_path / "report.json"
    if "--json" not in argv:
        argv += ["--json", str(report)]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("stream-sep: error: "), err
    assert message in err
    assert "Traceback" not in err
    assert not report.exists()
    assert not list(tmp_path.glob(".report.json*"))  # no temp file left behind either


class _Broken:
    """Wraps a real model; ``separate`` raises or returns NaN (what a bad export might do)."""

    def __init__(self, model, failure: str):
        self.model, self.contract, self.failure = model, model.contract, failure

    def separate(self, audio):
        if self.failure == "raise":
            raise RuntimeError("broken graph\nsecond line of detail")
        return np.full_like(self.model.separate(audio), np.nan)


@pytest.mark.parametrize(
    ("failure", "message"),
    [("raise", r"failed on \d+ of \d+ window\(s\): broken graph$"), ("nan", "NaN/Inf")],
)
def test_a_failing_model_stops_the_evaluation_with_its_reason(small_half, failure, message):
    from stream_sep.errors import ModelError
    from stream_sep.models.loading import load_model

    model = _Broken(load_model(small_half, provider="cpu"), failure)
    mixture = voice_over_band(0.5, RATE, 0)[0][np.newaxis]
    options = evaluation.engine_options(True, 0.1, 0.05)
    with pytest.raises(ModelError, match=message):
        evaluation.estimate_vocals(model, mixture, RATE, options)
