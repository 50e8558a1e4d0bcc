"""Render a diff (``pipelines.diff``) as plain text for the terminal, Markdown for a PR, or JSON.

Sections in order: config changes, then per comparison the verdict, the layers whose verdict changed and the
metric changes worst first, layers added and removed; provenance changes; the regressions the gate checks.
"""

from __future__ import annotations

import json
import math
from typing import Any

from layerscope.pipelines.reports.diff import METRIC_LABELS, METRICS, fmt_metric, fmt_task, fmt_tolerance
from layerscope.runner.jsonio import finite_json

DEFAULT_LIMIT = 20


def as_json(doc: dict[str, Any]) -> str:
    return json.dumps(finite_json(doc), indent=1, allow_nan=False) + "\n"


def show(value: Any) -> str:
    """A config value on one line: YAML flow style for lists and mappings, as written for scalars."""
    if isinstance(value, (dict, list)):
        import yaml

        return str(yaml.safe_dump(value, default_flow_style=True, width=1 << 16, sort_keys=False)).strip()
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, str) and len(value) == 64 and all(ch in "0123456789abcdef" for ch in value):
        return value[:12]  # a digest: the prefix is enough to tell them apart
    return str(value)


def _old_new(change: dict[str, Any], absent: str = "(not set)") -> tuple[str, str]:
    return (show(change["old"]) if "old" in change else absent, show(change["new"]) if "new" in change else absent)


def layer_label(layer: dict[str, Any]) -> str:
    node, tensor = layer.get("node"), layer["tensor"]
    label = f"{node} → {tensor}" if node and node != tensor else str(tensor)
    execution = layer.get("execution")
    if isinstance(execution, list) and execution[0] != execution[1]:
        label += f" ({execution[0]} → {execution[1]})"  # e.g. emulated → pinned: the layer was pinned to FP32
    return label


def factor_text(f: float) -> str:
    if math.isnan(f):
        return "?"
    if f == math.inf:
        return "new errors"
    if f == 0:
        return "errors gone"
    if f >= 1:
        return f"×{f:.3g} worse" if f != 1 else "same"
    return f"×{1 / f:.3g} better"


def shown_layers(layers: list[dict[str, Any]], limit: int) -> tuple[list[dict[str, Any]], str]:
    """The rows of a shortened list of changed layers (worst first): the layers that regressed come before those
    that only changed (a layer ×100 better is no reason to hide one ×2 worse), up to ``limit``. The note says
    how they were chosen ("" when every layer is shown)."""
    if limit <= 0 or len(layers) <= limit:
        return layers, ""
    regressed = [x for x in layers if x["regressed"]]
    shown = [*regressed, *(x for x in layers if not x["regressed"])][:limit]
    kept = sum(1 for x in shown if x["regressed"])
    if kept == len(shown):
        how = f"the {kept} of {len(regressed)} regressed layers that got worst"
    elif regressed:
        how = f"all {len(regressed)} regressed layers, then the {len(shown) - kept} that changed most"
    else:
        how = f"the {len(shown)} that changed most"
    return shown, f" ({how})"


def _verdicts(pair: list[Any]) -> str:
    a, b = (str(x).upper() if x else "none" for x in pair)
    return a if a == b else f"{a} → {b}"


def _first(pair: list[Any]) -> str:
    a, b = (x or "none" for x in pair)
    return a if a == b else f"{a} → {b}"


def _flips(c: dict[str, Any], limit: int, quote: str = "") -> list[str]:
    """Verdict changes grouped by direction: 'pass → fail (3): conv0, bn0, relu0'."""
    out = []
    for old, new in (("pass", "fail"), ("fail", "pass")):
        names = [f"{quote}{f['node'] or f['tensor']}{quote}" for f in c["verdict_changes"] if f["new"] == new]
        if names:
            shown = names if limit <= 0 else names[:limit]
            more = f", … (+{len(names) - len(shown)})" if len(shown) < len(names) else ""
            out.append(f"{old} → {new} ({len(names)}): {', '.join(shown)}{more}")
    return out


def _task_lines(c: dict[str, Any], regressed_mark: str) -> list[str]:
    """The task-level agreement of a comparison: its verdict and the measures that changed."""
    task = c.get("task")
    if not task:
        return []
    out = [f"Task agreement {_verdicts(task['verdict'])}"]
    for ch in task["changes"]:
        mark = regressed_mark if ch["regressed"] else ""
        out.append(f"{ch['measure']} {fmt_task(ch['kind'], ch['old'])} → {fmt_task(ch['kind'], ch['new'])}{mark}")
    out += [f"{what}: {', '.join(task[what])}" for what in ("added", "removed") if task[what]]
    if len(out) == 1:
        out[0] += ": no change"
    return out


def _metric_rows(c: dict[str, Any]) -> list[dict[str, Any]]:
    """Layers whose metrics or execution changed (verdict-only changes are listed as verdict changes)."""
    return [x for x in c["layers"] if x["worse_factor"] != 1.0 or x["execution"][0] != x["execution"][1]]


def _cells(layer: dict[str, Any]) -> list[str]:
    out = []
    for m in METRICS:
        ch = layer["metrics"][m]
        old, new = fmt_metric(m, ch["old"]), fmt_metric(m, ch["new"])
        mark = " !" if ch["regressed"] else ""
        out.append((old if old == new else f"{old} → {new}") + mark)
    return out


# -- text -----------------------------------------------------------------------------------------------
def _table(rows: list[list[str]], indent: str = "    ") -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [indent + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def text(doc: dict[str, Any], *, limit: int = DEFAULT_LIMIT) -> str:
    out = [f"layerscope diff: A = {doc['old']['label']}  →  B = {doc['new']['label']}", ""]
    config = doc["config_changes"]
    out.append(f"Config changes ({len(config)})" if config else "Config changes: none")
    if config:
        out += _table([[c["key"], _old_new(c)[0], "→", _old_new(c)[1]] for c in config], "  ")
    out += [f"  note: {n}" for n in doc["notes"]]
    for c in doc["comparisons"]:
        out += ["", _comparison_head(c)]
        out += [f"  Verdicts {line}" for line in _flips(c, limit)]
        task = _task_lines(c, " !")
        out += [f"  {line}" for line in task[:1]] + [f"    {line}" for line in task[1:]]
        layers = _metric_rows(c)
        if layers:
            shown, more = shown_layers(layers, limit)
            more = more[:-1] + "; --limit 0 shows all)" if more else ""
            marks = " (! = worse beyond the tolerance)" if any(x["regressed"] for x in shown) else ""
            out.append(
                f"  Metrics changed in {len(layers)} of {c['compared_layers']} layers, worst first{more}{marks}:"
            )
            header = ["Layer", "Op", *(METRIC_LABELS[m] for m in METRICS), "Change"]
            rows = [[layer_label(x), x["op_type"], *_cells(x), factor_text(x["worse_factor"])] for x in shown]
            out += _table([header, *rows])
        else:
            out.append(f"  Metrics: no change in {c['compared_layers']} layers")
        for what in ("added", "removed"):
            if c[what]:
                out.append(f"  Layers {what} ({len(c[what])}): " + ", ".join(layer_label(x) for x in c[what]))
    for what in ("removed", "added"):
        if doc[f"comparisons_{what}"]:
            out += ["", f"Comparisons {what}: {', '.join(doc[f'comparisons_{what}'])}"]
    prov = doc["provenance_changes"]
    out += ["", f"Provenance changes ({len(prov)})" if prov else "Provenance changes: none"]
    if prov:
        out += _table([[c["key"], _old_new(c, "(none)")[0], "→", _old_new(c, "(none)")[1]] for c in prov], "  ")
    out += ["", *_regression_lines(doc, "", limit)]
    return "\n".join(out) + "\n"


def _comparison_head(c: dict[str, Any]) -> str:
    name = c["candidate"] if c["candidate"] == c["candidate_before"] else f"{c['candidate_before']} → {c['candidate']}"
    return (
        f"{name} vs {c['reference']}: {_verdicts(c['verdict'])} · failing layers "
        f"{_first([str(n) for n in c['failing_layers']])} · first failing layer {_first(c['first_failing_layer'])}"
    )


def _regression_lines(doc: dict[str, Any], bullet: str, limit: int) -> list[str]:
    tol = doc["tolerance"]
    tols = sorted(set(tol.values()))
    tol_text = (
        fmt_tolerance(tols[0]) if len(tols) == 1 else ", ".join(f"{m} {fmt_tolerance(t)}" for m, t in tol.items())
    )
    regs = doc["regressions"]
    if not regs:
        return [f"Regressions (tolerance {tol_text}): none"]
    shown = regs if limit <= 0 else regs[:limit]
    more = (
        [f"  {bullet}… and {len(regs) - len(shown)} more (--limit 0 or --format json: all)"]
        if len(shown) < len(regs)
        else []
    )
    return [f"Regressions (tolerance {tol_text}): {len(regs)}", *[f"  {bullet}{r}" for r in shown], *more]


# -- markdown -------------------------------------------------------------------------------------------
def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown(doc: dict[str, Any], *, limit: int = DEFAULT_LIMIT) -> str:
    out = [f"## layerscope diff: `{doc['old']['label']}` → `{doc['new']['label']}`", ""]
    config = doc["config_changes"]
    if config:
        out += ["| Config | A | B |", "|---|---|---|"]
        for c in config:
            a, b = _old_new(c)
            out.append(f"| `{_md_cell(c['key'])}` | `{_md_cell(a)}` | `{_md_cell(b)}` |")
    else:
        out.append("No config changes.")
    out += [f"> {n}" for n in doc["notes"]]
    out.append("")
    for c in doc["comparisons"]:
        out += [f"### {_md_cell(_comparison_head(c))}", ""]
        flips = _flips(c, limit, "`")
        if flips:
            out += [*(f"- Verdicts {line}" for line in flips), ""]
        task = _task_lines(c, " ⚠")
        if task:
            out += [f"- {_md_cell(task[0])}", *(f"  - {_md_cell(line)}" for line in task[1:]), ""]
        layers = _metric_rows(c)
        if layers:
            shown, more = shown_layers(layers, limit)
            marks = " (⚠ = worse beyond the tolerance)" if any(x["regressed"] for x in shown) else ""
            out += [f"Metrics changed in {len(layers)} of {c['compared_layers']} layers, worst first{more}{marks}:", ""]
            out.append("| Layer | Op | " + " | ".join(METRIC_LABELS[m] for m in METRICS) + " | Change |")
            out.append("|---|---|" + "---:|" * len(METRICS) + "---|")
            for x in shown:
                cells = [_md_cell(v.replace(" !", " ⚠")) for v in _cells(x)]
                out.append(
                    f"| {_md_cell(layer_label(x))} | {x['op_type']} | {' | '.join(cells)} | "
                    f"{factor_text(x['worse_factor'])} |"
                )
            out.append("")
        else:
            out += [f"No metric changed in {c['compared_layers']} layers.", ""]
        for what in ("added", "removed"):
            if c[what]:
                out += [f"Layers {what}: " + ", ".join(f"`{layer_label(x)}`" for x in c[what]) + ".", ""]
    for what in ("removed", "added"):
        if doc[f"comparisons_{what}"]:
            out += [f"Comparisons {what}: {', '.join(doc[f'comparisons_{what}'])}.", ""]
    prov = doc["provenance_changes"]
    if prov:
        out += ["| Provenance | A | B |", "|---|---|---|"]
        for c in prov:
            a, b = _old_new(c, "(none)")
            out.append(f"| `{_md_cell(c['key'])}` | {_md_cell(a)} | {_md_cell(b)} |")
        out.append("")
    else:
        out += ["No provenance changes (libraries, backends, devices).", ""]
    lines = _regression_lines(doc, "- ", limit)
    out += [f"**{lines[0]}**", *[line.strip() for line in lines[1:]]]
    return "\n".join(out) + "\n"
