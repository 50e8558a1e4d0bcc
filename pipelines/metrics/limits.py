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
    cos = _value(metrics, "cosine")
    if limits.min_cosine is not None:
        if cos is None:
            failures.append(f"cosine undefined: {undefined_reason(metrics)}; limit {limits.min_cosine}")
        elif not cos >= limits.min_cosine:
            failures.append(f"cosine {cos:.6f} < {limits.min_cosine}")
    abs_err = _value(metrics, "max_abs_error")
    if limits.max_abs_error is not None:
        if abs_err is None:
            failures.append(f"max abs error undefined: {undefined_reason(metrics)}; limit {limits.max_abs_error:g}")
        elif not abs_err <= limits.max_abs_error:
            failures.append(f"max abs error {abs_err:.4g} > {limits.max_abs_error:g}")
    sqnr = _value(metrics, "sqnr_db")
    if limits.min_sqnr_db is not None:
        if sqnr is None:
            failures.append(f"SQNR undefined: {undefined_reason(metrics)}; limit {limits.min_sqnr_db:g} dB")
        elif not sqnr >= limits.min_sqnr_db:
            failures.append(f"SQNR {sqnr:.2f} dB < {limits.min_sqnr_db:g} dB")
    if not limits.allow_nonfinite and metrics["nonfinite_introduced"]:
        failures.append(f"{metrics['nonfinite_introduced']} NaN/Inf values where the reference is finite")
    return failures
