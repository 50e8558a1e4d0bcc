"""Task-level agreement on hand-made outputs: top-1 / top-k per row, NaN rows, user scores, the verdict."""

from __future__ import annotations

import math

import numpy as np
import pytest

from layerscope.pipelines.experiment.spec import TaskLimits
from layerscope.pipelines.metrics.task import Agreement, ScoreError, Scores, as_scores
from layerscope.pipelines.metrics.task_limits import task_failures, with_task


def test_top1_and_topk_per_row() -> None:
    a = Agreement(k=2)
    ref = np.array([[0.1, 0.7, 0.2, 0.0], [0.5, 0.1, 0.3, 0.1]])
    cand = np.array([[0.1, 0.6, 0.3, 0.0], [0.2, 0.1, 0.6, 0.1]])  # row 0 same, row 1 top-1 flips (top-2 kept)
    a.update(0, ref, cand)
    a.update(1, ref, ref)
    r = a.result()
    assert (r["rows"], r["rows_disagreeing"], r["top1_agreement"]) == (4, 1, 0.75)
    assert r["topk_overlap"] == 1.0  # {1, 2} vs {1, 2} and {0, 2} vs {2, 0}
    assert (r["samples_changed"], r["changed_samples"], r["classes"], r["k"]) == (1, [0], 4, 2)
    b = Agreement(k=2)
    b.update(0, ref[:1], np.array([[0.0, 0.1, 0.2, 0.9]]))  # top-2 {1, 2} vs {3, 2}
    assert (b.result()["top1_agreement"], b.result()["topk_overlap"]) == (0.0, 0.5)


def test_class_axis_and_rows_of_a_segmentation_map() -> None:
    a = Agreement(k=1, axis=1)
    ref = np.zeros((1, 3, 2, 2))
    ref[0, 2] = 1.0  # every pixel is class 2
    cand = ref.copy()
    cand[0, 0, 0, 0] = 5.0  # one pixel becomes class 0
    a.update(0, ref, cand)
    assert (a.result()["rows"], a.result()["top1_agreement"]) == (4, 0.75)


def test_a_nan_or_inf_row_has_no_answer() -> None:
    a = Agreement(k=2)
    ref = np.array([[0.1, 0.9], [0.8, 0.2]])
    a.update(0, ref, np.array([[np.nan, 0.9], [0.8, np.inf]]))
    r = a.result()
    assert (r["top1_agreement"], r["topk_overlap"], r["rows_nonfinite"]) == (0.0, 0.0, 2)
    assert Agreement(k=1).result()["top1_agreement"] is None  # no rows: undefined, not 1.0


def test_user_scores() -> None:
    assert as_scores(0.5) == {"score": 0.5}
    assert as_scores({"out": True, "other": np.float32(0.25)}) == {"out": 1.0, "other": 0.25}
    with pytest.raises(ScoreError, match="returned NaN for 'score'"):
        as_scores(math.nan)
    with pytest.raises(ScoreError, match=r"returned str 'x' for 'score'; expected a number or a bool"):
        as_scores("x")
    s = Scores()
    for i, v in enumerate([0.9, 0.5, 1.0]):
        s.update(i, {"iou": v})
    r = s.result()["iou"]
    assert (r["mean"], r["min"], r["max"], r["samples"]) == (pytest.approx(0.8), 0.5, 1.0, 3)
    assert r["worst"][0] == {"sample": 1, "value": 0.5}
    with pytest.raises(ScoreError, match="returned names"):
        s.update(3, {"other": 1.0})


def test_task_thresholds_and_the_comparison_verdict() -> None:
    task = {
        "classification": {"probs": {"k": 5, "top1_agreement": 0.98, "topk_overlap": 0.99}},
        "func": "s.py:f",
        "scores_error": "s.py:f raised ValueError: bad (s.py:3) (sample 1)",
    }
    limits = TaskLimits(min_top1_agreement=0.99, min_topk_overlap=0.95, min_task_score=0.5)
    assert task_failures(task, limits) == [
        "top-1 agreement of 'probs' is 98.00% < 99.00%",
        "the task score could not be computed: s.py:f raised ValueError: bad (s.py:3) (sample 1)",
    ]
    assert task_failures(task, TaskLimits()) == []  # without limits nothing fails
    out = with_task({"verdict": "pass", "layers": []}, task, limits)
    assert out["verdict"] == "fail" and out["task"]["verdict"] == "fail"
    undefined = {"classification": {"o": {"k": 1, "top1_agreement": None, "topk_overlap": None}}}
    assert task_failures(undefined, TaskLimits(min_top1_agreement=0.0)) == [
        "top-1 agreement of 'o' is undefined (no rows); limit 0.00%"
    ]
