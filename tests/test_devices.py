"""Device matching rules that need no sound card (the JACK tests cover the real lookup)."""

from __future__ import annotations

import pytest

from stream_sep import devices
from stream_sep.errors import DeviceError


def device(index: int, name: str, inputs: int = 2, outputs: int = 2) -> devices.Device:
    return devices.Device(index, name, "ALSA", inputs, outputs, 48000.0)


def test_same_alsa_card_is_the_same_hardware():
    mic = device(1, "HDA Intel PCH: ALC3246 Analog (hw:0,0)", 2, 0)
    speaker = device(2, "HDA Intel PCH: HDMI 0 (hw:0,3)", 0, 2)
    usb = device(3, "USB Audio: - (hw:1,0)", 0, 2)
    assert devices.same_hardware(mic, speaker)
    assert not devices.same_hardware(mic, usb)
    assert devices.same_hardware(mic, mic)


def test_feedback_guard_refuses_unless_allowed():
    card = device(0, "default")
    with pytest.raises(DeviceError, match="same physical device.*--allow-feedback"):
        devices.check_feedback(card, card, allowed=False)
    devices.check_feedback(card, card, allowed=True)


def test_names_match_exactly_first_then_by_substring(monkeypatch):
    found = [device(0, "system"), device(1, "mic", 2, 0), device(2, "mic 2", 2, 0)]
    monkeypatch.setattr(devices, "query", lambda: found)
    assert devices.resolve("MIC", "input").index == 1  # exact, case-insensitive
    with pytest.raises(DeviceError, match="ambiguous: it matches 1 'mic', 2 'mic 2'"):
        devices.resolve("mi", "input")
    assert devices.resolve("2", "input").name == "mic 2"
