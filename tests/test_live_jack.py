"""``stream-sep --input mic --output headphones`` for real, through a JACK dummy server.

The harness clients ``mic`` and ``headphones`` are the devices; PortAudio connects to them.
A sweep with clicks goes into ``mic``; what reaches ``headphones`` (or the recording) must be
that signal, delayed by a constant found by cross-correlation, and exactly so in bypass.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf

from stream_sep import cli
from stream_sep.live import devices, host, session, status
from stream_sep.models import loading
from stream_sep.models.contract import ModelContract
from tests.helpers import FAST_ARGS, gain_model, small_contract, voice_over_band
from tests.jack_harness import (
    SETTLE_SECONDS,
    Devices,
    Harness,
    find_delay,
    run_in_process,
    sweep_with_clicks,
)
from tests.live_check import capture_equals_engine, tap_engines, vocal_reduction_db

pytestmark = pytest.mark.jack

# Small-window model settings that fit its 0.48 s window (the defaults need 4 s).
FAST = FAST_ARGS
# The engine fades its output in over 0.05 s when the stream starts: play the test signal
# after that.
ATTEMPTS = 3  # a run spoiled by an xrun of the harness itself (busy machine) is repeated
# Karaoke with vocals = 0.5 x mixture leaves 0.5 x the input. The vocal estimate goes through
# 48k -> 16k -> 48k resampling (soxr HQ) and an STFT round trip: a band-limited signal comes
# back to within ~1e-3 of its peak; 5e-3 leaves room for edge transients of each window.
KARAOKE_TOLERANCE = 5e-3
# The bundled model removes ~12 dB of the generated voice inline; the dry mixture: 0 dB.
KARAOKE_REDUCTION_DB = 6.0
MIN_SEPARATED = 0.5  # of the song's samples: the rest may be shed or late under load
MIN_SONG_SECONDS = 4.0  # of the song heard through the device, at least


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    return {
        "full": str(gain_model(folder / "full.onnx", 0.5, contract=ModelContract())),
        "small": str(gain_model(folder / "small.onnx", 0.5, contract=small_contract())),
    }


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "stream_sep", *args]


def start_cli(args: list[str]) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        command(*args),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def stop_cli(process: subprocess.Popen, sig=signal.SIGINT) -> tuple[int, str]:
    if process.poll() is None:
        process.send_signal(sig)
    _, err = process.communicate(timeout=60)
    return process.returncode, err


def summary_counter(stderr: str, name: str) -> int:
    match = re.search(rf"(\d+) {name}", stderr)
    assert match, f"no '{name}' in the summary:\n{stderr}"
    return int(match.group(1))


def check_delayed_copy(capture, reference, exact: bool, scale: float = 1.0) -> int:
    """The capture holds ``scale * reference`` at one constant delay; returns it."""
    delay = find_delay(capture, reference)
    segment = capture[:, delay : delay + reference.shape[1]]
    assert segment.shape == reference.shape, f"capture too short for delay {delay}"
    if exact:
        np.testing.assert_array_equal(segment, reference)
    else:
        error = np.abs(segment - scale * reference).max()
        assert error < KARAOKE_TOLERANCE * np.abs(reference).max(), f"max error {error}"
    return delay


def run_through_jack(harness: Harness, signal_, start, stop, latency_s: float):
    """Start stream-sep (start()), play ``signal_`` once it is connected, capture it plus
    its delay, stop it (stop()); repeat when the harness itself had an xrun."""
    for attempt in range(ATTEMPTS):
        harness.play(signal_)
        xruns_before = harness.xruns
        handle = start()
        harness.wait_for(harness.connected, 120, "stream-sep to connect to mic and headphones")
        time.sleep(SETTLE_SECONDS)
        harness.arm()
        harness.wait_captured(signal_.shape[1] + int((latency_s + 0.5) * harness.rate), 120)
        result = stop(handle)
        if harness.xruns == xruns_before or attempt == ATTEMPTS - 1:
            return result, harness.xruns - xruns_before
    raise AssertionError("unreachable")


def test_bypass_through_jack_is_sample_exact_after_a_constant_delay(harness, models):
    """As a user types it, in a subprocess; Ctrl-C stops it with a summary."""
    signal_ = sweep_with_clicks(harness.rate)
    args = [
        "--input",
        "mic",
        "--output",
        "headphones",
        "--mode",
        "bypass",
        "--model",
        models["full"],
    ]
    for _attempt in range(ATTEMPTS):
        (rc, err), harness_xruns = run_through_jack(
            harness, signal_, lambda: start_cli(args), stop_cli, latency_s=1.4
        )
        if harness_xruns == 0 and summary_counter(err, "xruns") == 0:
            break  # a run with a dropped JACK cycle is repeated: it proves nothing either way
    assert rc == 0, err
    assert "stopped (interrupted)" in err and "deadline misses" in err
    assert "Traceback" not in err
    latency = int(re.search(r"latency [\d.]+ s \((\d+) samples\)", err).group(1))
    delay = check_delayed_copy(harness.capture, signal_, exact=True)
    assert delay == latency  # the reported latency is the delay through the device, exactly
    print(
        f"end-to-end delay through JACK, default settings: {delay} samples "
        f"({delay / harness.rate * 1000:.1f} ms); engine latency {latency}"
    )


def test_karaoke_in_process_removes_the_known_vocal_part(harness, models, capsys):
    """Through main(argv) in this process; vocals = 0.5 x input, so 0.5 x input remains."""
    signal_ = sweep_with_clicks(harness.rate)
    argv = ["--input", "mic", "--output", "headphones", "--model", models["small"], *FAST]
    for _attempt in range(ATTEMPTS):
        before = harness.xruns
        rc = run_in_process(harness, argv, signal_)
        err = capsys.readouterr().err
        if harness.xruns == before and summary_counter(err, "xruns") == 0:
            break
    assert rc == 0, err
    assert "stopped (interrupted)" in err
    # With a gain model at a 0.1 s hop a missed deadline is an engine bug, not load.
    assert summary_counter(err, "deadline misses") == 0, err
    latency = int(re.search(r"latency [\d.]+ s \((\d+) samples\)", err).group(1))
    assert check_delayed_copy(harness.capture, signal_, exact=False, scale=0.5) == latency


class SlowModel:
    """A real model whose every ``every``-th window takes ``delay`` seconds longer (a model
    that is too slow now and then: a busy machine, a big model)."""

    def __init__(self, model, delay: float, every: int = 1):
        self._model, self._delay, self._every = model, delay, every
        self._calls = 0

    def separate(self, audio):
        self._calls += 1
        if self._calls % self._every == 0:
            time.sleep(self._delay)
        return self._model.separate(audio)

    def __getattr__(self, name):
        return getattr(self._model, name)


def slow_loader(monkeypatch, delay: float, every: int) -> None:
    real_load = loading.load_model
    monkeypatch.setattr(
        host, "load_model", lambda *a, **k: SlowModel(real_load(*a, **k), delay, every)
    )


def test_a_sometimes_slow_model_misses_deadlines_and_the_stream_goes_on(
    harness, models, capsys, monkeypatch
):
    slow_loader(monkeypatch, delay=0.25, every=5)  # every 5th window 2.5 hops late
    signal_ = sweep_with_clicks(harness.rate, seconds=2.0)
    argv = ["--input", "mic", "--output", "headphones", "--model", models["small"], *FAST]
    rc = run_in_process(harness, argv, signal_)
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "stopped (interrupted)" in err
    assert summary_counter(err, "deadline misses") > 0
    # No silent gaps: wherever the input was sounding, something was played.
    delay = find_delay(harness.capture, signal_)
    played = np.abs(harness.capture[0, delay : delay + signal_.shape[1]])
    sounding = np.abs(signal_[0]) > 0.05
    assert played[sounding].min() > 0.0
    assert harness.captured >= signal_.shape[1] + harness.rate


def test_a_model_that_never_keeps_up_stops_the_stream_with_the_reason(
    harness, models, capsys, monkeypatch
):
    slow_loader(monkeypatch, delay=0.25, every=1)  # load 2.5: hopeless
    rc = cli.main(["--input", "mic", "--output", "headphones", "--model", models["small"], *FAST])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert "stopping: inference cannot keep up" in err
    # The cause, with its count: not "model failed" beside "0 model failures".
    misses = summary_counter(err, "deadline misses")
    assert f"stopped (inference too slow, {misses} deadline misses)" in err, err
    assert summary_counter(err, "model failures") == 0 and "Traceback" not in err


def test_recording_from_mic_survives_sigint_with_everything_up_to_the_stop(
    harness, models, tmp_path
):
    signal_ = sweep_with_clicks(harness.rate)
    recording = tmp_path / "take.wav"
    args = [
        "--input",
        "mic",
        "--output",
        str(recording),
        "--mode",
        "bypass",
        "--model",
        models["full"],
    ]
    harness.play(signal_)
    process = start_cli(args)
    harness.wait_for(
        lambda: all(harness.mic.get_all_connections(p) for p in harness.outports), 120, "mic"
    )
    time.sleep(SETTLE_SECONDS)
    harness.arm()
    # The signal, the engine latency (~1.3 s) and margin for a busy machine.
    needed = signal_.shape[1] + int(3.0 * harness.rate)

    def recorded_frames():
        try:
            return sf.info(str(recording)).frames
        except (RuntimeError, sf.LibsndfileError):
            return 0

    harness.wait_for(lambda: recorded_frames() >= needed, 120, "the recording to grow")
    rc, err = stop_cli(process)
    assert rc == 0, err
    frames = int(re.search(r"recorded (\d+) frames", err).group(1))
    data, rate = sf.read(str(recording), dtype="float32", always_2d=True)
    assert rate == harness.rate and data.shape == (frames, 2)
    assert frames == summary_counter(err, "frames,")
    delay = find_delay(data.T, signal_)
    np.testing.assert_array_equal(data.T[:, delay : delay + signal_.shape[1]], signal_)


def test_file_to_headphones_plays_the_file_and_stops_at_its_end(harness, models, tmp_path):
    signal_ = sweep_with_clicks(harness.rate)
    song = tmp_path / "song.wav"
    # 0.1 s of silence first: the engine fades in over the first 0.05 s.
    sf.write(song, np.pad(signal_, ((0, 0), (4800, 0))).T, harness.rate, subtype="FLOAT")
    harness.play(np.zeros((2, 0), np.float32))
    process = start_cli(
        [
            "--input",
            str(song),
            "--output",
            "headphones",
            "--mode",
            "bypass",
            "--model",
            models["small"],
            *FAST,
        ]
    )
    harness.wait_for(
        lambda: all(harness.headphones.get_all_connections(p) for p in harness.inports),
        120,
        "headphones",
    )
    harness.arm()
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert "stopped (end of input)" in err
    delay = find_delay(harness.capture, signal_)
    np.testing.assert_array_equal(harness.capture[:, delay : delay + signal_.shape[1]], signal_)


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["--input", "nosuchdevice"],
            r"--input 'nosuchdevice': no device has that name; input devices: ",
        ),
        (["--output", "s"], r"--output 's' is ambiguous: it matches .*'system'.*'headphones'"),
        (["--input", "headphones"], r"device \d+ 'headphones' has no input channels"),
        (
            ["--samplerate", "44100"],
            r"cannot stream 2 channel\(s\) at 44100 Hz .*Invalid sample rate",
        ),
        (["--input", "99"], r"there is no device 99"),
        (["--input", "system", "--output", "system"], r"same physical device.*--allow-feedback"),
        (["--input", "system", "--output", "{system}"], r"same physical device.*--allow-feedback"),
        (
            ["--input", "mic", "--output", "headphones", "--channels", "3"],
            r"--channels must be one of 1, 2, got '3'",
        ),
    ],
)
def test_device_errors_are_one_line_with_status_2(harness, models, capsys, argv, message):
    base = {"--input": "mic", "--output": "headphones", "--duration": "3"}  # if not refused
    system = next(d.index for d in devices.query() if d.name == "system")
    for i in range(0, len(argv), 2):
        base[argv[i]] = argv[i + 1].format(system=system)  # the system device by its index
    rc = cli.main([x for pair in base.items() for x in pair] + ["--model", models["small"], *FAST])
    err = capsys.readouterr().err
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("stream-sep: error: "), err
    assert re.search(message, lines[0]), lines[0]


def test_device_error_as_a_subprocess_has_no_traceback(harness, models):
    result = subprocess.run(
        command("--input", "nosuchdevice", "--output", "headphones", "--model", models["small"]),
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "'mic'" in result.stderr  # the candidates are named


def test_feedback_is_allowed_when_asked(harness, models, capsys):
    rc = cli.main(
        [
            "--input",
            "system",
            "--output",
            "system",
            "--allow-feedback",
            "--duration",
            "0.5",
            "--model",
            models["small"],
            *FAST,
        ]
    )
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "stopped (duration reached)" in err


def test_the_headline_command_runs_as_written_on_one_sound_card(harness, models, capsys, caplog):
    """``stream-sep --input mic --output headphones`` where no device has those names and the
    system's default input and output are one device (JACK's ``system``, as a laptop's card):
    the word headphones says where the user listens, so it runs without --allow-feedback."""
    caplog.set_level(logging.INFO, logger="stream_sep.live.devices")
    argv = ["--input", "mic", "--output", "headphones", "--duration", "1"]
    explicit = ["--input", "mic", "--output", "system", "--duration", "1"]
    with harness.away():
        found = devices.query()
        mic, phones = (found[devices.default_index(kind)] for kind in ("input", "output"))
        system = next(d for d in found if d.name == "system")
        refused = cli.main(explicit + ["--model", models["small"], *FAST])
        refusal = capsys.readouterr().err
        rc = cli.main(argv + ["--model", models["small"], *FAST])
    # The same device named explicitly is not a statement about headphones: refused. (mic
    # means the default input of the output's host API, JACK's system here, even where the
    # system default is another API's device, such as ALSA's jack plugin.)
    assert refused == 2 and refusal.count("\n") == 1, refusal
    assert re.search(
        rf"{system.index} 'system' are the same physical device.*--output headphones", refusal
    )
    err = capsys.readouterr().err
    assert rc == 0, err
    assert mic == phones  # one device for both sides, as on a laptop
    assert f"--input 'mic' means the default input device, {mic.label()}" in caplog.text
    assert f"--output 'headphones' means the default output device, {phones.label()}" in (
        caplog.text
    )
    assert f"{mic.name} -> {phones.name}" in err and "stopped (duration reached)" in err, err
    frames = summary_counter(err, "frames,")
    assert frames >= harness.rate  # one second streamed through the device


@pytest.fixture
def sound_server_devices(harness):
    """A loudspeaker output and its monitor, named as PulseAudio/PipeWire present them."""
    rig = Devices({"Built-in Speakers": (2, 0), "Monitor of Built-in Speakers": (0, 2)})
    yield rig
    rig.close()


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["--input", "monitor of built-in speakers", "--output", "built-in speakers"],
            r"--input \d+ 'Monitor of Built-in Speakers' captures what --output \d+ "
            r"'Built-in Speakers' plays, so the output would be fed back into the input",
        ),
        (
            ["--input", "mic", "--output", "speakers"],
            r"--output \d+ 'Built-in Speakers' is a loudspeaker and --input \d+ 'mic' can "
            r"hear it.*--output headphones.*--allow-feedback",
        ),
    ],
)
def test_a_set_up_that_really_loops_is_refused_in_one_line(
    sound_server_devices, models, capsys, argv, message
):
    rc = cli.main(argv + ["--duration", "3", "--model", models["small"], *FAST])
    lines = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("stream-sep: error: "), lines
    assert re.search(message, lines[0]), lines[0]


def test_the_monitor_of_another_output_is_allowed(sound_server_devices, models, capsys):
    """Capturing what the speakers play and listening on headphones cannot loop."""
    argv = ["--input", "monitor of built-in speakers", "--output", "headphones"]
    rc = cli.main(argv + ["--duration", "0.5", "--model", models["small"], *FAST])
    err = capsys.readouterr().err
    assert rc == 0 and "stopped (duration reached)" in err, err


def test_a_tiny_block_size_warns_about_xruns_with_the_cause(harness, models, capsys, monkeypatch):
    """--blocksize 7 (0.15 ms at 48 kHz) through JACK: whether PortAudio's buffer adapter
    keeps up depends on the machine, so the run is checked against the rule with its own
    counts, whatever they are: the summary warns, naming the block size and the exact share,
    exactly when more than 1% of the callbacks (and at least 3) had an xrun (the rule
    itself: test_live.py). Overload is shed, never fatal: exit 0."""
    processors = []

    class Counted(session.BlockProcessor):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            processors.append(self)

    monkeypatch.setattr(session, "BlockProcessor", Counted)
    argv = ["--input", "mic", "--output", "headphones", "--blocksize", "7", "--duration", "3"]
    rc = cli.main(argv + ["--model", models["small"], *FAST])
    err = capsys.readouterr().err
    assert rc == 0, err
    (processor,) = processors
    xruns, callbacks = processor.xruns, processor.callbacks
    assert xruns == summary_counter(err, "xruns") and callbacks >= 3 * harness.rate / 7
    expected = status.xrun_warning(xruns, callbacks, harness.rate, 7)
    warnings = [line for line in err.splitlines() if "% of callbacks)" in line]
    if expected is None:
        assert not warnings, err
    else:
        assert f"warning: {expected[1]}" in err, err
        assert re.search(
            rf"warning: {xruns} xruns \({xruns / callbacks:.0%} of callbacks\): --blocksize 7 "
            r"\(0.15 ms\) is too small for this machine; try --blocksize 512",
            err,
        ), err
    if xruns > 0.02 * callbacks:  # the status line shows it too once it is well past 1%
        status_lines = [line for line in err.splitlines() if "| xruns " in line]
        assert any("--blocksize too small, try 512)" in line for line in status_lines), err


def test_list_devices_names_the_jack_clients(harness, capsys):
    assert cli.main(["--list-devices"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"\d+ mic \(JACK Audio Connection Kit\): 2 in, 0 out, 48000 Hz", out), out
    assert re.search(r"\d+ headphones \(JACK Audio Connection Kit\): 0 in, 2 out", out), out


def run_until_no_xrun(harness, capsys, argv, signal_, tail_s: float, engines=None):
    """run_in_process, repeated (at most ATTEMPTS runs) while the device lost samples: an
    xrun of the harness or of stream-sep's stream. Nothing else is loosened: the last run
    is checked in full whatever happened. Returns (rc, stderr)."""
    for _attempt in range(ATTEMPTS):
        if engines is not None:
            engines.clear()
        before = harness.xruns
        rc = run_in_process(harness, argv, signal_, tail_s=tail_s)
        err = capsys.readouterr().err
        if harness.xruns == before and summary_counter(err, "xruns") == 0:
            break
    return rc, err


def check_karaoke_against_the_engine(harness, engine, song, parts, delay: int) -> float:
    """What reached ``headphones`` is what the engine gives computing every window inline
    (live_check.capture_equals_engine) everywhere but the output the engine recorded as
    dry, faded or lighter. There the voice is removed: ``KARAOKE_REDUCTION_DB`` at least,
    where the dry mixture scores 0 dB. Returns the reduction."""
    mixture, accompaniment = parts
    heard, _expected, separated = capture_equals_engine(
        harness, engine, song, delay, MIN_SONG_SECONDS
    )
    # the song's own samples that were separated as configured
    song_part = separated[delay:]
    assert song_part.mean() >= MIN_SEPARATED, (
        f"only {song_part.mean():.0%} of the song separated; dry {engine.dry_ranges()}, "
        f"lighter {engine.lighter_ranges()}"
    )
    mixture, accompaniment = mixture[: song_part.size], accompaniment[: song_part.size]
    played = heard[0, delay:][song_part]
    reduction = vocal_reduction_db(played, mixture[song_part], accompaniment[song_part])
    dry = vocal_reduction_db(mixture[song_part], mixture[song_part], accompaniment[song_part])
    assert dry < KARAOKE_REDUCTION_DB < reduction, (reduction, dry)
    return reduction


def test_the_bundled_model_does_karaoke_live_at_the_reported_delay(harness, capsys, monkeypatch):
    """``stream-sep --input mic --output headphones`` as shipped: the bundled model with
    ``--latency auto`` (the default), the plan fitted to this machine's measured speed. A
    generated song goes in; what comes out is the karaoke the engine computes inline for the
    same input, at exactly the reported delay, on every sample the engine did not record as
    shed or late (overload is shed and counted, never fatal), and the voice is removed there
    by a margin the dry mixture fails."""
    engines = tap_engines(monkeypatch)
    mixture, _vocals, accompaniment = voice_over_band(6.0, harness.rate, seed=5)
    song = np.stack([mixture, mixture])
    argv = ["--input", "mic", "--output", "headphones"]
    rc, err = run_until_no_xrun(harness, capsys, argv, song, 4.0, engines)
    assert rc == 0, err
    delay = int(re.search(r"latency [0-9.]+ s \((\d+) samples\)", err).group(1))
    (engine,) = engines
    assert delay == engine.latency_samples
    band = np.stack([accompaniment, accompaniment])
    assert find_delay(harness.capture, band) == delay
    reduction = check_karaoke_against_the_engine(
        harness, engine, song, (mixture, accompaniment), delay
    )
    print(f"bundled karaoke live: voice {reduction:.1f} dB down; dry {engine.dry_ranges()}")
