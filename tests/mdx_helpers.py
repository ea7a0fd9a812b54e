"""MDX-shaped ONNX models for tests: UVR's tensor contract ``[batch, 4, dim_f, dim_t]`` in
(named ``input``), the same shape out, built with ``onnx.helper``.

``mdx_model(path, kind="identity"|"zeros"|"scale", ...)`` writes the raw community-style file
(no stream-sep metadata: parameters live outside, as with UVR); ``shelf_copy`` adds our
contract, which is what ``stream-sep models import`` stores.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from stream_sep.models.families.mdx import MdxContract

# Small variants keep the tests fast: 32 frames of hop 1024 = 31,744 samples (0.72 s).
SMALL = {"n_fft": 2048, "dim_f": 256, "dim_t": 32}
# UVR's most common shape (dim_f 3072 / n_fft 7680, 256 frames: 5.92 s).
REAL = {"n_fft": 7680, "dim_f": 3072, "dim_t": 256}


def mdx_model(
    path: Path,
    kind: str = "identity",
    *,
    dim_f: int = SMALL["dim_f"],
    dim_t: int = SMALL["dim_t"],
    scale: float = 0.5,
    input_shape: list | None = None,
    output_shape: list | None = None,
    input_name: str = "input",
    output_name: str = "output",
    elem_type: int = TensorProto.FLOAT,
    metadata: dict[str, str] | None = None,
    nodes: list | None = None,
    initializers: list | None = None,
) -> Path:
    """Write an MDX-shaped model: ``identity`` returns its input, ``zeros`` zeros,
    ``scale`` ``scale`` times its input, ``nan`` NaN everywhere. Shapes and names can be
    overridden to make bad models."""
    input_shape = input_shape or ["batch", 4, dim_f, dim_t]
    output_shape = output_shape or list(input_shape)
    factor = {"identity": 1.0, "zeros": 0.0, "scale": scale, "nan": float("nan")}[kind]
    if nodes is None:
        gain = numpy_helper.from_array(np.array(factor, np.float32), "gain")
        initializers = [gain, *(initializers or [])]
        nodes = [helper.make_node("Mul", [input_name, "gain"], [output_name])]
    graph = helper.make_graph(
        nodes,
        f"mdx_{kind}",
        [helper.make_tensor_value_info(input_name, elem_type, input_shape)],
        [helper.make_tensor_value_info(output_name, elem_type, output_shape)],
        initializers or [],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in (metadata or {}).items():
        model.metadata_props.add(key=key, value=value)
    path = Path(path)
    onnx.save(model, path)
    return path


def contract_for(**changes) -> MdxContract:
    values = {**SMALL, **changes}
    return MdxContract(**values)


def shelf_copy(path: Path, kind: str = "identity", contract: MdxContract | None = None, **kw):
    """An MDX-shaped model carrying our contract (loadable with load_model directly)."""
    contract = contract or contract_for()
    return mdx_model(
        path,
        kind,
        dim_f=contract.dim_f,
        dim_t=contract.dim_t,
        metadata=contract.to_metadata(),
        **kw,
    )


def band_limited(audio: np.ndarray, contract: MdxContract) -> np.ndarray:
    """(..., n) float32 with only the bins the network sees (3 to dim_f - 1) kept, through
    the same STFT and inverse (a reference written with numpy's FFT)."""
    n_fft, hop = contract.n_fft, contract.hop_length
    pad = [(0, 0)] * (audio.ndim - 1) + [(n_fft // 2, n_fft // 2)]
    padded = np.pad(audio.astype(np.float64), pad, mode="reflect")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    count = 1 + audio.shape[-1] // hop
    starts = np.arange(count) * hop
    frames = np.stack([padded[..., s : s + n_fft] for s in starts], axis=-2) * window
    spectrum = np.fft.rfft(frames, axis=-1)
    spectrum[..., :3] = 0
    spectrum[..., contract.dim_f :] = 0
    frames = np.fft.irfft(spectrum, n=n_fft, axis=-1) * window
    total = n_fft + hop * (count - 1)
    out = np.zeros(audio.shape[:-1] + (total,))
    envelope = np.zeros(total)
    for index, start in enumerate(starts):
        out[..., start : start + n_fft] += frames[..., index, :]
        envelope[start : start + n_fft] += window**2
    half = n_fft // 2
    return (out[..., half : total - half] / envelope[half : total - half]).astype(np.float32)
