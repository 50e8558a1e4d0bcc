"""Numbers and names as every report renders them: ratios as percentages, undefined values as "—", a layer as
``node → tensor`` when they differ. Markdown, the terminal, HTML, diffs and the fix report all use these."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from layerscope.runner.jsonio import as_float


def fmt_int(n: Any) -> str:
    return f"{int(n):,}"


def fmt_ratio(x: Any) -> str:
    v = as_float(x)
    return "—" if math.isnan(v) else f"{v:.4%}"


def fmt_num(x: Any, digits: int = 4) -> str:
    v = as_float(x)
    if math.isnan(v):
        return "—"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.{digits}g}"


def fmt_cos(x: Any) -> str:
    v = as_float(x)
    if math.isnan(v):
        return "—"
    return f"{v:.9f}".rstrip("0").rstrip(".") if v < 1 else "1"


def threshold_label(comparison: dict[str, Any]) -> str:
    ts = {layer["rel_error_threshold"] for layer in comparison["layers"]}
    return f"{ts.pop():.0%}" if len(ts) == 1 else "t"


def layer_name(layer: dict[str, Any]) -> str:
    if layer["node"] and layer["node"] != layer["tensor"]:
        return f"{layer['node']} → {layer['tensor']}"
    return str(layer["tensor"])


def run_line(name: str, run: dict[str, Any], record: dict[str, Any], *, text: Callable[[Any], str] = str) -> str:
    """A run in one line; ``text`` escapes what comes from the model or the machine (Markdown: escaped)."""
    spec = record["runs"].get(name, {})
    pinned = spec.get("pinned") or []
    line = f"**{text(name)}**: {text(run.get('backend'))} {text(run.get('precision'))}, executed "
    line += text(run.get("execution"))
    if pinned:
        line += f", pinned to FP32: {text(', '.join(pinned[:8]))}{' …' if len(pinned) > 8 else ''}"
    line += f" — {text(run.get('device', ''))}"
    return line


def fmt_share(value: Any) -> str:
    """A share (top-1 agreement, top-k overlap) as a percentage; undefined is "—"."""
    return "—" if value is None else f"{as_float(value):.2%}"
