"""Reliability: inputs nobody planned for, models that fail in every way, bounded resources,
and untrusted model and audio files refused with one clear line before anything streams."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
import onnx
import pytest
import soundfile as sf
from onnx import TensorProto, helper, numpy_helper

from stream_sep import engine as engine_module
from stream_sep.cli import main
from stream_sep.dsp.safety import db_to_gain
from stream_sep.engine import Separator
from stream_sep.errors import ModelError, UserError
from stream_sep.models.contract import PREFIX
from stream_sep.models.loading import load_model
from tests.helpers import (
    FAST_ARGS,
    FAST_OPTIONS,
    gain_model,
    impulse,
    noise,
    sine,
    small_contract,
    stream,
)

FAST = FAST_OPTIONS
# A 0.896 s window fits the engine's default hop 0.5 / lookahead 0.25 / crossfade 0.064 and
# needs 5x fewer windows per minute of audio than FAST: for the long streams here.
LONG_WINDOW = 28 * 512
CEILING32 = float(np.float32(db_to_gain(-1.0)))


@pytest.fixture(scope="module")
def long_identity(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "long.onnx"
    return load_model(gain_model(path, 1.0, contract=small_contract(LONG_WINDOW)))


@pytest.fixture(scope="module")
def half_path(tmp_path_factory):
    return gain_model(tmp_path_factory.mktemp("m") / "half.onnx", 0.5)


def _warnings(caplog, text: str) -> int:
    return sum(text in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


def _delayed(audio: np.ndarray, latency: int) -> np.ndarray:
    delayed = np.zeros_like(audio)
    delayed[:, latency:] = audio[:, :-latency]
    return delayed


# ---------------------------------------------------------------------------- inputs
def test_dc_offset_is_counted_and_warned_about_once(half, caplog):
    audio = sine(300, 3.0, 16000, 0.3)[None] + np.float32(0.3)
    engine = Separator(half, 16000, 1, blocking=True, **FAST)
    with caplog.at_level(logging.WARNING, "stream_sep.engine"):
        out = engine.process(audio)
    assert engine.stats.dc_offset_windows >= 20
    assert _warnings(caplog, "the input has a DC offset of") == 1
    assert np.isfinite(out).all() and np.abs(out).max() <= CEILING32


def test_clipped_input_is_counted_once_but_a_loud_float_mix_is_not(half, caplog):
    tone = sine(200, 3.0, 16000, 2.0)
    engine = Separator(half, 16000, 1, blocking=True, **FAST)
    with caplog.at_level(logging.WARNING, "stream_sep.engine"):
        out = engine.process(np.clip(tone, -1.0, 1.0)[None])  # flat tops at full scale
    assert engine.stats.clipped_input_windows >= 25
    assert _warnings(caplog, "full scale (clipping)") == 1
    assert np.abs(out).max() <= CEILING32
    loud = Separator(half, 16000, 1, blocking=True, **FAST)
    out = loud.process(tone[None])  # peaks at 2.0 in float, no repeated samples
    assert loud.stats.clipped_input_windows == 0
    assert np.abs(out).max() <= CEILING32  # the limiter holds it


def test_minutes_of_silence_stay_exact_silence(long_identity, caplog):
    rate = 16000
    engine = Separator(long_identity, rate, 1, blocking=True)
    audio = np.zeros((1, 3 * 60 * rate), np.float32)
    with caplog.at_level(logging.WARNING, "stream_sep.engine"):
        out = stream(engine, audio, 4096)
    assert not out.any()
    stats = engine.stats
    assert stats.windows_run == stats.windows_submitted == audio.shape[1] // engine.hop_samples
    assert stats.model_failures == stats.fallback_windows == 0
    assert not caplog.records


def test_one_sample_blocks_live_equal_offline(half):
    rate = 16000
    audio = noise(1, rate, seed=12, amplitude=0.1)
    offline = Separator(half, rate, 1, blocking=True, **FAST).process(audio)
    out = np.zeros_like(audio)
    with Separator(half, rate, 1, blocking=False, **FAST) as live:
        for n in range(audio.shape[1]):
            live.process(audio[:, n : n + 1], out=out[:, n : n + 1])
            if (n + 1) % live.hop_samples == 0:  # pace like a device: one hop per window
                _wait_for_worker(live, (n + 1) // live.hop_samples)
        assert live.stats.fallback_windows == 0
    assert np.array_equal(out, offline)


def _wait_for_worker(engine, windows: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while engine.stats.windows_run + engine.stats.model_failures < windows:
        assert time.monotonic() < deadline, "the worker did not finish a window in 5 s"
        time.sleep(0.0005)


@pytest.mark.slow
def test_ten_minutes_in_one_call_keeps_memory_bounded(long_identity):
    """One process() call with 10 minutes of audio: windows computed inline (offline
    mode), same result as small blocks, and the engine's own allocations during the call
    stay under 16 MiB (the input and output arrays, 38 MB each, are the caller's)."""
    rate = 16000
    audio = noise(1, 10 * 60 * rate, seed=5, amplitude=0.1)
    out = np.empty_like(audio)
    engine = Separator(long_identity, rate, 1, mode="bypass", blocking=True)
    tracemalloc.start()
    try:
        engine.process(audio, out=out)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20, f"peak {peak / 2**20:.1f} MiB"
    assert engine.stats.windows_run == audio.shape[1] // engine.hop_samples
    latency, fade = engine.latency_samples, int(0.05 * rate)
    assert np.array_equal(out[:, latency + fade :], audio[:, fade:-latency])


def test_ten_minutes_in_one_live_call_never_waits_and_bounds_the_queue(long_identity):
    """Live mode cannot compute 1,200 windows inside one call: it must not wait for them,
    queue them all, or grow; they fall back to the dry signal and are counted."""
    rate = 16000
    audio = noise(1, 10 * 60 * rate, seed=6, amplitude=0.1)
    with Separator(long_identity, rate, 1, mode="bypass", blocking=False) as engine:
        started = time.monotonic()
        out = engine.process(audio)
        took = time.monotonic() - started
        queued = engine.queued_jobs
        stats = engine.stats
    assert queued <= engine_module.SLOTS
    assert stats.windows_submitted == audio.shape[1] // engine.hop_samples
    # The worker runs what it can meanwhile (how many depends on the machine's load); most
    # windows must have fallen back rather than been waited for.
    assert stats.windows_run < stats.windows_submitted / 2
    assert out.shape == audio.shape and np.isfinite(out).all()
    assert took < 60  # 10 minutes of audio; the inline copies alone take a few seconds


@pytest.mark.parametrize("rate", [8000, 22050, 96000])
def test_device_rates_other_than_the_models_keep_the_exact_latency(half, rate):
    engine = Separator(half, rate, 2, mode="vocals", blocking=True, **FAST)
    at = int(0.4 * rate)
    out = stream(engine, impulse(2, int(1.2 * rate), at), [333, 4096, 1])
    assert out.shape == (2, int(1.2 * rate))
    for channel in range(2):
        assert int(np.argmax(np.abs(out[channel]))) == at + engine.latency_samples


# ---------------------------------------------------------------------------- model faults
class Faulty:
    """Wraps a real model; call number n (from 1) misbehaves as ``plan(n)`` says:
    None (fine), "raise", "shape", "nan", or a float (seconds of delay first)."""

    def __init__(self, model, plan):
        self.model, self.contract, self.plan = model, model.contract, plan
        self.calls = 0
        self.injected = {"raise": 0, "shape": 0, "nan": 0}

    def separate(self, audio):
        self.calls += 1
        fault = self.plan(self.calls)
        if isinstance(fault, float):
            time.sleep(fault)
            fault = None
        if fault is not None:
            self.injected[fault] += 1
        if fault == "raise":
            raise RuntimeError("injected failure")
        result = self.model.separate(audio)
        if fault == "shape":
            return result[..., :-1]
        if fault == "nan":
            result = result.copy()
            result[..., 100] = np.nan
        return result


def test_a_model_that_always_raises_latches_failed_with_the_reason(half):
    model = Faulty(half, lambda n: "raise")
    engine = Separator(
        model, 16000, 1, blocking=True, fade_in=0.0, max_consecutive_failures=4, **FAST
    )
    audio = sine(200, 1.0, 16000)[None]
    out = engine.process(audio[:, :9000])  # windows 1-4 are due by output sample 8000
    assert engine.failed
    assert re.search(
        r"no usable estimate for 4 windows in a row \(4 failed, 0 late\)", engine.failure_reason
    )
    assert "last error: RuntimeError: injected failure" in engine.failure_reason
    out = np.concatenate([out, engine.process(audio[:, 9000:])], axis=1)  # still streaming
    assert np.array_equal(out, _delayed(audio, engine.latency_samples))
    assert engine.stats.model_failures == model.calls == engine.stats.windows_submitted


def test_wrong_shapes_and_nan_fall_back_are_counted_and_logged_once(half, caplog):
    plan = {0: "shape", 1: "nan", 2: None}
    model = Faulty(half, lambda n: plan[n % 3])
    engine = Separator(model, 16000, 1, mode="karaoke", blocking=True, **FAST)
    audio = noise(1, 3 * 16000, seed=2, amplitude=0.1)
    with caplog.at_level(logging.WARNING, "stream_sep.engine"):
        out = engine.process(audio)
    stats = engine.stats
    assert stats.model_failures == model.injected["shape"] + model.injected["nan"] > 15
    assert stats.nonfinite_model_outputs == model.injected["nan"]
    assert stats.windows_run == model.calls - stats.model_failures
    assert _warnings(caplog, "inference failed") == 1
    assert not engine.failed  # never more than 2 failures in a row
    assert np.isfinite(out).all()


def test_warm_up_refuses_a_model_that_cannot_run(half):
    engine = Separator(Faulty(half, lambda n: "shape"), 16000, 2, blocking=True, **FAST)
    with pytest.raises(
        ModelError, match=r"cannot separate a silent window: ValueError: model returned shape"
    ):
        engine.warm_up()
    assert Separator(half, 44100, 2, blocking=True, **FAST).warm_up() >= 0.0


def _paced(engine, audio: np.ndarray, block: int, on_block=None) -> np.ndarray:
    """Feed audio at real time, like a device callback; returns the output."""
    out = np.zeros_like(audio)
    rate = engine.sample_rate
    started = time.monotonic()
    for start in range(0, audio.shape[1], block):
        engine.process(audio[:, start : start + block], out=out[:, start : start + block])
        if on_block is not None:
            on_block(engine)
        ahead = (start + block) / rate - (time.monotonic() - started)
        if ahead > 0:
            time.sleep(ahead)
    return out


def test_a_hung_model_never_blocks_is_reported_and_does_not_hold_up_close(half):
    release = threading.Event()

    class Hung:
        contract = half.contract

        def separate(self, audio):
            release.wait(30)
            return half.separate(audio)

    queued, call_times = [], []

    def watch(engine):
        queued.append(engine.queued_jobs)

    engine = Separator(Hung(), 16000, 1, blocking=False, fade_in=0.0, **FAST)
    try:
        audio = noise(1, int(1.5 * 16000), seed=8, amplitude=0.1)
        started = time.monotonic()
        out = _paced(engine, audio, 160, watch)
        call_times.append(time.monotonic() - started)
        assert engine.failed
        assert "has not returned for" in engine.failure_reason
        assert "inference seems hung" in engine.failure_reason
        assert max(queued) <= engine_module.SLOTS
        assert np.array_equal(out, _delayed(audio, engine.latency_samples))
        closing = time.monotonic()
        engine.close()  # the worker is stuck inside the model: close must not wait for it
        assert time.monotonic() - closing < 3.0
    finally:
        release.set()
        engine.close()
    assert call_times[0] < 1.5 + 1.0  # real-time pacing plus scheduling slack


def test_a_model_slower_than_real_time_falls_back_instead_of_queueing(half):
    model = Faulty(half, lambda n: 0.15)  # 150 ms per window, a window every 100 ms
    queued = []
    with Separator(model, 16000, 1, blocking=False, **FAST) as engine:
        _paced(
            engine,
            noise(1, 2 * 16000, seed=9, amplitude=0.1),
            320,
            lambda e: queued.append(e.queued_jobs),
        )
        stats = engine.stats
        assert engine.failed
        assert "inference cannot keep up" in engine.failure_reason
        assert "use a longer --hop or a lighter model" in engine.failure_reason
    assert max(queued) <= 2  # never more than a window or two waiting
    started = stats.windows_submitted - stats.windows_skipped
    # The worker drops windows whose deadline passed instead of running them late:
    # what it neither ran nor dropped is at most the one or two in flight at the end.
    assert started - (stats.windows_run + stats.jobs_dropped) <= 2
    assert stats.jobs_dropped > 0
    assert stats.deadline_misses + stats.windows_skipped == stats.fallback_windows


def test_max_consecutive_failures_is_checked(half):
    for bad in (0, -1, 2.5, True):
        with pytest.raises(UserError, match="max_consecutive_failures must be"):
            Separator(half, 16000, 1, blocking=True, max_consecutive_failures=bad, **FAST)


# ---------------------------------------------------------------------------- untrusted files
def _graph_model(
    path: Path,
    input_type=TensorProto.FLOAT,
    input_shape=None,
    output_shape=None,
    metadata=None,
    nodes=None,
    initializers=(),
) -> Path:
    contract = small_contract()
    frames, bins = contract.frames, contract.n_bins
    input_shape = input_shape or ["b", frames, bins, 2]
    output_shape = output_shape or ["b", 1, frames, 2 * bins]
    inputs = [helper.make_tensor_value_info("spectrogram", input_type, input_shape)]
    outputs = [helper.make_tensor_value_info("sources", input_type, output_shape)]
    shape = numpy_helper.from_array(np.array([0, 1, frames, 2 * bins], np.int64), "shape")
    if nodes is None:
        nodes = [helper.make_node("Reshape", ["spectrogram", "shape"], ["sources"])]
    graph = helper.make_graph(nodes, "g", inputs, outputs, [shape, *initializers])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in (metadata or contract.to_metadata()).items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, path)
    return path


def _with_metadata(**changes):
    def build(path):
        metadata = small_contract().to_metadata()
        metadata.update({PREFIX + key: value for key, value in changes.items()})
        return _graph_model(path, metadata=metadata)

    return build


def _write(data: bytes):
    def build(path):
        path.write_bytes(data)
        return path

    return build


def _make_directory(path):
    path.mkdir()
    return path


def _truncated(path):
    data = gain_model(path, 0.5).read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _allocates_a_terabyte(path):
    """Loads fine (every declared shape agrees), then asks for 4 TB when run."""
    nodes = [
        helper.make_node(
            "ConstantOfShape",
            ["huge_shape"],
            ["huge"],
            value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.0]),
        ),
        helper.make_node("ReduceSum", ["huge"], ["total"], keepdims=0),
        helper.make_node("Reshape", ["spectrogram", "shape"], ["flat"]),
        helper.make_node("Add", ["flat", "total"], ["sources"]),
    ]
    huge = numpy_helper.from_array(np.array([10**6, 10**6], np.int64), "huge_shape")
    return _graph_model(path, nodes=nodes, initializers=[huge])


BAD_MODELS = {
    "truncated": (_truncated, "is not a loadable ONNX model"),
    "ten bytes": (_write(b"\x08\x07\x12\x04junk"), "not a loadable ONNX"),
    "random bytes": (_write(np.random.default_rng(3).bytes(50_000)), "not a loadable ONNX model"),
    "empty": (_write(b""), "is empty"),
    "a directory": (_make_directory, "is not a file"),
    "1e9 frames declared": (
        lambda p: _graph_model(p, input_shape=["b", 10**9, 1024, 2]),
        r"axis 1 is 1000000000, not 16",
    ),
    "1e9 frames in metadata": (
        _with_metadata(frames=str(10**9), window_samples=str(512 * (10**9 - 1))),
        r"window_samples must be in \[n_fft=2048, 960000\]",
    ),
    "float64 tensors": (
        lambda p: _graph_model(p, input_type=TensorProto.DOUBLE),
        r"input 'spectrogram' is tensor\(double\), must be tensor\(float\)",
    ),
    "int32 tensors": (
        lambda p: _graph_model(p, input_type=TensorProto.INT32),
        r"is tensor\(int32\), must be tensor\(float\)",
    ),
    "sample rate 0": (_with_metadata(sample_rate="0"), r"sample_rate must be in \[4000, 192000\]"),
    "hop 0": (_with_metadata(hop_length="0"), r"hop_length must be in \[1, n_fft=2048\], got 0"),
    "n_fft of 5000 digits": (_with_metadata(n_fft="9" * 5000), "n_fft must be an integer"),
    "negative window": (_with_metadata(window_samples="-5"), "window_samples must be in"),
    "no sources": (_with_metadata(sources=""), "sources must be a comma-separated list"),
}


@pytest.mark.parametrize("case", sorted(BAD_MODELS))
def test_malformed_models_are_refused_by_load_model(tmp_path, case):
    build, message = BAD_MODELS[case]
    path = build(tmp_path / "bad.onnx")
    with pytest.raises(ModelError, match=message):
        load_model(path)


@pytest.mark.parametrize("case", sorted(BAD_MODELS))
def test_malformed_models_are_one_line_and_status_2_from_the_cli(tmp_path, capsys, case):
    build, message = BAD_MODELS[case]
    model = build(tmp_path / "bad.onnx")
    song = tmp_path / "song.wav"
    sf.write(song, noise(1, 8000)[0], 16000)
    code = main(
        ["separate", str(song), "-o", str(tmp_path / "out"), "--model", str(model), "--quiet"]
    )
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("stream-sep: error: "), err
    assert re.search(message, lines[0])
    assert len(lines[0]) < 400  # a 5,000-digit value is not pasted whole
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_a_model_that_loads_but_cannot_run_is_refused_before_streaming(tmp_path, capsys):
    model = _allocates_a_terabyte(tmp_path / "huge.onnx")
    load_model(model)  # every declared shape and the contract agree: it loads
    song = tmp_path / "song.wav"
    sf.write(song, noise(1, 8000)[0], 16000)
    code = main(
        [
            "separate",
            str(song),
            "-o",
            str(tmp_path / "out"),
            "--model",
            str(model),
            "--quiet",
            *FAST_ARGS,
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "stream-sep: error: the model cannot separate a silent window" in err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


BAD_AUDIO = {
    "garbage.wav": b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk",
    "text.flac": b"this is not audio at all\n" * 40,
    "empty.ogg": b"",
}


@pytest.mark.parametrize("name", sorted(BAD_AUDIO))
def test_unreadable_audio_files_are_one_line_and_status_2(tmp_path, half_path, capsys, name):
    path = tmp_path / name
    path.write_bytes(BAD_AUDIO[name])
    code = main(
        ["separate", str(path), "-o", str(tmp_path / "out"), "--model", str(half_path), "--quiet"]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith(
        f"stream-sep: error: cannot read audio file '{path}'"
    )


def test_a_truncated_flac_is_refused(tmp_path, half_path, capsys):
    path = tmp_path / "cut.flac"
    sf.write(path, noise(2, 48000, amplitude=0.1).T, 48000, subtype="PCM_16")
    path.write_bytes(path.read_bytes()[:200])
    settings = [f"--{name}={value}" for name, value in FAST.items()]
    out = tmp_path / "out"
    code = main(
        ["separate", str(path), "-o", str(out), "--model", str(half_path), "--quiet", *settings]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "cut.flac" in err[0], err
    assert not out.exists()  # nothing half-written, not even an empty folder


def test_malformed_model_as_a_process_has_no_traceback(tmp_path):
    model = _truncated(tmp_path / "bad.onnx")
    song = tmp_path / "song.wav"
    sf.write(song, noise(1, 8000)[0], 16000)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "stream_sep",
            "separate",
            str(song),
            "-o",
            str(tmp_path / "o"),
            "--model",
            str(model),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "stream-sep: error: bad.onnx is not a loadable ONNX model: [ONNXRuntimeError] : 7 : "
        "INVALID_PROTOBUF : Failed to load model because protobuf parsing failed."
    ]


def test_the_host_never_unpickles_evaluates_or_imports_training_frameworks():
    """Models are ONNX (data, not code); no pickle, eval or exec anywhere in stream_sep, and
    the Keras checkpoint loader in train/ keeps safe_mode on."""
    package = Path(engine_module.__file__).parent.parent
    forbidden = re.compile(
        r"\bpickle\b|\beval\(|\bexec\(|allow_pickle\s*=\s*True|safe_mode\s*=\s*False|"
        r"^\s*(import|from)\s+(tensorflow|keras|tf2onnx|torch)\b",
        re.MULTILINE,
    )
    offenders = {
        path.name: forbidden.findall(path.read_text())
        for path in package.rglob("*.py")
        if forbidden.search(path.read_text())
    }
    assert offenders == {}
    train_model = package.parent / "train" / "model.py"
    if train_model.exists():
        text = train_model.read_text()
        assert "safe_mode=True" in text and "safe_mode=False" not in text
