"""Device matching rules that need no sound card (the JACK tests cover the real lookup)."""

from __future__ import annotations

import pytest

from stream_sep.errors import DeviceError
from stream_sep.live import devices


def device(index: int, name: str, inputs: int = 2, outputs: int = 2) -> devices.Device:
    return devices.Device(index, name, "ALSA", inputs, outputs, 48000.0)


def test_same_alsa_card_is_the_same_hardware():
    mic = device(1, "HDA Intel PCH: ALC3246 Analog (hw:0,0)", 2, 0)
    speaker = device(2, "HDA Intel PCH: HDMI 0 (hw:0,3)", 0, 2)
    usb = device(3, "USB Audio: - (hw:1,0)", 0, 2)
    assert devices.same_hardware(mic, speaker)
    assert not devices.same_hardware(mic, usb)
    assert devices.same_hardware(mic, mic)


LAPTOP = device(0, "HDA Intel PCH: ALC3246 Analog (hw:0,0)")  # mic and output, one card
JACK = device(0, "system", outputs=2)
SPEAKERS = device(1, "Built-in Speakers", 0, 2)
SPEAKERS_MONITOR = device(2, "Monitor of Built-in Speakers", 2, 0)
PULSE_MONITOR = device(3, "alsa_output.pci-0000_00_1f.3.analog-stereo.monitor", 2, 0)
PULSE_SINK = device(4, "alsa_output.pci-0000_00_1f.3.analog-stereo", 0, 2)
USB_HEADSET = device(5, "USB Headset: Audio (hw:2,0)")
ALSA_LOOPBACK_IN = device(6, "Loopback: PCM (hw:3,1)", 2, 0)
ALSA_LOOPBACK_OUT = device(7, "Loopback: PCM (hw:3,0)", 0, 2)
USB_MIC = device(8, "Blue Yeti: USB Audio (hw:4,0)", 2, 0)


@pytest.mark.parametrize(
    "source, sink, typed",
    [
        (JACK, JACK, "headphones"),  # the README's command on JACK: the word says headphones
        (LAPTOP, LAPTOP, "headphones"),  # ... and on a laptop's one sound card
        (USB_HEADSET, USB_HEADSET, "5"),  # the device's own name says headset
        (USB_MIC, LAPTOP, "0"),  # another device, no loudspeaker named
        (SPEAKERS_MONITOR, PULSE_SINK, "4"),  # the monitor of another output
        (SPEAKERS_MONITOR, JACK, "headphones"),
    ],
)
def test_feedback_guard_allows_what_cannot_loop(source, sink, typed):
    devices.check_feedback(source, sink, typed, allowed=False)


@pytest.mark.parametrize(
    "source, sink, typed, message",
    [
        # The output's own monitor loops in the wiring: headphones do not help.
        (SPEAKERS_MONITOR, SPEAKERS, "headphones", r"captures what --output 1 .* plays"),
        (PULSE_MONITOR, PULSE_SINK, "pci-0000_00_1f.3.analog-stereo", r"captures what"),
        (ALSA_LOOPBACK_IN, ALSA_LOOPBACK_OUT, "7", r"captures what"),
        # A loudspeaker named as such, and a microphone.
        (USB_MIC, SPEAKERS, "speakers", r"--output 1 'Built-in Speakers' is a loudspeaker"),
        (LAPTOP, SPEAKERS, "1", r"is a loudspeaker"),
        # The microphone's own device, named explicitly rather than as headphones.
        (JACK, JACK, "system", r"same physical device.*--output headphones"),
        (LAPTOP, device(9, "HDA Intel PCH: HDMI 0 (hw:0,3)", 0, 2), "9", r"same physical"),
    ],
)
def test_feedback_guard_refuses_a_likely_loop_with_what_to_do(source, sink, typed, message):
    with pytest.raises(DeviceError, match=message) as refused:
        devices.check_feedback(source, sink, typed, allowed=False)
    text = str(refused.value)
    assert "\n" not in text and "--allow-feedback" in text
    devices.check_feedback(source, sink, typed, allowed=True)  # the user's explicit choice


def test_headphones_word_on_a_speaker_named_default_warns_but_runs(caplog):
    devices.check_feedback(USB_MIC, SPEAKERS, "headphones", allowed=False)
    assert "sounds like loudspeakers" in caplog.text


def test_names_match_exactly_first_then_by_substring(monkeypatch):
    found = [device(0, "system"), device(1, "mic", 2, 0), device(2, "mic 2", 2, 0)]
    monkeypatch.setattr(devices, "query", lambda: found)
    assert devices.resolve("MIC", "input").index == 1  # exact, case-insensitive
    with pytest.raises(DeviceError, match="ambiguous: it matches 1 'mic', 2 'mic 2'"):
        devices.resolve("mi", "input")
    assert devices.resolve("2", "input").name == "mic 2"
