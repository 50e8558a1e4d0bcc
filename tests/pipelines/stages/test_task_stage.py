"""The task stage end to end on a generated classifier: top-1 agreement and a user score in the report, as
thresholds, in the diff; a failing compare function costs only its scores; a loader that feeds the reference
and the candidate different values is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import layerscope
from layerscope.pipelines.experiment import load_experiment
from layerscope.pipelines.reports.model import Report
from layerscope.runner.errors import RunError, SpecError
from tests.models import classifier_model

CONFIG = """\
name: task
model: m.onnx
samples: 3
inputs:
  input: {source: {random: uniform, seed: 1}}
runs:
  fp32: {precision: fp32}
  fp16: {precision: fp16}
compare:
  classification: {outputs: [logits, probs], top_k: 3}
  func: {script: score.py, function: score}
attribution: false
thresholds:
  max_deviation_ratio: 1.0
  min_top1_agreement: 0.99
  min_task_score: 0.5
"""

SCORE = """\
import numpy as np


def score(reference, candidate):
    if {"logits", "probs"} != set(reference):
        raise KeyError(sorted(reference))
    same = np.argmax(reference["logits"]) == np.argmax(candidate["logits"])
    overlap = 1 - float(np.abs(reference["probs"] - candidate["probs"]).sum()) / 2  # higher is better
    return {"same_class": bool(same), "prob_overlap": overlap}
"""


@pytest.fixture
def config(write_config) -> Path:
    path = write_config(CONFIG)
    classifier_model(path.parent / "m.onnx")
    (path.parent / "score.py").write_text(SCORE)
    return path


def test_agreement_and_scores_in_the_report(config: Path) -> None:
    report = layerscope.run(config, out="a")
    task = report.comparison("fp16").task
    assert task is not None and report.verdict == "pass"
    logits = task["classification"]["logits"]
    assert (logits["rows"], logits["top1_agreement"], logits["k"], logits["classes"]) == (3, 1.0, 3, 10)
    assert report.comparison("fp16").top1_agreement == {"logits": 1.0, "probs": 1.0}
    assert task["scores"]["same_class"]["mean"] == 1.0
    assert 1 - 1e-2 < task["scores"]["prob_overlap"]["mean"] < 1
    assert task["func"] == "score.py:score" and task["verdict"] == "pass"
    doc = json.loads(Path("a/report.json").read_text())
    assert Report.from_dict(doc).to_dict() == doc
    md = Path("a/report.md").read_text()
    assert "**Task-level agreement — PASS**" in md
    assert "| `logits` | top-1 agreement | 100.00% | 99.00% | 0 of 3 rows changed class |" in md


def test_a_changed_answer_fails_the_comparison_and_the_diff_says_so(config: Path) -> None:
    layerscope.run(config, out="a")
    classifier_model(config.parent / "m.onnx", hostile=True)  # FP16 overflows in the last layer
    report = layerscope.run(config, out="b")
    c = report.comparison("fp16")
    assert report.verdict == "fail" and c.task is not None
    assert c.task["classification"]["logits"]["top1_agreement"] == 0.0
    assert c.task["classification"]["logits"]["rows_nonfinite"] == 3
    assert "top-1 agreement of 'logits' is 0.00% < 99.00%" in c.task["failures"]
    change = layerscope.diff("a", "b")
    assert "fp16: task-level agreement went from pass to fail" in change.regressions
    assert "top-1 agreement (logits) 100.00% → 0.00% !" in change.render("text")


def test_a_failing_compare_function_costs_only_its_scores(config: Path) -> None:
    (config.parent / "score.py").write_text("def score(reference, candidate):\n    return 1 / 0\n")
    report = layerscope.run(config, out="a")
    task = report.comparison("fp16").task
    assert task is not None and "scores" not in task
    assert task["scores_error"] == "score.py:score raised ZeroDivisionError: division by zero (score.py:2) (sample 0)"
    assert task["failures"] == [f"the task score could not be computed: {task['scores_error']}"]
    assert report.comparison("fp16").layers  # the per-layer report is all there
    no_limit = layerscope.run(config, overrides=["~thresholds.min_task_score"], out="b")
    assert no_limit.verdict == "pass"  # recorded, but nothing asked it to pass


def test_task_config_errors(config: Path) -> None:
    with pytest.raises(SpecError) as err:
        load_experiment(
            config,
            ["compare.classification={outputs: [logit], top_k: 3}", "~compare.func", "compare.classification.top_k=11"],
        )
    assert [f"{p.pointer}: {p.message}" for p in err.value.problems] == [
        "/compare/classification/outputs/0: 'logit' is not a floating-point graph output of the model; "
        "did you mean 'logits'?",
        "/thresholds/min_task_score: min_task_score needs compare.func (nothing computes it otherwise)",
    ]
    with pytest.raises(SpecError) as err:
        load_experiment(config, ["compare.classification.top_k=11"])
    assert [p.message for p in err.value.problems] == [
        "top_k 11 exceeds the 10 classes of output 'logits' (axis -1 of [1, 10])",
        "top_k 11 exceeds the 10 classes of output 'probs' (axis -1 of [1, 10])",
    ]


def test_the_scores_key_covers_the_script_not_the_thresholds(config: Path) -> None:
    from layerscope.pipelines.stages import plan_for

    def keys(overrides: list[str]) -> dict[str, str]:
        return {ps.stage.id: ps.key for ps in plan_for(load_experiment(config, overrides))}

    base = keys([])
    assert keys(["thresholds.min_top1_agreement=0.5"])["task[fp16]"] == base["task[fp16]"]
    (config.parent / "score.py").write_text(SCORE + "# edited\n")
    edited = keys([])
    assert {s for s in base if base[s] != edited[s]} == {"task[fp16]", "report"}


def test_a_loader_that_feeds_the_runs_different_values_is_refused(config: Path) -> None:
    (config.parent / "loader.py").write_text(
        "import numpy as np\n\ndef load_data():\n"
        "    for _ in range(3):\n        yield {'input': np.random.default_rng().random((1, 3, 16, 16), np.float32)}\n"
    )
    with pytest.raises(RunError) as err:
        layerscope.run(config, overrides=["inputs.input.source={script: loader.py}"], out="a")
    assert err.value.lines()[0].startswith(
        "compare[fp16] failed: dump[fp32] and dump[fp16] were fed different input values although their inputs' "
        "keys are equal: a loader script that is not deterministic, or that reads files not listed in its depends"
    )
