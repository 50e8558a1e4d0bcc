"""report.md: a report.json rendered as Markdown.

The per-layer table has the seed's shape -- Layer | Op | count with rel err > t | Total | Deviation
ratio -- plus cosine, max abs error and the verdict; a second table shows the reference's range risk
against the candidate format's limits. It reads only report.json, so ``layerscope report`` can
re-render a run directory without running anything.

Names come from the model and the config, which may come from anyone: every name is escaped for Markdown
(:func:`md`: a ``|`` cannot shift a table's columns, ``<script>`` is text, not HTML) or put in a code span
that no backtick inside it can close (:func:`code`).
"""

from __future__ import annotations

import re
from typing import Any

from layerscope.pipelines.reports.format import (
    execution_label,
    first_failing_line,
    fmt_cos,
    fmt_int,
    fmt_num,
    fmt_ratio,
    fmt_share,
    layer_name,
    root_cause_line,
    run_line,
    threshold_label,
)
from layerscope.pipelines.reports.rows import breaks

_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~&#!])")


def md(value: Any) -> str:
    """Text as Markdown shows it literally, on one line (safe inside a table cell)."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(value).splitlines()))


def code(value: Any) -> str:
    """A code span holding ``value`` literally, whatever backticks it contains (CommonMark's rule: a fence
    longer than any run of backticks inside; a space pads content that starts or ends with one)."""
    text = " ".join(str(value).splitlines()).replace("|", "\\|")  # a table cell ends at | even in a code span
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _html_text(value: str) -> str:
    """Free text (a description): Markdown formatting kept, raw HTML shown as text."""
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _b(layer: dict[str, Any], metric: str, text: str) -> str:
    """A value in bold where it breaks the layer's limit: the reason a layer fails, seen in its row."""
    return f"**{text}**" if breaks(layer, metric) else text


def _name(layer: dict[str, Any]) -> str:
    return md(layer_name(layer))


def markdown(report: dict[str, Any]) -> str:
    return markdown_body(report) + markdown_execution(report)


def markdown_body(report: dict[str, Any]) -> str:
    """The page without how this invocation ran (``execution``): a function of the report stage's output and
    the config's path alone, so a warm rerun takes it from the cache (outputs.py)."""
    exp = report["experiment"]
    out: list[str] = [f"# layerscope report: {md(exp['name'])} — {report['verdict'].upper()}", ""]
    if exp.get("description"):
        out += [_html_text(exp["description"].strip()), ""]
    samples = report["samples"]
    out.append(
        f"Config {code(exp.get('config', '?'))} (digest `{exp['config_digest'][:12]}`), model {_model(report)} "
        f"(digest `{report['model']['digest'][:12]}`), {samples} sample{'s' if samples != 1 else ''}."
    )
    if exp.get("overrides"):
        out.append(f"Overrides: {', '.join(code(f'--set {o}') for o in exp['overrides'])}.")
    out.append("")
    for c in report["comparisons"]:
        out += _comparison_md(c, report)
    out += _provenance_md(report)
    return "\n".join(out) + "\n"


def markdown_execution(report: dict[str, Any]) -> str:
    """The page's last lines: which stages ran, the cache, warnings (after :func:`markdown_body`)."""
    lines = _execution_md(report)
    return ("\n".join(lines) + "\n" if lines else "") + "\n"


def _upper(text: str) -> str:
    return text[:1].upper() + text[1:]


def _rest(text: str, sep: str = " — ") -> str:
    """The part of a headline line after its bold lead (the separator kept)."""
    _head, found, tail = text.partition(sep)
    return f"{found}{tail}" if found else ""


def _model(report: dict[str, Any]) -> str:
    origin = report["model"]["origin"]
    if "builtin" in origin:
        opts = ", ".join(f"{k}={v}" for k, v in origin["options"].items())
        return md(f"builtin {origin['builtin']} ({opts})")
    if "zoo" in origin:
        return md(f"zoo {origin['zoo']}")
    return code(origin.get("path"))


def _comparison_md(c: dict[str, Any], report: dict[str, Any]) -> list[str]:
    n_layers = len(c["layers"])
    head = f"## {md(c['candidate'])} vs {md(c['reference'])} — {c['verdict'].upper()}"
    out = [head, ""]
    if c["verdict"] == "fail":
        out.append(f"{c['failing_layers']} of {n_layers} layers fail.")
        out.append("")
        cause, first = root_cause_line(c), first_failing_line(c)
        if cause:
            out.append(f"- **{md(_upper(cause.split(' — ')[0]))}**{md(_rest(cause))}")
        if first:
            out.append(f"- **{md(_upper(first.split(' (')[0]))}**{md(_rest(first, ' ('))}")
    else:
        out.append(f"All {n_layers} layers within the thresholds.")
    out += [
        "",
        "- " + run_line(c["candidate"], c["candidate_run"], report, text=md),
        "- " + run_line(c["reference"], c["reference_run"], report, text=md),
        "",
    ]
    out += task_md(c)
    t = threshold_label(c)
    out.append(
        f"| Layer | Op | Count with rel err > {t} | Total | Per sample | Deviation ratio | Cosine | Max abs err "
        "| SQNR dB | Verdict |"
    )
    out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for layer in c["layers"]:
        m = layer["metrics"]
        per_sample = m["elements"] // max(1, c["samples"])
        verdict = "pass" if layer["verdict"] == "pass" else "**FAIL**"
        exe = execution_label(layer, c)
        out.append(
            f"| {_name(layer)}{exe} | {md(layer['op_type'])} | {fmt_int(m['deviating'])} | {fmt_int(m['elements'])} | "
            f"{fmt_int(per_sample)} | {_b(layer, 'deviation_ratio', fmt_ratio(m['deviation_ratio']))} | "
            f"{_b(layer, 'cosine', fmt_cos(m['cosine']))} | "
            f"{_b(layer, 'max_abs_error', fmt_num(m['max_abs_error'], 3))} | "
            f"{_b(layer, 'sqnr_db', fmt_num(m['sqnr_db'], 4))} | {verdict} |"
        )
    out.append("")
    failing = [layer for layer in c["layers"] if layer["failures"]]
    if failing:
        out += ["Why layers fail:", ""]
        # the first ones in network order, and every one whose weights the format cannot hold (actionable)
        shown = failing[:50] + [x for x in failing[50:] if x.get("weight_note")]
        for layer in shown:
            why = md("; ".join(layer["failures"]))
            if layer.get("weight_note"):
                why += f" — **{md(layer['weight_note'])}**"
            out.append(f"- **{_name(layer)}**: {why}")
        if len(shown) < len(failing):
            out.append(f"- … and {len(failing) - len(shown)} more failing layers (see the table and report.json)")
        out.append("")
    out += _not_observable_md(c)
    out += _audit_md(c)
    out += _range_md(c)
    out += _attribution_md(c)
    return out


def task_md(c: dict[str, Any]) -> list[str]:
    """Does the candidate change the answer: top-1 agreement / top-k overlap per classifier output and the
    user compare function's scores, with the task verdict (shown above the layer table)."""
    task = c.get("task")
    if not task:
        return []
    lim = task["limits"]
    score_limit = "—" if lim.get("min_task_score") is None else fmt_num(lim["min_task_score"], 4)
    rows = []
    for output, a in task.get("classification", {}).items():
        detail = f"{a['rows_disagreeing']} of {a['rows']} rows changed class"
        if a["changed_samples"]:
            more = " …" if a["samples_changed"] > len(a["changed_samples"]) else ""
            detail += f" (samples {', '.join(map(str, a['changed_samples']))}{more})"
        if a.get("rows_nonfinite"):
            detail += f"; {a['rows_nonfinite']} with NaN/Inf"
        top1, topk = fmt_share(a["top1_agreement"]), fmt_share(a["topk_overlap"])
        limit1 = fmt_share(lim.get("min_top1_agreement"))
        rows.append(f"| `{output}` | top-1 agreement | {top1} | {limit1} | {detail} |")
        rows.append(
            f"| `{output}` | top-{a['k']} overlap | {topk} | {fmt_share(lim.get('min_topk_overlap'))} "
            f"| of {a.get('classes')} classes |"
        )
    for name, sc in task.get("scores", {}).items():
        worst = ", ".join(f"{w['sample']}: {fmt_num(w['value'], 4)}" for w in sc["worst"][:3])
        detail = f"min {fmt_num(sc['min'], 4)}; lowest samples {worst}"
        rows.append(f"| {task['func']} | {name} (mean) | {fmt_num(sc['mean'], 4)} | {score_limit} | {detail} |")
    if "scores_error" in task:
        rows.append(f"| {task['func']} | score | — | {score_limit} | not computed: {task['scores_error']} |")
    out = [f"**Task-level agreement — {task['verdict'].upper()}**", ""]
    out += ["| Output | Measure | Value | Limit | Detail |", "|---|---|---:|---:|---|", *rows, ""]
    if task["failures"]:
        out += [*(f"- {f}" for f in task["failures"]), ""]
    return out


def _attribution_md(c: dict[str, Any]) -> list[str]:
    layers = [x for x in c["layers"] if x.get("attribution")]
    if not layers:
        return []
    out = [
        "### Error attribution: local or inherited",
        "",
        "Local: the layer alone, computed the candidate's way on the reference's exact inputs. Inherited: the "
        "share of the layer's error power that arrived from upstream (0 = all its own, 1 = all inherited).",
        "",
    ]
    if c.get("attribution_note"):
        out += [f"Note: {md(c['attribution_note'])}.", ""]
    out += [
        "| Layer | Deviation ratio | Local deviation ratio | Local SQNR dB | SQNR dB | Inherited | Local verdict |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for layer in layers:
        a = layer["attribution"]
        m = layer["metrics"]
        if a["status"] != "ok":
            note = a.get("why", a["status"])
            ratio, sqnr = fmt_ratio(m["deviation_ratio"]), fmt_num(m["sqnr_db"], 4)
            out.append(f"| {_name(layer)} | {ratio} | — | — | {sqnr} | — | {md(note)} |")
            continue
        local = a["local"]
        share = a.get("inherited_share")
        verdict = "pass" if a["local_verdict"] == "pass" else "**FAIL**"
        out.append(
            f"| {_name(layer)} | {fmt_ratio(m['deviation_ratio'])} | {fmt_ratio(local['deviation_ratio'])} | "
            f"{fmt_num(local['sqnr_db'], 4)} | {fmt_num(m['sqnr_db'], 4)} | "
            f"{'—' if share is None else f'{share:.0%}'} | {verdict} |"
        )
    return [*out, ""]


def _quant_md(c: dict[str, Any]) -> list[str]:
    layers = [x for x in c["layers"] if x["metrics"].get("quant")]
    if not layers:
        return []
    out = [
        f"### Quantization ({c['format']})",
        "",
        "Values above are taken after each tensor's QuantizeLinear/DequantizeLinear pair, i.e. what the next layer "
        "reads; the value before it is in the dump's `/prequant` group. Saturated: reference values the scale "
        "clips; rounded to zero: non-zero reference values that quantize to zero.",
        "",
        "| Layer | Scale | Saturated | Rounded to zero | SQNR dB before Q/DQ | SQNR dB after |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for layer in layers:
        q = layer["metrics"]["quant"]
        pre = layer.get("prequant_metrics", {})
        saturated = f"{fmt_int(q['saturated'])} ({fmt_ratio(q['saturation_ratio'])})"
        zeroed = f"{fmt_int(q['zeroed'])} ({fmt_ratio(q['zeroed_ratio'])})"
        sqnr_before, sqnr_after = fmt_num(pre.get("sqnr_db", "nan"), 4), fmt_num(layer["metrics"]["sqnr_db"], 4)
        scale = fmt_num(q["scale"], 4)
        out.append(f"| {_name(layer)} | {scale} | {saturated} | {zeroed} | {sqnr_before} | {sqnr_after} |")
    return [*out, ""]


def _not_observable_md(c: dict[str, Any]) -> list[str]:
    if not c["not_observable"]:
        return []
    reasons = c.get("not_observable_reasons") or {}
    if not reasons:
        return [f"Not observable in {md(c['candidate'])}: {md(', '.join(c['not_observable']))}", ""]
    by_reason: dict[str, list[str]] = {}
    for tensor in c["not_observable"]:
        by_reason.setdefault(reasons.get(tensor, "no value"), []).append(tensor)
    out = [f"Not observable ({len(c['not_observable'])} tensors, not compared):", ""]
    for why, tensors in by_reason.items():
        shown = ", ".join(tensors[:20]) + (f" … and {len(tensors) - 20} more" if len(tensors) > 20 else "")
        out.append(f"- {md(why)}: {md(shown)}")
    return [*out, ""]


def _audit_md(c: dict[str, Any]) -> list[str]:
    """The backend's precision audit of the candidate (TensorRT's engine inspector), flagged layers first."""
    audit = c["candidate_run"].get("audit")
    if not audit:
        return []
    summary = f"{md(audit['summary'])} (source: {md(audit['source'])})."
    out = [f"### Precision audit of {md(c['candidate'])}", "", summary, ""]
    flagged = [x for x in audit["layers"] if x.get("flag")]
    if flagged:
        out += [
            "| Layer | Op | Asked | Ran | Engine layer | Tensors (engine) | Flag |",
            "|---|---|---|---|---|---|---|",
        ]
        for x in flagged[:50]:
            out.append(
                f"| {md(x['node'])} | {md(x['op_type'])} | {md(x['asked'])} | {md(x.get('ran') or '—')} | "
                f"{md((x.get('engine_layer') or '—')[:80])} | {md(x.get('io') or '—')} | {md(x['flag'])} |"
            )
        if len(flagged) > 50:
            out.append(f"| … {len(flagged) - 50} more in report.json | | | | | | |")
        out.append("")
    return out


def _range_md(c: dict[str, Any]) -> list[str]:
    lim = c["format_limits"]
    if lim.get("max") is None:
        return _quant_md(c)
    sub, normal, mx = (
        fmt_num(lim["smallest_subnormal"], 3),
        fmt_num(lim["smallest_normal"], 3),
        fmt_num(lim["max"], 6),
    )
    out = [
        f"### Range risk of the reference in {c['format']}",
        "",
        f"Values below the smallest subnormal ({sub}) round to zero or to it; subnormals (< {normal}) keep fewer "
        f"significant bits; values above {mx} overflow to infinity.",
        "",
        f"| Layer | 0 < abs < {sub} | subnormal | > {mx} | zeros | min abs > 0 | max abs |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for layer in c["layers"]:
        r = layer["metrics"]["range"]
        out.append(
            f"| {_name(layer)} | {fmt_int(r['below_smallest_subnormal'])} | {fmt_int(r['subnormal'])} | "
            f"{fmt_int(r['overflow'])} | {fmt_int(r['zeros'])} | {fmt_num(r['min_abs_nonzero'], 3)} | "
            f"{fmt_num(r['max_abs'], 4)} |"
        )
    return [*out, ""]


def _provenance_md(report: dict[str, Any]) -> list[str]:
    out = ["## Provenance", ""]
    libs = md(", ".join(f"{k} {v}" for k, v in report["libraries"].items()))
    out.append(f"- Libraries: {libs}")
    for name, material in report["inputs"].items():
        src = material.get("source") or {k: v for k, v in material.items() if k not in ("shape", "dtype")}
        if "images" in material:
            names = [i["name"] for i in material["images"]]
            shown = ", ".join(f"`{n}`" for n in names[:8]) + (f" … ({len(names)} in all)" if len(names) > 8 else "")
            steps = ", ".join(f"{k} {v}" for k, v in material["preprocessing"].items())
            text = (
                f"{len(names)} image{'s' if len(names) != 1 else ''} {shown} (SHA-256 of each in report.json); {steps}"
            )
        elif "random" in src:
            params = ", ".join(f"{k} {v}" for k, v in src.items() if k != "random")
            text = md(f"random {src['random']} ({params})")
        else:
            text = ", ".join(f"{md(k)} {code(v)}" for k, v in src.items())
        out.append(f"- Input {code(name)} {md(material.get('dtype'))} {md(material.get('shape'))}: {text}")
    notes = list(report["experiment"].get("notes", []))
    for c in report["comparisons"]:
        notes += [f"{c['candidate']}: {n}" for n in c["candidate_run"].get("notes", [])]
    out += [f"- Note: {md(n)}" for n in notes]
    return out


def _execution_md(report: dict[str, Any]) -> list[str]:
    out: list[str] = []
    execution = report.get("execution")
    if execution:
        cached = [s for s, v in execution["stages"].items() if v["status"] == "cached"]
        ran = [s for s, v in execution["stages"].items() if v["status"] == "ran"]
        out.append(f"- Stages run: {md(', '.join(ran) or 'none')}; from the cache: {md(', '.join(cached) or 'none')}")
        out.append(f"- Cache: {code(execution.get('cache'))}; written {execution.get('finished')}")
        for sid, stage in execution["stages"].items():
            out += [f"- Warning ({md(sid)}): {md(w)}" for w in stage.get("warnings", [])]
            if stage["status"] in ("failed", "skipped"):
                out.append(f"- Stage {md(sid)} {stage['status']}: {md(stage.get('error') or stage.get('reason', ''))}")
        out += [f"- Warning: {md(w)}" for w in execution.get("warnings", [])]
    return out
