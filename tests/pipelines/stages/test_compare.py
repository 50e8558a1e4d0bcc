"""The compare stage computes small tensors in batches (one read per tensor, one kernel call per batch): its
compare.json equals, layer for layer and bit for bit, the one-tensor-at-a-time computation on the same dumps."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from layerscope.api import run
from layerscope.pipelines.dumps import DumpReader
from layerscope.pipelines.experiment import load_experiment
from layerscope.pipelines.stages import plan_for
from layerscope.pipelines.stages.compare import SMALL_ELEMENTS, _batches, _config, _layer, metric_settings
from layerscope.pipelines.stages.dump import DUMP_FILE
from layerscope.runner.jsonio import finite_json

CONFIG = """\
name: mixed
model: m.onnx
samples: 3
inputs:
  x: {shape: [1, 4, 128, 136], source: {random: normal, seed: 0}}
runs:
  fp32: {precision: fp32}
  fp16: {precision: fp16}
attribution: false
report: {formats: [json]}
"""
SMALL_LAYERS = 40


def mixed_model(path: Path) -> Path:
    """Three large tensors (69,632 values a sample, over one kernel chunk; one overflows FP16 to Inf), then a
    global pool and a chain of 40 small ones (4 values), some of them Inf from the overflow."""
    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array(np.array(3e4, np.float32), "big")]
    nodes = [
        helper.make_node("Relu", ["x"], ["large/relu"], name="relu"),
        helper.make_node("Mul", ["large/relu", "big"], ["large/mul"], name="mul_big"),
        helper.make_node("Sigmoid", ["large/mul"], ["large/sig"], name="sig"),
        helper.make_node("GlobalAveragePool", ["large/mul"], ["pooled"], name="pool"),
    ]
    x = "pooled"
    for i in range(SMALL_LAYERS):
        op = "Mul" if i % 2 else "Add"
        c = rng.uniform(0.5, 1.5, (1, 4, 1, 1)) if op == "Mul" else rng.normal(0, 1e3, (1, 4, 1, 1))
        inits.append(numpy_helper.from_array(c.astype(np.float32), f"c{i}"))
        out = "y" if i == SMALL_LAYERS - 1 else f"small/{i}"
        nodes.append(helper.make_node(op, [x, f"c{i}"], [out], name=f"small{i}"))
        x = out
    graph = helper.make_graph(
        nodes,
        "mixed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 128, 136])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 1, 1]),
            helper.make_tensor_value_info("large/sig", TensorProto.FLOAT, [1, 4, 128, 136]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def entry(path: Path, stage: str) -> Path:
    exp = load_experiment(path, [])
    planned = plan_for(exp).stages[stage]
    return exp.cache.entry_dir(planned.stage.kind, planned.key)


def test_batched_compare_equals_one_tensor_at_a_time(write_config) -> None:
    path = write_config(CONFIG)
    mixed_model(path.parent / "m.onnx")
    run(path, out="out")
    doc = json.loads((entry(path, "compare[fp16]") / "compare.json").read_text())
    exp = load_experiment(path, [])
    settings = metric_settings(exp, exp.runs["fp16"])
    ctx: Any = SimpleNamespace(threads=2, progress=SimpleNamespace(advance=lambda *a: None))
    with (
        DumpReader(entry(path, "dump[fp32]") / DUMP_FILE) as ref,
        DumpReader(entry(path, "dump[fp16]") / DUMP_FILE) as cand,
    ):
        pairs = list(zip(ref.tensors(), cand.tensors(), strict=True))
        batches = _batches(pairs, ref.samples)
        # the setup this test needs: a few large tensors alone, the small ones in batches of several
        assert sum(1 for r, _ in pairs if np.prod(r.shape) > SMALL_ELEMENTS) == 3
        assert max(len(b) for b in batches) > 10 and len(pairs) == SMALL_LAYERS + 4
        one_at_a_time = [
            finite_json(_layer(r, c, ref, cand, _config(settings, r.onnx_name, c.quant), ctx)) for r, c in pairs
        ]
    assert [layer["tensor"] for layer in doc["layers"]] == [r.onnx_name for r, _ in pairs]
    assert doc["layers"] == one_at_a_time
    assert any(layer["metrics"]["infinite_errors"] for layer in doc["layers"][4:])  # Inf reached the small ones
