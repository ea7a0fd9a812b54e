"""--denoise: every window separated as it is and sign-inverted, the two estimates averaged.

A model with a bias (an output that does not change sign with its input) separates with an
error that --denoise removes exactly, in the streaming engine, the offline plan and the
command line; the bundled network becomes odd (the estimate of -x is minus that of x)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
from onnx import helper, numpy_helper

import stream_sep
from stream_sep import cli, evaluation
from stream_sep.engine import Separator
from stream_sep.errors import UserError
from stream_sep.models.families import separate_rows
from stream_sep.models.loading import load_model
from stream_sep.offline.overlap_add import separate_overlap_add
from stream_sep.settings import Settings
from tests.helpers import FAST_ARGS, FAST_OPTIONS, gain_model, noise, stream
from tests.live_check import (
    ATTEMPTS,
    MIN_SEPARATED,
    covered,
    recorded_dry_ranges,
    recording_equals_engine,
    tap_engines,
)
from tests.mdx_helpers import contract_for, shelf_copy

RATE = 16000
OFFSET = 30.0  # the biased model's constant, added to every STFT value it outputs


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """{"plain": estimate = half the mixture, "biased": the same plus a constant}."""
    folder = tmp_path_factory.mktemp("m")
    return {
        "plain": load_model(str(gain_model(folder / "half.onnx", 0.5)), "cpu"),
        "biased": load_model(str(gain_model(folder / "biased.onnx", 0.5, offset=OFFSET)), "cpu"),
    }


def windows(model, rows: int, seed: int = 0) -> np.ndarray:
    return noise(rows, model.contract.window_samples, seed=seed)


def test_the_bias_cancels_and_only_the_bias(models):
    audio = windows(models["plain"], 3)
    expected = separate_rows(models["plain"], audio, 1)
    biased = separate_rows(models["biased"], audio, 1)
    denoised = separate_rows(models["biased"], audio, 1, denoise=True)
    sources = len(models["plain"].contract.sources)
    assert denoised.shape == expected.shape == (3, sources, audio.shape[1])
    assert denoised.dtype == np.float32
    assert np.abs(biased - expected).max() > 0.01  # the bias is there without --denoise
    np.testing.assert_allclose(denoised, expected, atol=1e-6)
    # An unbiased linear model is odd already: --denoise changes nothing.
    unchanged = separate_rows(models["plain"], audio, 1, denoise=True)
    np.testing.assert_allclose(unchanged, expected, atol=1e-6)


def test_the_bundled_network_becomes_odd():
    model = load_model(None, "cpu")
    audio = windows(model, 2, seed=3)
    plain = separate_rows(model, audio, 2), separate_rows(model, -audio, 2)
    denoised = separate_rows(model, audio, 2, True), separate_rows(model, -audio, 2, True)
    peak = np.abs(plain[0]).max()
    assert np.abs(plain[0] + plain[1]).max() > 1e-3 * peak  # the network has an even part
    np.testing.assert_allclose(denoised[1], -denoised[0], atol=1e-5 * peak)


def test_an_mdx_model_is_denoised_per_stereo_pair_even_one_item_per_run(tmp_path):
    """UVR's MDX-Net family groups a window's two channels into one network input; the
    sign-inverted copy must keep that pairing, also for a graph with a fixed batch of 1."""
    contract = contract_for()
    plain = load_model(shelf_copy(tmp_path / "plain.onnx", "scale", contract, scale=0.5), "cpu")
    biased_graph = shelf_copy(
        tmp_path / "biased.onnx",
        contract=contract,
        input_shape=[1, 4, contract.dim_f, contract.dim_t],
        nodes=[
            helper.make_node("Mul", ["input", "gain"], ["scaled"]),
            helper.make_node("Add", ["scaled", "bias"], ["output"]),
        ],
        initializers=[
            numpy_helper.from_array(np.array(0.5, np.float32), "gain"),
            numpy_helper.from_array(np.array(1.0, np.float32), "bias"),
        ],
    )
    biased = load_model(biased_graph, "cpu")
    audio = noise(4, contract.window_samples, seed=7, amplitude=0.1)  # two stereo windows
    expected = separate_rows(plain, audio, 2)
    assert np.abs(separate_rows(biased, audio, 2) - expected).max() > 1e-3
    np.testing.assert_allclose(separate_rows(biased, audio, 2, denoise=True), expected, atol=1e-6)


def test_the_streaming_engine_removes_the_bias_in_any_blocks(models):
    audio = noise(2, 3 * RATE, seed=1)
    outputs = {}
    for name, denoise, blocks in (
        ("plain", False, 1600),
        ("biased", False, 1600),
        ("denoised", True, 1600),
        ("denoised, odd blocks", True, [1, 127, 4096]),
    ):
        model = models["plain" if name == "plain" else "biased"]
        with Separator(
            model, RATE, 2, mode="vocals", blocking=True, limit=False, denoise=denoise,
            **FAST_OPTIONS,
        ) as engine:  # fmt: skip
            outputs[name] = stream(engine, audio, blocks)
            assert engine.stats.model_failures == 0
    assert np.abs(outputs["biased"] - outputs["plain"]).max() > 1e-3
    np.testing.assert_allclose(outputs["denoised"], outputs["plain"], atol=1e-5)
    np.testing.assert_array_equal(outputs["denoised, odd blocks"], outputs["denoised"])


@pytest.mark.parametrize("stereo", ["batch", "mid"])
def test_the_offline_plan_removes_the_bias(models, stereo):
    audio = noise(2, 2 * RATE, seed=2)
    plain = separate_overlap_add(models["plain"], audio, RATE, stereo=stereo)
    biased = separate_overlap_add(models["biased"], audio, RATE, stereo=stereo)
    denoised = separate_overlap_add(models["biased"], audio, RATE, stereo=stereo, denoise=True)
    assert np.abs(biased - plain).max() > 1e-3
    np.testing.assert_allclose(denoised, plain, atol=1e-5)


def test_evaluation_reports_and_applies_it(models):
    mixture = noise(1, 2 * RATE, seed=4)
    options = evaluation.engine_options(True, 0.1, 0.05, denoise=True, postfilter="none")
    assert options["denoise"] is True
    assert evaluation.describe_plan(models["biased"], options)["denoise"] is True
    denoised = evaluation.estimate_vocals(models["biased"], mixture, RATE, options)
    plain = evaluation.estimate_vocals(
        models["plain"], mixture, RATE, {**options, "denoise": False}
    )
    np.testing.assert_allclose(denoised, plain, atol=1e-5)
    assert evaluation.engine_options(True)["denoise"] is False  # off by default


def test_the_command_line_option_writes_the_unbiased_stems(models, tmp_path):
    song = tmp_path / "song.wav"
    soundfile.write(song, noise(2, 2 * RATE, seed=5).T, RATE, subtype="FLOAT")
    stems = {}
    for name, extra in (("plain", []), ("denoised", ["--denoise"])):
        model = models["plain" if name == "plain" else "biased"]
        out = tmp_path / name
        argv = ["separate", str(song), "-o", str(out), "--model", str(model.path), "--quiet"]
        assert cli.main(argv + ["--postfilter", "none", *extra]) == 0
        stems[name], rate = soundfile.read(out / "song" / "vocals.wav", dtype="float32")
        assert rate == RATE
    np.testing.assert_allclose(stems["denoised"], stems["plain"], atol=1e-5)


def test_the_python_api_takes_it_in_settings(models):
    audio = noise(2, 2 * RATE, seed=6)
    settings = {"postfilter": "none"}
    plain = stream_sep.separate(audio, RATE, models["plain"], settings=Settings(**settings))
    denoised = stream_sep.separate(
        audio, RATE, models["biased"], settings=Settings(denoise=True, **settings)
    )
    np.testing.assert_allclose(denoised["vocals"], plain["vocals"], atol=1e-5)
    np.testing.assert_allclose(denoised["karaoke"], plain["karaoke"], atol=1e-5)


def test_the_live_command_runs_it_in_real_time(models, tmp_path, capsys, monkeypatch):
    """File in, file out through the live path (worker thread, real-time clock): the biased
    model with --denoise plays what the unbiased one gives inline on every sample the engine
    did not record as played dry (a late window) or lighter (a window shed to run without
    the pass); the whole recording is checked against the inline engine as in the other
    live tests (live_check.recording_equals_engine). A run with under half of the input
    separated checks too little and is repeated (at most ATTEMPTS runs)."""
    audio = noise(2, RATE, seed=8)
    song, out = tmp_path / "song.wav", tmp_path / "out.wav"
    soundfile.write(song, audio.T, RATE, subtype="FLOAT")
    argv = ["--input", str(song), "--output", str(out), "--model", str(models["biased"].path)]
    with Separator(models["plain"], RATE, 2, blocking=True, **FAST_OPTIONS) as unbiased:
        plain = unbiased.process(np.pad(audio, ((0, 0), (0, unbiased.latency_samples))))
    engines = tap_engines(monkeypatch)
    for _attempt in range(ATTEMPTS):
        engines.clear()
        rc = cli.main([*argv, *FAST_ARGS, "--postfilter", "none", "--denoise"])
        err = capsys.readouterr().err
        assert rc == 0, err
        (engine,) = engines
        assert engine.config.denoise and engine.config.postfilter == "none"
        recorded, _rate = soundfile.read(out, dtype="float32", always_2d=True)
        assert recorded.shape == plain.T.shape
        np.testing.assert_array_equal(engine.input[:, : audio.shape[1]], audio)
        dry, lighter = recorded_dry_ranges(engine), engine.lighter_ranges()
        separated, _ = recording_equals_engine(recorded.T, engine, engine.input, dry, lighter)
        as_configured = ~(covered(dry, 0, plain.shape[1]) | covered(lighter, 0, plain.shape[1]))
        np.testing.assert_allclose(recorded.T[:, as_configured], plain[:, as_configured], atol=1e-5)
        if separated >= MIN_SEPARATED:
            break
    assert separated >= MIN_SEPARATED, f"{separated:.0%} separated; dry {dry}, {lighter}\n{err}"


def test_a_value_that_is_not_a_bool_is_one_line(models):
    with pytest.raises(UserError, match="denoise must be True or False, got 'yes'"):
        Settings(denoise="yes")
    with pytest.raises(UserError, match="denoise must be True or False, got 1"):
        Separator(models["plain"], RATE, 1, blocking=True, denoise=1, **FAST_OPTIONS)
    with pytest.raises(UserError, match="denoise must be True or False"):
        separate_overlap_add(models["plain"], noise(1, RATE), RATE, denoise="on")
