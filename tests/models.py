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


def classifier_model(
    path: Path, *, classes: int = 10, size: int = 16, seed: int = 2, batch: int | str = 1, hostile: bool = False
) -> Path:
    """A tiny image classifier: input[1,3,size,size] -> conv -> relu -> global average pool -> flatten -> fc
    -> logits[1,classes] -> softmax -> probs. Two graph outputs: the logits and the probabilities. ``batch``: a
    number or a symbolic dimension; ``hostile``: fc weights beyond FP16's range that cancel out in FP32, so FP16
    changes the answers."""
    rng = np.random.default_rng(seed)
    weights = {
        "w0": rng.normal(0, 0.5, (8, 3, 3, 3)),
        "b0": rng.normal(0, 0.1, (8,)),
        "w1": rng.normal(0, 1.0, (8, classes)),
        "b1": rng.normal(0, 0.1, (classes,)),
    }
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in weights.items()]
    if hostile:  # two huge columns that cancel in FP32 and become inf - inf = NaN in FP16
        weights["w1"][:, 0] = 1e6
        weights["w1"][:, 1] = -1e6
        weights["w1"][:, 2] = 0.0
        inits = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in weights.items()]
    inits.append(numpy_helper.from_array(np.array([-1, 8], np.int64), "flat"))
    nodes = [
        helper.make_node("Conv", ["input", "w0", "b0"], ["conv0"], name="conv0", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv0"], ["relu0"], name="relu0"),
        helper.make_node("GlobalAveragePool", ["relu0"], ["pool0"], name="pool0"),
        helper.make_node("Reshape", ["pool0", "flat"], ["flat0"], name="flat0"),
        helper.make_node("MatMul", ["flat0", "w1"], ["mm0"], name="fc0"),
        helper.make_node("Add", ["mm0", "b1"], ["logits"], name="bias0"),
        helper.make_node("Softmax", ["logits"], ["probs"], name="softmax0", axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "classifier",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, size, size])],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, classes]),
            helper.make_tensor_value_info("probs", TensorProto.FLOAT, [batch, classes]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path
