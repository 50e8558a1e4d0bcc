"""A chain of N tiny layers (64 floats each) for the per-layer cost benchmark: the fixed cost per tensor (an
HDF5 dataset, a metrics call, a cut-out graph, a report row) dominates when a model has thousands of them,
as transformer graphs do (10-20k tensors). Written with onnx.helper from seeded values; nothing committed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

WIDTH = 64

CONFIG = """\
name: chain{layers}
model: chain{layers}.onnx
samples: 2
inputs:
  x: {{shape: [1, {width}], source: {{random: normal, seed: 0}}}}
runs:
  fp32: {{precision: fp32}}
  fp16: {{precision: fp16}}
attribution: {attribution}
report: {{formats: [json, md]}}
"""


def chain_model(path: Path, layers: int) -> Path:
    """x -> (Mul by ~1, Add ~0) alternating, ``layers`` nodes, each output 64 floats; values stay ~N(0, 1)."""
    rng = np.random.default_rng(layers)
    nodes, inits = [], []
    x = "x"
    for i in range(layers):
        op = "Mul" if i % 2 == 0 else "Add"
        c = rng.uniform(0.9, 1.1, WIDTH) if op == "Mul" else rng.normal(0.0, 0.01, WIDTH)
        inits.append(numpy_helper.from_array(c.astype(np.float32), f"c{i}"))
        out = "y" if i == layers - 1 else f"t{i}"
        nodes.append(helper.make_node(op, [x, f"c{i}"], [out], name=f"layer{i}"))
        x = out
    graph = helper.make_graph(
        nodes,
        f"chain{layers}",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, WIDTH])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, WIDTH])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def write(folder: Path, layers: int, attribution: bool = True) -> Path:
    """The model and its config in ``folder``; returns the config's path."""
    chain_model(folder / f"chain{layers}.onnx", layers)
    config = folder / f"chain{layers}.yaml"
    config.write_text(CONFIG.format(layers=layers, width=WIDTH, attribution=str(attribution).lower()))
    return config
