"""Engine-inspector JSON -> precision audit and unfused-name mapping, on recorded samples of both layouts.

The samples in data/ are written by hand from NVIDIA's documented format (data/README.md says from where):
TensorRT 10.x ("Bindings", one "Format/Datatype" string per tensor, Metadata records separated by U+001E)
and TensorRT 11.x ("I/O Tensors", separate "Format" and "DataType", Myelin layers with internal names).
They describe the FP16 typed engine of tests/models.py:chain_model.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from layerscope.pipelines.backends.trt.inspector import (
    dtype_of,
    onnx_layers,
    parse_engine_information,
    precision_audit,
    unfused_names,
)

DATA = Path(__file__).parent / "data"
# The lowered (typed FP16) chain model: node -> (index, op type, outputs)
GRAPH = {
    "graph_input_cast0": (0, "Cast", ("graph_input_cast_0",)),
    "conv0": (1, "Conv", ("t/conv0",)),
    "relu0": (2, "Relu", ("t/relu0",)),
    "mul0": (3, "Mul", ("t/mul0",)),
    "conv1": (4, "Conv", ("graph_output_cast_0",)),
    "graph_output_cast0": (5, "Cast", ("output",)),
}
PRODUCERS = {out: node for node, (_, _, outs) in GRAPH.items() for out in outs}
ASKED = {n: {"op_type": op, "precision": "fp16"} for n, op in [("conv0", "Conv"), ("relu0", "Relu"), ("mul0", "Mul")]}
ASKED["conv1"] = {"op_type": "Conv", "precision": "fp16"}


def sample(layout: str) -> str:
    return (DATA / f"inspector-{layout}.json").read_text()


@pytest.mark.parametrize("layout", ["10x", "11x"])
def test_both_layouts_parse_to_layers_with_onnx_nodes_and_dtypes(layout: str) -> None:
    info = parse_engine_information(sample(layout), list(GRAPH))
    assert info.detailed
    assert info.layout == {"10x": "10.x", "11x": "11.x"}[layout]
    assert info.io_tensors == ("input", "output")
    by_node = {n: layer for layer in info.layers for n in layer.onnx_nodes}
    assert set(by_node) == set(GRAPH)
    assert by_node["conv0"] is by_node["relu0"]  # fused
    assert by_node["mul0"].outputs[0].name == "t/mul0" and by_node["mul0"].outputs[0].dtype == "fp32"


@pytest.mark.parametrize("layout", ["10x", "11x"])
def test_audit_flags_the_layer_asked_fp16_that_ran_fp32(layout: str) -> None:
    info = parse_engine_information(sample(layout), list(GRAPH))
    audit = precision_audit(info, ASKED, source="TensorRT inspector")
    rows = {r["node"]: r for r in audit["layers"]}
    assert audit["ran_fp32"] == ["mul0"]
    assert audit["summary"] == "1 of 4 layers asked to run fp16 ran fp32"
    assert rows["mul0"]["flag"] == "asked fp16, ran fp32" and rows["mul0"]["io"] == "in fp32 → out fp32"
    assert rows["conv0"]["ran"] == "fp16" and rows["conv0"]["flag"] is None
    assert rows["conv0"]["fused_with"] == ["relu0"] and rows["relu0"]["fused_with"] == ["conv0"]
    assert rows["conv0"]["engine_layer"] == rows["relu0"]["engine_layer"]
    assert rows["conv0"]["engine_layer_type"] in ("CaskConvolution", "kgen")  # not the Reformat in front of it
    assert rows["conv1"]["ran"] == "fp16"  # computed in FP16; the fused output Cast makes its output FP32
    assert audit["inspector_format"] == {"10x": "10.x", "11x": "11.x"}[layout]


def test_audit_flags_a_pinned_layer_that_ran_reduced_and_nodes_missing_from_the_engine() -> None:
    info = parse_engine_information(sample("10x"), list(GRAPH))
    asked = {
        "conv0": {"op_type": "Conv", "precision": "fp32"},
        "gone": {"op_type": "Identity", "precision": "fp16"},
        "w": {"op_type": "Constant", "precision": "fp16"},
    }
    audit = precision_audit(info, asked, source="s")
    rows = {r["node"]: r for r in audit["layers"]}
    assert rows["conv0"]["flag"] == "pinned fp32, ran fp16"
    assert rows["gone"]["flag"] == "not in the engine (folded or removed)" and audit["not_in_engine"] == ["gone"]
    assert "w" not in rows  # Constant nodes are weights, not layers
    assert audit["summary"] == "0 of 1 layers asked to run fp16 ran fp32; 1 not in the engine"


def test_names_only_verbosity_gives_an_audit_without_precisions() -> None:
    text = json.dumps({"Layers": ["conv0 + relu0", "mul0"], "Bindings": ["input", "output"]})
    info = parse_engine_information(text, list(GRAPH))
    assert not info.detailed and info.layers[0].onnx_nodes == ("conv0", "relu0")
    audit = precision_audit(info, ASKED, source="s")
    assert audit["summary"].startswith("the engine has no DETAILED layer information")
    assert all(
        r["ran"] is None and r.get("flag") in (None, "not in the engine (folded or removed)") for r in audit["layers"]
    )


@pytest.mark.parametrize("layout", ["10x", "11x"])
def test_unfused_names_map_back_to_onnx_and_fused_tensors_are_not_observable(layout: str) -> None:
    info = parse_engine_information(sample(layout), list(GRAPH))
    requested = ["t/conv0", "t/relu0", "t/mul0"]
    mapping, missing = unfused_names(info, requested, PRODUCERS, GRAPH)
    if layout == "10x":
        assert mapping == {"t/relu0": "t/relu0", "t/mul0": "t/mul0"}  # kept their ONNX names
    else:  # relu0's value leaves the Myelin layer under an internal name; the layer's metadata maps it
        assert mapping == {"__myln_k_arg__bb1_1": "t/relu0", "t/mul0": "t/mul0"}
    assert list(missing) == ["t/conv0"]
    assert missing["t/conv0"].startswith("not observable in this engine: fused into engine layer")


def test_a_layer_fused_with_a_trailing_cast_carries_the_last_real_nodes_value() -> None:
    info = parse_engine_information(sample("11x"), list(GRAPH))
    mapping, missing = unfused_names(info, ["graph_output_cast_0"], PRODUCERS, GRAPH)
    assert mapping == {"output": "graph_output_cast_0"} and not missing


def test_tensors_of_nodes_absent_from_the_engine_say_so() -> None:
    info = parse_engine_information(sample("10x"), list(GRAPH))
    _, missing = unfused_names(info, ["t/folded"], {"t/folded": "folded"}, GRAPH)
    assert missing == {
        "t/folded": "not observable in this engine: its layer was folded or removed when the engine was built"
    }


def test_metadata_records_and_dtype_words() -> None:
    assert onnx_layers("[ONNX Layer: a]\x1e[ONNX Layer: b/c]\x1f[ONNX Layer: d]") == ["a", "b/c", "d"]
    assert onnx_layers("[ONNX Layer: odd]name]") == ["odd]name"]
    assert onnx_layers("") == []
    assert dtype_of("Row major linear FP16 format") == "fp16"
    assert dtype_of("Thirty-two wide channel vectorized row major Int8 format.") == "int8"
    assert dtype_of("Float") == "fp32" and dtype_of("Half") == "fp16" and dtype_of("BFloat16") == "bf16"
    assert dtype_of("Row major linear BF16 format") == "bf16" and dtype_of("FP8") == "fp8"
    assert dtype_of("N/A due to dynamic shapes") is None and dtype_of(None) is None
