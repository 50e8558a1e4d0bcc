"""What the HTML report's layer chart shows, decided from report.json alone (no matplotlib here).

* :func:`decisive` — the metric that decides the verdict, so the chart's limit line and its failing rings agree:
  SQNR where an SQNR limit is in force and it fails more layers than the deviation ratio (INT8/FP8, whose
  deviation limit is often 100%: a ratio chart would draw the limit at the top while ringing failing layers),
  the deviation ratio otherwise.
* :func:`tooltip` — a layer's native tooltip text (layer, op, candidate, verdict, every metric and the local
  error from attribution), and :func:`add_titles`, which puts one ``<title>`` on each point of an SVG group.
* :func:`chart_width` — inches for a chart of n layers, wide enough for every layer's label at 300+ layers (the
  page scrolls the chart sideways rather than shrinking it into an unreadable strip).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from html import escape
from typing import Any

from layerscope.pipelines.reports.format import fmt_cos, fmt_num, fmt_ratio
from layerscope.pipelines.reports.rows import breaks
from layerscope.runner.jsonio import as_float

BASE_WIDTH = 10.0  # inches: the chart of a small model, as before
LABEL_PITCH = 0.115  # inches per layer label at 6.5 pt, rotated: every layer named


@dataclass(frozen=True)
class Measure:
    metric: str  # key in a layer's metrics
    limit_key: str
    title: str  # the chart's heading
    axis: str
    log: bool
    higher_is_better: bool
    fmt: Callable[[float], str]


def _pct(v: float) -> str:
    return f"{v * 100:.3g}%"


DEVIATION = Measure(
    "deviation_ratio", "max_deviation_ratio", "Deviation ratio", "deviation ratio (log scale)", True, False, _pct
)
SQNR = Measure("sqnr_db", "min_sqnr_db", "SQNR", "SQNR (dB; higher is better)", False, True, lambda v: f"{v:.3g} dB")


def _limits(report: dict[str, Any], key: str) -> list[float]:
    return [
        as_float(x["limits"][key])
        for c in report["comparisons"]
        for x in c["layers"]
        if (x.get("limits") or {}).get(key) is not None
    ]


def decisive(report: dict[str, Any]) -> Measure:
    """The metric whose limit decides the verdict (see the module's docstring)."""
    if not _limits(report, "min_sqnr_db"):
        return DEVIATION
    layers = [x for c in report["comparisons"] for x in c["layers"]]
    ratio_in_force = any(v < 1 for v in _limits(report, "max_deviation_ratio"))
    fails = {m: sum(1 for x in layers if breaks(x, m.metric)) for m in (DEVIATION, SQNR)}
    return SQNR if not ratio_in_force or fails[SQNR] > fails[DEVIATION] else DEVIATION


def local_value(layer: dict[str, Any], metric: str) -> float | None:
    """The layer's own error (attribution: the layer alone on the reference's inputs), or None."""
    a = layer.get("attribution") or {}
    if a.get("status") != "ok":
        return None
    value = (a.get("local") or {}).get(metric)
    return None if value is None else as_float(value)


def tooltip(candidate: str, layer: dict[str, Any]) -> str:
    """One point's tooltip: what a reader hovering over it wants without scrolling to the table."""
    m = layer["metrics"]
    name = layer.get("node") or layer["tensor"]
    lines = [
        f"{name} ({layer['op_type']}) · {candidate} · {str(layer['verdict']).upper()}",
        f"deviation ratio {fmt_ratio(m.get('deviation_ratio'))} · cosine {fmt_cos(m.get('cosine'))}",
        f"SQNR {fmt_num(m.get('sqnr_db'), 4)} dB · max abs err {fmt_num(m.get('max_abs_error'), 3)}",
    ]
    if layer.get("tensor") != name:
        lines.insert(1, f"tensor {layer['tensor']}")
    local_sqnr = local_value(layer, "sqnr_db")
    if local_sqnr is not None:
        share = (layer.get("attribution") or {}).get("inherited_share")
        inherited = "" if share is None else f" · {as_float(share):.0%} of its error inherited"
        lines.append(f"local SQNR {fmt_num(local_sqnr, 4)} dB{inherited}")
    lines += [f"fails: {f}" for f in layer.get("failures") or []]
    return "\n".join(lines)


def add_titles(svg: str, gid: str, titles: list[str]) -> str:
    """Give the i-th point (``<use>``) of the SVG group ``gid`` the tooltip ``titles[i]``: a native ``<title>``,
    shown by every browser on hover, no script. A group matplotlib did not write leaves the SVG unchanged."""
    start = svg.find(f'<g id="{gid}">')
    if start < 0:
        return svg
    end = _group_end(svg, start)
    group = svg[start:end]
    it = iter(titles)

    def wrap(match: re.Match[str]) -> str:
        title = next(it, None)
        return match.group(0) if title is None else f"<g><title>{escape(title)}</title>{match.group(0)}</g>"

    return svg[:start] + re.sub(r"<use [^>]*/>", wrap, group) + svg[end:]


def _group_end(svg: str, start: int) -> int:
    depth, i = 0, start
    for m in re.finditer(r"<g[\s>]|</g>", svg[start:]):
        depth += 1 if m.group(0) != "</g>" else -1
        if depth == 0:
            i = start + m.end()
            break
    return i


def chart_width(n_layers: int) -> float:
    """Inches: 10 for a small model; for a large one, room for every layer's label."""
    return max(BASE_WIDTH, n_layers * LABEL_PITCH + 1.5)


def clip_sqnr(values: list[float]) -> tuple[float, float]:
    """The SQNR axis' range: finite values with a margin; +inf (identical) and -inf sit on the edges."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return 0.0, 100.0
    low, high = min(finite), max(finite)
    pad = max(3.0, (high - low) * 0.08)
    return low - pad, high + pad
