"""A report on the terminal: one rich table per comparison (columns and rows chosen by :mod:`.rows`), then the
root cause and the first failing layer."""

from __future__ import annotations

from typing import Any

from layerscope.pipelines.reports.format import (
    first_failing_line,
    fmt_cos,
    fmt_int,
    fmt_num,
    fmt_ratio,
    layer_name,
    root_cause_line,
    threshold_label,
)
from layerscope.pipelines.reports.rows import (
    DEFAULT_ROWS,
    DEVIATION,
    Column,
    breaks,
    limit_label,
    metric_columns,
    select_rows,
)
from layerscope.runner.jsonio import as_float

TERMINAL_ROWS = DEFAULT_ROWS


def _cell(layer: dict[str, Any], metric: str, text: str) -> str:
    from rich.markup import escape

    return f"[red]{escape(text)}[/red]" if breaks(layer, metric) else escape(text)


def _value(layer: dict[str, Any], col: Column) -> str:
    m = layer["metrics"]
    if col.metric == "cosine":
        return fmt_cos(m["cosine"])
    return fmt_num(m[col.metric], 3 if col.metric == "max_abs_error" else 4)


def print_summary(report: dict[str, Any], console: Any, *, rows: int = TERMINAL_ROWS) -> None:
    """Rich tables, one per comparison: every layer up to ``rows`` (<= 0: no limit), else the failing and
    root-cause layers and the passing ones closest to their limits (:func:`.rows.select_rows`), saying so.
    Columns follow the limits in force; a value that breaks its limit is red."""
    from rich.markup import escape
    from rich.table import Table

    for c in report["comparisons"]:
        layers = c["layers"]
        chosen = select_rows(c, rows)
        style = "green" if c["verdict"] == "pass" else "red"
        title = f"{escape(c['candidate'])} vs {escape(c['reference'])}: [{style}]{c['verdict'].upper()}[/{style}]"
        table = Table(title=title, title_justify="left", show_lines=False)
        columns = metric_columns(c)
        heads = [
            ("Layer", "left"),
            ("Op", "left"),
            (f"rel err > {threshold_label(c)}", "right"),
            ("Total", "right"),
            (f"Deviation {limit_label(c, DEVIATION)}".strip(), "right"),
            *((f"{col.label} {limit_label(c, col)}".strip(), "right") for col in columns),
        ]
        attributed = any((x.get("attribution") or {}).get("status") == "ok" for x in layers)
        if attributed:
            heads.append(("Inherited", "right"))
        heads.append(("Verdict", "left"))
        for col_name, justify in heads:
            table.add_column(escape(col_name), justify=justify)  # type: ignore[arg-type]
        for layer in chosen.layers:
            m = layer["metrics"]
            ok = layer["verdict"] == "pass"
            cells = [
                escape(layer_name(layer)),
                escape(layer["op_type"]),
                fmt_int(m["deviating"]),
                fmt_int(m["elements"]),
                _cell(layer, "deviation_ratio", fmt_ratio(m["deviation_ratio"])),
                *(_cell(layer, col.metric, _value(layer, col)) for col in columns),
            ]
            if attributed:
                share = (layer.get("attribution") or {}).get("inherited_share")
                cells.append("—" if share is None else f"{as_float(share):.0%}")
            cells.append("[green]pass[/green]" if ok else "[red]FAIL[/red]")
            table.add_row(*cells)
        console.print(table)
        if chosen.note:
            console.print(f"[dim]{escape(chosen.note)}; every layer: report.md or `layerscope report DIR --all`[/dim]")
        task = c.get("task")
        if task:
            style = "green" if task["verdict"] == "pass" else "red"
            parts = [
                f"{escape(o)} top-1 {a['top1_agreement']:.2%}, top-{a['k']} {a['topk_overlap']:.2%}"
                for o, a in task.get("classification", {}).items()
                if a["top1_agreement"] is not None
            ]
            parts += [f"{escape(n)} {as_float(s['mean']):.4g}" for n, s in task.get("scores", {}).items()]
            if "scores_error" in task:
                parts.append(f"scores not computed: {escape(task['scores_error'])}")
            console.print(f"task agreement: [{style}]{task['verdict'].upper()}[/{style}] — " + "; ".join(parts))
            for failure in task["failures"]:
                console.print(f"  [red]{escape(failure)}[/red]")
        if c["verdict"] == "fail":
            console.print(f"{c['failing_layers']} of {len(layers)} layers fail")
        for line in (root_cause_line(c), first_failing_line(c)):
            if line:
                console.print(escape(line))
