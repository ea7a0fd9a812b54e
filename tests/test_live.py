"""The live command without devices: file in, file out, in real time; errors; keys; crashes."""

from __future__ import annotations

import os
import pty
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
from helpers import gain_model, small_contract

from stream_sep import cli, keys
from stream_sep.engine import Separator
from stream_sep.inference import load_model
from stream_sep.recording import RingBuffer

FAST = ["--hop", "0.1", "--lookahead", "0.05", "--crossfade", "0.02"]
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


def test_file_to_file_equals_the_engine_run_offline(model_path, song, tmp_path, capsys):
    """The live path (worker thread, real-time clock) gives the samples the engine gives
    with every window computed inline, whenever no deadline was missed."""
    path, audio = song
    out = tmp_path / "out.wav"
    for _attempt in range(3):
        rc = cli.main(["--input", str(path), "--output", str(out), "--model", model_path, *FAST])
        err = capsys.readouterr().err
        assert rc == 0, err
        if "0 deadline misses" in err:
            break
    assert "stopped (end of input)" in err and "0 deadline misses" in err, err
    recorded, rate = sf.read(out, dtype="float32", always_2d=True)
    assert rate == RATE
    with Separator(
        load_model(model_path), RATE, 2, blocking=True, hop=0.1, lookahead=0.05, crossfade=0.02
    ) as engine:
        padded = np.pad(audio, ((0, 0), (0, engine.latency_samples)))
        expected = engine.process(padded)
    # The recording runs on to the end of the clock's last block after input + latency.
    assert recorded.shape[0] >= expected.shape[1]
    np.testing.assert_array_equal(recorded.T[:, : expected.shape[1]], expected)


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
        (["--blocksize", "-3"], r"--blocksize must be 0 .* got -3"),
        (["--duration", "0"], r"--duration must be a positive number"),
        (["--mode", "loud"], r"invalid choice: 'loud'"),
        (["--vocal-level", "5"], r"--vocal-level must be a number in \[0, 2\], got 5"),
        (["--output", "/nonexistent-dir/x.wav"], r"does not exist"),
    ],
)
def test_bad_options_are_one_line_with_status_2(model_path, song, tmp_path, capsys, argv, message):
    options = {"--input": str(song[0]), "--output": str(tmp_path / "o.wav")}
    for i in range(0, len(argv), 2):
        options[argv[i]] = argv[i + 1]
    os.chdir(tmp_path)
    rc = cli.main([x for kv in options.items() for x in kv] + ["--model", model_path, *FAST])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("stream-sep: error: "), err
    assert re.search(message, err[0]), err[0]
    assert not (tmp_path / "o.wav").exists()  # nothing written for a mistake


def test_no_bundled_model_is_one_clear_line(capsys, monkeypatch, tmp_path):
    from stream_sep import inference

    monkeypatch.setattr(inference, "BUNDLED_MODEL", tmp_path / "absent.onnx")
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
    assert "stopped (q)" in text and "vocals" in text


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

    from stream_sep.live_audio import FileSource, match_channels

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
    from stream_sep.live_audio import FileSource

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
    from stream_sep.live_audio import FileSource

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
