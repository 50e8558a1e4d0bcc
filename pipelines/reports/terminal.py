"""A report on the terminal: one rich table per comparison, and the first failing layer."""

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
from layerscope.runner.jsonio import as_float

TERMINAL_ROWS = 40


def _rank(layer: dict[str, Any]) -> tuple[int, float]:
    ratio = as_float(layer["metrics"]["deviation_ratio"])
    return (0 if layer["verdict"] == "fail" else 1, -(ratio if ratio == ratio else 1.0))


def print_summary(report: dict[str, Any], console: Any, *, all_rows: bool = False) -> None:
    """Rich tables: one per comparison (all layers up to TERMINAL_ROWS, else the failing and worst ones)."""
    from rich.markup import escape
    from rich.table import Table

    for c in report["comparisons"]:
        layers = c["layers"]
        shown = layers
        if not all_rows and len(layers) > TERMINAL_ROWS:
            # The failing layers first (whatever metric fails them), then the worst by deviation ratio.
            worst = sorted(layers, key=_rank)[:TERMINAL_ROWS]
            keep = {id(x) for x in worst}
            shown = [x for x in layers if id(x) in keep]
        style = "green" if c["verdict"] == "pass" else "red"
        title = f"{escape(c['candidate'])} vs {escape(c['reference'])}: [{style}]{c['verdict'].upper()}[/{style}]"
        if len(shown) < len(layers):
            title += f" (the {len(shown)} worst of {len(layers)} layers; all in report.md)"
        table = Table(title=title, title_justify="left", show_lines=False)
        for col, justify in (
            ("Layer", "left"),
            ("Op", "left"),
            (f"rel err > {threshold_label(c)}", "right"),
            ("Total", "right"),
            ("Deviation", "right"),
            ("Cosine", "right"),
            ("Max abs err", "right"),
            ("SQNR dB", "right"),
            ("Verdict", "left"),
        ):
            table.add_column(col, justify=justify)  # type: ignore[arg-type]
        for layer in shown:
            m = layer["metrics"]
            ok = layer["verdict"] == "pass"
            table.add_row(
                escape(layer_name(layer)),
                escape(layer["op_type"]),
                fmt_int(m["deviating"]),
                fmt_int(m["elements"]),
                fmt_ratio(m["deviation_ratio"]),
                fmt_cos(m["cosine"]),
                fmt_num(m["max_abs_error"], 3),
                fmt_num(m["sqnr_db"], 4),
                "[green]pass[/green]" if ok else "[red]FAIL[/red]",
            )
        console.print(table)
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
