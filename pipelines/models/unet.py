"""The built-in demo model: a UNet generated deterministically in code, named like the seed (conv0, bn0, relu0).

Each block is Conv(3x3) -> BatchNormalization -> Relu, two blocks per level; the encoder halves the
resolution with MaxPool and doubles the channels, the decoder upsamples with ConvTranspose(2x2, stride 2),
concatenates the skip connection and runs two blocks; a 1x1 head produces ``logits``. The first conv has
``base_channels`` output channels (40 by default), so at 256x256 its output holds 40*256*256 = 2,621,440
values per sample, as in the seed. Spatial size and batch are symbolic, so tests run it at 32x32.

Weights are He-normal from a seeded generator; BatchNormalization statistics are drawn near the identity
so activations stay O(1) through the depth, as in a trained network. The same options always give the
same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

GENERATOR_VERSION = "1"
OPSET = 17


@dataclass(frozen=True)
class UNetOptions:
    base_channels: int = 40
    depth: int = 2
    in_channels: int = 3
    out_channels: int = 2
    seed: int = 0


class _Builder:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.counters: dict[str, int] = {}

    def name(self, prefix: str) -> str:
        i = self.counters.get(prefix, 0)
        self.counters[prefix] = i + 1
        return f"{prefix}{i}"

    def init(self, name: str, array: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(array.astype(np.float32), name))
        return name

    def conv(self, x: str, cin: int, cout: int, k: int, *, name: str | None = None, out: str | None = None) -> str:
        name = name or self.name("conv")
        std = np.sqrt(2.0 / (cin * k * k))
        w = self.init(f"{name}.weight", self.rng.normal(0.0, std, (cout, cin, k, k)))
        b = self.init(f"{name}.bias", self.rng.normal(0.0, 0.01, (cout,)))
        pad = k // 2
        self.nodes.append(
            helper.make_node(
                "Conv", [x, w, b], [out or name], name=name, kernel_shape=[k, k], pads=[pad] * 4, strides=[1, 1]
            )
        )
        return out or name

    def bn(self, x: str, c: int) -> str:
        name = self.name("bn")
        gamma = self.init(f"{name}.weight", self.rng.uniform(0.8, 1.2, c))
        beta = self.init(f"{name}.bias", self.rng.normal(0.0, 0.1, c))
        mean = self.init(f"{name}.running_mean", self.rng.normal(0.0, 0.1, c))
        var = self.init(f"{name}.running_var", self.rng.uniform(0.8, 1.25, c))
        self.nodes.append(
            helper.make_node("BatchNormalization", [x, gamma, beta, mean, var], [name], name=name, epsilon=1e-5)
        )
        return name

    def relu(self, x: str) -> str:
        name = self.name("relu")
        self.nodes.append(helper.make_node("Relu", [x], [name], name=name))
        return name

    def block(self, x: str, cin: int, cout: int) -> str:
        return self.relu(self.bn(self.conv(x, cin, cout, 3), cout))

    def pool(self, x: str) -> str:
        name = self.name("pool")
        self.nodes.append(helper.make_node("MaxPool", [x], [name], name=name, kernel_shape=[2, 2], strides=[2, 2]))
        return name

    def up(self, x: str, cin: int, cout: int) -> str:
        name = self.name("up")
        std = np.sqrt(2.0 / (cin * 4))
        w = self.init(f"{name}.weight", self.rng.normal(0.0, std, (cin, cout, 2, 2)))
        b = self.init(f"{name}.bias", self.rng.normal(0.0, 0.01, (cout,)))
        self.nodes.append(
            helper.make_node("ConvTranspose", [x, w, b], [name], name=name, kernel_shape=[2, 2], strides=[2, 2])
        )
        return name

    def concat(self, a: str, b: str) -> str:
        name = self.name("concat")
        self.nodes.append(helper.make_node("Concat", [a, b], [name], name=name, axis=1))
        return name


def build_unet(options: UNetOptions | None = None) -> onnx.ModelProto:
    o = options or UNetOptions()
    b = _Builder(o.seed)
    x = "input"
    skips: list[tuple[str, int]] = []
    cin, c = o.in_channels, o.base_channels
    for _level in range(o.depth):
        x = b.block(b.block(x, cin, c), c, c)
        skips.append((x, c))
        x = b.pool(x)
        cin, c = c, c * 2
    x = b.block(b.block(x, cin, c), c, c)  # bottleneck
    for skip, cs in reversed(skips):
        x = b.up(x, c, cs)
        x = b.concat(x, skip)
        x = b.block(b.block(x, 2 * cs, cs), cs, cs)
        c = cs
    b.conv(x, c, o.out_channels, 1, name="head", out="logits")

    dims: list[str | int] = ["batch", o.in_channels, "height", "width"]
    graph = helper.make_graph(
        b.nodes,
        "layerscope_unet",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", o.out_channels, "height", "width"])],
        b.inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="layerscope",
        producer_version=GENERATOR_VERSION,
        doc_string=f"layerscope built-in UNet {o}",
    )
    model.ir_version = 8  # widely readable (onnxruntime >= 1.10, TensorRT 8.6+)
    onnx.checker.check_model(model)
    return model
