"""Shared test helpers: tiny contract-satisfying ONNX models and synthetic audio.

The models are built with ``onnx.helper`` so the host's tests need no TensorFlow and no
weights. ``gain_model`` returns ``gain * mixture`` as the vocal estimate (``gain=1`` is the
identity), optionally with a per-bin gain so the "vocals" are a known filtered part.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from stream_sep.contract import ModelContract

# A short window keeps streaming tests fast: 7680 samples = 0.48 s at 16 kHz, 16 frames.
SMALL_WINDOW = 7680


def small_contract(window_samples: int = SMALL_WINDOW, **changes) -> ModelContract:
    return ModelContract(window_samples=window_samples, **changes)


def gain_model(
    path: Path,
    gain: float | np.ndarray = 1.0,
    contract: ModelContract | None = None,
    metadata: dict[str, str] | None = None,
    opset: int = 17,
) -> Path:
    """Write an ONNX model whose vocal estimate is ``gain * mixture`` (in the STFT domain).

    gain: a scalar, or (n_fft // 2,) per-bin gains (a fixed spectral gain).
    """
    contract = contract or small_contract()
    frames, bins = contract.frames, contract.n_bins
    spectrogram = helper.make_tensor_value_info(
        contract.input_name, TensorProto.FLOAT, ["batch", frames, bins, 2]
    )
    sources = helper.make_tensor_value_info(
        contract.output_name, TensorProto.FLOAT, ["batch", len(contract.sources), frames, 2 * bins]
    )
    per_bin = np.broadcast_to(np.asarray(gain, np.float32), (bins,))
    # Interleaved real/imag per bin: repeat each bin's gain twice along the last axis.
    gain_tensor = np.repeat(per_bin, 2).reshape(1, 1, 1, 2 * bins)
    if len(contract.sources) > 1:
        gain_tensor = np.concatenate(
            [gain_tensor] + [1.0 - gain_tensor] * (len(contract.sources) - 1), axis=1
        )
    initializers = [
        numpy_helper.from_array(np.array([0, 1, frames, 2 * bins], np.int64), "shape"),
        numpy_helper.from_array(gain_tensor.astype(np.float32), "gain"),
    ]
    nodes = [
        helper.make_node("Reshape", [contract.input_name, "shape"], ["flat"]),
        helper.make_node("Mul", ["flat", "gain"], [contract.output_name]),
    ]
    graph = helper.make_graph(nodes, "gain_model", [spectrogram], [sources], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    entries = contract.to_metadata() if metadata is None else metadata
    for key, value in entries.items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    path = Path(path)
    onnx.save(model, path)
    return path


def sine(frequency: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    """(samples,) float32 sine with 10 ms fades at both ends."""
    t = np.arange(int(seconds * rate)) / rate
    tone = amplitude * np.sin(2 * np.pi * frequency * t)
    fade = min(len(t) // 2, int(0.01 * rate))
    if fade:
        ramp = np.linspace(0.0, 1.0, fade)
        tone[:fade] *= ramp
        tone[-fade:] *= ramp[::-1]
    return tone.astype(np.float32)


def noise(channels: int, samples: int, seed: int = 0, amplitude: float = 0.2) -> np.ndarray:
    """(channels, samples) float32 white noise."""
    rng = np.random.default_rng(seed)
    return (amplitude * rng.standard_normal((channels, samples))).astype(np.float32)


def impulse(channels: int, samples: int, at: int, amplitude: float = 0.8) -> np.ndarray:
    """(channels, samples) float32, zero but for one sample per channel at ``at``."""
    signal = np.zeros((channels, samples), np.float32)
    signal[:, at] = amplitude
    return signal


def stream(engine, audio: np.ndarray, block_sizes) -> np.ndarray:
    """Feed ``audio`` (channels, samples) through ``engine.process`` in blocks of the given
    sizes (an int, or an iterable cycled until the audio ends); returns the joined output."""
    sizes = [block_sizes] if isinstance(block_sizes, int) else list(block_sizes)
    out = np.zeros_like(audio)
    position, index = 0, 0
    while position < audio.shape[1]:
        size = min(sizes[index % len(sizes)], audio.shape[1] - position)
        out[:, position : position + size] = engine.process(audio[:, position : position + size])
        position += size
        index += 1
    return out
