"""A comparison's task-level verdict: the task thresholds applied to what the task stage computed.

Kept apart from :mod:`.task` (which needs numpy) because the report stage applies it, and a report is cheap.
An undefined value (no rows, a user function that failed) never passes a threshold set on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from layerscope.runner.jsonio import as_float

if TYPE_CHECKING:
    from layerscope.pipelines.experiment.spec import TaskLimits


def task_failures(task: dict[str, Any], limits: TaskLimits) -> list[str]:
    """The task thresholds ``task`` breaks, in words (empty: it passes)."""
    failures = []
    for output, a in task.get("classification", {}).items():
        for key, label, limit in (
            ("top1_agreement", "top-1 agreement", limits.min_top1_agreement),
            ("topk_overlap", f"top-{a['k']} overlap", limits.min_topk_overlap),
        ):
            if limit is None:
                continue
            value = a.get(key)
            if value is None:
                failures.append(f"{label} of {output!r} is undefined (no rows); limit {limit:.2%}")
            elif not as_float(value) >= limit:
                failures.append(f"{label} of {output!r} is {as_float(value):.2%} < {limit:.2%}")
    if limits.min_task_score is not None and "func" in task:
        if "scores_error" in task:
            failures.append(f"the task score could not be computed: {task['scores_error']}")
        for name, s in task.get("scores", {}).items():
            if not as_float(s["mean"]) >= limits.min_task_score:
                failures.append(f"task score {name!r} mean {as_float(s['mean']):.4g} < {limits.min_task_score:g}")
    return failures


def with_task(comparison: dict[str, Any], task: dict[str, Any], limits: TaskLimits) -> dict[str, Any]:
    """The comparison with its ``task`` section; a task failure fails the comparison (layers unchanged)."""
    failures = task_failures(task, limits)
    section = {**task, "limits": limits.to_json(), "verdict": "fail" if failures else "pass", "failures": failures}
    verdict = "fail" if failures or comparison["verdict"] == "fail" else "pass"
    out = dict(comparison)
    out["verdict"] = verdict
    out["task"] = section
    return out
