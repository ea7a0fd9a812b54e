"""The model shipped inside the package: present, valid, real time here, and it separates."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from stream_sep.engine import Separator
from stream_sep.evaluation import metrics
from stream_sep.models.bundled import BUNDLED_MODEL, LIVE_MODEL, LIVE_WINDOW_SAMPLES
from stream_sep.models.loading import load_model
from stream_sep.offline import separate_array
from tests.helpers import voice_over_band

MAX_BUNDLED_BYTES = 20 * 1024 * 1024


@pytest.fixture(scope="module")
def bundled():
    return load_model(None, provider="cpu")


def test_bundled_model_is_shipped_small_and_valid(bundled):
    assert BUNDLED_MODEL.is_file()
    assert BUNDLED_MODEL.stat().st_size <= MAX_BUNDLED_BYTES
    assert bundled.path == BUNDLED_MODEL
    assert bundled.contract.sources == ("vocals",)
    assert bundled.contract.sample_rate == 16000
    assert bundled.contract.window_samples == 65024
    metadata = bundled.session.get_modelmeta().custom_metadata_map
    assert metadata.get("provenance.dataset", "").startswith("mir1k")
    # reproducible: a clean commit, the data recipe (full-band songs), the seeds, the steps
    # and the command lines travel with the weights
    assert not metadata["provenance.git_commit"].endswith("-dirty")
    training = json.loads(metadata["provenance.training"])
    assert training["fullband_share"] > 0 and training["multitrack_share"] > 0
    assert training["seed"] == 33 and training["init_from"]
    assert metadata["provenance.steps"] == "300"
    commands = json.loads(metadata["provenance.commands"])
    assert commands[0].startswith("python -m train ") and "--multitrack " in commands[0]


def test_bundled_model_runs_live_in_the_engine(bundled):
    audio = np.zeros((2, 48000 * 3), np.float32)
    with Separator(bundled, 48000, 2, blocking=True) as engine:
        out = engine.process(audio)
        assert engine.stats.windows_run == engine.stats.windows_submitted > 0
    assert np.isfinite(out).all()


def test_bundled_model_separates_a_generated_song_better_than_the_mixture(bundled):
    mixture, vocals, accompaniment = voice_over_band(12.0, 16000, seed=3)
    result = separate_array(bundled, mixture[None], 16000)
    estimate_vocals, estimate_band = result["vocals"][0], result["karaoke"][0]
    baseline = metrics.sdr(vocals, mixture)  # the mixture as the vocal estimate
    model = metrics.sdr(vocals, estimate_vocals)
    assert baseline == pytest.approx(0.0, abs=0.5)  # voice and band have equal energy
    assert model > baseline + 1.0, f"model {model:.2f} dB vs mixture {baseline:.2f} dB"
    assert metrics.sdr(accompaniment, estimate_band) > metrics.sdr(accompaniment, mixture) + 1.0


def test_the_live_variant_is_the_bundled_weights_on_a_shorter_window():
    live = load_model(LIVE_MODEL, provider="cpu")
    assert LIVE_MODEL.stat().st_size <= MAX_BUNDLED_BYTES
    assert live.contract.window_samples == LIVE_WINDOW_SAMPLES
    assert live.contract.sample_rate == 16000 and live.contract.sources == ("vocals",)
    metadata = live.session.get_modelmeta().custom_metadata_map
    assert metadata["provenance.trained_window_samples"] == "65024"

    def weights(path) -> set[bytes]:
        arrays = [onnx.numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer]
        return {a.tobytes() + str(a.shape).encode() for a in arrays if a.size > 1000}

    assert len(weights(BUNDLED_MODEL)) > 50 and weights(LIVE_MODEL) == weights(BUNDLED_MODEL)
