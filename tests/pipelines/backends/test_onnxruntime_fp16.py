"""ONNX Runtime's CPU FP16 (issue 10, N2): emulated by default; `native` labels every layer ONNX Runtime has no FP16
kernel for as fp32-fallback, from its registered kernels, and says so."""

from __future__ import annotations

from pathlib import Path

import layerscope
from layerscope.pipelines.backends.onnxruntime import fp16_kernel_ops
from tests.zoo.models import CASES, layernorm_primitive


def config(model: Path, execution: str | None) -> dict:
    fp16: dict = {"precision": "fp16", **({"options": {"execution": execution}} if execution else {})}
    return {
        "name": "ln",
        "model": str(model),
        "samples": 1,
        "inputs": CASES["layernorm_primitive"].inputs,
        "runs": {"fp32": {"precision": "fp32"}, "fp16": fp16},
        "attribution": False,
    }


def test_the_registered_fp16_kernels_are_read_from_onnx_runtime() -> None:
    ops = fp16_kernel_ops("ai.onnx", 17)
    assert {"Cast", "Transpose", "LayerNormalization"} <= ops  # data movement and a fused op
    assert not {"Conv", "Add", "MatMul"} & ops  # arithmetic falls back to FP32 on the CPU provider


def test_fp16_is_emulated_by_default_and_shows_the_layernorm_overflow(tmp_path: Path) -> None:
    model = layernorm_primitive(tmp_path / "ln.onnx")
    report = layerscope.run(config(model, None), out="emu")
    c = report.comparison("fp16")
    assert c.candidate_run.execution == "emulated"
    assert c.layer("/ln/Add").metrics.infinite_errors  # the sum of squares overflowed FP16
    assert c.layer("/ln/Sqrt").metrics.infinite_errors  # and the Inf propagates, as on a GPU


def test_native_fp16_labels_the_layers_that_run_in_fp32(tmp_path: Path) -> None:
    model = layernorm_primitive(tmp_path / "ln.onnx")
    report = layerscope.run(config(model, "native"), out="nat")
    c = report.comparison("fp16")
    assert c.candidate_run.execution == "mixed"
    assert {layer.execution for layer in c.layers} == {"fp32-fallback"}
    assert any("no FP16 kernel for" in n and "fp32-fallback" in n for n in c.candidate_run.notes or ())
