"""--output virtual interrupted while it starts: SIGTERM between loading the virtual
microphone and the running stream, or in the middle of a module's load, leaves nothing in the
sound server (a private PulseAudio server; the signal is sent by the run itself at that point,
so the moment is exact)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from stream_sep.live import virtual
from tests.helpers import FAST_ARGS
from tests.pulse_harness import pactl, private_server, unavailable

# Runs stream-sep's command line with one step replaced by "send SIGTERM to myself, then
# go on": the step is named by the first argument.
RUNNER = r"""
import os, signal, sys
from stream_sep import cli
from stream_sep.live import streams, virtual

def term():
    os.kill(os.getpid(), signal.SIGTERM)

where = sys.argv[1]
if where == "before-start":
    start = streams.Streams.start
    def start_after_term(self):
        term()
        return start(self)
    streams.Streams.start = start_after_term
elif where == "mid-load":
    pactl = virtual._pactl
    def pactl_then_term(*args):
        done = pactl(*args)
        if args[:2] == ("load-module", "module-null-sink"):
            term()  # the sink is loaded; its index never reaches the run
        return done
    virtual._pactl = pactl_then_term
sys.exit(cli.main(sys.argv[2:]))
"""


@pytest.fixture(scope="module")
def server():
    if not all(shutil.which(tool) for tool in ("pulseaudio", "pactl")):
        unavailable("pulseaudio/pulseaudio-utils are not installed")
    with private_server("stream-sep-pulse-interrupted-") as address:
        yield address


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    path = tmp_path_factory.mktemp("interrupted") / "song.wav"
    noise = np.random.default_rng(3).uniform(-0.2, 0.2, (44100, 2)).astype(np.float32)
    sf.write(path, noise, 44100)
    return path


def our_modules(address: str) -> list[str]:
    listing = pactl(address, "list", "short", "modules").stdout
    return [line for line in listing.splitlines() if virtual.OWNER in line]


@pytest.mark.parametrize("where", ["before-start", "mid-load"])
def test_sigterm_while_starting_leaves_nothing(server, song, half_path, where):
    argv = ["--input", str(song), "--output", "virtual", "--model", str(half_path), *FAST_ARGS]
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, where, *argv],
        env=dict(os.environ, PULSE_SERVER=server),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 130, done.stderr  # as Ctrl-C: "interrupted"
    assert done.stderr.splitlines()[-1] == "stream-sep: interrupted", done.stderr
    assert "Traceback" not in done.stderr
    assert our_modules(server) == []
