"""The report's headline (issue 10, item 6): the root cause -- layers failing locally, worst local SQNR first --
before the first failing layer; unknown, with the reason, without attribution. Attribution never costs the
report (item 1). A limit on an undefined metric fails the layer with the reason (item 4)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

import layerscope
from layerscope.pipelines.experiment.spec import Limits
from layerscope.pipelines.metrics.limits import check
from layerscope.pipelines.stages.report import root_causes
from tests.models import hostile_model


def hostile(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {
        "name": "hostile",
        "model": str(hostile_model(tmp_path / "hostile.onnx")),
        "samples": 2,
        "inputs": {"input": {"shape": [1, 4, 8, 8], "source": {"random": "normal", "seed": 0}}},
        "runs": {"fp32": {"precision": "fp32"}, "fp16": {"precision": "fp16"}},
        "thresholds": {"rel_error": 0.1, "max_deviation_ratio": 0.01},
        **extra,
    }


def test_the_root_cause_is_the_layer_that_fails_on_its_own(tmp_path: Path) -> None:
    report = layerscope.run(hostile(tmp_path), out="out")
    c = report.comparison("fp16")
    assert not c.passed
    assert c.root_cause == "conv1"  # its weights are clamped in FP16: it fails locally
    assert c.root_causes is not None and c.root_causes[0]["local_failures"]
    # layers downstream fail only by inheritance: they are not root causes
    assert "relu1" not in {x["layer"] for x in c.root_causes}
    md = Path("out/report.md").read_text()
    assert "**Root cause: conv1 (Conv) fails on its own**" in md
    assert md.index("Root cause") < md.index("First failing layer")


def test_without_attribution_the_root_cause_is_unknown_and_says_why(tmp_path: Path) -> None:
    report = layerscope.run(hostile(tmp_path, attribution=False), out="out")
    c = report.comparison("fp16")
    assert c.root_causes == () and c.root_cause_note is not None and "attribution is turned off" in c.root_cause_note
    assert "Root cause unknown: attribution is turned off" in Path("out/report.md").read_text()


def test_a_failing_attribute_stage_never_costs_the_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from layerscope.pipelines.analysis import attribution
    from layerscope.runner.errors import StageError

    def broken(*a: object, **k: object) -> None:
        raise StageError("the reference dump cannot be read")

    monkeypatch.setattr(attribution, "attribute", broken)
    report = layerscope.run(hostile(tmp_path), out="out")  # no RunError: the report is written
    c = report.comparison("fp16")
    assert c.root_causes == () and "attribution is unavailable" in (c.root_cause_note or "")
    assert report.execution is not None and report.execution.stages["attribute[fp16]"].status == "failed"
    assert "the reference dump cannot be read" in report.execution.stages["attribute[fp16]"].extra["error"]
    assert report.execution.stages["report"].extra["without"] == ["attribute:fp16"]
    md = Path("out/report.md").read_text()  # Markdown-escaped: a stage id is text from the run
    assert "Stage attribute\\[fp16\\] failed: the reference dump cannot be read" in md


def test_a_layer_that_cannot_be_attributed_is_recorded_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from layerscope.pipelines.analysis import attribution

    real = attribution._prepare_layer

    def flaky(node_name: str, *a: Any, **k: Any) -> Any:
        if node_name == "relu0":
            raise RuntimeError("Unable to handle object of type <class 'numpy.float16'>")
        return real(node_name, *a, **k)

    monkeypatch.setattr(attribution, "_prepare_layer", flaky)
    report = layerscope.run(hostile(tmp_path), out="out")
    relu0 = report.comparison("fp16").layer("relu0")
    assert relu0.attribution is not None and relu0.attribution.status == "not attributable"
    assert "RuntimeError: Unable to handle object" in (relu0.attribution.why or "")
    assert report.comparison("fp16").root_cause == "conv1"


def local(layer: str, index: int, sqnr: float | None, fails: bool = True) -> dict[str, Any]:
    metrics = {"sqnr_db": sqnr, "cosine": 0.5, "deviation_ratio": 0.5}
    return {
        "node": layer,
        "tensor": layer,
        "index": index,
        "op_type": "Conv",
        "verdict": "fail",
        "attribution": {
            "status": "ok",
            "local": metrics,
            "local_verdict": "fail" if fails else "pass",
            "inherited_share": 0.1,
        },
    }


def test_root_causes_are_ranked_by_local_sqnr_then_network_order() -> None:
    layers = [local("a", 0, 30.0), local("b", 1, -22.0), local("c", 2, 30.0), local("d", 3, 5.0, fails=False)]
    causes, note = root_causes(layers, {"tensors": {}})
    assert [x["layer"] for x in causes] == ["b", "a", "c"] and note is None


def test_no_local_failure_means_accumulated_error() -> None:
    causes, note = root_causes([local("a", 0, 30.0, fails=False)], {"tensors": {}})
    assert causes == [] and note is not None and "accumulates" in note


def test_a_limit_on_an_undefined_metric_fails_with_the_reason() -> None:
    metrics = {
        "elements": 8,
        "deviating": 8,
        "deviation_ratio": 1.0,
        "cosine": None,
        "max_abs_error": math.inf,
        "sqnr_db": -math.inf,
        "infinite_errors": 8,
        "nonfinite_introduced": 8,
    }
    failures = check(metrics, Limits(rel_error=0.1, max_deviation_ratio=1.0, min_cosine=0.99, allow_nonfinite=True))
    assert failures == ["cosine undefined: 8 values became NaN/Inf; limit 0.99"]
    failures = check(metrics, Limits(rel_error=0.1, max_deviation_ratio=1.0, max_abs_error=1.0, allow_nonfinite=True))
    assert failures == ["max abs error inf > 1"]
