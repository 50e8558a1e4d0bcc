"""A layer's verdict: which of its limits (thresholds) its metrics break, in words.

Shared by the report stage (every compared layer, and each layer's local error from attribution) and by the
fix search (each configuration it tries), so that both judge a layer the same way. A limit on a metric that is
undefined (null: see docs/metrics.md) cannot be met: the layer fails with the reason the metric is undefined,
never passes silently.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from layerscope.runner.jsonio import as_float

if TYPE_CHECKING:
    from layerscope.pipelines.experiment.spec import Limits


def undefined_reason(metrics: dict[str, Any]) -> str:
    """Why a layer's cosine, SQNR or abs error is undefined, in words."""
    infinite = int(metrics.get("infinite_errors") or 0)
    if infinite:
        became = int(metrics.get("nonfinite_introduced") or 0)
        if became:
            return f"{became} values became NaN/Inf"
        return f"{infinite} values are NaN/Inf on one side only"
    if not metrics.get("elements"):
        return "the tensor is empty"
    pairs_missing = metrics.get("max_abs_error") is None
    if pairs_missing:
        return "no element is finite on both sides"
    return "the reference or the candidate is all zeros"


def _value(metrics: dict[str, Any], name: str) -> float | None:
    v = metrics.get(name)
    if v is None:
        return None
    f = as_float(v)
    return None if math.isnan(f) else f


def check(metrics: dict[str, Any], limits: Limits) -> list[str]:
    """The limits a layer's metrics break, in words (empty: the layer passes)."""
    failures = []
    ratio = _value(metrics, "deviation_ratio")
    if ratio is None:
        failures.append(f"deviation ratio undefined: {undefined_reason(metrics)}")
    elif ratio > limits.max_deviation_ratio:
        failures.append(
            f"{metrics['deviating']} of {metrics['elements']} elements ({ratio:.4%}) have relative error > "
            f"{limits.rel_error:g}; limit {limits.max_deviation_ratio:.4%}"
        )
    bounds = (  # metric, how it is named, the limit, whether it is a floor, how its value is written
        ("cosine", "cosine", limits.min_cosine, True, lambda v: f"{v:.6f}", lambda x: f"{x}"),
        ("max_abs_error", "max abs error", limits.max_abs_error, False, lambda v: f"{v:.4g}", lambda x: f"{x:g}"),
        ("sqnr_db", "SQNR", limits.min_sqnr_db, True, lambda v: f"{v:.2f} dB", lambda x: f"{x:g} dB"),
    )
    for key, label, limit, floor, shown, written in bounds:
        if limit is None:
            continue
        value = _value(metrics, key)
        if value is None:
            failures.append(f"{label} undefined: {undefined_reason(metrics)}; limit {written(limit)}")
        elif not (value >= limit if floor else value <= limit):
            failures.append(f"{label} {shown(value)} {'<' if floor else '>'} {written(limit)}")
    if not limits.allow_nonfinite and metrics["nonfinite_introduced"]:
        failures.append(f"{metrics['nonfinite_introduced']} NaN/Inf values where the reference is finite")
    return failures
