"""``--mic-reverb`` and ``--mic-level`` on the command line: a live run through the JACK
dummy server with the reverb on (the harness client ``mic`` is the microphone, the music a
silent file in bypass, so ``headphones`` hears the voice alone), and both options refused
without ``--mic``."""

from __future__ import annotations

import re

import numpy as np
import pytest
import soundfile as sf

from stream_sep import cli
from tests.helpers import FAST_ARGS
from tests.jack_harness import find_delay, opened
from tests.test_live_jack import run_through_jack, start_cli, stop_cli
from tests.test_mic import MicHarness, clicks

REVERB = 0.5


@pytest.fixture(scope="module")
def mic_harness(jack_server):
    with opened(MicHarness) as rig:
        yield rig


@pytest.mark.jack
@pytest.mark.slow
def test_mic_reverb_from_the_command_line_adds_a_room_after_each_click(
    mic_harness, half_path, tmp_path
):
    """Without reverb the same run gives the clicks exactly and silence between them
    (test_mic); with --mic-reverb each click comes out dry at about its level and is
    followed by a decaying room, every sample finite and within [-1, 1]."""
    harness = mic_harness
    rate = harness.rate
    silence = tmp_path / "silence.wav"
    sf.write(silence, np.zeros((30 * rate, 2), np.float32), rate, subtype="FLOAT")
    signal_ = clicks(rate)
    args = ["--input", str(silence), "--output", "headphones", "--mic", "mic"]
    args += ["--mic-reverb", f"{REVERB:g}", "--mode", "bypass", "--model", str(half_path)]
    (rc, err), _ = run_through_jack(
        harness, signal_, lambda: start_cli(args + FAST_ARGS), stop_cli, latency_s=0.5
    )
    assert rc == 0, err
    assert re.search(rf"microphone \d+ 'mic': level x1\.00, reverb {REVERB:g}; ", err), err
    capture = harness.capture
    assert np.isfinite(capture).all() and np.abs(capture).max() <= 1.0
    delay = find_delay(capture, signal_[:1])
    click_starts = np.flatnonzero(np.diff((signal_[0] > 0).astype(np.int8)) == 1) + 1
    peak = signal_[0].max()
    for start in click_starts:
        at = delay + start
        dry = capture[0, at : at + int(0.002 * rate)]
        assert np.abs(dry).max() == pytest.approx(peak, rel=0.15), start
        room = capture[:, at + int(0.02 * rate) : at + int(0.2 * rate)]  # between clicks
        assert np.sqrt(np.mean(room**2)) > 1e-3, start


@pytest.mark.parametrize("option, value", [("--mic-reverb", "0.4"), ("--mic-level", "0.5")])
def test_mic_options_without_a_mic_are_refused_in_one_line(
    option, value, half_path, tmp_path, capsys
):
    song = tmp_path / "song.wav"
    sf.write(song, np.zeros((4800, 2), np.float32), 48000)
    out = tmp_path / "out.wav"
    argv = ["--input", str(song), "--output", str(out), option, value]
    code = cli.main(argv + ["--model", str(half_path), *FAST_ARGS])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err == (
        f"stream-sep: error: {option} {float(value):g} needs --mic DEVICE "
        "(the microphone it applies to)\n"
    )
    assert not out.exists()
