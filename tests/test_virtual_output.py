"""``--output virtual``: the processed stream as a microphone, through a real PulseAudio server.

A private server (tests/pulse_harness.py's recipe: null sinks ``music`` and ``phones``) per
module. ``parec`` records the virtual source, as an app would, at the sink's own spec (float32
at the file's rate, the sink stream-sep makes), so nothing is converted on the way: the
recording must hold what stream-sep played, sample for sample.

A file or a sink's monitor played into the virtual microphone runs in this process with its
engine tapped (tests/live_check.py), so the engine's input and its record of what it played dry
are at hand: every sound the recording holds must be the engine's output for that input at its
position, which :func:`delivered_runs` finds. On a busy machine the stream can be late: the
server then plays silence into the sink and the sound resumes, and what a late stream lost
(PortAudio's recovery may drop up to its ALSA buffer) is missing; so the recording is runs of
the output, in order, with silence between them, and nothing else (:func:`check_runs`).

The macOS/Windows branch (a loopback driver found by name) cannot run here: its name matching
is checked with device lists written out below.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stream_sep import cli
from stream_sep.engine import Separator
from stream_sep.errors import DeviceError, UserError
from stream_sep.live import devices, virtual
from stream_sep.models.loading import load_model
from stream_sep.settings import Settings
from tests.helpers import FAST_ARGS, FAST_OPTIONS
from tests.jack_harness import refresh_portaudio
from tests.live_check import (
    ATTEMPTS,
    MIN_SEPARATED,
    TappedSeparator,
    fallback_windows,
    inline_with_fallbacks,
    recorded_dry_ranges,
    recording_equals_engine,
    tap_engines,
)
from tests.pulse_harness import pactl, private_server, unavailable

RATE = 44100
SOURCE = "stream_sep_karaoke_mic"
SINK = "stream_sep_karaoke"
READY = "virtual microphone 'stream-sep karaoke': apps record"


@pytest.fixture(scope="module")
def server():
    """A private PulseAudio server's address; stopped at the end of the module."""
    if not all(shutil.which(tool) for tool in ("pulseaudio", "pactl", "parec", "paplay")):
        unavailable("pulseaudio/pulseaudio-utils are not installed")
    with private_server("stream-sep-pulse-virtual-") as address:
        yield address


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    """A 16-bit stereo WAV: 4 s of noise (exact in float32). (path, (2, samples) float32)."""
    rng = np.random.default_rng(11)
    samples = rng.integers(-8000, 8000, (4 * RATE, 2)).astype(np.int16)
    path = tmp_path_factory.mktemp("virtual") / "song.wav"
    sf.write(path, samples, RATE, subtype="PCM_16")
    return path, samples.T.astype(np.float32) / 32768.0


def stream_sep(address: str, *args: str, model) -> subprocess.Popen:
    env = dict(os.environ, PULSE_SERVER=address, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-m", "stream_sep", *args, "--model", str(model), *FAST_ARGS],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def wait_for_line(process: subprocess.Popen, text: str, timeout: float = 120) -> list[str]:
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


def our_modules(address: str) -> list[str]:
    listing = pactl(address, "list", "short", "modules").stdout
    return [line for line in listing.splitlines() if virtual.OWNER in line]


class Recorder:
    """``parec`` on the virtual source, raw float32 at the sink's spec, into a file."""

    def __init__(self, address: str, folder: Path, channels: int = 2):
        self.path, self.channels = folder / "parec.raw", channels
        self.handle = self.path.open("wb")
        self.process = subprocess.Popen(
            [
                "parec",
                f"--device={SOURCE}",
                "--raw",
                "--format=float32le",
                f"--rate={RATE}",
                f"--channels={channels}",
            ],
            stdout=self.handle,
            stderr=subprocess.PIPE,
            env=dict(os.environ, PULSE_SERVER=address),
        )

    def finish(self) -> np.ndarray:
        """(channels, frames) float32, once the source is gone (parec then ends)."""
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.handle.close()
        raw = np.fromfile(self.path, dtype="<f4")
        return raw[: raw.size // self.channels * self.channels].reshape(-1, self.channels).T


# ------------------------------------------------------------------ a run in this process
def matching_length(recorded: np.ndarray, output: np.ndarray) -> int:
    """How many samples (C, .) from the start of both are equal, all channels."""
    n = min(recorded.shape[1], output.shape[1])
    same = np.all(recorded[:, :n] == output[:, :n], axis=0)
    return n if same.all() else int(np.argmin(same))


def longest_match(recorded: np.ndarray, at: int, output: np.ndarray, first: int):
    """(position, length): where, at ``first`` or later, ``output`` (C, n) matches the
    recording (C, m) from its sample ``at`` on for the most samples (the earliest of
    equals); length 0 when sample ``at`` is nowhere in it."""
    sample = recorded[:, at : at + 1]
    candidates = first + np.flatnonzero(np.all(output[:, first:] == sample, axis=0))
    best = (first, 0)
    for where in candidates:
        length = matching_length(recorded[:, at:], output[:, where:])
        if length > best[1]:
            best = (int(where), length)
    return best


def delivered_runs(recorded: np.ndarray, output: np.ndarray) -> list[tuple[int, int, int]]:
    """The recording (C, m) as runs of ``output`` (C, n), what was played by position (the
    engine's output, or a song played into a sink), until a run reaches its end: [(start in
    the recording, output position, length)], each equal sample for sample, in order, none
    overlapping the one before. Every sound the
    recording holds up to there belongs to a run; between runs it holds silence only (the
    server's, while the stream was late), and the next run goes on where the last ended or
    further on (what was lost then). An AssertionError names the first sound that is not
    the output at a position after the last run's."""
    sound = np.flatnonzero(np.any(recorded != 0, axis=0))
    runs: list[tuple[int, int, int]] = []
    position, index = 0, 0
    while index < sound.size and position < output.shape[1]:
        at = int(sound[index])
        where, length = longest_match(recorded, at, output, position)
        assert length, (
            f"recorded sample {at} {recorded[:, at]} is not what was played at any "
            f"position from {position} on; runs (recording, position, length) so far: {runs}"
        )
        runs.append((at, where, length))
        position = where + length
        index = int(np.searchsorted(sound, at + length))
    return runs


def check_runs(recorded, output, joined_by: int, quiet_after: float = 0.0, note: str = ""):
    """The recording (C, m) as runs of ``output`` (C, n) (:func:`delivered_runs`: every
    sound it holds is ``output`` at a position after the last run's), which hold ``output``
    from position ``joined_by`` or earlier to its last sound, and at least half of that span;
    after the last run, nothing louder than ``quiet_after``. ``note``: added to the failure
    report. Returns the runs [(start in the recording, position, length)]."""
    runs = delivered_runs(recorded, output)
    report = f"runs (recording, position, length): {runs}; {note}"
    assert runs, f"nothing of what was played was recorded; {note}"
    after = recorded[:, runs[-1][0] + runs[-1][2] :]
    loudest_after = float(np.abs(after).max(initial=0.0))
    assert loudest_after <= quiet_after, f"{loudest_after} after the last run; {report}"
    first, end = runs[0][1], runs[-1][1] + runs[-1][2]
    sound_end = output.shape[1] - int(np.argmax(np.any(output[:, ::-1] != 0, axis=0)))
    assert first <= joined_by, report
    assert end >= sound_end, report  # held to the last sample of sound
    assert sum(length for *_, length in runs) >= 0.5 * (end - first), report
    return runs


class RecordOnceReady(threading.Thread):
    """Starts a :class:`Recorder` on the virtual source as soon as the server lists it (the
    run that makes it goes on in the main thread meanwhile), then calls ``then(self)`` in
    this thread, if given (what a failure there raises, :meth:`finish` raises).
    ``recorder``: what makes the recorder, called with (address, folder); it has a
    ``finish()`` that returns the recording (C, m) float32 once the run has ended."""

    def __init__(self, address: str, folder: Path, then=None, recorder=Recorder):
        super().__init__(name="record-once-ready", daemon=True)
        self.address, self.folder, self.then = address, folder, then
        self.make_recorder = recorder
        self.recorder: Recorder | None = None
        self.error: BaseException | None = None
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            if SOURCE in pactl(self.address, "list", "short", "sources").stdout:
                self.recorder = self.make_recorder(self.address, self.folder)
                break
            self.done.wait(0.02)
        if self.recorder is not None and self.then is not None:
            try:
                self.then(self)
            except BaseException as error:  # raised again by finish
                self.error = error

    def finish(self) -> np.ndarray:
        """What was recorded (C, m) float32, once the run has ended."""
        self.done.set()
        self.join(timeout=30)
        assert self.recorder is not None, "the virtual source never appeared"
        recorded = self.recorder.finish()
        if self.error is not None:
            raise self.error
        return recorded


def parec_records(address: str) -> bool:
    """Whether a recording stream is connected to the virtual source (parec's: nothing else
    records it; the remapped source's own stream records the sink's monitor)."""
    sources = pactl(address, "list", "short", "sources").stdout.splitlines()
    rows = [line.split("\t") for line in sources]
    index = next((row[0] for row in rows if len(row) > 1 and row[1] == SOURCE), None)
    outputs = pactl(address, "list", "short", "source-outputs").stdout.splitlines()
    return index is not None and any(line.split("\t")[1:2] == [index] for line in outputs)


class MusicOnceRecording:
    """Plays a file into the sink 'music' with paplay once the live engine is given input
    (the stream runs) and parec records the virtual source: a ``then`` for
    :class:`RecordOnceReady`. ``player``: paplay's completed process, once it has played;
    None when the run ended first."""

    def __init__(self, address: str, path: Path, engines: list[TappedSeparator]):
        self.address, self.path, self.engines = address, path, engines
        self.player: subprocess.CompletedProcess | None = None

    def __call__(self, watch: RecordOnceReady) -> None:
        while not (any(e.heard_count for e in self.engines) and parec_records(self.address)):
            if watch.done.wait(0.02):
                return
        self.player = subprocess.run(
            ["paplay", "--device=music", str(self.path)],
            env=dict(os.environ, PULSE_SERVER=self.address),
            capture_output=True,
            text=True,
            timeout=30,
        )


def play_in_this_process(
    server,
    monkeypatch,
    capsys,
    folder: Path,
    argv: list[str],
    once_recording=None,
    recorder=Recorder,
):
    """``stream-sep ARGV --output virtual`` run here, with ``server`` (a PulseAudio
    address: this module's server, or PipeWire's PulseAudio layer) as the sound server,
    while parec records the virtual source from when it appears (``recorder`` makes it, as
    for :class:`RecordOnceReady`; then ``once_recording``, if given, is called as its
    ``then``): (rc, stderr, recording (C, m) float32). The environment and PortAudio's
    device list are as before afterwards (with the server's address, ALSA's default device
    would be PulseAudio)."""
    watch = RecordOnceReady(server, folder, once_recording, recorder)
    with monkeypatch.context() as patch:
        patch.setenv("PULSE_SERVER", server)
        for name in ("PULSE_SINK", "PULSE_SOURCE"):
            # The run sets PULSE_SINK in this process's environment: setenv first, so that
            # the way out restores the variable (or its absence), then none for the run.
            patch.setenv(name, "")
            patch.delenv(name)
        refresh_portaudio()  # PortAudio lists the pulse device of this server
        watch.start()
        try:
            rc = cli.main([*argv, "--output", "virtual", *FAST_ARGS])
        finally:
            recorded = watch.finish()
    refresh_portaudio()
    return rc, capsys.readouterr().err, recorded


def check_against_engine(
    recorded, engine: TappedSeparator, played: int, joined_by: int
) -> tuple[float, list]:
    """The recording (C, m) against the live engine's own record, up to output position
    ``played`` (where the run ended: the file and the latency, or --duration; it fades out
    after): every sound it holds is what the engine gives inline for the input it was given
    (its tap), with the windows it recorded as played dry falling back, at the output
    position :func:`delivered_runs` finds; on the positions the engine did not record as
    dry, what it gives with every window inline; where only dry windows reach, the delayed
    input (live_check.recording_equals_engine). The recording holds the output from at most
    ``joined_by`` on, to its last sound, and at least half of that span; after it, the
    fade-out of the engine's output for what it heard after ``played``, no louder than that
    (:func:`check_runs`). Returns the share of the output separated as configured, and the
    runs (recording, position, length)."""
    assert not engine.config.shedding and engine.lighter_ranges() == []  # an explicit plan
    dry = recorded_dry_ranges(engine)
    heard = engine.input
    if dry:
        output = inline_with_fallbacks(engine, heard, fallback_windows(engine, dry))
    else:
        output = engine.inline_output()
    silence_after = float(np.abs(output[:, played:]).max(initial=0.0))
    runs = check_runs(recorded, output[:, :played], joined_by, silence_after, f"dry {dry}")
    by_position = np.zeros_like(output)
    held = np.zeros(output.shape[1], bool)
    for at, where, length in runs:
        by_position[:, where : where + length] = recorded[:, at : at + length]
        held[where : where + length] = True
    separated, _ = recording_equals_engine(by_position, engine, heard, dry, held=held)
    first, end, matched = runs[0][1], runs[-1][1] + runs[-1][2], int(held.sum())
    print(
        f"virtual source: {matched} of {end - first} output samples held, exact, in "
        f"{len(runs)} run(s) from position {first}; {separated:.0%} separated, dry {dry}"
    )
    return separated, runs


def engine_karaoke(samples: np.ndarray, model) -> np.ndarray:
    """The engine's karaoke of ``samples`` (2, n), every window computed inline, with the
    options the live command gives it here (FAST_ARGS, its default window options), through
    the end of the latency: (2, n + latency) float32."""
    options = {**FAST_OPTIONS, **Settings().window_options()}
    with Separator(load_model(str(model)), RATE, 2, blocking=True, mode="karaoke", **options) as e:
        return e.process(np.pad(samples, ((0, 0), (0, e.latency_samples))))


def engine_latency(err: str) -> int:
    return int(re.search(r"latency [\d.]+ s \((\d+) samples\)", err).group(1))


def check_bypass(recorded, engine: TappedSeparator, err: str, samples: np.ndarray) -> None:
    """A bypass run of a file whose samples (C, n) are at the stream's rate: the engine (its
    latency as the run said in ``err``) heard the file, then silence; past the output's
    fade-in its output is the file delayed by the latency; and every sound the recording
    (C, m) holds is that output at its position (:func:`check_against_engine`)."""
    latency = engine.latency_samples
    assert engine_latency(err) == latency
    heard, played = engine.input, latency + samples.shape[1]
    np.testing.assert_array_equal(heard[:, : samples.shape[1]], samples)
    assert not heard[:, samples.shape[1] :].any()
    fade = round(engine.config.fade_in_seconds * engine.sample_rate)
    output = engine.inline_output()
    np.testing.assert_array_equal(output[:, latency + fade : played], samples[:, fade:])
    check_against_engine(recorded, engine, played, joined_by=played // 2)


@pytest.mark.slow
def test_the_virtual_source_carries_the_file_exactly_and_is_gone_after(
    server, song, half_path, tmp_path, capsys, monkeypatch
):
    """Bypass, run in this process with its engine tapped: past the output's fade-in the
    engine's output is the file delayed by the latency, and every sound the recording
    holds is that output at its position (:func:`check_against_engine`). The modules are
    gone after."""
    path, samples = song
    engines = tap_engines(monkeypatch)
    argv = ["--input", str(path), "--mode", "bypass", "--model", str(half_path)]
    rc, err, recorded = play_in_this_process(server, monkeypatch, capsys, tmp_path, argv)
    assert rc == 0, err
    assert "(2 ch 44100 Hz float32); stream-sep plays into the sink 'stream_sep_karaoke'" in err
    (engine,) = engines
    check_bypass(recorded, engine, err, samples)
    assert our_modules(server) == []
    listing = (
        pactl(server, "list", "short", "sources").stdout
        + pactl(server, "list", "short", "sinks").stdout
    )
    assert SINK not in listing and SOURCE not in listing


@pytest.mark.slow
def test_karaoke_through_the_virtual_source_equals_the_engines_output(
    server, song, half_path, tmp_path, capsys, monkeypatch
):
    """The file's karaoke played into the virtual microphone, run in this process with its
    engine tapped: every sound the recording holds is the engine's output at its position,
    on every window that arrived what the engine gives computing them inline, on the ones
    it recorded as late what its fallback gives (:func:`check_against_engine`). The live
    engine's plan is the command's (its inline output is the karaoke of the file as
    :func:`engine_karaoke` makes it). A run with under half of the output separated
    checks too little and is repeated (at most ATTEMPTS runs)."""
    path, samples = song
    expected = engine_karaoke(samples, half_path)
    assert np.abs(expected).max() > 0.05  # the half model's karaoke: half the mixture
    engines = tap_engines(monkeypatch)
    argv = ["--input", str(path), "--mode", "karaoke", "--model", str(half_path)]
    for _attempt in range(ATTEMPTS):
        engines.clear()
        rc, err, recorded = play_in_this_process(server, monkeypatch, capsys, tmp_path, argv)
        assert rc == 0 and READY in err, err
        (engine,) = engines
        assert engine_latency(err) == engine.latency_samples
        heard = engine.input  # the file, then silence
        np.testing.assert_array_equal(heard[:, : samples.shape[1]], samples)
        assert not heard[:, samples.shape[1] :].any()
        inline = engine.inline_output()[:, : expected.shape[1]]
        np.testing.assert_array_equal(inline, expected)  # the plan and mode asked for
        played, joined_by = expected.shape[1], expected.shape[1] // 2
        separated, _ = check_against_engine(recorded, engine, played, joined_by)
        assert our_modules(server) == []
        if separated >= MIN_SEPARATED:
            break
    assert separated >= MIN_SEPARATED, f"{separated:.0%} separated\n{err}"


@pytest.mark.slow
def test_system_music_to_the_virtual_microphone(
    server, song, half_path, tmp_path, capsys, monkeypatch
):
    """The monitor of the sink 'music' in, the virtual microphone out (bypass), run in this
    process with its engine tapped; paplay plays the song into the sink once the stream runs
    and parec records. What the engine heard is what the monitor delivered: the song's
    samples in order, as runs with the server's silence around them and nothing else
    (:func:`check_runs`); PulseAudio drops the first milliseconds a player writes into an
    idle sink (tests/test_system_audio.py), more on a busy machine, so the song is expected
    from at most 0.25 s in. Every sound the recording holds is the engine's output for what
    it heard, at its position (:func:`check_against_engine`), from at most 0.25 s after the
    music's first sound in the output on (a stream late there loses its start, as at any
    break), to its last sound."""
    path, samples = song
    engines = tap_engines(monkeypatch)
    music = MusicOnceRecording(server, path, engines)
    argv = ["--input", "system:music", "--mode", "bypass", "--duration", "7"]
    argv += ["--model", str(half_path)]
    rc, err, recorded = play_in_this_process(server, monkeypatch, capsys, tmp_path, argv, music)
    assert rc == 0 and READY in err, err
    assert music.player is not None, f"the run ended before it ran with parec recording\n{err}"
    assert music.player.returncode == 0, music.player.stderr
    assert "monitor of sink 'music'" in err and "no resampling by the sound server" in err
    (engine,) = engines
    latency = engine.latency_samples
    assert engine_latency(err) == latency
    heard, played = engine.input, round(7 * RATE)  # the run ends at --duration
    assert heard.shape[1] >= played, f"the engine heard {heard.shape[1]} samples"
    heard_runs = check_runs(heard, samples, joined_by=RATE // 4, note="the engine's input")
    fade = round(engine.config.fade_in_seconds * RATE)
    output = engine.inline_output()  # bypass: past the fade-in, what it heard, delayed
    np.testing.assert_array_equal(
        output[:, latency + fade : played], heard[:, fade : played - latency]
    )
    music_in_output = heard_runs[0][0] + latency
    check_against_engine(recorded, engine, played, joined_by=music_in_output + RATE // 4)
    assert our_modules(server) == []


def check_a_killed_run_is_cleaned_up_by_the_next(server: str, path, model) -> None:
    """A SIGKILLed --output virtual run leaves its two modules; the next start removes them
    in one line naming the process and the modules (as the server lists them)."""
    process = stream_sep(
        server, "--input", str(path), "--output", "virtual", "--mode", "bypass", model=model
    )
    wait_for_line(process, READY)
    left = our_modules(server)
    assert len(left) == 2 and all(f"={process.pid}@" in line for line in left), left
    process.kill()
    process.wait(timeout=10)
    assert our_modules(server) == left  # a SIGKILL cleans nothing up
    indexes = [line.split("\t")[0] for line in left]  # as the server lists them
    rc, err = quick(server, "--input", str(path), "--output", "virtual", model=model)
    assert rc == 0, err
    removed = [line for line in err.splitlines() if "left by an earlier run" in line]
    assert removed == [
        "stream-sep: removed a virtual microphone left by an earlier run that did not exit "
        f"cleanly (process {process.pid}; modules {', '.join(indexes)})"
    ], err
    assert our_modules(server) == []


def check_sigterm_removes_the_modules(server: str, path, model) -> None:
    """SIGTERM to a running --output virtual run: exit 0, its modules unloaded."""
    process = stream_sep(
        server, "--input", str(path), "--output", "virtual", "--mode", "bypass", model=model
    )
    wait_for_line(process, READY)
    assert len(our_modules(server)) == 2
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert our_modules(server) == []


@pytest.mark.slow
def test_a_killed_run_leaves_modules_that_the_next_start_removes(server, song, half_path):
    check_a_killed_run_is_cleaned_up_by_the_next(server, song[0], half_path)


@pytest.mark.slow
def test_sigterm_removes_the_modules(server, song, half_path):
    check_sigterm_removes_the_modules(server, song[0], half_path)


# ---------------------------------------------------------------------------- refusals
def quick(address: str, *args: str, model) -> tuple[int, str]:
    process = stream_sep(address, *args, "--duration", "0.5", model=model)
    _, err = process.communicate(timeout=120)
    return process.returncode, err


def refused(address: str, *args: str, model) -> str:
    """The one line of a refused run (exit 2), after checking nothing was left loaded."""
    rc, err = quick(address, *args, model=model)
    assert rc == 2 and err.count("\n") == 1, err
    assert our_modules(address) == []
    return err.strip()


def test_capturing_the_virtual_microphone_is_refused(server, half_path):
    for name in ("stream_sep_karaoke", "karaoke", "stream_sep_karaoke_mic"):
        line = refused(server, "--input", f"system:{name}", "--output", "virtual", model=half_path)
        assert line == (
            f"stream-sep: error: --input system:{name} would record the virtual microphone "
            "'stream-sep karaoke' (sink 'stream_sep_karaoke') that --output virtual plays into, "
            "so the stream would hear only itself; capture another sink (--input system:NAME)"
        )


def test_a_name_that_clashes_is_refused(server, half_path):
    loaded = pactl(
        server,
        "load-module",
        "module-null-sink",
        "sink_name=party",
        "sink_properties=device.description=Party",
    )
    assert loaded.returncode == 0, loaded.stderr
    try:
        line = refused(server, "--input", "x.wav", "--output", "virtual:party", model=half_path)
        assert line == (
            "stream-sep: error: --output virtual:party: the sound server already has a sink "
            "'party' described as 'Party'; choose another name: --output virtual:NAME"
        )
    finally:
        pactl(server, "unload-module", loaded.stdout.strip())
    loaded = pactl(server, "load-module", "module-null-sink", "sink_name=stream_sep_karaoke")
    try:
        line = refused(server, "--input", "x.wav", "--output", "virtual", model=half_path)
        assert "already has a sink 'stream_sep_karaoke'" in line
    finally:
        pactl(server, "unload-module", loaded.stdout.strip())


def test_an_invalid_name_is_refused(server, half_path):
    for name in ("", "it's", "a=b", "x" * 49, "-dash"):
        line = refused(server, "--input", "x.wav", "--output", f"virtual:{name}", model=half_path)
        assert line == (
            f"stream-sep: error: --output virtual:{name}: the name must be {virtual.NAME_RULE}"
        )


def test_no_sound_server_is_one_line(half_path, tmp_path, server):
    line = refused(
        f"unix:{tmp_path / 'nothing-here'}",
        *("--input", "x.wav", "--output", "virtual"),
        model=half_path,
    )
    assert line == (
        "stream-sep: error: --output virtual: no PulseAudio or PipeWire server answers (pactl "
        "info); start your desktop's sound server (pipewire-pulse or pulseaudio), see "
        "docs/sharing.md"
    )
    assert our_modules(server) == []


# ---------------------------------------------------------------------------- other systems
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
    device(4, "CABLE Output (VB-Audio Virtual Cable)", 2, 0, "Windows WASAPI"),
]


def test_a_loopback_driver_is_found_by_name():
    chosen = virtual.choose_loopback_output(MAC, None, "--output virtual")
    assert chosen.name == "BlackHole 2ch" and virtual.microphone_of(chosen) == "BlackHole 2ch"
    chosen = virtual.choose_loopback_output(WINDOWS, None, "--output virtual")
    assert chosen.index == 3  # the cable's input end, not the speakers' [Loopback] capture
    assert virtual.microphone_of(chosen) == "CABLE Output (VB-Audio Virtual Cable)"
    both = MAC + [device(3, "Loopback Audio", 2, 2)]
    with pytest.raises(DeviceError, match=r"several loopback drivers: 2 'BlackHole 2ch', 3 "):
        virtual.choose_loopback_output(both, None, "--output virtual")
    assert virtual.choose_loopback_output(both, "loopback", "--output x").index == 3


def test_no_loopback_driver_says_what_to_install():
    with pytest.raises(DeviceError) as refusal:
        virtual.choose_loopback_output(MAC[:2], None, "--output virtual")
    text = str(refusal.value)
    assert "BlackHole" in text and "VB-Audio Virtual Cable" in text and "\n" not in text
    with pytest.raises(DeviceError, match="no loopback driver's output is named like 'cable'"):
        virtual.choose_loopback_output(MAC, "cable", "--output virtual:cable")


def test_names_follow_the_description():
    names = virtual.Names.of("stream-sep karaoke")
    assert (names.sink, names.source, names.monitor) == (
        "stream_sep_karaoke",
        "stream_sep_karaoke_mic",
        "stream_sep_karaoke.monitor",
    )
    assert virtual.Names.of("Karaoke Night").source == "stream_sep_karaoke_night_mic"
    assert virtual.wanted_name("virtual") is None
    assert virtual.wanted_name("virtual:Karaoke Night") == "Karaoke Night"
    with pytest.raises(UserError, match="the name must be"):
        virtual.wanted_name('virtual:a"b')
