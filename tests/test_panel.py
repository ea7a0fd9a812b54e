"""``--panel``: the HTTP API directly, and the page in a real headless Chromium.

The API tests run a Panel around a real engine in this process: the token and origin rules,
the controls (applied through the same Controls path as the keys), bad values refused with a
one-line reason and no change, and the server-sent events. The browser test runs the live
command as a user would (file in, file out, ``--panel``), opens the printed URL in Debian's
``chromium`` through selenium and ``chromedriver``, and checks that the page loads, that the
meters move while audio plays, that clicking "vocals" changes the engine's mode, that a wrong
token gets 403, and that the page fits a phone's screen.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse

import numpy as np
import pytest
import soundfile as sf

from stream_sep.engine import Separator
from stream_sep.live.controls import Controls
from stream_sep.live.panel import Panel
from tests.helpers import FAST_ARGS, FAST_OPTIONS

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture()
def panel(half):
    with Separator(half, 16000, 2, key=0, blocking=True, **FAST_OPTIONS) as engine:
        server = Panel(Controls(engine))
        server.start()
        yield server, engine
        server.close()


def request(panel: Panel, method: str, path: str, body=None, headers=None, token=None):
    """(status, body text, headers) of one request to the panel."""
    connection = http.client.HTTPConnection("127.0.0.1", panel.port, timeout=10)
    query = "?token=" + urllib.parse.quote(panel.token if token is None else token)
    data = None if body is None else json.dumps(body).encode()
    sent = {"Content-Type": "application/json", **(headers or {})}
    connection.request(method, path + query, body=data, headers=sent)
    response = connection.getresponse()
    text = response.read().decode()
    connection.close()
    return response.status, text, dict(response.getheaders())


def test_the_page_needs_the_token_and_its_own_origin(panel):
    server, _ = panel
    status, page, headers = request(server, "GET", "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "<title>stream-sep</title>" in page and server.token in page
    print(f"panel page weight: {len(page.encode())} bytes, no other resources")
    assert len(page.encode()) < 10_000
    for token, extra in (
        ("", {}),
        ("wrong", {}),
        (None, {"Origin": "http://evil.example"}),
        (None, {"Host": "evil.example"}),  # DNS rebinding: another host name for 127.0.0.1
    ):
        for method, path, body in (("GET", "/", None), ("POST", "/control", {"mode": "bypass"})):
            status, text, _ = request(server, method, path, body, extra, token)
            assert (status, text) == (403, "forbidden\n"), (token, extra, method)
    status, _, _ = request(
        server, "GET", "/", headers={"Origin": f"http://127.0.0.1:{server.port}"}
    )
    assert status == 200


def test_controls_change_the_engine_and_bad_values_change_nothing(panel):
    server, engine = panel
    status, text, _ = request(server, "POST", "/control", {"mode": "vocals"})
    assert status == 200 and json.loads(text)["mode"] == "vocals" and engine.mode == "vocals"
    status, text, _ = request(server, "POST", "/control", {"vocal_level": 0.5, "key": -2})
    assert status == 200
    assert (engine.mode, engine.vocal_level, engine.key) == ("karaoke", 0.5, -2)
    refusals = {
        json.dumps({"vocal_level": -1}): "--vocal-level must be a number in [0, 2], got -1",
        json.dumps({"key": 13}): "--key must be a whole number of semitones from -6 to 6, got 13",
        json.dumps({"mode": "loud"}): "--mode must be one of karaoke, vocals, bypass, got 'loud'",
        json.dumps({"mode": "bypass", "key": 13}): "--key must be a whole number of semitones",
        json.dumps({"mic_level": 1}): "there is no microphone: start with --mic DEVICE",
        json.dumps({"volume": 1}): "unknown control 'volume'",
        json.dumps([1]): "send a JSON object",
    }
    for body, reason in refusals.items():
        status, text, _ = request(server, "POST", "/control", json.loads(body))
        assert status == 400 and text.startswith(reason) and text.count("\n") == 1, (body, text)
        assert (engine.mode, engine.vocal_level, engine.key) == ("karaoke", 0.5, -2), body
    status, text, _ = request(server, "GET", "/nothing")
    assert status == 404


def test_server_sent_events_carry_each_published_snapshot(panel):
    server, _ = panel
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.request("GET", f"/events?token={server.token}")
    response = connection.getresponse()
    assert response.status == 200 and response.getheader("Content-Type") == "text/event-stream"

    def publish():
        for n in range(3):
            time.sleep(0.1)
            server.publish({"seconds": n, "input_peak": 0.5})

    threading.Thread(target=publish, daemon=True).start()
    events = []
    while len(events) < 4:  # the current state on connecting, then every publish
        line = response.fp.readline().decode()
        if line.startswith("data: "):
            events.append(json.loads(line[6:]))
    connection.close()
    assert [e.get("seconds") for e in events[1:]] == [0, 1, 2]
    assert all(e["mode"] == "karaoke" and e["key"] == 0 for e in events)


# ---------------------------------------------------------------------------- the browser
@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    if not (shutil.which(CHROMIUM) and shutil.which(DRIVER)):
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("chromium and chromium-driver are needed in CI (.ci/setup)")
        pytest.skip("Debian's chromium and chromium-driver are not installed")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=390,844"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    """20 s of a 440 Hz tone whose level swings between -32 and -6 dBFS twice a second."""
    rate = 16000
    t = np.arange(20 * rate) / rate
    level = 0.5 * (0.525 + 0.475 * np.sin(2 * np.pi * 2.0 * t))
    audio = (level * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    path = tmp_path_factory.mktemp("panel") / "song.wav"
    sf.write(path, np.stack([audio, audio]).T, rate, subtype="FLOAT")
    return path


def start_live(song, half_path, tmp_path) -> tuple[subprocess.Popen, str]:
    argv = ["--input", str(song), "--output", str(tmp_path / "o.wav"), "--model", str(half_path)]
    process = subprocess.Popen(
        [sys.executable, "-m", "stream_sep", *argv, "--panel", "--key", "0", *FAST_ARGS],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    deadline = time.monotonic() + 120
    lines = []
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        lines.append(line)
        match = re.search(r"panel: (http://127\.0\.0\.1:\d+/\?token=\S+)", line)
        if match:
            return process, match.group(1)
        if not line:
            break
    process.kill()
    raise AssertionError("no panel URL:\n" + "".join(lines))


@pytest.mark.slow
def test_the_panel_in_a_real_browser(browser, song, half_path, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    process, url = start_live(song, half_path, tmp_path)
    try:
        browser.get(url)
        wait = WebDriverWait(browser, 30)
        wait.until(lambda d: d.find_element(By.ID, "link").text == "live")
        readings = set()
        for _ in range(12):  # meters move: the input level swings with the song
            readings.add(browser.find_element(By.ID, "meter-in").get_attribute("data-db"))
            time.sleep(0.15)
        moving = [float(r) for r in readings if r not in (None, "-inf")]
        assert len(moving) >= 3 and max(moving) - min(moving) > 3.0, readings
        assert browser.find_element(By.ID, "key-value").text == "0"
        browser.find_element(By.ID, "mode-vocals").click()
        wait.until(lambda d: "on" in d.find_element(By.ID, "mode-vocals").get_attribute("class"))
        parsed = urllib.parse.urlsplit(url)
        connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=10)
        connection.request("GET", "/state?" + parsed.query)
        assert json.loads(connection.getresponse().read())["mode"] == "vocals"  # the engine's
        fits = browser.execute_script(
            "return document.documentElement.scrollWidth <= window.innerWidth"
        )
        assert fits, "the page is wider than a 390 px phone screen"
        browser.save_screenshot(str(tmp_path / "panel.png"))
        browser.get(url.replace("token=", "token=x"))
        assert "forbidden" in browser.find_element(By.TAG_NAME, "body").text
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "stopped (interrupted)" in err
