"""A layer's verdict: which of its limits (thresholds) its metrics break, in words.

Shared by the report stage (every compared layer, and each layer's local error from attribution) and by the
fix search (each configuration it tries), so that both judge a layer the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from layerscope.runner.jsonio import as_float

if TYPE_CHECKING:
    from layerscope.pipelines.experiment.spec import Limits


def check(metrics: dict[str, Any], limits: Limits) -> list[str]:
    """The limits a layer's metrics break, in words (empty: the layer passes)."""
    failures = []
    ratio = as_float(metrics["deviation_ratio"])
    if ratio > limits.max_deviation_ratio:
        failures.append(
            f"{metrics['deviating']} of {metrics['elements']} elements ({ratio:.4%}) have relative error > "
            f"{limits.rel_error:g}; limit {limits.max_deviation_ratio:.4%}"
        )
    if limits.min_cosine is not None and not as_float(metrics["cosine"]) >= limits.min_cosine:
        failures.append(f"cosine {as_float(metrics['cosine']):.6f} < {limits.min_cosine}")
    if limits.max_abs_error is not None and not as_float(metrics["max_abs_error"]) <= limits.max_abs_error:
        failures.append(f"max abs error {as_float(metrics['max_abs_error']):.4g} > {limits.max_abs_error:g}")
    if limits.min_sqnr_db is not None and not as_float(metrics["sqnr_db"]) >= limits.min_sqnr_db:
        failures.append(f"SQNR {as_float(metrics['sqnr_db']):.2f} dB < {limits.min_sqnr_db:g} dB")
    if not limits.allow_nonfinite and metrics["nonfinite_introduced"]:
        failures.append(f"{metrics['nonfinite_introduced']} NaN/Inf values where the reference is finite")
    return failures
