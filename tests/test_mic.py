"""``--mic``: the singer's microphone in the output, after the device latency only.

Through the JACK dummy server: the harness client ``mic`` is the microphone, ``headphones``
the output, and the music is a silent file (bypass), so what reaches ``headphones`` is the
voice alone. A train of clicks on the microphone comes out exactly (gain 1, nothing above the
limiter's ceiling), at a delay of a JACK period or two: the same for two separation
latencies that differ by 0.15 s, and far below either.
"""

from __future__ import annotations

import re
import sys
import time

import numpy as np
import pytest
import soundfile as sf

from stream_sep.errors import UserError
from stream_sep.live.mic import MicMix, check_level
from tests.helpers import FAST_ARGS, FAST_OPTIONS
from tests.jack_harness import Harness, find_delay, opened
from tests.test_live_jack import ATTEMPTS, run_through_jack, start_cli, stop_cli, summary_counter

pytestmark = pytest.mark.jack

SLOWER = ["--hop", "0.2", "--lookahead", "0.1", "--crossfade", "0.02"]


class MicHarness(Harness):
    """The harness with ``mic`` as a microphone: stream-sep captures its first port only."""

    def connected(self) -> bool:
        mic = bool(self.mic.get_all_connections(self.outports[0]))
        return mic and all(self.headphones.get_all_connections(p) for p in self.inports)


@pytest.fixture(scope="module")
def harness(jack_server):
    with opened(MicHarness) as rig:
        yield rig


def clicks(rate: int, seconds: float = 1.0) -> np.ndarray:
    """(2, n): 2 ms clicks every 0.25 s (the harness plays channel 1 into the mic)."""
    signal = np.zeros(int(seconds * rate), np.float32)
    click = (0.4 * np.hanning(int(0.002 * rate) | 1)).astype(np.float32)
    for start in range(int(0.05 * rate), signal.size - click.size, int(0.25 * rate)):
        signal[start : start + click.size] = click
    return np.stack([signal, signal])


@pytest.mark.slow
def test_a_click_on_the_mic_comes_out_after_the_device_latency_only(harness, half_path, tmp_path):
    rate = harness.rate
    silence = tmp_path / "silence.wav"
    sf.write(silence, np.zeros((30 * rate, 2), np.float32), rate, subtype="FLOAT")
    signal_ = clicks(rate)
    delays, latencies = [], []
    for plan in (FAST_ARGS, SLOWER):
        args = ["--input", str(silence), "--output", "headphones", "--mic", "mic"]
        args += ["--mode", "bypass", "--model", str(half_path), *plan]
        for _attempt in range(ATTEMPTS):  # repeated only while the device lost samples
            (rc, err), xruns = run_through_jack(
                harness, signal_, lambda args=args: start_cli(args), stop_cli, latency_s=0.5
            )
            if xruns == 0 and summary_counter(err, "xruns") == 0:
                break
        assert rc == 0, err
        assert re.search(
            r"microphone \d+ 'mic': level x1\.00; PortAudio reports no usable device latency; "
            r"[\d.]+ ms waiting between the streams, not through the separation",
            err,
        ), err
        latencies.append(int(re.search(r"latency [\d.]+ s \((\d+) samples\)", err).group(1)))
        delay = find_delay(harness.capture, signal_[:1])
        segment = harness.capture[:, delay : delay + signal_.shape[1]]
        np.testing.assert_array_equal(segment, signal_)  # both output channels, exact
        delays.append(delay)
    print(
        f"mic -> output through JACK: {delays} samples ({delays[0] / rate * 1000:.1f} ms, "
        f"JACK period {harness.period}); separation latencies {latencies}"
    )
    assert latencies[1] - latencies[0] >= 0.15 * rate
    assert len(set(delays)) == 1  # whatever the separation latency
    assert delays[0] <= 3 * harness.period < latencies[0]


def test_the_mic_mix_keeps_a_bounded_backlog_and_ramps_its_level():
    mic = MicMix(48000, 2, level=1.0, max_backlog=2048)
    voice = np.full((1000, 1), 0.25, np.float32)

    class Status:
        input_overflow = input_underflow = False

    out = np.zeros((2, 512), np.float32)
    mic.mix_into(out)  # nothing captured yet: not started, silence
    assert not mic.started and not out.any()
    for _ in range(10):  # 10,000 frames arrive at once (a stalled reader)
        mic.input_callback(voice, 1000, None, Status())
    mic.mix_into(out)
    assert mic.started and mic.skipped == 10_000 - 512 - 1024 and mic.backlog == 1024
    np.testing.assert_array_equal(out, 0.25)
    mic.set_level(0.0)
    out.fill(0.0)
    mic.mix_into(out)  # ramps from 1 to 0 over this block: no step
    assert out[0, 0] > 0.24 and out[0, -1] == 0.0 and np.all(np.diff(out[0]) <= 0)
    for bad in (-1, 3, True, "1"):
        with pytest.raises(UserError, match=r"--mic-level must be a number in \[0, 2\]"):
            check_level(bad)


def test_a_mic_beside_a_loudspeaker_is_refused(harness, half_path, capsys, tmp_path):
    from stream_sep import cli
    from tests.jack_harness import Devices

    song = tmp_path / "song.wav"
    sf.write(song, np.zeros((4800, 2), np.float32), 48000)
    speakers = Devices({"Built-in Speakers": (2, 0)})
    try:
        argv = ["--input", str(song), "--output", "Built-in Speakers", "--mic", "mic"]
        rc = cli.main(argv + ["--model", str(half_path), *FAST_ARGS])
    finally:
        speakers.close()
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1, err
    assert re.search(r"'Built-in Speakers' is a loudspeaker and --mic \d+ 'mic' can hear it", err)


def test_fast_options_are_the_tests_own():
    assert FAST_OPTIONS["hop"] == 0.1  # the first plan above; SLOWER adds 0.15 s of latency


def test_the_reverb_adds_its_room_a_fixed_delay_after_the_dry_voice(monkeypatch):
    """The dry voice at once and exactly; its room, made on the room's thread, exactly
    ``delay_samples`` (ROOM_DELAY_SECONDS) later: sample for sample what one call of the
    primed reverb gives for the whole voice, though the voice reached it in blocks."""
    pytest.importorskip("pedalboard")
    from stream_sep.live import room as room_module

    class Status:
        input_overflow = input_underflow = False

    rate, block = 48000, 512
    voice = np.zeros(94 * block, np.float32)  # a second
    voice[100], voice[9000] = 0.5, -0.25  # the second click lands on the first one's room
    out = np.zeros((1, voice.size), np.float32)
    target = np.zeros((1, block), np.float32)
    mic = MicMix(rate, 1, reverb_amount=0.5)
    try:
        for first in range(0, voice.size, block):
            mic.input_callback(voice[first : first + block, None], block, None, Status())
            target.fill(0.0)
            mic.mix_into(target)
            mic.hand_over()
            out[:, first : first + block] = target
            deadline = time.monotonic() + 10
            while not mic.room.idle:  # as a live stream leaves it a block's time
                assert time.monotonic() < deadline, "the room's thread did not go idle"
                time.sleep(0.001)
    finally:
        mic.close()
    delay = mic.room.delay_samples
    assert delay == round(room_module.ROOM_DELAY_SECONDS * rate) > 2 * block
    assert mic.room.late_samples == 0 and not mic.room.failed
    room = room_module.reverb(0.5, rate).process(voice[None], rate, room_module.MAX_CHUNK, False)
    expected = voice.copy()
    expected[delay:] += room[0, :-delay]
    np.testing.assert_array_equal(out[0], expected)
    assert out[0, 100] == 0.5 and not out[0, 101 : delay + 100].any()  # the dry click alone
    assert np.abs(out[0, delay + 100 :]).max() > 1e-3  # then its room
    monkeypatch.setitem(sys.modules, "pedalboard", None)  # as if the extra were not installed
    with pytest.raises(UserError, match=r"pip install 'stream-sep\[night\]'"):
        MicMix(48000, 1, reverb_amount=0.5)


def test_the_plan_counts_the_microphone_reverb(harness, half_path, tmp_path):
    """--latency auto with --mic-reverb: the room's reverb is timed at start-up and its share
    of the CPU comes out of the load ceiling before the windows get theirs."""
    from stream_sep.engine import fitting

    rate = harness.rate
    silence = tmp_path / "silence.wav"
    sf.write(silence, np.zeros((30 * rate, 2), np.float32), rate, subtype="FLOAT")
    args = ["--input", str(silence), "--output", "headphones", "--mic", "mic", "--mic-reverb",
            "0.3", "--mode", "bypass", "--model", str(half_path), "--latency", "auto"]  # fmt: skip
    (rc, err), _xruns = run_through_jack(
        harness, clicks(rate), lambda: start_cli(args), stop_cli, latency_s=0.5
    )
    assert rc == 0, err
    plan = re.search(
        r"load ([\d.]+) of the ([\d.]+) ceiling \(windows ([\d.]+), microphone reverb ([\d.]+)\)",
        err,
    )
    assert plan, err
    load, ceiling, windows, reverb = map(float, plan.groups())
    assert ceiling == fitting.LOAD_CEILING and reverb > 0
    assert load == pytest.approx(windows + reverb, abs=0.011) and load <= ceiling + 0.005
