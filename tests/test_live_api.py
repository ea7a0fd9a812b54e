"""stream_sep.live(...): the live host from Python, file to file in real time, as the command."""

from __future__ import annotations

import time

import numpy as np
import pytest
import soundfile as sf

import stream_sep
from stream_sep.engine import Separator
from stream_sep.errors import UserError
from stream_sep.live.events import LiveEvents
from stream_sep.models.loading import load_model
from stream_sep.settings import Settings
from tests.helpers import FAST_OPTIONS, gain_model, small_contract

RATE = 16000


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return str(gain_model(tmp_path_factory.mktemp("m") / "half.onnx", 0.5, small_contract()))


def write_song(path, seconds: float, seed: int = 3) -> np.ndarray:
    audio = 0.2 * np.random.default_rng(seed).standard_normal((2, int(seconds * RATE)))
    audio = audio.astype(np.float32)
    sf.write(path, audio.T, RATE, subtype="FLOAT")
    return audio


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    path = tmp_path_factory.mktemp("s") / "song.wav"
    return path, write_song(path, 1.0)


@pytest.fixture(scope="module")
def long_song(tmp_path_factory):
    path = tmp_path_factory.mktemp("s") / "long.wav"
    return path, write_song(path, 3.0, seed=4)


def engine_output(model_path, audio: np.ndarray, mode: str) -> np.ndarray:
    """What the engine gives inline (every window computed, none late) for ``audio`` plus
    the latency, with the host's default window options: (channels, samples + latency)."""
    options = {**FAST_OPTIONS, **Settings().window_options()}
    with Separator(load_model(model_path), RATE, 2, blocking=True, mode=mode, **options) as engine:
        return engine.process(np.pad(audio, ((0, 0), (0, engine.latency_samples))))


class Stream(LiveEvents):
    """Keeps what a run reports: the stream's seconds from the status ticks, the notes."""

    def __init__(self):
        self.seconds = 0.0
        self.notes: list[str] = []
        self.started_line = None

    def started(self, line: str) -> None:
        self.started_line = line

    def note(self, line: str) -> None:
        self.notes.append(line)

    def status(self, numbers: dict) -> None:
        self.seconds = numbers["seconds"]

    def wait_for(self, seconds: float, limit: float = 30.0) -> None:
        deadline = time.monotonic() + limit
        while self.seconds < seconds:
            assert time.monotonic() < deadline, f"the stream stayed at {self.seconds} s"
            time.sleep(0.02)


def test_live_is_exported_and_is_the_live_package_too():
    assert "live" in stream_sep.__all__ and callable(stream_sep.live)
    from stream_sep.live import route  # the package's modules are still reached through it

    assert stream_sep.live.route is route


def separated_as_configured(summary, length: int) -> np.ndarray:
    """(length,) bool: the output samples the run's summary does not name as dry, faded or
    separated a cheaper way."""
    assert summary.unrecorded_windows == 0
    mask = np.ones(length, bool)
    for start, stop in summary.dry_ranges + summary.lighter_ranges:
        mask[max(start, 0) : max(min(stop, length), 0)] = False
    return mask


@pytest.mark.parametrize("mode", ["karaoke", "vocals"])
def test_file_to_file_equals_the_engine_and_the_summary_counts_it(model_path, song, tmp_path, mode):
    """The recording is the inline engine's output sample for sample on every sample the
    summary does not name as dry or lighter, and such ranges exist exactly when a window
    was late, skipped or shed: one run, whatever the machine's load."""
    path, audio = song
    out = tmp_path / f"{mode}.wav"
    with stream_sep.live(
        input=path, output=out, mode=mode, model=model_path, **FAST_OPTIONS
    ) as run:
        summary = run.wait()
    expected = engine_output(model_path, audio, mode)
    recorded, rate = sf.read(out, dtype="float32", always_2d=True)
    latency = run.latency_samples
    assert rate == RATE and recorded.shape == (audio.shape[1] + latency, 2)
    same = separated_as_configured(summary, recorded.shape[0])
    assert same[latency:].mean() >= 0.5, summary.dry_ranges  # a gain model: most arrive
    np.testing.assert_array_equal(recorded.T[:, same], expected[:, same])
    # Ranges exist exactly when a window was late, skipped or shed (dropped: dry; run a
    # cheaper way: lighter), whatever the load; a late window always leaves a dry range.
    late = summary.deadline_misses + summary.windows_skipped
    assert bool(summary.dry_ranges or summary.lighter_ranges) == (late + summary.shed > 0)
    assert bool(summary.dry_ranges) >= (late > 0)
    assert bool(summary.lighter_ranges) <= (summary.shed > 0)
    assert summary.ok and run.exit_status == 0 and summary.model_failures == 0
    assert summary.reason == "end of input" and summary.latency_samples == latency
    assert summary.latency_seconds == pytest.approx(latency / RATE) == run.latency_seconds
    # one window a hop (0.1 s) of the stream (the fade-out after the end included), each one
    # computed, late, skipped or dropped, but the last, which may still be running at the end
    assert summary.frames >= recorded.shape[0] and summary.seconds == summary.frames / RATE
    assert summary.windows == summary.frames // int(0.1 * RATE)
    assert summary.windows_run <= summary.windows - summary.windows_skipped
    assert 0 < summary.inference_mean_s <= summary.inference_max_s and summary.load > 0
    assert summary.lines[0].startswith(f"stopped (end of input) after {summary.seconds:.1f} s")
    assert f"recorded {recorded.shape[0]} frames" in summary.lines[-1]


def test_a_mode_change_mid_run_switches_the_recording_from_karaoke_to_vocals(
    model_path, long_song, tmp_path
):
    path, audio = long_song
    out = tmp_path / "switched.wav"
    quarter = RATE // 4
    events = Stream()
    with stream_sep.live(path, out, model=model_path, events=events, **FAST_OPTIONS) as run:
        events.wait_for(1.0)
        with pytest.raises(UserError, match=r"^--mode must be one of .*, got 'loud'$"):
            run.set_mode("loud")  # one line, and nothing changes
        run.set_mode("vocals")
        summary = run.wait()
    assert summary.reason == "end of input"
    recorded = sf.read(out, dtype="float32", always_2d=True)[0].T
    karaoke = engine_output(model_path, audio, "karaoke")
    vocals = engine_output(model_path, audio, "vocals")
    latency = run.latency_samples
    same = separated_as_configured(summary, recorded.shape[1])
    # The first quarter second of music (played before 1 s) is karaoke, the last is vocals,
    # on every sample the summary does not name as dry (a late window there).
    early = np.arange(latency, latency + quarter)
    late = np.arange(recorded.shape[1] - quarter, recorded.shape[1])
    early, late = early[same[early]], late[same[late]]
    assert early.size > quarter // 4 and late.size > quarter // 4, summary.dry_ranges
    np.testing.assert_allclose(recorded[:, early], karaoke[:, early], atol=1e-6)
    assert not np.allclose(recorded[:, early], vocals[:, early], atol=1e-3)
    np.testing.assert_allclose(recorded[:, late], vocals[:, late], atol=1e-6)
    assert not np.allclose(recorded[:, late], karaoke[:, late], atol=1e-3)


def test_stop_ends_the_run_early_with_its_own_reason(model_path, long_song, tmp_path):
    path, audio = long_song
    out = tmp_path / "stopped.wav"
    events = Stream()
    with stream_sep.live(path, out, model=model_path, events=events, **FAST_OPTIONS) as run:
        events.wait_for(0.5)
        summary = run.stop()
        assert not run.running and run.summary is summary
    assert summary.reason == "stop requested" and summary.ok
    assert summary.lines[0].startswith("stopped (stop requested) after")
    recorded = sf.info(out).frames
    assert 0.5 * RATE <= recorded <= summary.frames < audio.shape[1]
    assert events.started_line.startswith("model half.onnx on ")


@pytest.mark.parametrize(
    "options, message",
    [
        ({"mode": "loud"}, r"--mode must be one of karaoke, vocals, bypass, got 'loud'"),
        ({"vocal_level": 3}, r"--vocal-level must be a number in \[0, 2\], got 3"),
        ({"vocal_level": "0.5"}, r"--vocal-level must be a number in \[0, 2\], got '0.5'"),
        ({"key": 7}, r"--key must be a whole number of semitones in \[-6, 6\], got 7"),
        ({"hop": -1}, r"--hop must be a number of seconds > 0, got -1"),
        ({"latency": 0.3, "hop": 0.1}, r"--latency chooses hop, lookahead and crossfade"),
        ({"hop": 0.1, "crossfade": 0.2}, r"--crossfade must be at most --hop \(0.1 s\), got 0.2"),
        ({"stereo": "side"}, r"--stereo must be one of batch, mid, got 'side'"),
        ({"channels": 3}, r"--channels must be one of 1, 2, got '3'"),
        ({"samplerate": 100}, r"--samplerate must be a whole number of Hz in \[8000, 384000\]"),
        ({"blocksize": 2.5}, r"--blocksize must be a whole number of frames >= 0 .*, got 2.5"),
        ({"duration": 0}, r"--duration must be a number of seconds > 0, got 0"),
        ({"provider": "gpu"}, r"--provider must be one of auto, .*, got 'gpu'"),
        ({"mic_level": 1.5}, r"--mic-level 1.5 needs --mic DEVICE"),
        ({"panel": "yes"}, r"--panel must be True or False, got 'yes'"),
        ({"input": 3}, r"--input must be a device name or a file path, got 3"),
        ({"input": "absent.wav"}, r"--input 'absent.wav': no such file"),
        ({"output": "out.mp3"}, r"recordings are written as WAV"),
    ],
)
def test_bad_arguments_are_one_line_before_anything_loads(
    model_path, song, tmp_path, monkeypatch, options, message
):
    from stream_sep.live import host

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(host, "load_model", no_model)
    monkeypatch.chdir(tmp_path)
    arguments = {"input": song[0], "output": tmp_path / "o.wav", "model": model_path, **options}
    with pytest.raises(UserError) as refused:
        stream_sep.live(**arguments)
    text = str(refused.value)
    assert "\n" not in text and refused.match(message), text
    assert list(tmp_path.iterdir()) == []  # nothing written for a mistake


def test_a_run_not_started_says_so(model_path, song, tmp_path):
    run = stream_sep.live(song[0], tmp_path / "o.wav", model=model_path, **FAST_OPTIONS)
    with pytest.raises(UserError, match="has not started"):
        run.set_mode("vocals")
    with pytest.raises(UserError, match="has not started"):
        run.wait()
    assert run.summary is None and not (tmp_path / "o.wav").exists()
