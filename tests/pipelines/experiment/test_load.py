"""Semantic checks the schema cannot express, reported together, with exact messages and positions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from layerscope.pipelines.experiment import load_experiment
from layerscope.runner.errors import SpecError
from tests.conftest import SMALL_UNET
from tests.models import chain_model


def problems(path: Path, overrides: list[str] | None = None) -> list[str]:
    with pytest.raises(SpecError) as err:
        load_experiment(path, overrides)
    return [p.render().splitlines()[0] for p in err.value.problems]


def test_small_unet_resolves(write_config) -> None:
    exp = load_experiment(write_config())
    assert exp.reference == "fp32" and exp.candidates == ("fp16",)
    assert exp.tensors[:3] == ("conv0", "bn0", "relu0") and exp.tensors[-1] == "logits"
    assert exp.runs["fp16"].options == {"execution": "emulated", "graph_optimization": "all"}
    assert exp.model.summary.inputs[0].shape == ("batch", 3, "height", "width")


CHAIN = """\
name: chain
model: m.onnx
inputs:
  inptu:
    shape: [1, 4, 8, 8]
    source: {random: normal}
layers: [conv9, {op: Rleu}, {regex: "(unclosed"}]
runs:
  fp32: {precision: fp32}
  fp16: {precision: fp16, overrides: [{layers: [relu9], precision: fp32}]}
  trt: {backend: tensorrt, precision: fp16}
compare:
  reference: fp23
thresholds:
  layers:
    - {match: "conv*", max_deviation_ratio: 0.1}
    - {match: "dense*", max_deviation_ratio: 0.1}
"""


def test_all_semantic_problems_at_once(write_config, no_tensorrt) -> None:
    path = write_config(CHAIN)
    chain_model(path.parent / "m.onnx")
    got = problems(path)
    src = str(path)
    assert got == [
        f"{src}:4:3: /inputs/inptu: the model has no input 'inptu'; did you mean 'input'? (its inputs: input)",
        f"{src}:4:3: /inputs: the model input 'input' has no entry (shape, dtype and source)",
        f"{src}:7:10: /layers/0: name 'conv9' matches no node; did you mean 'conv1' or 'conv0'?",
        f"{src}:7:17: /layers/1: op Rleu matches no node; did you mean 'Relu'?",
        f"{src}:7:37: /layers/2/regex: invalid regular expression: missing ), unterminated subpattern at position 0",
        f"{src}:10:49: /runs/fp16/overrides/0/layers/0: name 'relu9' matches no node; did you mean 'relu0'?",
        f"{src}:11:18: /runs/trt/backend: backend tensorrt needs TensorRT (pip install 'layerscope[tensorrt-cu12]' or "
        "'layerscope[tensorrt-cu13]', by the CUDA version nvidia-smi shows; an NVIDIA GPU and driver), which is not "
        "installed here; `layerscope backends` lists what is available; the onnxruntime "
        "backend runs anywhere without a GPU",
        f"{src}:13:14: /compare/reference: no run named 'fp23'; did you mean 'fp32'?",
        f"{src}:17:15: /thresholds/layers/1/match: 'dense*' matches no node (the model has 4 nodes, e.g. 'conv0', "
        "'relu0', 'mul0')",
    ]


def test_shape_and_dtype_checked_against_the_model(write_config) -> None:
    path = write_config(
        """\
        name: chain
        model: m.onnx
        inputs:
          input: {shape: [1, 3, 8, 8], dtype: float16, source: {random: uniform, low: 1, high: 0}}
        runs: {fp32: {precision: fp32}, fp16: {precision: fp16}}
        """
    )
    chain_model(path.parent / "m.onnx")
    assert [p.split(": ", 1)[1] for p in problems(path)] == [
        "/inputs/input/shape/1: dimension 1 of 'input' must be 4 (model shape [1, 4, 8, 8])",
        "/inputs/input/dtype: the model's input 'input' is float32, not float16",
        "/inputs/input/source/high: high must be greater than low",
    ]


def test_missing_model_and_default_reference(write_config) -> None:
    path = write_config(
        """\
        name: x
        model: nowhere.onnx
        inputs: {input: {shape: [1], source: {random: normal}}}
        runs: {a: {precision: fp16}, b: {precision: bf16}}
        """
    )
    got = problems(path)
    assert got == [
        f"{path}:1:1: /compare: compare.reference is required: name the run to compare against "
        "(no fp32 run to choose by default)",
        f"{path}:2:8: /model: model file not found: {path.parent / 'nowhere.onnx'}",
    ]


def test_native_bf16_on_cpu_is_refused_with_the_alternative(write_config) -> None:
    path = write_config(SMALL_UNET)
    got = problems(path, ["runs.fp16.precision=bf16", "runs.fp16.options.execution=native"])
    assert got == [
        "--set runs.fp16.options.execution=native: /runs/fp16/options/execution: ONNX Runtime's CPU provider has no "
        "bf16 kernels; use execution: emulated (FP32 compute, every value rounded to the format)"
    ]


def test_overrides_resolve_to_node_names_and_fp32_runs_ignore_them(write_config) -> None:
    exp = load_experiment(
        write_config(),
        [
            "runs.fp16.overrides=[{layers: [conv0, {op: Relu}], precision: fp32}]",
            "runs.fp32.overrides=[{layers: all, precision: fp32}]",
        ],
    )
    assert exp.runs["fp16"].pinned == ("conv0", "relu0", "relu1", "relu2", "relu3", "relu4", "relu5")
    assert exp.runs["fp32"].pinned == ()


def test_per_layer_thresholds_first_match_wins_per_limit(write_config) -> None:
    exp = load_experiment(
        write_config(),
        ["thresholds.layers=[{match: conv0, rel_error: 0.2}, {match: 'conv*', rel_error: 0.3, min_cosine: 0.9}]"],
    )
    lim = exp.thresholds.for_layer("conv0")
    assert (lim.rel_error, lim.min_cosine, lim.max_deviation_ratio) == (0.2, 0.9, 0.5)
    assert exp.thresholds.for_layer("bn0").rel_error == 0.1


def test_file_inputs(write_config, tmp_path: Path) -> None:
    import numpy as np

    path = write_config(SMALL_UNET)
    np.save(path.parent / "x.npy", np.zeros((1, 1, 3, 16, 16), np.float32))
    with pytest.raises(SpecError) as err:
        load_experiment(path, ["inputs.input.source={file: x.npy}", "~inputs.input.shape"], deep=True)
    assert [p.message for p in err.value.problems] == [
        "x.npy holds 1 samples (shape [1, 1, 3, 16, 16]); the config asks for 2"
    ]
    exp = load_experiment(path, ["inputs.input.source={file: x.npy}", "samples=1"], deep=True)
    assert exp.inputs[0].source["file"] == str(path.parent / "x.npy")


def test_schema_errors_come_from_the_branch_the_user_meant(write_config) -> None:
    path = write_config(
        SMALL_UNET.replace("options: {base_channels: 4, depth: 1}", "option: {base_channels: 4, depth: 1}").replace(
            "{random: normal, seed: 0}", "{random: gaussian, seed: 0}"
        )
        + "layers: [{op: Conv, name: x}]\n"
    )
    with pytest.raises(SpecError) as err:
        load_experiment(path)
    assert [f"{p.pointer}: {p.message}" for p in err.value.problems] == [
        "/model/option: unknown key 'option' (did you mean 'options'?); allowed: builtin, options",
        '/inputs/input/source/random: "gaussian" is not one of "normal", "uniform"',
        "/layers/0: expected at most 1 key, got op, name",
    ]


def test_demo_configs_validate() -> None:
    root = Path(__file__).resolve().parents[3] / "configs"
    for config in sorted(root.glob("*.yaml")):
        if "ppocr" in config.name:
            continue  # needs `layerscope models fetch` first (tested in test_zoo)
        if "trt" in config.name:
            continue  # needs TensorRT and a GPU (validated with TensorRT stood in: tests/pipelines/backends)
        exp = load_experiment(config)
        assert exp.tensors, config


def test_schema_and_semantic_errors_together(write_config) -> None:
    path = write_config(
        SMALL_UNET.replace("max_deviation_ratio: 0.5", "max_deviation_ratio: 1.5")
        .replace("reference: fp32", "reference: fp23")
        .replace("precision: fp16}", "precision: fp61}")
    )
    with pytest.raises(SpecError) as err:
        load_experiment(path)
    got = [f"{p.pointer}: {p.message}" for p in err.value.problems]
    assert got == [
        '/runs/fp16/precision: "fp61" is not one of "fp32", "fp16", "bf16", "int8", "fp8" (did you mean \'fp16\'?)',
        "/compare/reference: no run named 'fp23'; did you mean 'fp32'?",
        "/thresholds/max_deviation_ratio: 1.5 is greater than the maximum of 1",
    ]


def test_the_compared_tensors_are_remembered_by_model_and_layers(write_config) -> None:
    from layerscope.pipelines.experiment import phases

    path = write_config()
    first = load_experiment(path)
    memos = list((first.cache.base / "memo" / "tensors").iterdir())
    assert len(memos) == 1
    assert phases.tensors(first.selection, first.model)[0] == first.tensors
    again = load_experiment(path)
    assert (again.tensors, again.notes) == (first.tensors, first.notes)
    memos[0].write_text("{not json")  # a damaged memo is computed again, and replaced
    assert load_experiment(path).tensors == first.tensors
    assert json.loads(memos[0].read_text())["tensors"] == list(first.tensors)
    fewer = load_experiment(path, ["layers=[conv0]"])
    assert fewer.tensors != first.tensors
    assert len(list((first.cache.base / "memo" / "tensors").iterdir())) == 2
