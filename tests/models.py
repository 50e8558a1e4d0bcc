"""Tiny ONNX models built in code for the tests (no committed binaries)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def chain_model(path: Path, *, scale: float = 1.0, names: bool = True, opset: int = 17, constant: bool = False) -> Path:
    """input[1,4,8,8] -> conv0 -> relu0 -> mul0 (x scale) -> conv1 -> output; scale makes FP16 overflow.

    ``constant``: the scale comes from a Constant node (as paddle2onnx exports weights) instead of an initializer.
    """
    rng = np.random.default_rng(0)
    w0 = numpy_helper.from_array(rng.normal(0, 0.3, (4, 4, 3, 3)).astype(np.float32), "w0")
    w1 = numpy_helper.from_array(rng.normal(0, 0.3, (2, 4, 1, 1)).astype(np.float32), "w1")
    s = numpy_helper.from_array(np.array(scale, np.float32), "s")
    nodes = [
        helper.make_node("Conv", ["input", "w0"], ["t/conv0"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["t/conv0"], ["t/relu0"]),
        helper.make_node("Mul", ["t/relu0", "s"], ["t/mul0"]),
        helper.make_node("Conv", ["t/mul0", "w1"], ["output"]),
    ]
    if names:
        for n, name in zip(nodes, ["conv0", "relu0", "mul0", "conv1"], strict=True):
            n.name = name
    inits = [w0, w1, s]
    if constant:
        inits = [w0, w1]
        nodes.insert(0, helper.make_node("Constant", [], ["s"], value=s))
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 2, 8, 8])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def hostile_model(path: Path) -> Path:
    """One FP16-hostile layer: conv1's weights (~1e5) exceed 65504 and are clamped in FP16, while its inputs
    (~1e-3) and its output (~1e2) are well inside FP16's range. Everything else is benign.

    input[1,4,8,8] -> conv0 -> relu0 -> conv1 (hostile) -> relu1 -> conv2 -> output
    """
    rng = np.random.default_rng(1)
    weights = {
        "w0": rng.normal(0, 1e-3, (4, 4, 3, 3)),
        "w1": rng.normal(0, 1e5, (4, 4, 3, 3)),
        "w2": rng.normal(0, 0.1, (2, 4, 1, 1)),
    }
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in weights.items()]
    nodes = [
        helper.make_node("Conv", ["input", "w0"], ["conv0"], name="conv0", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv0"], ["relu0"], name="relu0"),
        helper.make_node("Conv", ["relu0", "w1"], ["conv1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv1"], ["relu1"], name="relu1"),
        helper.make_node("Conv", ["relu1", "w2"], ["output"], name="conv2"),
    ]
    graph = helper.make_graph(
        nodes,
        "hostile",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 2, 8, 8])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path
