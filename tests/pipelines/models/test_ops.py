"""Operators a backend cannot run are found from the model's summary, before anything is built."""

from __future__ import annotations

from pathlib import Path

import onnx

from layerscope.pipelines.models.ops import unknown_ops
from layerscope.pipelines.models.summary import summarize
from tests.models import chain_model


def test_known_model_has_no_unknown_ops(tmp_path: Path) -> None:
    summary = summarize(chain_model(tmp_path / "m.onnx"))
    assert unknown_ops(summary, "onnxruntime") == {} and unknown_ops(summary, "tensorrt") == {}


def test_unknown_op_in_a_judged_domain(tmp_path: Path) -> None:
    path = chain_model(tmp_path / "m.onnx")
    model = onnx.load(str(path))
    model.graph.node[1].op_type = "Frobnicate"
    model.graph.node[2].op_type = "Frobnicate"
    model.graph.node[3].domain = "com.microsoft"
    model.graph.node[3].op_type = "NoSuchContribOp"
    onnx.save(model, str(path))
    found = unknown_ops(summarize(path), "onnxruntime")
    assert found == {"Frobnicate": ["relu0", "mul0"], "com.microsoft::NoSuchContribOp": ["conv1"]}


def test_other_domains_are_not_judged(tmp_path: Path) -> None:
    """A custom domain may be a function defined inside the model: its build says whether it runs."""
    path = chain_model(tmp_path / "m.onnx")
    model = onnx.load(str(path))
    model.graph.node[1].domain = "my.company"
    model.graph.node[1].op_type = "Whatever"
    onnx.save(model, str(path))
    assert unknown_ops(summarize(path), "onnxruntime") == {}


def test_memoised(tmp_path: Path) -> None:
    summary = summarize(chain_model(tmp_path / "m.onnx"))
    memo = tmp_path / "memo"
    assert unknown_ops(summary, "onnxruntime", memo_dir=memo, model_digest="abc") == {}
    (only,) = memo.glob("*.json")
    only.write_text('{"X": ["n"]}')  # what is memoised is what is answered
    assert unknown_ops(summary, "onnxruntime", memo_dir=memo, model_digest="abc") == {"X": ["n"]}
