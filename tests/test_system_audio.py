"""``--input system``: what the computer plays, through a real PulseAudio server.

The server (tests/pulse_harness.py) has two null sinks, ``music`` (the default) and
``phones``, at its default spec, s16le 2 ch 44.1 kHz. A player (``paplay``) writes a known
16-bit signal into ``music``; stream-sep captures the monitor of the default sink in bypass
and records it. The capture runs at the sink's own rate (no resampling by the server) and
16-bit samples are exact in float32, so the recording holds the signal sample-exactly, after
silence for at least the reported latency. (Measured: PulseAudio drops the first ~3 ms a
player writes to an idle sink, so the signal starts with a quarter second of silence.)
Device names of the other systems (BlackHole, Loopback, VB-Audio Cable, WASAPI loopback) and
the feedback rule are checked without a sound server.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf

from stream_sep.errors import DeviceError
from stream_sep.live import devices, system_audio
from tests.helpers import FAST_ARGS

RATE = 44100


def stream_sep(address: str, *args: str) -> subprocess.Popen:
    env = dict(os.environ, PULSE_SERVER=address, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-m", "stream_sep", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def wait_for_line(process: subprocess.Popen, text: str, timeout: float = 120) -> list[str]:
    """stderr lines up to and including the first that contains ``text``."""
    lines, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        lines.append(line)
        if text in line:
            return lines
    process.kill()
    raise AssertionError(f"no {text!r} from stream-sep:\n{''.join(lines)}")


@pytest.fixture(scope="module")
def signal_file(tmp_path_factory):
    """A 16-bit stereo WAV at the sink's rate: 0.25 s silence, 1.5 s noise, 0.25 s silence."""
    rng = np.random.default_rng(7)
    body = rng.integers(-8000, 8000, (int(1.5 * RATE), 2)).astype(np.int16)
    quiet = np.zeros((RATE // 4, 2), np.int16)
    samples = np.concatenate([quiet, body, quiet])
    path = tmp_path_factory.mktemp("play") / "signal.wav"
    sf.write(path, samples, RATE, subtype="PCM_16")
    return path, (samples.T.astype(np.float32) / 32768.0)


def test_the_monitor_of_the_default_sink_is_recorded_sample_exactly(
    pulse_server, signal_file, half_path, tmp_path
):
    path, expected = signal_file
    out = tmp_path / "system.wav"
    args = ["--input", "system", "--output", str(out), "--mode", "bypass", "--duration", "4"]
    process = stream_sep(pulse_server, *args, "--model", str(half_path), *FAST_ARGS)
    lines = wait_for_line(process, "system audio:")
    player = subprocess.run(
        ["paplay", "--device=music", str(path)],
        env=dict(os.environ, PULSE_SERVER=pulse_server),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert player.returncode == 0, player.stderr
    _, rest = process.communicate(timeout=60)
    err = "".join(lines) + rest
    assert process.returncode == 0, err
    assert "monitor of sink 'music' (s16le 2 ch 44100 Hz)" in err
    assert "captured at 44100 Hz: no resampling by the sound server" in err
    latency = int(re.search(r"latency [\d.]+ s \((\d+) samples\)", err).group(1))
    recorded, rate = sf.read(out, dtype="float32", always_2d=True)
    recorded = recorded.T
    assert rate == RATE and recorded.shape == (2, 4 * RATE)
    body = expected[:, RATE // 4 : -RATE // 4]
    delay = int(np.argmax(np.abs(recorded[0]) > 0))  # the first sound: the body's first sample
    assert delay >= latency  # nothing before the input has travelled through the engine
    np.testing.assert_array_equal(recorded[:, delay : delay + body.shape[1]], body)
    print(
        f"system capture: the player's signal recorded exactly, {delay} samples in "
        f"(engine latency {latency})"
    )


def run_quick(address: str, *args: str, model: str) -> tuple[int, str]:
    process = stream_sep(address, *args, "--duration", "0.5", "--model", model, *FAST_ARGS)
    _, err = process.communicate(timeout=120)
    return process.returncode, err


def test_playing_into_the_captured_sink_is_refused_in_one_line(pulse_server, half_path):
    model = str(half_path)
    for output in ("system:music", "pulse", "headphones"):  # the last two: the default sink
        rc, err = run_quick(pulse_server, "--input", "system", "--output", output, model=model)
        assert rc == 2 and err.count("\n") == 1, err
        assert re.search(
            r"^stream-sep: error: --input system captures the monitor of sink 'music' and "
            rf"--output {output} plays into that same sink.*--allow-feedback$",
            err.strip(),
        ), err
    rc, err = run_quick(
        pulse_server, "--input", "system:music", "--output", "system:phones", model=model
    )
    assert rc == 0 and "stopped (duration reached)" in err, err
    assert "sink 'music'" in err and "-> sink 'phones'" in err
    rc, err = run_quick(
        pulse_server,
        "--input",
        "system",
        "--output",
        "system:music",
        "--allow-feedback",
        model=model,
    )
    assert rc == 0, err


def test_an_unknown_sink_names_the_sinks(pulse_server, half_path):
    rc, err = run_quick(
        pulse_server, "--input", "system:nosuch", "--output", "x.wav", model=str(half_path)
    )
    assert rc == 2
    assert err.strip() == (
        "stream-sep: error: --input system:nosuch: no sink has that name; sinks: 'music', 'phones'"
    )


# ---------------------------------------------------------------------------- no server
def device(index: int, name: str, inputs: int = 2, outputs: int = 2, api: str = "Core Audio"):
    return devices.Device(index, name, api, inputs, outputs, 48000.0)


MAC = [
    device(0, "MacBook Pro Microphone", 1, 0),
    device(1, "MacBook Pro Speakers", 0, 2),
    device(2, "BlackHole 2ch", 2, 2),
]
WINDOWS = [
    device(0, "Microphone (Realtek(R) Audio)", 2, 0, "Windows WASAPI"),
    device(1, "Speakers (Realtek(R) Audio)", 0, 2, "Windows WASAPI"),
    device(2, "Speakers (Realtek(R) Audio) [Loopback]", 2, 0, "Windows WASAPI"),
    device(3, "CABLE Input (VB-Audio Virtual Cable)", 0, 2, "Windows WASAPI"),
]


@pytest.fixture()
def no_server(monkeypatch):
    monkeypatch.setattr(system_audio, "sinks", lambda: None)

    def use(found):
        monkeypatch.setattr(devices, "query", lambda: found)

    return use


def test_a_loopback_device_is_found_by_name(no_server):
    no_server(MAC)
    end = system_audio.resolve("system", "input")
    assert end.device.name == "BlackHole 2ch" and end.environment == {}
    no_server(WINDOWS)  # the WASAPI loopback of the speakers (VB-Cable's Input only plays)
    assert system_audio.resolve("system", "input").device.index == 2
    no_server(WINDOWS + [device(4, "CABLE Output (VB-Audio Virtual Cable)", 2, 0)])
    with pytest.raises(
        DeviceError, match=r"several loopback devices: .*name one: --input system:NAME"
    ):
        system_audio.resolve("system", "input")
    assert system_audio.resolve("system:cable", "input").device.index == 4


def test_no_server_and_no_loopback_says_what_to_install(no_server):
    no_server(MAC[:2])
    with pytest.raises(DeviceError) as refused:
        system_audio.resolve("system", "input")
    text = str(refused.value)
    assert "BlackHole" in text and "VB-Audio Cable" in text and "docs/system-audio.md" in text
    assert "\n" not in text
    no_server([device(0, "system", 2, 2, "JACK Audio Connection Kit")])
    assert system_audio.resolve("system", "input") is None  # JACK's device, as before


@pytest.mark.parametrize(
    "source, sink",
    [
        (MAC[2], MAC[2]),  # BlackHole in and out: one device
        (WINDOWS[2], WINDOWS[1]),  # the speakers' own loopback
        (device(4, "CABLE Output (VB-Audio Virtual Cable)", 2, 0), WINDOWS[3]),  # one cable
    ],
)
def test_playing_into_the_captured_loopback_is_refused(source, sink):
    capture = system_audio.SystemEnd(source)
    with pytest.raises(DeviceError, match=r"same loopback device.*--allow-feedback"):
        system_audio.check_route(capture, sink, None, "x", allowed=False)
    system_audio.check_route(capture, sink, None, "x", allowed=True)
    system_audio.check_route(
        capture, MAC[1] if source in MAC else device(9, "Headphones"), None, "x", False
    )


def test_sinks_are_parsed_and_matched():
    sink = system_audio._sink("alsa_output.usb-headset.analog-stereo", "s32le 2ch 48000Hz")
    assert (sink.sample_format, sink.channels, sink.rate) == ("s32le", 2, 48000)
    found = [sink, system_audio._sink("alsa_output.pci.hdmi-stereo", "s16le 2ch 44100Hz")]
    assert system_audio.choose_sink(found, "usb", "--input").name == sink.name
    with pytest.raises(DeviceError, match="ambiguous: it matches the sinks"):
        system_audio.choose_sink(found, "alsa_output", "--input")
