"""report.md: a report.json rendered as Markdown.

The per-layer table has the seed's shape -- Layer | Op | count with rel err > t | Total | Deviation
ratio -- plus cosine, max abs error and the verdict; a second table shows the reference's range risk
against the candidate format's limits. It reads only report.json, so ``layerscope report`` can
re-render a run directory without running anything.
"""

from __future__ import annotations

from typing import Any

from layerscope.pipelines.reports.format import (
    execution_label,
    first_failing_line,
    fmt_cos,
    fmt_int,
    fmt_num,
    fmt_ratio,
    layer_name,
    root_cause_line,
    run_line,
    threshold_label,
)


def markdown(report: dict[str, Any]) -> str:
    exp = report["experiment"]
    out: list[str] = [f"# layerscope report: {exp['name']} — {report['verdict'].upper()}", ""]
    if exp.get("description"):
        out += [exp["description"].strip(), ""]
    samples = report["samples"]
    out.append(
        f"Config `{exp.get('config', '?')}` (digest `{exp['config_digest'][:12]}`), model {_model(report)} "
        f"(digest `{report['model']['digest'][:12]}`), {samples} sample{'s' if samples != 1 else ''}."
    )
    if exp.get("overrides"):
        out.append(f"Overrides: {', '.join(f'`--set {o}`' for o in exp['overrides'])}.")
    out.append("")
    for c in report["comparisons"]:
        out += _comparison_md(c, report)
    out += _provenance_md(report)
    return "\n".join(out) + "\n"


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
        return f"builtin {origin['builtin']} ({opts})"
    if "zoo" in origin:
        return f"zoo {origin['zoo']}"
    return f"`{origin.get('path')}`"


def _comparison_md(c: dict[str, Any], report: dict[str, Any]) -> list[str]:
    n_layers = len(c["layers"])
    head = f"## {c['candidate']} vs {c['reference']} — {c['verdict'].upper()}"
    out = [head, ""]
    if c["verdict"] == "fail":
        out.append(f"{c['failing_layers']} of {n_layers} layers fail.")
        out.append("")
        cause, first = root_cause_line(c), first_failing_line(c)
        if cause:
            out.append(f"- **{_upper(cause.split(' — ')[0])}**{_rest(cause)}")
        if first:
            out.append(f"- **{_upper(first.split(' (')[0])}**{_rest(first, ' (')}")
    else:
        out.append(f"All {n_layers} layers within the thresholds.")
    out += [
        "",
        "- " + run_line(c["candidate"], c["candidate_run"], report),
        "- " + run_line(c["reference"], c["reference_run"], report),
        "",
    ]
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
            f"| {layer_name(layer)}{exe} | {layer['op_type']} | {fmt_int(m['deviating'])} | {fmt_int(m['elements'])} | "
            f"{fmt_int(per_sample)} | {fmt_ratio(m['deviation_ratio'])} | {fmt_cos(m['cosine'])} | "
            f"{fmt_num(m['max_abs_error'], 3)} | {fmt_num(m['sqnr_db'], 4)} | {verdict} |"
        )
    out.append("")
    failing = [layer for layer in c["layers"] if layer["failures"]]
    if failing:
        out += ["Why layers fail:", ""]
        # the first ones in network order, and every one whose weights the format cannot hold (actionable)
        shown = failing[:50] + [x for x in failing[50:] if x.get("weight_note")]
        for layer in shown:
            why = "; ".join(layer["failures"])
            if layer.get("weight_note"):
                why += f" — **{layer['weight_note']}**"
            out.append(f"- **{layer_name(layer)}**: {why}")
        if len(shown) < len(failing):
            out.append(f"- … and {len(failing) - len(shown)} more failing layers (see the table and report.json)")
        out.append("")
    out += _not_observable_md(c)
    out += _audit_md(c)
    out += _range_md(c)
    out += _attribution_md(c)
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
        out += [f"Note: {c['attribution_note']}.", ""]
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
            out.append(f"| {layer_name(layer)} | {ratio} | — | — | {sqnr} | — | {note} |")
            continue
        local = a["local"]
        share = a.get("inherited_share")
        verdict = "pass" if a["local_verdict"] == "pass" else "**FAIL**"
        out.append(
            f"| {layer_name(layer)} | {fmt_ratio(m['deviation_ratio'])} | {fmt_ratio(local['deviation_ratio'])} | "
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
        out.append(f"| {layer_name(layer)} | {scale} | {saturated} | {zeroed} | {sqnr_before} | {sqnr_after} |")
    return [*out, ""]


def _not_observable_md(c: dict[str, Any]) -> list[str]:
    if not c["not_observable"]:
        return []
    reasons = c.get("not_observable_reasons") or {}
    if not reasons:
        return [f"Not observable in {c['candidate']}: {', '.join(c['not_observable'])}", ""]
    by_reason: dict[str, list[str]] = {}
    for tensor in c["not_observable"]:
        by_reason.setdefault(reasons.get(tensor, "no value"), []).append(tensor)
    out = [f"Not observable ({len(c['not_observable'])} tensors, not compared):", ""]
    for why, tensors in by_reason.items():
        shown = ", ".join(tensors[:20]) + (f" … and {len(tensors) - 20} more" if len(tensors) > 20 else "")
        out.append(f"- {why}: {shown}")
    return [*out, ""]


def _audit_md(c: dict[str, Any]) -> list[str]:
    """The backend's precision audit of the candidate (TensorRT's engine inspector), flagged layers first."""
    audit = c["candidate_run"].get("audit")
    if not audit:
        return []
    out = [f"### Precision audit of {c['candidate']}", "", f"{audit['summary']} (source: {audit['source']}).", ""]
    flagged = [x for x in audit["layers"] if x.get("flag")]
    if flagged:
        out += [
            "| Layer | Op | Asked | Ran | Engine layer | Tensors (engine) | Flag |",
            "|---|---|---|---|---|---|---|",
        ]
        for x in flagged[:50]:
            out.append(
                f"| {x['node']} | {x['op_type']} | {x['asked']} | {x.get('ran') or '—'} | "
                f"{(x.get('engine_layer') or '—')[:80]} | {x.get('io') or '—'} | {x['flag']} |"
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
            f"| {layer_name(layer)} | {fmt_int(r['below_smallest_subnormal'])} | {fmt_int(r['subnormal'])} | "
            f"{fmt_int(r['overflow'])} | {fmt_int(r['zeros'])} | {fmt_num(r['min_abs_nonzero'], 3)} | "
            f"{fmt_num(r['max_abs'], 4)} |"
        )
    return [*out, ""]


def _provenance_md(report: dict[str, Any]) -> list[str]:
    out = ["## Provenance", ""]
    libs = ", ".join(f"{k} {v}" for k, v in report["libraries"].items())
    out.append(f"- Libraries: {libs}")
    for name, material in report["inputs"].items():
        src = material.get("source") or {k: v for k, v in material.items() if k not in ("shape", "dtype")}
        if "random" in src:
            params = ", ".join(f"{k} {v}" for k, v in src.items() if k != "random")
            text = f"random {src['random']} ({params})"
        else:
            text = ", ".join(f"{k} `{v}`" for k, v in src.items())
        out.append(f"- Input `{name}` {material.get('dtype')} {material.get('shape')}: {text}")
    notes = list(report["experiment"].get("notes", []))
    for c in report["comparisons"]:
        notes += [f"{c['candidate']}: {n}" for n in c["candidate_run"].get("notes", [])]
    out += [f"- Note: {n}" for n in notes]
    execution = report.get("execution")
    if execution:
        cached = [s for s, v in execution["stages"].items() if v["status"] == "cached"]
        ran = [s for s, v in execution["stages"].items() if v["status"] == "ran"]
        out.append(f"- Stages run: {', '.join(ran) or 'none'}; from the cache: {', '.join(cached) or 'none'}")
        out.append(f"- Cache: `{execution.get('cache')}`; written {execution.get('finished')}")
        for sid, stage in execution["stages"].items():
            out += [f"- Warning ({sid}): {w}" for w in stage.get("warnings", [])]
            if stage["status"] in ("failed", "skipped"):
                out.append(f"- Stage {sid} {stage['status']}: {stage.get('error') or stage.get('reason', '')}")
        out += [f"- Warning: {w}" for w in execution.get("warnings", [])]
    return [*out, ""]
