"""The ``mdx`` family (UVR's MDX-Net conventions) on generated MDX-shaped ONNX models:
known answers through ``separate``, the engine and the offline plan, and its contract."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper, numpy_helper

from stream_sep import api
from stream_sep.engine import WindowPlan
from stream_sep.errors import ModelError
from stream_sep.models.families import FAMILY_KEY, mdx
from stream_sep.models.loading import load_model
from stream_sep.offline import separate_array
from tests.helpers import noise
from tests.mdx_helpers import REAL, SMALL, band_limited, contract_for, mdx_model, shelf_copy

RATE = mdx.SAMPLE_RATE


def in_band_tones(contract, channels: int, seconds: float, seed: int = 0) -> np.ndarray:
    """(channels, n) float32: sums of tones well inside the band the network sees (different
    per channel), so the band-limited signal is the signal itself."""
    rng = np.random.default_rng(seed)
    low, high = contract.band_hz
    t = np.arange(int(seconds * RATE)) / RATE
    rows = []
    for _ in range(channels):
        tones = rng.uniform(max(3 * low, 150.0), 0.8 * high, size=5)
        rows.append(sum(0.08 * np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) for f in tones))
    return np.stack(rows).astype(np.float32)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mdx")
    small = contract_for()
    instrumental = contract_for(stem="instrumental", compensate=1.05)
    return {
        "identity": load_model(shelf_copy(folder / "identity.onnx", "identity", small), "cpu"),
        "zeros": load_model(shelf_copy(folder / "zeros.onnx", "zeros", small), "cpu"),
        "instrumental": load_model(
            shelf_copy(folder / "inst.onnx", "scale", instrumental, scale=0.5), "cpu"
        ),
        "vocals_scaled": load_model(
            shelf_copy(folder / "voc.onnx", "scale", contract_for(compensate=1.05), scale=0.5),
            "cpu",
        ),
    }


# ---------------------------------------------------------------------------- one window
@pytest.mark.parametrize("shape", [SMALL, REAL], ids=["small", "dim_f3072_n_fft7680_dim_t256"])
def test_an_identity_model_gives_the_band_limited_input_back(tmp_path, shape):
    contract = contract_for(**shape)
    model = load_model(shelf_copy(tmp_path / "id.onnx", "identity", contract), "cpu")
    assert model.contract.window_samples == 1024 * (shape["dim_t"] - 1)
    audio = noise(2, contract.window_samples, seed=1, amplitude=0.1)
    expected = band_limited(audio, contract)
    for vocals in (model.separate(audio)[:, 0], model.separate_channels(audio, 2)[:, 0]):
        np.testing.assert_allclose(vocals, expected, atol=2e-6 * np.abs(expected).max())
    # The band really is limited: the input had energy outside it.
    assert np.abs(audio - expected).max() > 0.05


def test_the_real_size_window_is_5_92_seconds(tmp_path):
    contract = contract_for(**REAL)
    assert contract.window_samples == 261_120
    assert contract.window_seconds == pytest.approx(5.92, abs=0.01)
    low, high = contract.band_hz
    assert high == pytest.approx(17_640.0) and low == pytest.approx(3 * RATE / 7680)
    plan = WindowPlan.build(contract, 48000, hop=1.0, lookahead=0.1, crossfade=0.064)
    assert plan.window_samples == round(261_120 * 48000 / RATE)
    assert plan.edge_samples == int(np.ceil(7680 // 4 * 48000 / RATE))


def test_channels_are_left_real_left_imaginary_right_real_right_imaginary(tmp_path):
    """A network that swaps its channel pairs (0,1) <-> (2,3) swaps left and right: so the
    host puts the left channel's real and imaginary parts in channels 0 and 1."""
    contract = contract_for()
    swap = numpy_helper.from_array(np.array([2, 3, 0, 1], np.int64), "order")
    nodes = [helper.make_node("Gather", ["input", "order"], ["output"], axis=1)]
    path = mdx_model(
        tmp_path / "swap.onnx",
        nodes=nodes,
        initializers=[swap],
        metadata=contract.to_metadata(),
    )
    model = load_model(path, "cpu")
    audio = noise(2, contract.window_samples, seed=2, amplitude=0.1)
    vocals = model.separate_channels(audio, 2)[:, 0]
    expected = band_limited(audio[::-1], contract)
    np.testing.assert_allclose(vocals, expected, atol=2e-6)


def test_a_mono_row_runs_as_left_equals_right(models):
    model = models["vocals_scaled"]
    audio = noise(1, model.contract.window_samples, seed=3, amplitude=0.1)
    mono = model.separate(audio)
    pair = model.separate_channels(np.concatenate([audio, audio]), 2)
    np.testing.assert_allclose(mono[0], pair[0], atol=1e-7)
    np.testing.assert_allclose(mono[0], pair[1], atol=1e-7)


def test_compensate_multiplies_the_vocal_stem(models):
    model = models["vocals_scaled"]
    audio = noise(2, model.contract.window_samples, seed=4, amplitude=0.1)
    vocals = model.separate_channels(audio, 2)[:, 0]
    expected = 1.05 * 0.5 * band_limited(audio, model.contract)
    np.testing.assert_allclose(vocals, expected, atol=2e-6)


def test_an_instrumental_model_gives_vocals_as_the_mixture_minus_the_instrumental(models):
    """vocals = band-limited mixture - compensate x the network's instrumental; on a
    mixture inside the band that is mixture - instrumental."""
    model = models["instrumental"]
    contract = model.contract
    mixture = in_band_tones(contract, 2, contract.window_samples / RATE)
    mixture = mixture[:, : contract.window_samples]
    vocals = model.separate_channels(mixture, 2)[:, 0]
    instrumental = 1.05 * 0.5 * band_limited(mixture, contract)  # the compensated stem
    np.testing.assert_allclose(vocals, band_limited(mixture, contract) - instrumental, atol=2e-6)
    inner = slice(contract.n_fft, -contract.n_fft)  # away from the window's reflect-padded ends
    np.testing.assert_allclose(
        vocals[:, inner], (mixture - instrumental)[:, inner], atol=1e-3 * np.abs(mixture).max()
    )
    # Out of band: tones above dim_f stay out of the vocals (they remain in karaoke).
    t = np.arange(contract.window_samples) / RATE
    high = contract.band_hz[1]
    highs = sum(0.1 * np.sin(2 * np.pi * f * t) for f in (1.3 * high, 1.7 * high, 2.5 * high))
    highs = np.stack([highs, highs]).astype(np.float32)
    assert np.abs(model.separate_channels(highs, 2)[..., inner]).max() < 1e-4


def test_a_graph_with_a_fixed_batch_of_one_runs_item_by_item(tmp_path, models):
    contract = contract_for(compensate=1.05)
    path = shelf_copy(
        tmp_path / "b1.onnx",
        "scale",
        contract,
        scale=0.5,
        input_shape=[1, 4, contract.dim_f, contract.dim_t],
    )
    fixed = load_model(path, "cpu")
    audio = noise(4, contract.window_samples, seed=6, amplitude=0.1)
    np.testing.assert_allclose(
        fixed.separate_channels(audio, 2),
        models["vocals_scaled"].separate_channels(audio, 2),
        atol=1e-7,
    )


def test_rows_that_do_not_pair_are_refused(models):
    model = models["identity"]
    with pytest.raises(ValueError, match="do not group"):
        model.separate_channels(np.zeros((3, model.contract.window_samples), np.float32), 2)
    with pytest.raises(ValueError, match="audio must be"):
        model.separate(np.zeros((2, 100), np.float32))


# ---------------------------------------------------------------------------- the engine
SETTINGS = {"hop": 0.1, "lookahead": 0.05, "crossfade": 0.02}


def stream_through(model, audio, rate, mode, **options):
    """Feed ``audio`` plus one latency of silence through a blocking engine; returns
    (output, latency)."""
    with api.Separator(
        model, rate, audio.shape[0], mode=mode, blocking=True, limit=False, **SETTINGS, **options
    ) as engine:
        latency = engine.latency_samples
        padded = np.pad(audio, ((0, 0), (0, latency)))
        out = np.concatenate(
            [engine.process(padded[:, i : i + 1000]) for i in range(0, padded.shape[1], 1000)],
            axis=1,
        )
    return out, latency


def test_a_zeros_model_gives_karaoke_equal_to_the_delayed_input(models):
    audio = noise(2, RATE * 2, seed=7, amplitude=0.3)
    out, latency = stream_through(models["zeros"], audio, RATE, "karaoke")
    np.testing.assert_array_equal(out[:, latency:], audio)
    assert not out[:, :latency].any()


@pytest.mark.parametrize("rate", [44100, 48000])
@pytest.mark.parametrize("stereo", ["batch", "mid"])
def test_the_vocal_estimate_arrives_exactly_at_the_reported_latency(models, rate, stereo):
    """Identity model, in-band stereo signal: vocals mode plays the input delayed by
    exactly ``latency_samples`` (at the model's rate and resampled from 48 kHz)."""
    contract = models["identity"].contract
    audio = in_band_tones(contract, 2, 2.5, seed=8)
    if rate != RATE:
        t = np.arange(int(2.5 * rate)) / rate
        audio = np.stack([0.2 * np.sin(2 * np.pi * 440 * t), 0.2 * np.sin(2 * np.pi * 1234 * t)])
        audio = audio.astype(np.float32)
    if stereo == "mid":
        audio = np.stack([audio[0], audio[0]])
    out, latency = stream_through(models["identity"], audio, rate, "vocals", stereo=stereo)
    # Away from the signal's abrupt start and end (the band limit smears those).
    inner = slice(rate // 2, -rate // 2)
    error = np.abs(out[:, latency:][:, inner] - audio[:, inner]).max()
    assert error < 2e-3 * np.abs(audio).max(), error
    # One sample off is far worse: the delay is exact, not approximate.
    off_by_one = np.abs(out[:, latency + 1 :][:, inner] - audio[:, :-1][:, inner]).max()
    assert off_by_one > 10 * error


def test_offline_separation_of_an_instrumental_model(models):
    model = models["instrumental"]
    mixture = in_band_tones(model.contract, 2, 3.0, seed=9)
    stems = separate_array(model, mixture, RATE)
    instrumental = 1.05 * 0.5 * mixture
    inner = slice(RATE // 4, -RATE // 4)  # away from the signal's abrupt start and end
    np.testing.assert_allclose(stems["karaoke"][:, inner], instrumental[:, inner], atol=1e-4)
    np.testing.assert_allclose(
        stems["vocals"][:, inner], (mixture - instrumental)[:, inner], atol=1e-4
    )


def test_offline_identity_gives_the_in_band_input_back(models):
    audio = in_band_tones(models["identity"].contract, 2, 3.0, seed=10)
    stems = separate_array(models["identity"], audio, RATE)
    inner = slice(RATE // 4, -RATE // 4)
    np.testing.assert_allclose(stems["vocals"][:, inner], audio[:, inner], atol=1e-4)


# ---------------------------------------------------------------------------- contract
def test_the_contract_round_trips_through_metadata():
    contract = contract_for(**REAL, compensate=1.035, stem="instrumental", output_name="out")
    metadata = contract.to_metadata()
    assert metadata[FAMILY_KEY] == "mdx"
    assert mdx.contract_from_metadata(metadata) == contract


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"n_fft": 7681}, "n_fft must be even"),
        ({"dim_f": 2000}, r"dim_f must be in \[4, n_fft/2\+1=1025\]"),
        ({"dim_f": 3}, r"dim_f must be in \[4"),
        ({"stem": "drums"}, "stem must be one of vocals, instrumental"),
        ({"compensate": float("nan")}, "compensate must be in"),
        ({"dim_t": 5000}, r"dim_t must be in \[2, 4096\]"),
        ({"dim_t": 3000}, "must be in .*60 s"),
    ],
)
def test_bad_contract_values_are_refused(changes, message):
    metadata = contract_for().to_metadata()
    for key, value in changes.items():
        prefix = mdx.MDX if key in ("dim_f", "dim_t", "stem", "compensate") else "stream_sep."
        metadata[prefix + key] = str(value)
    with pytest.raises(ModelError, match=message):
        mdx.contract_from_metadata(metadata, "m.onnx")


def test_a_community_file_without_our_contract_says_to_import_it(tmp_path):
    path = mdx_model(tmp_path / "UVR-MDX-NET-Voc_FT.onnx")
    with pytest.raises(ModelError, match="stream-sep models import UVR-MDX-NET-Voc_FT.onnx"):
        load_model(path, "cpu")


def test_an_unknown_family_is_one_line(tmp_path):
    metadata = contract_for().to_metadata()
    metadata[FAMILY_KEY] = "roformer"
    path = mdx_model(tmp_path / "r.onnx", metadata=metadata)
    with pytest.raises(ModelError, match="model family 'roformer' is not supported"):
        load_model(path, "cpu")


def test_a_shelf_copy_whose_graph_disagrees_with_its_contract_is_refused(tmp_path):
    path = mdx_model(tmp_path / "m.onnx", metadata=contract_for(dim_f=512).to_metadata())
    with pytest.raises(ModelError, match=r"axis 2 is 256, not 512"):
        load_model(path, "cpu")


# ---------------------------------------------------------------------------- benchmark
def test_the_mdx_benchmark_runs_and_its_flop_count_is_the_graphs(tmp_path):
    """Smoke run of benchmarks/bench_mdx.py (no timing assertions); the analytic FLOP count
    of the MDX-sized network equals bench_inference's count from the graph itself."""
    import json

    from benchmarks import bench_inference, bench_mdx

    assert bench_mdx.main(["--smoke", "--out", str(tmp_path), "--workdir", str(tmp_path)]) == 0
    (row,) = json.loads((tmp_path / "mdx.json").read_text())["rows"]
    assert row["window_s"] == pytest.approx(31 * 1024 / RATE, abs=1e-3) and row["host_s"] > 0
    assert row["latency_s"] > 0 or row["why"]
    shape, _ = bench_mdx.SMOKE["mdx-smoke"]
    flops, _ = bench_inference.count_flops(tmp_path / "mdx-smoke.onnx", 1)
    assert flops == shape.flops()
