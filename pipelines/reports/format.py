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


def root_cause_line(c: dict[str, Any]) -> str | None:
    """The headline's root cause in plain words (None when the comparison passes or predates root causes)."""
    if c["verdict"] == "pass" or "root_causes" not in c:
        return None
    causes = c["root_causes"]
    note = c.get("root_cause_note")
    if not causes:
        return f"root cause unknown: {note}" if note else "root cause unknown"
    first = causes[0]
    share = as_float(first.get("inherited_share"))
    own = "" if math.isnan(share) else f", {1 - share:.0%} of its error is its own"
    text = (
        f"root cause: {first['layer']} ({first['op_type']}) fails on its own — local SQNR "
        f"{fmt_num(first['local_sqnr_db'], 4)} dB, local cosine {fmt_cos(first['local_cosine'])}{own}"
    )
    if len(causes) > 1:
        others = ", ".join(x["layer"] for x in causes[1:4])
        text += f"; also failing locally: {others}{' …' if len(causes) > 4 else ''}"
    return text


def first_failing_line(c: dict[str, Any]) -> str | None:
    """The first failing layer in plain words, with its inherited share when attribution knows it."""
    name = c.get("first_failing_layer")
    if not name:
        return None
    text = f"first failing layer: {name}"
    for layer in c["layers"]:
        if layer["tensor"] == c.get("first_failing_tensor"):
            share = as_float((layer.get("attribution") or {}).get("inherited_share"))
            if not math.isnan(share):
                text += f" ({share:.0%} of its error inherited from upstream)"
            break
    return text


def execution_label(layer: dict[str, Any], comparison: dict[str, Any]) -> str:
    """ " (pinned)" and the like where a layer executed differently from its run as a whole (empty otherwise)."""
    run = comparison.get("candidate_run", {}).get("execution")
    mode = layer["execution"]
    return "" if mode in ("n/a", run) or (mode == "native" and run is None) else f" ({mode})"
