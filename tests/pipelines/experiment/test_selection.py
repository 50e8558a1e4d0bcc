"""`layers: all` means computational layers on the inputs' values (issue 10, item 5); integer inputs have a range
that suits byte images and token ids (item 9)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from layerscope.api import load_experiment
from layerscope.pipelines.experiment.inputs import sample_reader
from tests.zoo.models import int_image, token_embedding, weight_subgraphs

WEIGHT_ONLY = {"/conv/bias", "/bn/scale", "/gate/Unsqueeze_output_0", "/offset/ConstantOfShape_output_0"}


def config(model: Path, layers: Any = "all", dtype: str = "float32", source: dict[str, Any] | None = None) -> dict:
    return {
        "name": "sel",
        "model": str(model),
        "samples": 1,
        "inputs": {"x": {"shape": [1, 4, 8, 8], "dtype": dtype, "source": source or {"random": "normal"}}},
        "layers": layers,
        "runs": {"fp32": {"precision": "fp32"}, "fp16": {"precision": "fp16"}},
    }


def test_weight_only_nodes_and_shape_arithmetic_are_not_layers_by_default(tmp_path: Path) -> None:
    exp = load_experiment(config(weight_subgraphs(tmp_path / "m.onnx")))
    assert not set(exp.tensors) & WEIGHT_ONLY
    assert {"/conv/Conv_output_0", "/bn/BatchNormalization_output_0", "/gate/Mul_output_0", "logits"} <= set(
        exp.tensors
    )
    assert any("compute only from weights, constants or shapes" in n for n in exp.notes)


def test_constants_true_compares_them_and_exact_names_always_count(tmp_path: Path) -> None:
    model = weight_subgraphs(tmp_path / "m.onnx")
    everything = load_experiment(config(model, {"include": "all", "constants": True}))
    assert set(everything.tensors) >= WEIGHT_ONLY
    named = load_experiment(config(model, ["/bn/Mul", "/conv/Conv"]))
    assert "/bn/scale" in named.tensors  # spelled out: the user asked for it
    globbed = load_experiment(config(model, [{"op": "Mul"}]))
    assert "/bn/scale" not in globbed.tensors and "/gate/Mul_output_0" in globbed.tensors


def int_config(model: Path, inputs: dict[str, Any]) -> dict[str, Any]:
    runs = {"fp32": {"precision": "fp32"}, "fp16": {"precision": "fp16"}}
    return {"name": "ints", "model": str(model), "samples": 1, "inputs": inputs, "runs": runs}


def test_integer_inputs_default_to_byte_values_with_both_ends(tmp_path: Path) -> None:
    model = int_image(tmp_path / "m.onnx")
    source = {"random": "uniform"}
    exp = load_experiment(int_config(model, {"image": {"shape": [1, 3, 16, 16], "dtype": "int32", "source": source}}))
    spec = exp.inputs[0]
    assert spec.source["low"] == 0.0 and spec.source["high"] == 255.0
    with sample_reader(spec, 8) as read:
        values = np.concatenate([read(i).ravel() for i in range(8)])
    assert values.dtype == np.int32 and values.min() == 0 and values.max() == 255  # both ends are drawn


def test_a_zero_dimensional_integer_input_is_an_array(tmp_path: Path) -> None:
    model = token_embedding(tmp_path / "m.onnx")
    inputs = {
        "input_ids": {"shape": [1, 12], "dtype": "int64", "source": {"random": "uniform", "high": 15}},
        "position": {"shape": [], "dtype": "int64", "source": {"random": "uniform", "high": 3}},
    }
    exp = load_experiment(int_config(model, inputs))
    for spec in exp.inputs:
        with sample_reader(spec, 1) as read:
            value = read(0)
        assert isinstance(value, np.ndarray) and value.dtype == np.int64 and value.shape == tuple(spec.shape or ())
