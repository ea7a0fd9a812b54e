"""Offline overlap-add separation (stream_sep.offline.overlap_add) against known answers.

Models are real ONNX graphs run by ONNX Runtime, at the tests' short window (0.48 s at
16 kHz): the half model (vocals = half the mixture), a model whose gain depends on the STFT
frame, so each window's estimate depends on where the window lies (overlap-add mistakes
show), and models that fail at run time, return NaN or return the wrong shape.
"""

from __future__ import annotations

import json
import math

import numpy as np
import onnx
import pytest
import soundfile as sf
import soxr
from onnx import TensorProto, helper, numpy_helper

from stream_sep.errors import ModelError, UserError
from stream_sep.models.loading import load_model
from stream_sep.offline import overlap_add
from stream_sep.offline.overlap_add import OverlapAddStream, separate_blocks, separate_overlap_add
from tests.helpers import gain_model, noise, small_contract

MODEL_RATE = 16000
RATES = (16000, 44100, 48000)


# ---------------------------------------------------------------------------- test models
def _graph(path, nodes, initializers, output_shape=None):
    """A contract-satisfying graph at the small window; ``spectrogram`` in, ``sources`` out."""
    contract = small_contract()
    frames, bins = contract.frames, contract.n_bins
    inputs = [
        helper.make_tensor_value_info("spectrogram", TensorProto.FLOAT, ["b", frames, bins, 2])
    ]
    shape = output_shape or ["b", 1, frames, 2 * bins]
    outputs = [helper.make_tensor_value_info("sources", TensorProto.FLOAT, shape)]
    flat = numpy_helper.from_array(np.array([0, 1, frames, 2 * bins], np.int64), "flat_shape")
    graph = helper.make_graph(nodes, "g", inputs, outputs, [flat, *initializers])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in contract.to_metadata().items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, path)
    return path


def frame_gain_model(path):
    """Vocals = the mixture's STFT times a gain that rises from 0.2 to 1.0 over the window's
    frames: an estimate that depends on the sample's position in the window."""
    frames = small_contract().frames
    gain = np.linspace(0.2, 1.0, frames, dtype=np.float32).reshape(1, 1, frames, 1)
    nodes = [
        helper.make_node("Reshape", ["spectrogram", "flat_shape"], ["flat"]),
        helper.make_node("Mul", ["flat", "gain"], ["sources"]),
    ]
    return _graph(path, nodes, [numpy_helper.from_array(gain, "gain")])


def nan_when_loud_model(path, threshold: float = 5.0):
    """The half model, but NaN wherever an STFT value exceeds ``threshold`` (quiet windows
    pass, so it fails mid-signal): sources = 0.5 x + 0 * sqrt(threshold - |x|)."""
    nodes = [
        helper.make_node("Reshape", ["spectrogram", "flat_shape"], ["flat"]),
        helper.make_node("Mul", ["flat", "half"], ["scaled"]),
        helper.make_node("Abs", ["flat"], ["magnitude"]),
        helper.make_node("Sub", ["threshold", "magnitude"], ["room"]),
        helper.make_node("Sqrt", ["room"], ["root"]),
        helper.make_node("Mul", ["root", "zero"], ["poison"]),
        helper.make_node("Add", ["scaled", "poison"], ["sources"]),
    ]
    constants = {"half": 0.5, "threshold": threshold, "zero": 0.0}
    initializers = [numpy_helper.from_array(np.float32(v), k) for k, v in constants.items()]
    return _graph(path, nodes, initializers)


def failing_model(path):
    """Loads (every declared shape agrees), then fails in ONNX Runtime on every run: it
    asks for a 4 TB tensor."""
    fill = helper.make_tensor("fill", TensorProto.FLOAT, [1], [0.0])
    nodes = [
        helper.make_node("ConstantOfShape", ["huge_shape"], ["huge"], value=fill),
        helper.make_node("ReduceSum", ["huge"], ["total"], keepdims=0),
        helper.make_node("Reshape", ["spectrogram", "flat_shape"], ["flat"]),
        helper.make_node("Add", ["flat", "total"], ["sources"]),
    ]
    huge = numpy_helper.from_array(np.array([10**6, 10**6], np.int64), "huge_shape")
    return _graph(path, nodes, [huge])


def two_sources_model(path):
    """Returns two sources where the contract has one: the wrong shape. The target shape is
    computed from the data (plus zero), so ONNX Runtime cannot see it when the model loads."""
    contract = small_contract()
    shape = np.array([0, 2, contract.frames, contract.n_bins], np.int64)
    nodes = [
        helper.make_node("ReduceMin", ["spectrogram"], ["low"], keepdims=0),
        helper.make_node("Mul", ["low", "zero"], ["nothing"]),
        helper.make_node("Cast", ["nothing"], ["nothing64"], to=TensorProto.INT64),
        helper.make_node("Add", ["two", "nothing64"], ["target"]),
        helper.make_node("Reshape", ["spectrogram", "target"], ["sources"]),
    ]
    initializers = [
        numpy_helper.from_array(shape, "two"),
        numpy_helper.from_array(np.float32(0.0), "zero"),
    ]
    return _graph(path, nodes, initializers, ["b", "s", "t", "f"])


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("overlap_add_models")
    return {
        "half": load_model(gain_model(folder / "half.onnx", 0.5)),
        "frame": load_model(frame_gain_model(folder / "frame.onnx")),
    }


# ---------------------------------------------------------------------------- references
def fitted(audio: np.ndarray, samples: int) -> np.ndarray:
    """(C, n) -> (C, samples): cut or padded with silence at the end."""
    return np.pad(audio, ((0, 0), (0, max(0, samples - audio.shape[1]))))[:, :samples]


def round_trip(audio: np.ndarray, rate: int) -> np.ndarray:
    """audio (C, n) resampled to the model rate and back (one-shot soxr), n samples."""
    if rate == MODEL_RATE:
        return audio
    down = soxr.resample(audio.T, rate, MODEL_RATE, "HQ")
    return fitted(soxr.resample(down, MODEL_RATE, rate, "HQ").T, audio.shape[1])


def plain_weights(window: int, hop: int) -> np.ndarray:
    """The tapers, written out: Hann sin^2(pi (n + 0.5) / W) up to a half-window hop, else
    sin^2 / cos^2 ramps of W - hop samples around a flat top."""
    n = np.arange(window)
    if 2 * hop <= window:
        return np.sin(np.pi * (n + 0.5) / window) ** 2
    ramp = window - hop
    weights = np.ones(window)
    weights[:ramp] = np.sin(np.pi / 2 * (n[:ramp] + 0.5) / ramp) ** 2
    weights[window - ramp :] = np.cos(np.pi / 2 * (n[:ramp] + 0.5) / ramp) ** 2
    return weights


def plain_overlap_add(model, audio, rate, hop_fraction, pad=None):
    """An independent overlap-add: one-shot resampling, a loop over windows and channels
    with one model call each, weighted sum over summed weights, one-shot back."""
    window = model.contract.window_samples
    hop = round(hop_fraction * window)
    pad = (window - hop) // 2 if pad is None else pad
    signal = audio if rate == MODEL_RATE else soxr.resample(audio.T, rate, MODEL_RATE, "HQ").T
    length = signal.shape[1]
    count = max(1, math.ceil(length / hop))
    padded = np.zeros((audio.shape[0], pad + (count - 1) * hop + window + hop), np.float32)
    padded[:, pad : pad + length] = signal
    weights = plain_weights(window, hop)
    total = np.zeros(padded.shape)
    weight_sum = np.zeros(padded.shape[1])
    for k in range(count):
        start = k * hop
        for channel in range(audio.shape[0]):
            piece = padded[channel : channel + 1, start : start + window]
            total[channel, start : start + window] += weights * model.separate(piece)[0, 0]
        weight_sum[start : start + window] += weights
    vocals = (total[:, pad : pad + length] / weight_sum[pad : pad + length]).astype(np.float32)
    if rate != MODEL_RATE:
        vocals = soxr.resample(vocals.T, MODEL_RATE, rate, "HQ").T
    return fitted(vocals, audio.shape[1])


def band_limited(channels: int, samples: int, rate: int, seed: int = 0) -> np.ndarray:
    """(C, n) noise below 6 kHz (what survives 16 kHz), 10 ms fades at both ends."""
    spectrum = np.fft.rfft(noise(channels, samples, seed), axis=1)
    spectrum[:, np.fft.rfftfreq(samples, 1 / rate) > 6000] = 0
    audio = np.fft.irfft(spectrum, samples, axis=1)
    fade = np.sin(np.linspace(0, np.pi / 2, int(0.01 * rate))) ** 2
    audio[:, : fade.size] *= fade
    audio[:, -fade.size :] *= fade[::-1]
    return audio.astype(np.float32)


# ---------------------------------------------------------------------------- known answers
@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("hop_fraction", [0.25, 0.5, 0.75])
def test_the_half_model_gives_half_the_input_everywhere(models, rate, channels, hop_fraction):
    """Every sample, the first and the last included: exactly half the signal as it survives
    the resampling to 16 kHz and back, and half the signal itself for one below 6 kHz."""
    audio = noise(channels, int(1.7 * rate), seed=channels)
    vocals = separate_overlap_add(
        models["half"], audio, rate, hop_fraction=hop_fraction, batch_windows=3
    )
    assert vocals.shape == audio.shape and vocals.dtype == np.float32
    # Residues: the Nyquist bin the network never sees (16 kHz noise has one) and the
    # windows' edge samples, which the tapers leave at a few 1e-4 of a window's error.
    tolerance = 1e-2 if rate == MODEL_RATE else 3e-4  # 16 kHz white noise has a Nyquist bin
    assert np.max(np.abs(vocals - 0.5 * round_trip(audio, rate))) < tolerance
    smooth = band_limited(channels, int(1.7 * rate), rate, seed=channels)
    vocals = separate_overlap_add(models["half"], smooth, rate, hop_fraction=hop_fraction)
    error = np.abs(vocals - 0.5 * smooth)
    assert error.max() < 3e-4, (error.argmax(), error.max())
    assert error[:, :10].max() < 1e-4 and error[:, -10:].max() < 1e-4  # the very edges


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("hop_fraction", [0.25, 0.5, 0.75, 0.3])
def test_equals_an_independent_overlap_add(models, rate, hop_fraction):
    """A position-dependent model: the module's output equals a plain loop over the same
    windows with the same weights (float32 rounding apart), and a plain loop over windows
    shifted by 200 model samples does not, so the comparison can fail."""
    audio = band_limited(2, int(2.3 * rate), rate, seed=5)
    model = models["frame"]
    vocals = separate_overlap_add(model, audio, rate, hop_fraction=hop_fraction, batch_windows=2)
    expected = plain_overlap_add(model, audio, rate, hop_fraction)
    peak = np.abs(expected).max()
    assert np.max(np.abs(vocals - expected)) < 1e-5 * peak
    window = model.contract.window_samples
    default_pad = (window - round(hop_fraction * window)) // 2
    shifted = plain_overlap_add(model, audio, rate, hop_fraction, pad=default_pad + 200)
    assert np.max(np.abs(vocals - shifted)) > 1e-3 * peak


def test_batch_size_changes_nothing(models):
    audio = band_limited(2, 3 * 44100, 44100, seed=2)
    results = [
        separate_overlap_add(models["frame"], audio, 44100, batch_windows=batch)
        for batch in (1, 2, 5, 8)
    ]
    for result in results[1:]:
        np.testing.assert_allclose(result, results[0], rtol=0, atol=1e-6)


def test_the_default_batch_is_two_rows(models):
    """One stereo window or two mono ones per model call: the fastest B measured here."""
    for channels, stereo, windows in ((1, "batch", 2), (2, "batch", 1), (2, "mid", 2)):
        stream = OverlapAddStream(models["half"], 44100, channels, stereo=stereo)
        assert stream.batch_windows == windows
        assert stream.batch_windows * stream.model_channels == overlap_add.DEFAULT_BATCH_ROWS


def test_mid_runs_the_channels_mean_once_for_every_channel(models):
    audio = band_limited(2, 2 * 48000, 48000, seed=3)
    audio[1] *= 0.3
    stream = OverlapAddStream(models["frame"], 48000, 2, stereo="mid")
    vocals = np.concatenate([stream.process(audio), stream.finish()], axis=1)
    mono = separate_overlap_add(
        models["frame"], audio.mean(axis=0, keepdims=True, dtype=np.float32), 48000
    )
    assert stream.model_rows == stream.windows_run  # one row per window, not two
    assert np.array_equal(vocals, np.repeat(mono, 2, axis=0))


# ---------------------------------------------------------------------------- streaming
@pytest.mark.parametrize("rate", [16000, 44100])
@pytest.mark.parametrize("block", [441, 1000, 4096, 65537, None])
def test_a_file_streamed_in_blocks_equals_the_whole_array(models, tmp_path, rate, block):
    """Bit for bit: soxr's streaming resampler equals the one-shot one, and the model calls
    group the same windows however the blocks fall."""
    audio = band_limited(2, int(3.1 * rate), rate, seed=7)
    path = tmp_path / "song.flac"
    sf.write(path, audio.T, rate, subtype="PCM_24")
    read, _ = sf.read(path, dtype="float32", always_2d=True)
    whole = separate_overlap_add(models["frame"], read.T.copy(), rate, batch_windows=2)
    size = block or read.shape[0]
    blocks = (b.T for b in sf.blocks(str(path), size, dtype="float32", always_2d=True))
    pieces = list(separate_blocks(models["frame"], blocks, rate, 2, batch_windows=2))
    assert all(piece.shape[1] > 0 for piece in pieces)
    assert np.array_equal(np.concatenate(pieces, axis=1), whole)


def test_uneven_blocks_and_empty_blocks_change_nothing(models):
    rate = 44100
    audio = band_limited(2, int(2.9 * rate), rate, seed=8)
    whole = separate_overlap_add(models["frame"], audio, rate)
    stream = OverlapAddStream(models["frame"], rate, 2)
    sizes = np.random.default_rng(1).integers(0, 5000, 200)
    pieces, start = [], 0
    for size in sizes:
        pieces.append(stream.process(audio[:, start : start + size]))
        start += size
        if start >= audio.shape[1]:
            break
    pieces.append(stream.process(audio[:, start:]))
    pieces.append(stream.finish())
    assert np.array_equal(np.concatenate(pieces, axis=1), whole)


def test_memory_stays_at_a_few_windows(models):
    """60 s streamed in 1 s blocks: what the stream holds never grows with the signal."""
    rate, block = 44100, 44100
    stream = OverlapAddStream(models["half"], rate, 2, batch_windows=4)
    plan = stream.plan
    held_input, held_output, behind = [], [], []
    taken = given = 0
    for index in range(60):
        out = stream.process(noise(2, block, seed=index))
        taken, given = taken + block, given + out.shape[1]
        held_input.append(stream._input.shape[1])
        held_output.append(stream._output.held_samples)
        behind.append(taken - given)
    model_block = math.ceil(block * MODEL_RATE / rate)
    assert max(held_input) <= plan.window + 4 * plan.hop + model_block
    assert max(held_output) <= block
    # Output lags input by at most a batch of hops, a window and a block (in stream samples).
    lag_limit = (4 * plan.hop + plan.window) * rate / MODEL_RATE + 2 * block
    assert max(behind) <= lag_limit
    assert given + stream.finish().shape[1] == taken


# ---------------------------------------------------------------------------- edge cases
@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize(
    "length", ["one sample", "100 samples", "shorter than a window", "one window", "two windows"]
)
def test_lengths(models, rate, length):
    window = round(small_contract().window_samples * rate / MODEL_RATE)
    samples = {
        "one sample": 1,
        "100 samples": 100,
        "shorter than a window": window // 3,
        "one window": window,
        "two windows": 2 * window + 7,
    }[length]
    audio = noise(2, samples, seed=4)
    vocals = separate_overlap_add(models["frame"], audio, rate)
    assert vocals.shape == audio.shape and vocals.dtype == np.float32
    expected = plain_overlap_add(models["frame"], audio, rate, overlap_add.DEFAULT_HOP_FRACTION)
    assert np.max(np.abs(vocals - expected)) <= 1e-5 * max(np.abs(expected).max(), 1e-3)
    half = separate_overlap_add(models["half"], audio, rate)
    assert np.max(np.abs(half - 0.5 * round_trip(audio, rate))) < 0.01


def test_progress_rises_to_one(models):
    seen = []
    separate_overlap_add(models["half"], noise(2, 3 * 44100), 44100, progress=seen.append)
    assert len(seen) > 3 and seen == sorted(seen) and seen[-1] == 1.0 and 0 < seen[0] < 1


def test_silence_gives_silence_and_an_empty_signal_an_empty_estimate(models):
    silence = np.zeros((2, 44100), np.float32)
    assert np.array_equal(separate_overlap_add(models["frame"], silence, 44100), silence)
    empty = separate_overlap_add(models["frame"], np.zeros((2, 0), np.float32), 44100)
    assert empty.shape == (2, 0)


def test_non_finite_input_samples_are_silenced_and_counted(models):
    audio = band_limited(1, 16000, 16000, seed=9)
    broken = audio.copy()
    broken[0, [5, 700, 8000]] = [np.nan, np.inf, -np.inf]
    cleaned = audio.copy()
    cleaned[0, [5, 700, 8000]] = 0.0
    stream = OverlapAddStream(models["half"], 16000, 1)
    vocals = np.concatenate([stream.process(broken), stream.finish()], axis=1)
    assert stream.nonfinite_input_samples == 3
    assert np.array_equal(vocals, separate_overlap_add(models["half"], cleaned, 16000))
    assert np.isnan(broken[0, 5])  # the caller's block is not changed


# ---------------------------------------------------------------------------- failures
@pytest.mark.parametrize(
    "build, message",
    [
        (failing_model, r"the model failed on window 0 \(0\.0-0\.\d s\): .+"),
        # ONNX Runtime itself refuses an output that does not fit the bound buffer.
        (two_sources_model, r"the model failed on window 0 .*Reshape"),
    ],
)
def test_a_failing_model_raises_one_line_and_returns_nothing(tmp_path, build, message):
    model = load_model(build(tmp_path / "bad.onnx"))
    audio = noise(2, 44100)
    with pytest.raises(ModelError, match=message) as raised:
        separate_overlap_add(model, audio, 44100)
    assert "\n" not in str(raised.value)
    with pytest.raises(ModelError, match=message):
        list(separate_blocks(model, [audio], 44100, 2))


class _ShortEstimates:
    """A real model behind a wrapper that drops each estimate's last sample. The ONNX models
    cannot return a wrong shape (their output buffer is bound to the contract's shape), but
    :class:`OverlapAddStream` takes any object with ``contract`` and ``separate``."""

    def __init__(self, model):
        self.model, self.contract = model, model.contract

    def separate(self, audio: np.ndarray) -> np.ndarray:
        return self.model.separate(audio)[:, :, :-1]


def test_a_model_returning_the_wrong_shape_raises_one_line(models):
    with pytest.raises(
        ModelError,
        match=r"^the model failed on windows 0-2 \(0\.0-\d\.\d s\): it returned shape "
        r"\(6, 1, 7679\), expected \(6, 1, 7680\)$",
    ):
        separate_overlap_add(
            _ShortEstimates(models["half"]), noise(2, 44100), 44100, batch_windows=3
        )


def test_nan_mid_signal_names_the_window(tmp_path):
    """Quiet first, loud later: the first windows pass, a later one returns NaN."""
    model = load_model(nan_when_loud_model(tmp_path / "nan.onnx"))
    rate = 16000
    audio = np.concatenate([noise(1, 2 * rate, amplitude=0.001), noise(1, 2 * rate)], axis=1)
    stream = OverlapAddStream(model, rate, 1)
    with pytest.raises(
        ModelError, match=r"the model failed on windows? \d+(-\d+)? \(\d.*\): it returned NaN/Inf$"
    ):
        stream.process(audio)
    assert stream.windows_run > 0  # it did fail mid-signal, not on the first window


def test_bad_options_are_refused_with_one_line(models):
    for bad in (0, -0.5, 0.9, float("nan"), True, "half"):
        with pytest.raises(UserError, match=r"hop_fraction must be a number in \[1/64, 0.875\]"):
            OverlapAddStream(models["half"], 16000, 1, hop_fraction=bad)
    for bad in (0, 65, 1.5, True):
        with pytest.raises(UserError, match=r"batch_windows must be an integer in \[1, 64\]"):
            OverlapAddStream(models["half"], 16000, 1, batch_windows=bad)
    with pytest.raises(UserError, match="--stereo must be one of batch, mid"):
        OverlapAddStream(models["half"], 16000, 2, stereo="side")
    with pytest.raises(UserError, match="channels must be an integer in"):
        OverlapAddStream(models["half"], 16000, 9)
    with pytest.raises(UserError, match="sample rate must be an integer in"):
        OverlapAddStream(models["half"], 44100.0, 1)
    stream = OverlapAddStream(models["half"], 16000, 1)
    stream.finish()
    with pytest.raises(RuntimeError, match="after finish"):
        stream.process(np.zeros((1, 10), np.float32))


def test_the_tapers_sum_to_a_constant_where_the_plan_says():
    """Hann at W/2 and W/4 hops, the flat top at 3/4: shifted copies sum to a constant, and
    the window's first and last 512 samples (the unreliable edge) weigh little."""
    window = 65024
    for fraction, constant in ((0.5, 1.0), (0.25, 2.0), (0.75, 1.0)):
        hop = round(fraction * window)
        weights = overlap_add.taper_weights(window, hop)
        np.testing.assert_allclose(weights, plain_weights(window, hop), atol=1e-12)
        total = np.zeros(window * 4)
        for start in range(0, total.size - window + 1, hop):
            total[start : start + window] += weights
        middle = total[window : 3 * window]
        np.testing.assert_allclose(middle, constant, atol=1e-9)
        assert weights[:512].max() < 0.01 and weights[-512:].max() < 0.01


# ---------------------------------------------------------------------------- the benchmark
def test_the_offline_benchmark_runs_and_counts_the_windows(tmp_path):
    """bench_offline.py end to end on a gain model (a smoke run: no timing is asserted)."""
    from benchmarks import bench_offline

    contract = small_contract(63 * 512)  # 2.016 s: long enough for the engine's defaults
    model = gain_model(tmp_path / "half.onnx", 0.5, contract=contract)
    out = tmp_path / "offline"
    arguments = ["--model", str(model), "--seconds", "3", "--rounds", "1", "--repeats", "1"]
    assert bench_offline.main([*arguments, "--out", str(out)]) == 0
    report = json.loads(out.with_suffix(".json").read_text())
    first, today, second = report["plans"]["runs"]
    assert [first["plan"], today["plan"], second["plan"]] == ["overlap-add", "today", "overlap-add"]
    hop = round(overlap_add.DEFAULT_HOP_FRACTION * contract.window_samples)
    model_samples = round(3 * 44100 * MODEL_RATE / 44100)
    assert first["model_rows"] == second["model_rows"] == 2 * math.ceil(model_samples / hop)
    # Today's plan: one stereo window per 0.5 s of the song and its delay, and a warm-up.
    assert today["model_rows"] >= 2 * 3 / 0.5
    assert [row["rows"] for row in report["batch_sweep"]] == list(bench_offline.BATCH_ROWS)
    assert len(report["threads"]) == 5
    assert "faster in the same run" in out.with_suffix(".md").read_text()
