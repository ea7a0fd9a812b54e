"""--latency auto and --latency SECONDS through the JACK dummy device: the reported latency
is the measured delay, exactly; overload mid-stream is shed, never fatal, and time-aligned."""

from __future__ import annotations

import re
import subprocess
import sys
import threading

import numpy as np
import pytest

from stream_sep import cli
from stream_sep.engine import fitting
from stream_sep.models.contract import ModelContract
from tests.helpers import Sleepy, gain_model, voice_over_band
from tests.jack_harness import (
    find_delay,
    run_in_process,
    sweep_with_clicks,
)
from tests.live_check import capture_equals_engine, tap_engines, vocal_reduction_db
from tests.test_live_jack import KARAOKE_REDUCTION_DB, summary_counter

TAIL_SECONDS = 5.0  # captured after the song: more than --latency auto fits under the hog
MIN_SEPARATED = 0.1  # of each 4 s before and after the hog: more than one window's support
HOG_FROM_S = 7.0  # the hog starts once this much of the song was heard and lasts 8 s

pytestmark = pytest.mark.jack


@pytest.fixture(scope="module")
def half_model(tmp_path_factory):
    """Vocals = half the mixture, with the real 4.064 s window."""
    return str(gain_model(tmp_path_factory.mktemp("m") / "half.onnx", 0.5, ModelContract()))


def run_clean(harness, capsys, argv, signal_, tail_s: float) -> tuple[int, str]:
    """run_in_process, repeated (up to 3 runs) only while the device lost samples: an xrun of
    the test's own JACK client or of stream-sep's stream. The last run is checked in full."""
    for _attempt in range(3):
        before = harness.xruns
        rc = run_in_process(harness, argv, signal_, tail_s)
        err = capsys.readouterr().err
        if harness.xruns == before and summary_counter(err, "xruns") == 0:
            break
    return rc, err


def reported_latency(err: str) -> int:
    """The latency in samples from the exit summary."""
    return int(re.search(r"latency [0-9.]+ s \((\d+) samples\)", err).group(1))


@pytest.mark.parametrize("latency", ["auto", "0.9"])
def test_the_reported_latency_is_the_measured_delay_exactly(harness, half_model, capsys, latency):
    """Bypass plays the delayed input bit for bit, whatever the engine computes or sheds."""
    signal_ = sweep_with_clicks(harness.rate, seconds=2.0)
    argv = [
        "--input",
        "mic",
        "--output",
        "headphones",
        "--model",
        half_model,
        "--latency",
        latency,
        "--mode",
        "bypass",
    ]
    rc, err = run_clean(harness, capsys, argv, signal_, tail_s=1.5)
    assert rc == 0, err
    delay = reported_latency(err)
    if latency != "auto":
        assert delay == int(float(latency) * harness.rate)
    assert find_delay(harness.capture, signal_) == delay
    np.testing.assert_array_equal(harness.capture[:, delay : delay + signal_.shape[1]], signal_)
    line = next(text for text in err.splitlines() if "algorithmic latency" in text)
    for term in ("lookahead", "hop", "crossfade", "compute"):
        assert term in line  # the start-up line shows each term


def test_auto_karaoke_is_exact_where_windows_arrived(harness, half_model, capsys):
    """Half model: karaoke = 0.5 x the delayed input where a window was used, the dry input
    where one was shed, a blend in crossfades; never anything else, at the reported delay."""
    sweep = sweep_with_clicks(harness.rate, seconds=3.0)
    signal_ = np.stack([sweep[0], sweep[0]])  # equal channels: mid or both, the same estimate
    argv = ["--input", "mic", "--output", "headphones", "--model", half_model]
    rc, err = run_clean(harness, capsys, argv, signal_, tail_s=1.5)
    assert rc == 0, err
    delay = reported_latency(err)
    heard = harness.capture[:, delay : delay + signal_.shape[1]]
    tolerance = 5e-3 * np.abs(signal_).max()
    low, high = np.minimum(0.5 * signal_, signal_), np.maximum(0.5 * signal_, signal_)
    assert ((heard >= low - tolerance) & (heard <= high + tolerance)).all()
    separated = np.abs(heard - 0.5 * signal_) <= tolerance
    assert separated.mean() > 0.5  # the gain model is light: most windows arrive


def run_with_a_hog(harness, capsys, argv, song) -> tuple[int, str]:
    """run_in_process with two busy loops taking both cores for 8 s once ``HOG_FROM_S`` of the
    song have been heard (a start-up's length varies: the speed history shortens it)."""
    hogs: list[subprocess.Popen] = []
    ended = threading.Event()
    harness.play(song)  # clears the capture before the hog's thread reads it

    def hog_later():
        heard = int(HOG_FROM_S * harness.rate)
        while harness.captured < heard:
            if ended.wait(0.02):
                return
        hogs.extend(
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    "import time\nend = time.time() + 8\nwhile time.time() < end: pass",
                ]
            )
            for _ in range(2)
        )

    hogging = threading.Thread(target=hog_later, daemon=True)
    hogging.start()
    try:
        rc = run_in_process(harness, argv, song, TAIL_SECONDS)
    finally:
        ended.set()
        hogging.join()
        for hog in hogs:
            hog.kill()
            hog.wait()
    return rc, capsys.readouterr().err


@pytest.mark.slow
def test_a_cpu_hog_mid_stream_is_shed_and_the_stream_stays_aligned(harness, capsys, monkeypatch):
    """The bundled model at --latency auto; two busy loops take both cores for 8 s in the
    middle. The run goes to the end (exit 0); what reaches ``headphones`` is the inline
    engine's karaoke for the same input on every sample the engine did not record as shed or
    late (tests/live_check.py), the voice is removed there (more than the dry mixture's
    0 dB), before and after the hog most of the song is separated, and the accompaniment
    stays at the reported delay before, during and after."""
    engines = tap_engines(monkeypatch)
    mixture, _vocals, accompaniment = voice_over_band(24.0, harness.rate, seed=7)
    song = np.stack([mixture, mixture])
    argv = ["--input", "mic", "--output", "headphones"]
    for _attempt in range(3):  # repeated only while the device lost samples (an xrun)
        engines.clear()
        before = harness.xruns
        rc, err = run_with_a_hog(harness, capsys, argv, song)
        if harness.xruns == before and summary_counter(err, "xruns") == 0:
            break
    assert rc == 0, err
    assert "stopping" not in err
    delay = reported_latency(err)
    rate = harness.rate
    (engine,) = engines
    heard, _expected, separated = capture_equals_engine(harness, engine, song, delay, 20.0)
    played, separated = heard[0, delay:], separated[delay:]
    for start_s in (2.0, 10.0, 18.0):  # before, during and after the hog
        first, last = int(start_s * rate), int((start_s + 4.0) * rate)
        piece = np.stack([accompaniment[first:last]] * 2)
        window = harness.capture[:, first : last + 2 * delay]
        assert find_delay(window, piece) == delay, (start_s, err)
    # Before and after the hog the stream separates (how much of it depends on what else
    # the machine runs: the plan was fitted to its speed at start-up); a stream that stayed
    # dry after the hog would have nothing here.
    for start_s in (2.0, 18.0):
        span = slice(int(start_s * rate), int((start_s + 4.0) * rate))
        assert separated[span].mean() >= MIN_SEPARATED, (
            start_s,
            engine.dry_ranges(),
            engine.lighter_ranges(),
            err.splitlines()[:2] + err.splitlines()[-4:],
        )
    mixture, accompaniment = mixture[: separated.size], accompaniment[: separated.size]
    reduction = vocal_reduction_db(played[separated], mixture[separated], accompaniment[separated])
    dry = vocal_reduction_db(mixture[separated], mixture[separated], accompaniment[separated])
    print(
        f"cpu hog: voice {reduction:.1f} dB down where separated ({separated.mean():.0%}); "
        f"before {separated[2 * rate : 6 * rate].mean():.0%}, during "
        f"{separated[10 * rate : 14 * rate].mean():.0%}, after "
        f"{separated[18 * rate : 22 * rate].mean():.0%}"
    )
    assert dry < KARAOKE_REDUCTION_DB < reduction, (reduction, dry)


@pytest.mark.parametrize(
    "value, message",
    [
        ("0", "--latency must be auto or a number of seconds > 0, got 0"),
        ("-1", "--latency must be auto or a number of seconds > 0, got -1"),
        ("nan", "--latency must be auto or a number of seconds > 0, got nan"),
        ("soon", "--latency must be auto or a number of seconds > 0, got soon"),
    ],
)
def test_bad_latency_values_are_one_line_with_status_2(capsys, value, message):
    rc = cli.main(["--input", "mic", "--output", "headphones", "--latency", value])
    err = capsys.readouterr().err
    assert rc == 2 and err == f"stream-sep: error: {message}\n"


def test_latency_with_explicit_plan_options_is_refused(capsys):
    rc = cli.main(["--latency", "0.8", "--hop", "0.2"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert "give either --latency or --hop/--lookahead/--crossfade" in err


def test_a_slow_model_gets_a_longer_hop_or_one_line_naming_the_lowest_latency(
    harness, half_model, capsys, monkeypatch
):
    from stream_sep.live import host
    from stream_sep.models import loading

    slow = Sleepy(loading.load_model(half_model, "cpu"), 0.3)
    monkeypatch.setattr(host, "load_model", lambda *args: slow)
    # Two starts, each measuring the model: the second asks for the lowest latency the first
    # named and runs at exactly that (the speed history and the tolerance of two measurements).
    rc = cli.main(["--input", "mic", "--output", "headphones", "--latency", "0.4"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1, err
    lowest = float(re.search(r"at least ([0-9.]+) s on this machine", err).group(1))
    assert lowest > 0.4 and err.rstrip().endswith("got 0.4")
    signal_ = sweep_with_clicks(harness.rate, seconds=1.0)
    argv = ["--input", "mic", "--output", "headphones", "--mode", "bypass"]
    rc, err = run_clean(harness, capsys, [*argv, "--latency", f"{lowest:.3f}"], signal_, 1.0)
    assert rc == 0, err
    assert reported_latency(err) == round(lowest * harness.rate)
    line = next(text for text in err.splitlines() if "algorithmic latency" in text)
    hop = float(re.search(r"hop ([0-9.]+)", line).group(1))
    assert hop >= 0.3 / fitting.ACCEPT_CEILING  # 0.3 s per window needs a hop of 0.55 s
    plan = next(text for text in err.splitlines() if "plan: hop" in text)
    # the history was used: this start and the earlier ones (more when an xrun repeated a run)
    assert re.search(r"median of the last [2-5] starts here", plan), plan
