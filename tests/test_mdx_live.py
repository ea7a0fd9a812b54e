"""An MDX-shaped model live through the JACK dummy device: ``stream-sep --input mic --output
headphones --model NAME`` with a model imported onto the shelf, at the device's 48 kHz while
the model runs at 44.1 kHz. What reaches ``headphones`` is the karaoke at exactly the latency
the command reports."""

from __future__ import annotations

import re

import numpy as np
import pytest

from stream_sep import cli
from stream_sep.models import shelf
from tests.jack_harness import find_delay, run_in_process
from tests.live_check import capture_equals_engine, tap_engines
from tests.mdx_helpers import mdx_model

pytestmark = pytest.mark.jack

ATTEMPTS = 3  # a run in which the device lost samples (an xrun) is repeated
# Vocals = 0.5 x the band-limited input (a sweep inside the band): karaoke is 0.5 x the
# input, through 48k -> 44.1k -> 48k resampling and the STFT round trip.
KARAOKE_TOLERANCE = 5e-3
TAIL_SECONDS = 4.0  # captured after the sweep: more than --latency auto fits on a busy machine
# dim_f 512 of n_fft 2048 at 44.1 kHz: the network sees 65 Hz - 11 kHz, all of the sweep.
SHAPE = {"dim_f": 512, "dim_t": 32}


@pytest.fixture(scope="module")
def shelf_model(tmp_path_factory):
    """'live-mdx' on a shelf of its own: an MDX vocals model returning half its input."""
    folder = tmp_path_factory.mktemp("uvr")
    source = mdx_model(folder / "UVR-live.onnx", "scale", scale=0.5, **SHAPE)
    shelf_folder = tmp_path_factory.mktemp("shelf")
    patch = pytest.MonkeyPatch()
    patch.setenv(shelf.ENV_VAR, str(shelf_folder))
    code = cli.main(
        [
            "models",
            "import",
            str(source),
            "--name",
            "live-mdx",
            "--n-fft",
            "2048",
            "--stem",
            "vocals",
        ]
    )
    assert code == 0
    yield "live-mdx"
    patch.undo()


def sweep(rate: int, seconds: float = 1.5, amplitude: float = 0.3) -> np.ndarray:
    """(2, n) float32: a log sweep 150 Hz - 6 kHz with 20 ms fades, the right channel a
    quieter copy; wholly inside the band the model sees (clicks would reach below bin 3)."""
    t = np.arange(int(seconds * rate)) / rate
    low, high = 150.0, 6000.0
    k = np.log(high / low) / seconds
    signal_ = amplitude * np.sin(2 * np.pi * low * (np.exp(k * t) - 1) / k)
    signal_ *= np.minimum(1.0, np.minimum(t, seconds - t) / 0.02)
    return np.stack([signal_, 0.5 * signal_]).astype(np.float32)


def summary_counter(stderr: str, name: str) -> int:
    match = re.search(rf"(\d+) {name}", stderr)
    assert match, f"no '{name}' in the summary:\n{stderr}"
    return int(match.group(1))


# --latency auto: the plan fitted to the measured speed; explicit settings: latency =
# lookahead + hop + crossfade + one hop of compute allowance = 0.1 + 0.1 + 0.02 + 0.1 s.
PLANS = {
    "auto": (["--latency", "auto"], None),
    "explicit": (["--hop", "0.1", "--lookahead", "0.1", "--crossfade", "0.02"], 0.32),
}


@pytest.mark.parametrize("plan", sorted(PLANS))
def test_an_mdx_model_does_karaoke_live_at_exactly_the_reported_latency(
    harness, shelf_model, capsys, monkeypatch, plan
):
    """In every run: what reaches ``headphones`` is the inline engine's karaoke for the input
    the engine was given (tests/live_check.py) on every sample it did not record as dry or
    lighter, and that is 0.5 x the sweep at exactly the reported latency, within
    ``KARAOKE_TOLERANCE``, which the dry signal (the sweep itself) is far outside. A run
    is repeated only when the device lost samples (an xrun), at most ATTEMPTS times."""
    engines = tap_engines(monkeypatch)
    options, latency = PLANS[plan]
    signal_ = sweep(harness.rate)
    argv = ["--input", "mic", "--output", "headphones", "--model", shelf_model, *options]
    for _attempt in range(ATTEMPTS):
        engines.clear()
        before = harness.xruns
        rc = run_in_process(harness, argv, signal_, tail_s=TAIL_SECONDS)
        err = capsys.readouterr().err
        if harness.xruns == before and summary_counter(err, "xruns") == 0:
            break
    assert rc == 0, err
    assert "stopped (interrupted)" in err and "Traceback" not in err
    reported = int(re.search(r"latency [0-9.]+ s \((\d+) samples\)", err).group(1))
    if latency is not None:
        assert reported == round(latency * harness.rate)
    (engine,) = engines
    assert engine.latency_samples == reported
    expected = 0.5 * signal_
    assert find_delay(harness.capture, expected) == reported
    heard, _inline, separated = capture_equals_engine(
        harness, engine, signal_, reported, signal_.shape[1] / harness.rate
    )
    heard, separated = heard[:, reported:], separated[reported:]
    assert separated.mean() >= 0.5, engine.dry_ranges()
    limit = KARAOKE_TOLERANCE * np.abs(signal_).max()
    error = np.abs(heard[:, separated] - expected[:, separated]).max()
    dry = np.abs(signal_[:, separated] - expected[:, separated]).max()  # no separation
    print(f"mdx live, {plan} plan: {reported} samples, karaoke max error {error:.2e}")
    assert error < limit < dry, (error, limit, dry)
