"""Which columns a layer table shows and which rows a shortened one keeps, for every report view.

Columns follow the thresholds in force: the deviation ratio always (it is the seed's table), then each metric
that a limit is set on (cosine, max abs error, SQNR), so the metric that fails a layer is always on screen; where
no limit is set on either, SQNR is shown as the scale-free summary. A shortened table (the terminal's, ``report``'s)
keeps every failing layer and every root-cause layer, fills up with the passing layers closest to their limits,
shows them in network order, and says how it chose (:func:`select_rows`). ``margin`` puts every limit on one
scale: the largest of a layer's error quantities divided by its limit (above 1: the layer fails on it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from layerscope.runner.jsonio import as_float

DEFAULT_ROWS = 40


@dataclass(frozen=True)
class Column:
    metric: str  # key in a layer's metrics
    label: str
    limit_key: str | None  # the layer limit on this metric (None: shown without a limit)
    floor: bool  # the limit is a minimum (cosine, SQNR)


COSINE = Column("cosine", "Cosine", "min_cosine", True)
MAX_ABS = Column("max_abs_error", "Max abs err", "max_abs_error", False)
SQNR = Column("sqnr_db", "SQNR dB", "min_sqnr_db", True)
DEVIATION = Column("deviation_ratio", "Deviation ratio", "max_deviation_ratio", False)
LIMITED = (COSINE, MAX_ABS, SQNR)


def _limits(c: dict[str, Any]) -> list[dict[str, Any]]:
    return [layer.get("limits") or {} for layer in c["layers"]]


def metric_columns(c: dict[str, Any]) -> list[Column]:
    """The metric columns after the deviation ratio: those with a limit in force, else SQNR."""
    limits = _limits(c)
    shown = [col for col in LIMITED if any(lim.get(col.limit_key or "") is not None for lim in limits)]
    if not any(col in shown for col in (COSINE, SQNR)):
        shown.append(Column(SQNR.metric, SQNR.label, None, True))
    return sorted(shown, key=lambda col: [x.metric for x in LIMITED].index(col.metric))


def limit_label(c: dict[str, Any], col: Column) -> str:
    """The column's limit for a header: ``≥ 18`` when every layer has the same, ``limits vary`` otherwise."""
    if col.limit_key is None:
        return ""
    values = {lim.get(col.limit_key) for lim in _limits(c)} - {None}
    if len(values) != 1:
        return "limits vary" if values else ""
    value = as_float(values.pop())
    return f"{'≥' if col.floor else '≤'} {f'{value * 100:.4g}%' if col is DEVIATION else f'{value:g}'}"


def breaks(layer: dict[str, Any], metric: str) -> bool:
    """The layer's value of ``metric`` breaks its limit (or is undefined where a limit is set)."""
    lim = layer.get("limits") or {}
    key = {"deviation_ratio": "max_deviation_ratio", "cosine": "min_cosine", "sqnr_db": "min_sqnr_db"}.get(
        metric, metric
    )
    limit = lim.get(key)
    if limit is None:
        return False
    v = as_float(layer["metrics"].get(metric))
    if math.isnan(v):
        return True
    floor = metric in ("cosine", "sqnr_db")
    return v < as_float(limit) if floor else v > as_float(limit)


def margin(layer: dict[str, Any]) -> float:
    """How close a layer is to failing: the largest error quantity over its limit (> 1: it fails on that)."""
    m, lim = layer["metrics"], layer.get("limits") or {}
    parts = []
    ratio, max_ratio = as_float(m.get("deviation_ratio")), as_float(lim.get("max_deviation_ratio"))
    parts.append(_over(ratio, max_ratio))
    if lim.get("min_cosine") is not None:
        parts.append(_over(1.0 - as_float(m.get("cosine")), 1.0 - as_float(lim["min_cosine"])))
    if lim.get("max_abs_error") is not None:
        parts.append(_over(as_float(m.get("max_abs_error")), as_float(lim["max_abs_error"])))
    if lim.get("min_sqnr_db") is not None:
        sqnr = as_float(m.get("sqnr_db"))
        parts.append(math.nan if math.isnan(sqnr) else 10.0 ** ((as_float(lim["min_sqnr_db"]) - sqnr) / 10.0))
    worst = max((p for p in parts if not math.isnan(p)), default=0.0)
    if any(math.isnan(p) for p in parts):
        return math.inf  # an undefined metric under a limit fails the layer: as bad as it gets
    return worst if layer.get("verdict") != "fail" else max(worst, 1.0)


def _over(value: float, limit: float) -> float:
    if math.isnan(value) or math.isnan(limit):
        return math.nan if math.isnan(value) else 0.0
    if limit <= 0:
        return math.inf if value > 0 else 0.0
    return value / limit


@dataclass(frozen=True)
class Selection:
    layers: list[dict[str, Any]]  # in network order
    note: str | None  # how a shortened table chose its rows (None: every layer is shown)


def select_rows(c: dict[str, Any], limit: int = DEFAULT_ROWS) -> Selection:
    """Every layer when there are at most ``limit``; else every failing and root-cause layer, then the passing
    layers closest to their limits up to ``limit`` rows, in network order (``limit`` <= 0: every layer)."""
    layers = c["layers"]
    if limit <= 0 or len(layers) <= limit:
        return Selection(list(layers), None)
    causes = {x["tensor"] for x in c.get("root_causes") or []}
    must = [x for x in layers if x["verdict"] == "fail" or x["tensor"] in causes]
    rest = sorted((x for x in layers if x["verdict"] != "fail" and x["tensor"] not in causes), key=lambda x: -margin(x))
    fill = rest[: max(0, limit - len(must))]
    keep = {id(x) for x in [*must, *fill]}
    shown = [x for x in layers if id(x) in keep]
    failing = sum(1 for x in layers if x["verdict"] == "fail")
    parts = [f"{failing} failing layer{'s' if failing != 1 else ''}" if failing else "no failing layer"]
    extra_causes = len([x for x in must if x["verdict"] != "fail"])
    if extra_causes:
        parts.append(f"{extra_causes} root-cause layer{'s' if extra_causes != 1 else ''}")
    if len(fill) == 1:
        parts.append("the passing layer closest to its limits")
    elif fill:
        parts.append(f"the {len(fill)} passing layers closest to their limits")
    note = f"{len(shown)} of {len(layers)} layers: {_and(parts)}, in network order"
    return Selection(shown, note)


def _and(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
