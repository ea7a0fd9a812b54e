"""The live command without devices: file in, file out, in real time; errors; keys; crashes."""

from __future__ import annotations

import os
import pty
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import soundfile as sf

from stream_sep import cli
from stream_sep.engine import Separator
from stream_sep.live import host, keys, route
from stream_sep.live.recording import RingBuffer
from stream_sep.live.streams import STALL_SECONDS, StallWatch
from stream_sep.models.loading import load_model
from stream_sep.settings import Settings
from tests.helpers import FAST_ARGS, gain_model, small_contract
from tests.live_check import (
    ATTEMPTS,
    MIN_SEPARATED,
    recorded_dry_ranges,
    recording_equals_engine,
    tap_engines,
)

FAST = FAST_ARGS
RATE = 16000


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return str(gain_model(tmp_path_factory.mktemp("m") / "half.onnx", 0.5, small_contract()))


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    rng = np.random.default_rng(3)
    audio = (0.2 * rng.standard_normal((2, RATE))).astype(np.float32)  # 1 s
    path = tmp_path_factory.mktemp("s") / "song.wav"
    sf.write(path, audio.T, RATE, subtype="FLOAT")
    return path, audio


def test_file_to_file_equals_the_engine_run_offline(
    model_path, song, tmp_path, capsys, monkeypatch
):
    """The live path (worker thread, real-time clock) gives the samples the engine gives
    with every window computed inline, on every sample it did not record as played dry (a
    window late on a busy machine); there it gives what the engine's fallback gives, the
    delayed input where no window arrived (live_check.recording_equals_engine). Checked in
    every run; a run with under half of the song separated checks too little and is
    repeated (at most ATTEMPTS runs)."""
    path, audio = song
    out = tmp_path / "out.wav"
    engines = tap_engines(monkeypatch)
    # the host's default window options (the Wiener post-filter) on the inline engine too
    window_options = Settings().window_options()
    assert window_options["postfilter"] == "wiener"
    reference = Separator(
        load_model(model_path), RATE, 2, blocking=True, hop=0.1, lookahead=0.05, crossfade=0.02,
        **window_options,
    )  # fmt: skip
    latency = reference.latency_samples
    for _attempt in range(ATTEMPTS):
        engines.clear()
        rc = cli.main(["--input", str(path), "--output", str(out), "--model", model_path, *FAST])
        err = capsys.readouterr().err
        assert rc == 0 and "stopped (end of input)" in err, err
        (engine,) = engines
        assert engine.latency_samples == latency
        # the engine heard the file, then silence
        heard = engine.input
        np.testing.assert_array_equal(heard[:, : audio.shape[1]], audio)
        assert not heard[:, audio.shape[1] :].any()
        recorded, rate = sf.read(out, dtype="float32", always_2d=True)
        assert rate == RATE
        # The recording is exactly the input plus the latency: no part of the clock's last
        # block or of the fade-out after the end.
        assert recorded.shape[0] == audio.shape[1] + latency
        assert f"recorded {recorded.shape[0]} frames" in err
        dry = recorded_dry_ranges(engine)
        lighter = engine.lighter_ranges()  # windows shed to the mid channel: not checked
        separated, _ = recording_equals_engine(recorded.T, reference, heard, dry, lighter)
        if separated >= MIN_SEPARATED:
            break
    assert separated >= MIN_SEPARATED, f"{separated:.0%} separated; dry {dry}, {lighter}\n{err}"


@pytest.mark.parametrize(
    "blocksize, samplerate", [("1024", None), ("1000", None), ("333", None), ("1024", "44100")]
)
def test_a_file_to_file_recording_is_exactly_the_input_plus_the_latency(
    model_path, song, tmp_path, capsys, blocksize, samplerate
):
    """Whatever the block size (a multiple of the input's length or not) and rate, the same
    length on every run: the input's frames at the stream rate plus the latency."""
    path, audio = song
    extra = ["--samplerate", samplerate] if samplerate else []
    rate = int(samplerate or RATE)
    input_frames = int(round(audio.shape[1] * rate / RATE))
    lengths = set()
    for run in range(2):
        out = tmp_path / f"out{run}.wav"
        argv = ["--input", str(path), "--output", str(out), "--model", model_path, *FAST]
        assert cli.main(argv + ["--blocksize", blocksize, *extra]) == 0
        err = capsys.readouterr().err
        latency = int(re.search(r"latency [\d.]+ s \((\d+) samples\)", err).group(1))
        lengths.add(sf.info(str(out)).frames)
    assert lengths == {input_frames + latency}


def test_a_recording_with_duration_holds_exactly_that_long(model_path, song, tmp_path, capsys):
    out = tmp_path / "short.wav"
    argv = ["--input", str(song[0]), "--output", str(out), "--model", model_path, *FAST]
    assert cli.main(argv + ["--duration", "0.5", "--blocksize", "700"]) == 0
    assert "stopped (duration reached)" in capsys.readouterr().err
    assert sf.info(str(out)).frames == RATE // 2


def test_sigkill_during_a_recording_leaves_a_playable_wav(model_path, tmp_path):
    long_song = tmp_path / "long.wav"
    sf.write(long_song, np.zeros((30 * RATE, 1), np.float32) + 0.1, RATE)
    out = tmp_path / "take.wav"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stream_sep",
            "--input",
            str(long_song),
            "--output",
            str(out),
            "--model",
            model_path,
            "--quiet",
            *FAST,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if out.exists() and out.stat().st_size > 44 + 4 * RATE:  # > 1 s written
            break
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    info = sf.info(str(out))
    data, _ = sf.read(out, dtype="float32")
    assert info.frames == data.shape[0] >= RATE
    assert os.path.getsize(out) - info.frames * 4 <= 100  # the header counts every sample


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--output", "take.flac"], r"recordings are written as WAV"),
        (["--input", "missing.wav"], r"--input 'missing.wav': no such file"),
        (
            ["--blocksize", "-3"],
            r"^stream-sep: error: --blocksize must be a whole number of frames >= 0 "
            r"\(0: the device's choice\), got -3$",
        ),
        (["--blocksize", "2.5"], r"--blocksize must be a whole number of frames >= 0 .*got 2.5$"),
        (["--duration", "0"], r"--duration must be a number of seconds > 0, got 0$"),
        (["--duration", "nan"], r"--duration must be a number of seconds > 0, got nan$"),
        (["--mode", "loud"], r"--mode must be one of karaoke, vocals, bypass, got 'loud'$"),
        (["--vocal-level", "5"], r"--vocal-level must be a number in \[0, 2\], got 5$"),
        (["--vocal-level", "-0.1"], r"--vocal-level must be a number in \[0, 2\], got -0.1$"),
        # --hop 0 and --hop -1 say the same thing.
        (["--hop", "0"], r"--hop must be a number of seconds > 0, got 0$"),
        (["--hop", "-1"], r"--hop must be a number of seconds > 0, got -1$"),
        (["--hop", "x"], r"--hop must be a number of seconds > 0, got x$"),
        (["--lookahead", "-1"], r"--lookahead must be a number of seconds >= 0, got -1$"),
        (["--crossfade", "0"], r"--crossfade must be a number of seconds >= 0.005, got 0$"),
        (["--crossfade", "0.2"], r"--crossfade must be at most --hop \(0.1 s\), got 0.2$"),
        (["--samplerate", "100"], r"--samplerate must be a whole number of Hz in \[8000, 384000\]"),
        (["--stereo", "side"], r"--stereo must be one of batch, mid, got 'side'$"),
        (["--provider", "gpu"], r"--provider must be one of auto, tensorrt, cuda, cpu, got 'gpu'"),
        (["--channels", "3"], r"--channels must be one of 1, 2, got '3'$"),
        (["--output", "/nonexistent-dir/x.wav"], r"does not exist"),
    ],
)
def test_bad_options_are_one_line_with_status_2_before_the_model_loads(
    model_path, song, tmp_path, capsys, monkeypatch, argv, message
):
    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the options were checked")

    monkeypatch.setattr(host, "load_model", no_model)
    options = {"--input": str(song[0]), "--output": str(tmp_path / "o.wav"), "--hop": "0.1"}
    for i in range(0, len(argv), 2):
        options[argv[i]] = argv[i + 1]
    monkeypatch.chdir(tmp_path)
    fixed = ["--lookahead", "0.05", "--crossfade", "0.02"]
    rc = cli.main(fixed + [x for kv in options.items() for x in kv] + ["--model", model_path])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("stream-sep: error: "), err
    assert re.search(message, err[0]), err[0]
    assert not (tmp_path / "o.wav").exists()  # nothing written for a mistake


def test_no_bundled_model_is_one_clear_line(capsys, monkeypatch, tmp_path):
    from stream_sep.models import bundled

    monkeypatch.setattr(bundled, "BUNDLED_MODEL", tmp_path / "absent.onnx")
    assert cli.main(["--input", "mic", "--output", "headphones"]) == 2
    assert "no bundled model is installed" in capsys.readouterr().err


def test_keys_parse_letters_and_arrows():
    assert keys.parse("kvb\x1b[A\x1b[Bq+-x") == [
        "karaoke",
        "vocals",
        "bypass",
        "up",
        "down",
        "quit",
        "up",
        "down",
    ]


def test_live_keys_in_a_terminal_switch_modes_and_quit(model_path, song):
    """stdin is a pseudo-terminal: 'v' then 'q' stop the run; the terminal is restored."""
    long_song = song[0].parent / "long.wav"
    sf.write(long_song, np.zeros((60 * RATE, 2), np.float32), RATE)
    pid, fd = pty.fork()
    if pid == 0:  # child: stdin/stdout/stderr are the terminal
        os.execv(
            sys.executable,
            [
                sys.executable,
                "-m",
                "stream_sep",
                "--input",
                str(long_song),
                "--output",
                str(song[0].parent / "k.wav"),
                "--model",
                model_path,
                *FAST,
            ],
        )
    output = b""
    deadline = time.monotonic() + 120
    while b"keys:" not in output and time.monotonic() < deadline:
        output += _read(fd)
    os.write(fd, b"v")
    time.sleep(0.5)
    os.write(fd, b"q")
    while time.monotonic() < deadline:
        chunk = _read(fd)
        if not chunk:
            break
        output += chunk
    _, status = os.waitpid(pid, 0)
    text = output.decode(errors="replace")
    assert os.WEXITSTATUS(status) == 0, text
    assert "stopped (q)" in text
    # The status line after the key shows the new mode ("| vocals |"); the key-help line
    # ("v vocals") does not have that shape.
    assert re.search(r"\| vocals \|", text), text


def test_keys_typed_while_the_model_loads_are_not_echoed_and_take_effect(model_path, song):
    """The terminal leaves echo and line mode before the model loads (seen from the parent
    through the pty); 'v' typed then switches to vocals once the stream runs, and nothing
    typed is echoed."""
    import termios

    long_song = song[0].parent / "long_keys.wav"
    sf.write(long_song, np.zeros((60 * RATE, 2), np.float32), RATE)
    pid, fd = pty.fork()
    if pid == 0:  # child: stdin/stdout/stderr are the terminal
        os.execv(
            sys.executable,
            [sys.executable, "-m", "stream_sep", "--input", str(long_song), "--output",
             str(song[0].parent / "keys.wav"), "--model", model_path, *FAST],
        )  # fmt: skip
    output = b""
    deadline = time.monotonic() + 120
    while termios.tcgetattr(fd)[3] & termios.ECHO and time.monotonic() < deadline:
        time.sleep(0.005)
    output += _read_ready(fd)
    assert b"keys:" not in output, "the stream started before the terminal left echo mode"
    os.write(fd, b"vxyzzy")  # typed during start-up
    while b"| vocals |" not in output and time.monotonic() < deadline:
        output += _read(fd)
    os.write(fd, b"q")
    while time.monotonic() < deadline:
        chunk = _read(fd)
        if not chunk:
            break
        output += chunk
    _, status = os.waitpid(pid, 0)
    text = output.decode(errors="replace")
    assert os.WEXITSTATUS(status) == 0, text
    assert "| vocals |" in text and "stopped (q)" in text, text
    assert "xyzzy" not in text, text  # not echoed


def _read_ready(fd) -> bytes:
    """What the child has written so far, without waiting."""
    import select

    data = b""
    while select.select([fd], [], [], 0)[0]:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    return data


def _read(fd) -> bytes:
    import select

    ready, _, _ = select.select([fd], [], [], 1.0)
    if not ready:
        return b" "
    try:
        return os.read(fd, 4096)
    except OSError:  # the child closed the terminal
        return b""


def test_ring_buffer_wraps_and_counts_what_does_not_fit():
    ring = RingBuffer(2, 5)
    out = np.zeros((2, 5), np.float32)
    block = np.arange(8, dtype=np.float32).reshape(2, 4)
    assert ring.write(block) == 4
    assert ring.read(out[:, :3]) == 3
    assert ring.write(block) == 4  # wraps around the end
    assert ring.write(block) == 0 and ring.dropped == 4
    assert ring.read(out) == 5
    np.testing.assert_array_equal(out, [[3, 0, 1, 2, 3], [7, 4, 5, 6, 7]])


def test_ring_buffer_audio_side_keeps_whole_blocks_and_reads_silence_past_its_end():
    """write: a block that does not fit whole is dropped whole (or its first ``count``
    samples kept); read: what is there, then silence; discard skips; the other side's
    write_some/read_some move what fits or what is there."""
    ring = RingBuffer(1, 6)
    block = np.arange(1, 5, dtype=np.float32)[None]  # [1, 2, 3, 4]
    assert ring.write(block) == 4
    assert ring.write(block) == 0 and ring.dropped == 4 and ring.available == 4  # 2 free
    assert ring.write(block[:, :2], count=1) == 1 and ring.available == 5  # [1 2 3 4 1]
    out = np.full((1, 4), 9.0, np.float32)
    assert ring.read(out) == 4
    np.testing.assert_array_equal(out, [[1, 2, 3, 4]])
    assert ring.read(out) == 1  # one sample there, then silence
    np.testing.assert_array_equal(out, [[1, 0, 0, 0]])
    assert ring.write(block) == 4 and ring.write_some(block) == 2 and ring.dropped == 6
    ring.discard(1)  # skips the 1
    some = np.zeros((1, 8), np.float32)
    assert ring.read_some(some) == 5
    np.testing.assert_array_equal(some[:, :5], [[2, 3, 4, 1, 2]])


def _drain(source, block: int) -> np.ndarray:
    """Read a FileSource to its end in ``block``-frame reads, as the audio thread would
    (waiting for the reader before each read, so no underrun)."""
    chunks = []
    while source.position < source.frames:
        n = min(block, source.frames - source.position)
        deadline = time.monotonic() + 10
        while source.buffered < n and source.decoding and time.monotonic() < deadline:
            time.sleep(0.001)
        out = np.empty((source.channels, n), np.float32)
        source.read(out)
        chunks.append(out)
    return np.concatenate(chunks, axis=1)


@pytest.mark.parametrize(
    "file_rate, file_channels, rate, channels",
    [(44100, 2, 48000, 2), (48000, 1, 16000, 2), (22050, 2, 48000, 1), (16000, 2, 16000, 2)],
)
def test_file_source_streams_exactly_what_resampling_the_whole_file_gives(
    tmp_path, file_rate, file_channels, rate, channels
):
    """Decoded and resampled block by block through a small ring that wraps many times:
    the samples of soxr on the whole file, channel-matched, and exactly that many."""
    import soxr

    from stream_sep.live.audio import FileSource, match_channels

    rng = np.random.default_rng(7)
    audio = (0.3 * rng.standard_normal((file_channels, int(1.37 * file_rate)))).astype(np.float32)
    path = tmp_path / "in.flac"
    sf.write(path, audio.T, file_rate, subtype="PCM_24")
    decoded, _ = sf.read(path, dtype="float32", always_2d=True)
    expected = match_channels(decoded.T, channels)
    if file_rate != rate:
        expected = soxr.resample(np.ascontiguousarray(expected.T), file_rate, rate, "HQ").T
    source = FileSource(path, rate, channels, ahead_seconds=0.02, block=256)
    try:
        assert source.frames == expected.shape[1]
        streamed = _drain(source, 441)
    finally:
        source.close()
    np.testing.assert_array_equal(streamed, expected)
    assert source.underrun_frames == 0 and source.error is None
    tail = np.ones((channels, 100), np.float32)
    source.read(tail)  # past the end: silence, not an underrun
    assert not tail.any() and source.underrun_frames == 0


def test_file_source_counts_what_was_not_decoded_in_time(tmp_path):
    from stream_sep.live.audio import FileSource

    path = tmp_path / "in.wav"
    sf.write(path, np.full((48000, 2), 0.25, np.float32), 48000)
    source = FileSource(path, 48000, 2, ahead_seconds=0.01, block=128)
    source.wait_ready()
    source.close()  # the reader stops with at most the ring's 1,024 frames decoded
    out = np.ones((2, 48000), np.float32)
    source.read(out)
    decoded = int(np.count_nonzero(out[0]))
    assert 0 < decoded <= 1024 and not out[:, decoded:].any()
    assert source.underrun_frames == 48000 - decoded


def test_file_source_reports_a_file_that_ends_early(tmp_path):
    """A FLAC cut in the middle: the header promises more frames than the data holds."""
    from stream_sep.live.audio import FileSource

    path = tmp_path / "cut.flac"
    sf.write(
        path, (0.3 * np.random.default_rng(1).standard_normal(48000)).astype(np.float32), 16000
    )
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    source = FileSource(path, 16000, 1)
    try:
        streamed = _drain(source, 1000)
    finally:
        source.close()
    assert streamed.shape == (1, 48000)  # the promised length, the missing part silent
    assert not streamed[0, -1000:].any()
    # libsndfile notices the cut ("flac decoder lost sync"); a reader that merely ran out
    # would say "the file ended after N of 48000 frames".
    assert source.error is not None and ("lost sync" in source.error or "48000" in source.error)


def test_a_cut_input_file_plays_to_its_promised_end_and_fails_with_the_reason(
    model_path, tmp_path, capsys
):
    path = tmp_path / "cut.flac"
    noise_ = (0.2 * np.random.default_rng(2).standard_normal((RATE, 2))).astype(np.float32)
    sf.write(path, noise_, RATE)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out.wav"
    rc = cli.main(["--input", str(path), "--output", str(out), "--model", model_path, *FAST])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert "the input file could not be read to its end" in err
    assert "stopped (end of input)" in err
    assert sf.info(out).frames >= RATE  # the recording holds the whole promised length


class _WrappedModel:
    """A real model whose ``separate`` is replaced after loading (warm-up runs the real one)."""

    def __init__(self, model, separate):
        self._model, self.separate = model, separate

    def __getattr__(self, name):
        return getattr(self._model, name)


@pytest.fixture
def noise_song(tmp_path):
    path = tmp_path / "noise.wav"
    audio = 0.2 * np.random.default_rng(4).standard_normal((4 * RATE, 2))
    sf.write(path, audio.astype(np.float32), RATE, subtype="FLOAT")
    return path


@pytest.mark.parametrize("behaviour", ["slow", "raises", "hangs"])
def test_the_summary_names_the_real_cause_of_a_model_stop(
    model_path, noise_song, tmp_path, capsys, monkeypatch, behaviour
):
    """A model that is late, one that fails and one that never returns each stop the stream
    with their own cause: never 'model failed' beside '0 model failures'."""
    release = threading.Event()

    def slow(audio):
        time.sleep(0.25)  # 2.5 hops: every window late
        return real.separate(audio)

    def raises(audio):
        raise RuntimeError("boom")

    def hangs(audio):
        release.wait(60)
        return real.separate(audio)

    real = load_model(model_path)
    behaviours = {"slow": slow, "raises": raises, "hangs": hangs}
    monkeypatch.setattr(host, "load_model", lambda *a: _WrappedModel(real, behaviours[behaviour]))
    out = tmp_path / "out.wav"
    try:
        rc = cli.main(
            ["--input", str(noise_song), "--output", str(out), "--model", model_path, *FAST]
        )
    finally:
        release.set()
    err = capsys.readouterr().err
    assert rc == 1, err
    summary = re.search(
        r"stopped \((.*)\) after .* (\d+) deadline misses, (\d+) model failures", err
    )
    assert summary, err
    cause, misses, failures = summary.group(1), int(summary.group(2)), int(summary.group(3))
    if behaviour == "slow":
        assert cause == f"inference too slow, {misses} deadline misses" and misses >= 8, err
        assert failures == 0
    elif behaviour == "raises":
        # the count the stop reason gives is the summary's own, however many failed later
        assert cause == f"model failed, {failures} failures: RuntimeError: boom", err
        assert failures >= 8 and "windows (0 run, " in err, err
    else:
        assert cause == "model hung" and failures == 0, err
    assert "Traceback" not in err


def test_a_model_stop_is_worded_from_the_counts_the_summary_reports(model_path):
    """The loop notices the failure after some windows failed; more fail while the output
    fades out. The stop reason is worded with the summary, from the same counts."""
    from types import SimpleNamespace

    from stream_sep.live import status

    def raises(audio):
        raise RuntimeError("boom")

    model = _WrappedModel(load_model(model_path), raises)
    block = np.zeros((2, 400), np.float32)
    with Separator(
        model, RATE, 2, blocking=True, hop=0.1, lookahead=0.05, crossfade=0.02
    ) as engine:
        while not engine.failed:
            engine.process(block)
        noticed = engine.stats.model_failures
        for _ in range(8):  # the fade-out: a window ends every four blocks
            engine.process(block)
        assert engine.stats.model_failures == noticed + 2
        device = SimpleNamespace(frames=RATE, xruns=0, muted_blocks=0)
        summary = status.summarize(engine, device, 1.0, status.ENGINE_FAILED, [], ok=False)
    failures = engine.stats.model_failures
    assert summary.model_failures == failures
    assert summary.reason == f"model failed, {failures} failures: RuntimeError: boom"
    assert summary.lines[0].startswith(f"stopped ({summary.reason}) after 1.0 s: ")
    assert f" {failures} model failures, " in summary.lines[0]


def test_windows_that_come_late_play_the_delayed_input_and_the_rest_stays_exact(
    model_path, tmp_path, capsys, monkeypatch
):
    """One model call takes 0.35 s, over three hops: that window and the ones queued behind
    it come too late and play dry. The engine records them; the recording is the inline
    engine's output everywhere else, what the engine's fallback gives on them, and the
    delayed input where no window arrived (the checks of the live tests, here with misses
    for certain)."""
    real, calls = load_model(model_path), []

    def late_once(audio):
        calls.append(1)
        if len(calls) == 6:
            time.sleep(0.35)
        return real.separate(audio)

    monkeypatch.setattr(host, "load_model", lambda *a: _WrappedModel(real, late_once))
    engines = tap_engines(monkeypatch)
    audio = (0.1 * np.random.default_rng(9).standard_normal((2, 2 * RATE))).astype(np.float32)
    path, out = tmp_path / "in.wav", tmp_path / "out.wav"
    sf.write(path, audio.T, RATE, subtype="FLOAT")
    rc = cli.main(["--input", str(path), "--output", str(out), "--model", model_path, *FAST])
    err = capsys.readouterr().err
    assert rc == 0 and "stopped (end of input)" in err, err
    (engine,) = engines
    dry = recorded_dry_ranges(engine)
    misses = int(re.search(r"(\d+) deadline misses", err).group(1))
    assert dry and misses >= 1, err
    recorded, _ = sf.read(out, dtype="float32", always_2d=True)
    reference = Separator(real, RATE, 2, engine.config, blocking=True)  # the real model
    _, dry_samples = recording_equals_engine(
        recorded.T, reference, engine.input, dry, engine.lighter_ranges()
    )
    assert dry_samples > 0, dry  # some output came from no window at all, and was checked


@pytest.mark.parametrize(
    "file_channels, option, note, recorded_channels",
    [
        (6, [], "the input file has 6 channels, channels 1-2 used and the other 4 left out", 2),
        (2, ["--channels", "1"], "the input file has 2 channels, mixed down to mono", 1),
        (1, ["--channels", "2"], "the input file is mono, copied to all 2 channels", 2),
        (1, [], None, 1),
        (2, [], None, 2),
    ],
)
def test_a_start_up_line_says_how_channels_are_mixed(
    model_path, tmp_path, capsys, file_channels, option, note, recorded_channels
):
    path = tmp_path / "in.wav"
    audio = 0.1 * np.random.default_rng(5).standard_normal((RATE // 2, file_channels))
    sf.write(path, audio.astype(np.float32), RATE, subtype="FLOAT")
    out = tmp_path / "out.wav"
    argv = ["--input", str(path), "--output", str(out), "--model", model_path, *FAST, *option]
    assert cli.main(argv) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("stream-sep: channels: ")]
    if note is None:
        assert not lines, err
    else:
        assert len(lines) == 1 and note in lines[0], err
    assert sf.info(str(out)).channels == recorded_channels


def test_version_prints_the_package_version(capsys):
    from importlib import metadata

    import stream_sep

    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"stream-sep {stream_sep.__version__}\n"
    assert stream_sep.__version__ == metadata.version("stream-sep")


@pytest.mark.parametrize(
    "argv, listings",
    [
        (["--help"], ["{batch,mid}", "{auto,tensorrt,cuda,cpu}", "{karaoke,vocals,bypass}"]),
        (
            ["separate", "--help"],
            ["{batch,mid}", "{auto,tensorrt,cuda,cpu}", "{karaoke,vocals,both}"],
        ),
    ],
)
def test_help_shows_the_choices(capsys, argv, listings):
    with pytest.raises(SystemExit):
        cli.main(argv)
    text = capsys.readouterr().out
    for listing in listings:
        assert listing in text, listing


def test_the_readme_live_synopsis_lists_every_live_option():
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("\n## Live\n", 1)[1].split("\n## ", 1)[0]
    synopsis = section.split("```", 2)[1]
    parser = cli.get_parser()
    for action in parser._actions:
        for flag in action.option_strings:
            if flag.startswith("--") and flag != "--help":
                assert flag in synopsis, f"{flag} missing from the README's live synopsis"


def test_xrun_warning_threshold_and_causes():
    from stream_sep.live import status

    assert status.xrun_warning(2, 10, 48000, 7) is None  # fewer than 3: start-up glitches
    assert status.xrun_warning(10, 1000, 48000, 7) is None  # exactly 1%: not more
    short, long = status.xrun_warning(4389, 22000, 48000, 7)
    assert short == "20% of callbacks: --blocksize too small, try 512"
    assert "--blocksize 7 (0.15 ms) is too small" in long and "--blocksize 512" in long
    short, long = status.xrun_warning(50, 1000, 48000, 0)
    assert short == "5% of callbacks: machine too busy"
    assert "too busy" in long and "--blocksize such as 1024" in long


def test_channel_notes_for_devices():
    """Device sides (a JACK run covers the real devices; these counts need hardware that is
    not here): an interface's extra inputs and a mono stream on a stereo output are named; a
    sound server's ALSA plugin, which offers 32 channels it mixes, is not."""
    from stream_sep.live.devices import Device

    interface = route.Endpoint(
        "input", "3", device=Device(3, "USB Audio Interface", "ALSA", 6, 0, 48e3)
    )
    mic = route.Endpoint("input", "mic", device=Device(1, "USB Mic", "ALSA", 1, 0, 48e3))
    plugin = route.Endpoint("input", "mic", device=Device(9, "default", "ALSA", 32, 32, 48e3))
    phones = route.Endpoint("output", "headphones", device=Device(2, "Phones", "ALSA", 0, 2, 48e3))
    notes = route.channel_notes(interface, phones, 2, 2, None)
    assert (
        notes == "channels: --input 3 'USB Audio Interface' has 6 channels, channels 1-2 captured"
    )
    notes = route.channel_notes(mic, phones, 1, 2, None)
    assert notes == "channels: the mono stream plays on all 2 output channels"
    assert route.channel_notes(plugin, phones, 2, 2, None) is None


def test_a_stall_is_seconds_and_ticks_without_a_callback():
    watch = StallWatch(tick=0.25)
    assert watch.seconds == STALL_SECONDS and watch.min_ticks == 8
    assert not watch.stalled(5, now=100.0)  # the first look starts the clock
    assert not any(watch.stalled(5, now=100.0 + 0.25 * k) for k in range(1, 8))
    assert watch.stalled(5, now=102.0)  # 2 s and 8 ticks with no new callback
    assert not watch.stalled(6, now=102.25)  # a callback came: the clock starts again
    # One tick after a long gap (this process was stopped) is not a stall; eight are.
    assert not watch.stalled(6, now=110.0)
    assert not any(watch.stalled(6, now=110.0 + 0.25 * k) for k in range(1, 7))
    assert watch.stalled(6, now=111.75)
    # Long device blocks: four of them without a callback before it counts.
    assert StallWatch(tick=0.25, block_seconds=1.5).seconds == 6.0
