"""MDX-Net-sized ONNX models with random weights: the network of UVR's MDX-Net ONNX files,
for speed and conformance measurements where the real files cannot be downloaded.

The graph follows KUIELab's ``Conv_TDF_net_trim`` (the network inside UVR's MDX-Net models),
with batch norm folded into the preceding layer (an inference graph):

- a 1x1 convolution 4 -> g channels, then the frequency axis is moved last;
- ``n`` encoder levels: a TFC_TDF block (``l`` 3x3 convolutions with ReLU, then a residual
  TDF: Linear f -> f/bn, ReLU, Linear f/bn -> f, ReLU on the frequency axis), then a 2x2
  stride-2 convolution c -> c + g (ReLU);
- a TFC_TDF bottleneck;
- ``n`` decoder levels: a 2x2 stride-2 transposed convolution c -> c - g (ReLU), multiplied
  by the encoder's output of that level, a TFC_TDF block;
- a 1x1 convolution g -> 4.

UVR's models use n = 5 (L = 11), l = 3, g = 32 (some 48), k = 3, bn = 8. Weights are He-
initialised from a seed, so outputs are finite and of moderate size; they separate nothing.
Input ``input`` and output ``output`` are ``[batch, 4, dim_f, dim_t]`` float32.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


@dataclasses.dataclass(frozen=True)
class NetShape:
    dim_f: int = 3072
    dim_t: int = 256
    levels: int = 5  # n
    layers: int = 3  # l: 3x3 convolutions per TFC block
    growth: int = 32  # g
    bottleneck: int = 8  # bn: the TDF's frequency reduction

    def flops(self) -> int:
        """Multiply-adds x 2 of convolutions and matrix products for one batch item."""
        total, f, t, c = 0, self.dim_f, self.dim_t, self.growth
        total += 2 * 4 * c * f * t  # first 1x1
        blocks = []
        for _ in range(self.levels):
            blocks.append((c, f, t))
            total += 2 * 4 * c * (c + self.growth) * (f // 2) * (t // 2)  # 2x2 stride 2
            f, t, c = f // 2, t // 2, c + self.growth
        blocks.append((c, f, t))
        for _ in range(self.levels):
            total += 2 * 4 * c * (c - self.growth) * f * t  # transposed 2x2 (output side)
            f, t, c = f * 2, t * 2, c - self.growth
            blocks.append((c, f, t))
        for c_, f_, t_ in blocks:
            total += self.layers * 2 * 9 * c_ * c_ * f_ * t_  # TFC 3x3
            total += 2 * 2 * c_ * t_ * f_ * (f_ // self.bottleneck)  # TDF two linears
        total += 2 * c * 4 * self.dim_f * self.dim_t  # final 1x1
        return total


class _Builder:
    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.nodes, self.weights = [], []
        self.count = 0
        self.parameters = 0

    def name(self, stem: str) -> str:
        self.count += 1
        return f"{stem}_{self.count}"

    def weight(self, shape: tuple[int, ...], fan_in: int, gain: float = 2.0) -> str:
        name = self.name("w")
        value = self.rng.standard_normal(shape) * np.sqrt(gain / fan_in)
        self.weights.append(numpy_helper.from_array(value.astype(np.float32), name))
        self.parameters += value.size
        return name

    def bias(self, size: int, shape: tuple[int, ...]) -> str:
        name = self.name("b")
        value = np.zeros(shape, np.float32)
        self.weights.append(numpy_helper.from_array(value, name))
        self.parameters += size
        return name

    def node(self, op: str, inputs: list[str], **attributes) -> str:
        out = self.name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], **attributes))
        return out

    def conv(self, x: str, c_in: int, c_out: int, kernel: int, stride: int = 1, relu=True):
        w = self.weight((c_out, c_in, kernel, kernel), c_in * kernel * kernel)
        b = self.bias(c_out, (c_out,))
        pad = kernel // 2 if stride == 1 else 0
        y = self.node(
            "Conv", [x, w, b], kernel_shape=[kernel, kernel], strides=[stride, stride],
            pads=[pad, pad, pad, pad],
        )  # fmt: skip
        return self.node("Relu", [y]) if relu else y

    def deconv(self, x: str, c_in: int, c_out: int) -> str:
        w = self.weight((c_in, c_out, 2, 2), c_in)
        b = self.bias(c_out, (c_out,))
        y = self.node("ConvTranspose", [x, w, b], kernel_shape=[2, 2], strides=[2, 2])
        return self.node("Relu", [y])

    def linear(self, x: str, f_in: int, f_out: int) -> str:
        w = self.weight((f_in, f_out), f_in)
        b = self.bias(f_out, (f_out,))
        return self.node("Relu", [self.node("Add", [self.node("MatMul", [x, w]), b])])

    def tfc_tdf(self, x: str, c: int, f: int, shape: NetShape) -> str:
        for _ in range(shape.layers):
            x = self.conv(x, c, c, 3)
        hidden = self.linear(x, f, max(1, f // shape.bottleneck))
        tdf = self.linear(hidden, max(1, f // shape.bottleneck), f)
        return self.node("Add", [x, tdf])


def build(path: Path, shape: NetShape = NetShape(), seed: int = 0, scale: float = 0.05) -> Path:
    """Write the network as ONNX to ``path``; ``scale`` multiplies the output (keeps a
    random network's estimate near the input's level)."""
    b = _Builder(seed)
    x = b.conv("input", 4, shape.growth, 1)
    x = b.node("Transpose", [x], perm=[0, 1, 3, 2])  # (B, C, T, F): frequency last
    c, f = shape.growth, shape.dim_f
    skips = []
    for _ in range(shape.levels):
        x = b.tfc_tdf(x, c, f, shape)
        skips.append(x)
        x = b.conv(x, c, c + shape.growth, 2, stride=2)
        c, f = c + shape.growth, f // 2
    x = b.tfc_tdf(x, c, f, shape)
    for skip in reversed(skips):
        x = b.deconv(x, c, c - shape.growth)
        c, f = c - shape.growth, f * 2
        x = b.tfc_tdf(b.node("Mul", [x, skip]), c, f, shape)
    x = b.node("Transpose", [x], perm=[0, 1, 3, 2])
    x = b.conv(x, c, 4, 1, relu=False)
    gain = numpy_helper.from_array(np.array(scale, np.float32), "output_scale")
    b.weights.append(gain)
    b.nodes.append(helper.make_node("Mul", [x, "output_scale"], ["output"]))
    dims = ["batch", 4, shape.dim_f, shape.dim_t]
    graph = helper.make_graph(
        b.nodes,
        "conv_tdf_net_trim",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, dims)],
        b.weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    model.doc_string = f"random-weight MDX-Net-sized network: {b.parameters} parameters"
    onnx.checker.check_model(model)
    path = Path(path)
    onnx.save(model, path)
    return path
