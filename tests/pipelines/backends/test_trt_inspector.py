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
    kernel_precision,
    onnx_layers,
    parse_engine_information,
    precision_audit,
    unfused_sources,
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
CASTS = {"graph_input_cast0": "fp16", "graph_output_cast0": "fp32"}  # Cast node -> the type it converts to


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
    audit = precision_audit(info, ASKED, source="TensorRT inspector", casts=CASTS)
    rows = {r["node"]: r for r in audit["layers"]}
    assert audit["ran_fp32"] == ["mul0"]
    assert audit["summary"].startswith("1 of 4 layers asked to run fp16 ran fp32")
    if layout == "10x":  # the Reformats around mul0 (FP16 -> FP32 -> FP16) are TensorRT's; graph_input_cast0 is ours
        assert [c["engine_layer"] for c in audit["inserted_conversions"]] == [
            "Reformatting CopyNode for Input Tensor 0 to mul0",
            "Reformatting CopyNode for Input Tensor 0 to conv1 + graph_output_cast0",
        ]
        assert audit["summary"].endswith("; TensorRT inserted 2 precision conversions (Reformat layers)")
    else:  # Myelin converts inside its kernels: no Reformat layers
        assert audit["inserted_conversions"] == []
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
    audit = precision_audit(info, asked, source="s", casts=CASTS)
    rows = {r["node"]: r for r in audit["layers"]}
    assert rows["conv0"]["flag"] == "pinned fp32, ran fp16"
    assert rows["gone"]["flag"] == "not in the engine (folded or removed)" and audit["not_in_engine"] == ["gone"]
    assert "w" not in rows  # Constant nodes are weights, not layers
    assert audit["summary"].startswith("0 of 1 layers asked to run fp16 ran fp32; 1 not in the engine")


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
    mapping, missing = unfused_sources(info, requested, PRODUCERS, GRAPH)
    if layout == "10x":
        assert mapping == {"t/relu0": "t/relu0", "t/mul0": "t/mul0"}  # kept their ONNX names
    else:  # relu0's value leaves the Myelin layer under an internal name; the layer's metadata maps it
        assert mapping == {"t/relu0": "__myln_k_arg__bb1_1", "t/mul0": "t/mul0"}
    assert list(missing) == ["t/conv0"]
    assert missing["t/conv0"].startswith("not observable in this engine: fused into engine layer")


def test_a_layer_fused_with_a_trailing_cast_carries_the_last_real_nodes_value() -> None:
    info = parse_engine_information(sample("11x"), list(GRAPH))
    mapping, missing = unfused_sources(info, ["graph_output_cast_0"], PRODUCERS, GRAPH)
    assert mapping == {"graph_output_cast_0": "output"} and not missing
    # one engine tensor carries both the value and its Cast, whichever of them is selected
    both, _ = unfused_sources(info, ["output", "graph_output_cast_0"], PRODUCERS, GRAPH)
    assert both == {"output": "output", "graph_output_cast_0": "output"}


@pytest.mark.parametrize("layout", ["10x", "11x"])
def test_the_name_map_does_not_depend_on_the_selection(layout: str) -> None:
    """An unfused engine serves every selection: a tensor maps to the same engine tensor in each."""
    info = parse_engine_information(sample(layout), list(GRAPH))
    every = [t for _, _, outs in GRAPH.values() for t in outs]
    whole, _ = unfused_sources(info, every, PRODUCERS, GRAPH)
    for t in every:
        alone, _ = unfused_sources(info, [t], PRODUCERS, GRAPH)
        assert alone == ({t: whole[t]} if t in whole else {}), t


def test_a_multi_output_node_is_not_guessed_from_what_was_selected() -> None:
    """A single-output engine layer ending in a node with two outputs carries one of them, and which one
    the inspector does not say: neither is mapped, whichever is selected."""
    graph = {"split0": (0, "Split", ("a", "b"))}
    text = json.dumps(
        {
            "Layers": [
                {
                    "Name": "split0",
                    "LayerType": "Slice",
                    "Inputs": [{"Name": "x", "Format/Datatype": "Half"}],
                    "Outputs": [{"Name": "__internal_0", "Format/Datatype": "Half"}],
                    "Metadata": "[ONNX Layer: split0]",
                }
            ],
            "Bindings": ["x"],
        }
    )
    info = parse_engine_information(text, list(graph))
    found, missing = unfused_sources(info, ["b"], {"a": "split0", "b": "split0"}, graph)
    assert not found and missing["b"].startswith("not observable in this engine: fused into engine layer")


def test_tensors_of_nodes_absent_from_the_engine_say_so() -> None:
    info = parse_engine_information(sample("10x"), list(GRAPH))
    _, missing = unfused_sources(info, ["t/folded"], {"t/folded": "folded"}, GRAPH)
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


# Tactic names as TensorRT's inspector reports them (NVIDIA's trt-engine-explorer sample engines of ResNet-50
# on an A100, and the usual cuDNN / CUTLASS / Myelin naming).
KERNELS = [
    ("sm80_xmma_fprop_implicit_gemm_f16f16_f16f16_f16_nhwckrsc_nhwc_tilesize256x64x32_stage3_warpsize4x1x1", "fp16"),
    ("trt_turing_cutlass_image_network_first_layer_hmma_fprop_f16f16f32_nhwc_nhwc_k64r7s7c4_stride2x2", "fp16"),
    ("ampere_h16816cudnn_128x128_ldg8_relu_exp_stages_64x3_large_nhwc_tn_v1", "fp16"),
    ("sm50_xmma_pooling_fw_4d_FP16FP32NHWC_Average_FastDiv_CAlign8", "fp16"),
    ("turing_fp16_s1688cudnn_fp16_256x128_ldg8_relu_f2f_exp_small_nhwc_tn_v1", "fp16"),
    ("sm80_xmma_fprop_implicit_gemm_f32f32_tf32f32_f32_nhwckrsc_nhwc_tilesize256x64x32_stage3", "tf32"),
    ("ampere_scudnn_128x64_relu_xregs_large_nn_v1", "fp32"),
    ("sm50_xmma_pooling_fw_4d_FP32FP32NHWC_Average_FastDiv_CAlign4", "fp32"),
    ("ampere_sgemm_128x64_nn", "fp32"),
    ("sm80_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x32", "bf16"),
    ("sm80_xmma_fprop_implicit_gemm_interleaved_i8i8_i8i32_f32_nchw_vect_c_32kcrs_vect_c_32", "int8"),
    ("sm90_xmma_gemm_e4m3e4m3_e4m3f32_f32_tn_n_tilesize128x128x64", "fp8"),
    ("__myl_MulAddRelu_0x5c1ad0e8", None),
    ("", None),
]


@pytest.mark.parametrize(("tactic", "kind"), KERNELS)
def test_the_kernels_precision_is_read_from_the_tactic_name(tactic: str, kind: str | None) -> None:
    assert kernel_precision(tactic) == kind


def _engine(layers: list[dict]) -> str:
    return json.dumps({"Layers": layers, "Bindings": ["input", "output"]})


def _layer(name: str, kind: str, nodes: list[str], dtype_in: str, dtype_out: str, tactic: str = "") -> dict:
    return {
        "Name": name,
        "LayerType": kind,
        "Inputs": [{"Name": f"{name}:in", "Format/Datatype": f"Row major linear {dtype_in} format"}],
        "Outputs": [{"Name": f"{name}:out", "Format/Datatype": f"Row major linear {dtype_out} format"}],
        "Metadata": "\x1e".join(f"[ONNX Layer: {n}]" for n in nodes),
        "TacticName": tactic,
    }


def test_audit_records_tactics_and_flags_a_kernel_of_the_wrong_precision() -> None:
    """On a strongly typed engine the tensors are FP16 as the graph says; the kernel can still be FP32."""
    text = _engine(
        [
            _layer("conv0 + relu0", "CaskConvolution", ["conv0", "relu0"], "FP16", "FP16", KERNELS[0][0]),
            _layer("mul0", "PointWiseV2", ["mul0"], "FP16", "FP16", "ampere_scudnn_128x64_relu_xregs_large_nn_v1"),
            _layer("conv1", "CaskConvolution", ["conv1"], "FP32", "FP32", KERNELS[5][0]),
        ]
    )
    asked = {**ASKED, "conv1": {"op_type": "Conv", "precision": "fp32"}}
    audit = precision_audit(parse_engine_information(text, list(GRAPH)), asked, source="s")
    rows = {r["node"]: r for r in audit["layers"]}
    assert rows["conv0"]["tactic"] == KERNELS[0][0] and rows["conv0"]["kernel"] == "fp16"
    assert rows["conv0"]["flag"] is None
    assert rows["mul0"]["ran"] == "fp16" and rows["mul0"]["flag"] == "asked fp16, fp32 kernel"
    assert rows["conv1"]["flag"] == "asked fp32, tf32 kernel"  # TF32 is turned off for FP32 layers
    assert (
        audit["summary"] == "0 of 3 layers asked to run fp16 ran fp32; 2 ran a kernel of another precision than asked"
    )
    assert audit["ran_fp32"] == []


def test_audit_lists_precision_conversions_tensorrt_inserted() -> None:
    text = _engine(
        [
            _layer("Reformatting CopyNode for Input Tensor 0 to conv0", "Reformat", [], "FP32", "FP16"),
            _layer("Reformatting CopyNode for Input Tensor 0 to mul0", "Reformat", [], "FP16", "FP16"),  # layout
            _layer("graph_input_cast0", "Reformat", ["graph_input_cast0"], "FP32", "FP16"),  # the graph's Cast
            _layer("conv0 + relu0", "CaskConvolution", ["conv0", "relu0"], "FP16", "FP16", KERNELS[0][0]),
        ]
    )
    audit = precision_audit(parse_engine_information(text, list(GRAPH)), ASKED, source="s", casts=CASTS)
    assert audit["inserted_conversions"] == [
        {"engine_layer": "Reformatting CopyNode for Input Tensor 0 to conv0", "io": "in fp32 → out fp16"}
    ]
    assert audit["summary"].endswith("; TensorRT inserted 1 precision conversions (Reformat layers)")
