"""A report as a pandas DataFrame: one row per (comparison, layer), flat numeric columns.

Columns: the comparison and layer identifiers (candidate, reference, tensor, layer, op_type, index,
execution, verdict), every scalar metric, the range-risk counts (``range_*``), the limits that applied
(``limit_*``), quantization statistics (``quant_*``) and the metrics before Q/DQ (``prequant_*``) for
quantized runs, and the attribution (``local_*``, ``inherited_share``). Histograms are left out. Undefined
values (None) are NaN and infinities are ``inf``: every metric column is float, so sorting and filtering
work without special cases. pandas is an optional dependency (``pip install "layerscope[pandas]"``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from layerscope.pipelines.reports.records import METRIC_FIELDS, Metrics
from layerscope.runner.errors import UsageError

if TYPE_CHECKING:
    from layerscope.pipelines.reports.comparison import LayerResult
    from layerscope.pipelines.reports.model import Report

IDENTIFIERS = ("candidate", "reference", "tensor", "layer", "op_type", "index", "execution", "verdict")
RANGE = ("zeros", "below_smallest_subnormal", "subnormal", "overflow", "min_abs_nonzero", "max_abs")
QUANT = ("scale", "zero_point", "saturated", "saturation_ratio", "zeroed", "zeroed_ratio")
LIMITS = ("rel_error", "abs_floor", "max_deviation_ratio", "min_cosine", "max_abs_error", "min_sqnr_db")


def _f(value: Any) -> float:
    return math.nan if value is None else float(value)


def _metrics(prefix: str, m: Metrics | None) -> dict[str, float]:
    return {f"{prefix}{name}": _f(getattr(m, name) if m else None) for name in METRIC_FIELDS}


def row(candidate: str, reference: str, layer: LayerResult) -> dict[str, Any]:
    """One layer of one comparison as a flat record (the DataFrame's row)."""
    m = layer.metrics
    out: dict[str, Any] = {
        "candidate": candidate,
        "reference": reference,
        "tensor": layer.tensor,
        "layer": layer.name,
        "op_type": layer.op_type,
        "index": layer.index,
        "execution": layer.execution,
        "verdict": layer.verdict,
        **_metrics("", m),
        **{f"range_{k}": _f(getattr(m.range, k)) for k in RANGE},
        **{f"limit_{k}": _f(getattr(layer.limits, k)) for k in LIMITS},
        "limit_allow_nonfinite": float(layer.limits.allow_nonfinite),
        **{f"quant_{k}": _f(getattr(m.quant, k) if m.quant else None) for k in QUANT},
        **_metrics("prequant_", layer.prequant_metrics),
    }
    a = layer.attribution
    out.update(_metrics("local_", a.local if a else None))
    out["inherited_share"] = _f(a.inherited_share if a else None)
    return out


def to_pandas(report: Report) -> Any:
    try:
        import pandas as pd
    except ImportError:
        raise UsageError(
            "Report.to_pandas needs pandas, which is not installed",
            hint='pip install "layerscope[pandas]"',
        ) from None
    rows = [row(c.candidate, c.reference, layer) for c in report.comparisons for layer in c.layers]
    columns = list(rows[0]) if rows else [*IDENTIFIERS, *METRIC_FIELDS]
    frame = pd.DataFrame(rows, columns=columns)
    numeric = [c for c in columns if c not in IDENTIFIERS]
    frame[numeric] = frame[numeric].astype("float64")
    return frame
