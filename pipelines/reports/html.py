"""report.html: one self-contained file (no network, no external assets) rendered from report.json.

Verdict summary, the deviation chart, the seed-shaped table per comparison (sortable by a few lines of
inline JavaScript), histograms of the worst layers, the reference's range against the FP16 limits, then the
config and provenance. The charts (``pipelines.plots``, matplotlib) are the slow part; they are stored in the
artifact cache under the digest of the report's content and the chart code, so a cached rerun whose report
did not change assembles the page from cached SVG without importing matplotlib. The rest is string
formatting and costs milliseconds.
"""

from __future__ import annotations

import html
import json
from typing import TYPE_CHECKING, Any

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
    threshold_label,
)
from layerscope.runner.jsonio import as_float

if TYPE_CHECKING:
    from layerscope.runner.cache import Cache

FIGURES_FILE = "figures.json"


def render_html(report: dict[str, Any], cache: Cache | None = None, content_key: str | None = None) -> str:
    """The page. With ``cache``, charts come from (or go to) the cache under ``content_key`` (the digest of the
    report without its volatile ``execution`` part; computed when not given)."""
    return assemble(report, cached_figures(report, cache, content_key) if cache is not None else _draw(report))


def _draw(report: dict[str, Any]) -> dict[str, str]:
    from layerscope.pipelines.reports import plots

    return plots.figures(report)


def figures_key(report: dict[str, Any], content_key: str | None) -> str:
    from importlib.metadata import PackageNotFoundError, version

    from layerscope.runner.codeversion import code_version
    from layerscope.runner.hashing import digest

    if content_key is None:
        content_key = digest({k: v for k, v in report.items() if k != "execution"})
    try:
        mpl = version("matplotlib")
    except PackageNotFoundError:
        mpl = "missing"
    code = code_version("layerscope.pipelines.reports.plots", "layerscope.pipelines.metrics.stats")  # what draws
    return digest({"report": content_key, "plots": code, "matplotlib": mpl})


def cached_figures(report: dict[str, Any], cache: Cache, content_key: str | None) -> dict[str, str]:
    key = figures_key(report, content_key)
    found = cache.lookup("figures", key)
    if found.entry is None:
        with cache.lock(key):
            found = cache.lookup("figures", key)
            if found.entry is None:
                drawn = _draw(report)
                with cache.staging("figures", key) as tmp:
                    (tmp / FIGURES_FILE).write_text(json.dumps(drawn), encoding="utf-8")
                    cache.publish("figures", key, tmp, {"stage": "html charts", "material": {"report": content_key}})
                return drawn
    assert found.entry is not None
    figs: dict[str, str] = json.loads(found.entry.file(FIGURES_FILE).read_text(encoding="utf-8"))
    return figs


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1280px;
padding:0 20px 40px;color:#1c2833}
h1{font-size:22px;margin:20px 0 6px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #d5d8dc}
h3{font-size:15px;margin:18px 0 6px}.muted{color:#5d6d7e}code,pre{font:12px/1.4 ui-monospace,Menlo,Consolas,monospace}
pre{background:#f4f6f7;padding:10px;overflow:auto;border-radius:4px}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-weight:600;font-size:12px;color:#fff}
.pass{background:#239b56}.fail{background:#c0392b}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:10px 0}
.card{border:1px solid #d5d8dc;border-radius:6px;padding:10px 14px;min-width:260px}
.card b{font-size:15px}figure{margin:8px 0}figure svg{width:100%;height:auto}
.chart.wide{overflow-x:auto}.chart.wide svg{width:auto;max-width:none}
figcaption{color:#5d6d7e;font-size:12px}
table{border-collapse:collapse;font-size:12.5px;margin:6px 0}
th,td{padding:3px 7px;border-bottom:1px solid #eaecee;text-align:left;white-space:nowrap}
th{white-space:normal;vertical-align:bottom}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
table.sortable th{cursor:pointer;user-select:none;background:#f4f6f7;position:sticky;top:0}
table.sortable th:after{content:" \\2195";color:#aab7b8}
table.sortable th.asc:after{content:" \\2191";color:#1c2833}
table.sortable th.desc:after{content:" \\2193";color:#1c2833}
tr.failrow td{background:#fdedec}.scroll{max-height:640px;overflow:auto;border:1px solid #eaecee}
dd code+code{margin-left:10px}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 14px;margin:0}dt{color:#5d6d7e}dd{margin:0}
"""

# Sort a table by the clicked column: numeric cells carry data-v (the raw number), others sort as text.
SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (t) {
  t.querySelectorAll("th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var asc = !th.classList.contains("asc");
      t.querySelectorAll("th").forEach(function (h) { h.classList.remove("asc", "desc"); });
      th.classList.add(asc ? "asc" : "desc");
      var body = t.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[col], y = b.cells[col];
        var vx = x.dataset.v !== undefined ? parseFloat(x.dataset.v) : x.textContent;
        var vy = y.dataset.v !== undefined ? parseFloat(y.dataset.v) : y.textContent;
        var r = typeof vx === "number" ? (vx - vy) : String(vx).localeCompare(String(vy));
        if (isNaN(r)) { r = isNaN(vx) ? 1 : -1; }
        return asc ? r : -r;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""


def _num_cell(text: str, value: Any) -> str:
    v = as_float(value)
    raw = "NaN" if v != v else ("Infinity" if v == float("inf") else "-Infinity" if v == float("-inf") else repr(v))
    return f'<td class="n" data-v="{raw}">{_e(text)}</td>'


def assemble(report: dict[str, Any], figures: dict[str, str]) -> str:
    exp = report["experiment"]
    verdict = report["verdict"]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>layerscope: {_e(exp['name'])} — {verdict.upper()}</title>",
        f"<style>{STYLE}</style></head><body>",
        f'<h1>layerscope report: {_e(exp["name"])} <span class="badge {verdict}">{verdict.upper()}</span></h1>',
    ]
    if exp.get("description"):
        parts.append(f'<p class="muted">{_e(exp["description"].strip())}</p>')
    parts.append(_summary(report))
    if figures.get("deviation"):
        parts.append(_layer_chart(report, figures["deviation"]))
    for c in report["comparisons"]:
        parts.append(_task(c))
        parts.append(_table(c, report))
    if figures.get("histograms"):
        parts += [
            '<h2 id="histograms">Relative-error histograms of the worst layers</h2>',
            f'<figure class="chart" id="chart-histograms">{figures["histograms"]}<figcaption>Fraction of elements per '
            "relative-error bin (log–log); dashed: the threshold, right of it the elements that deviate. Exact "
            "elements (error 0) are not drawn; their share is written in each panel.</figcaption></figure>",
        ]
    if figures.get("range"):
        parts += [
            '<h2 id="range">Range of the reference against FP16</h2>',
            f'<figure class="{_chart_class(report)}" id="chart-range">{figures["range"]}'
            "<figcaption>Per layer, the reference's "
            "nonzero |values|: thin line min–max, thick bar 1st–99th percentile. Below 5.96e-8 values flush to 0, "
            "below 6.1e-5 they are subnormal (fewer bits), above 65504 they overflow. Red: the layer has values "
            "outside FP16's range; orange: subnormal values.</figcaption></figure>",
        ]
    parts += [_config(report), _provenance(report), f"<script>{SCRIPT}</script>", "</body></html>"]
    return "\n".join(parts) + "\n"


def _chart_class(report: dict[str, Any]) -> str:
    """A chart of many layers is wider than the page (every layer named): it scrolls sideways, unshrunk."""
    from layerscope.pipelines.reports.chartdata import BASE_WIDTH, chart_width

    n = len({x["tensor"] for c in report["comparisons"] for x in c["layers"]})
    return "chart wide" if chart_width(n) > BASE_WIDTH else "chart"


def _layer_chart(report: dict[str, Any], svg: str) -> str:
    from layerscope.pipelines.reports.chartdata import decisive

    m = decisive(report)
    if m.log:
        what = "Share of elements whose relative error exceeds the threshold, per layer in network order (log scale)"
    else:
        what = "Signal-to-quantization-noise ratio of each layer's output against the reference, in dB"
    local = any((x.get("attribution") or {}).get("status") == "ok" for c in report["comparisons"] for x in c["layers"])
    return (
        f'<h2 id="depth">{m.title} along the network</h2>'
        f'<figure class="{_chart_class(report)}" id="chart-deviation">{svg}<figcaption>{what}; it decides the '
        "verdict here. Dashed red: the limit; red rings: layers breaking it; X: the first failing layer of each "
        "candidate"
        + (
            "; thin dashed lines: each layer's local error (alone on the reference's inputs) — where a layer's "
            "error is far above its local error, the error is inherited"
            if local
            else ""
        )
        + ". Hover over a point for the layer's values.</figcaption></figure>"
    )


def _summary(report: dict[str, Any]) -> str:
    cards = []
    for c in report["comparisons"]:
        n = len(c["layers"])
        if c["verdict"] == "fail":
            detail = f"{c['failing_layers']} of {n} layers fail"
            for line in (root_cause_line(c), first_failing_line(c)):
                if line:
                    lead, sep, rest = line.partition(": ")
                    detail += f"<br>{_e(lead)}{sep}<b>{_e(rest)}</b>"
        else:
            detail = f"all {n} layers within the thresholds"
        task = c.get("task")
        if task:
            detail += f'<br>task agreement <span class="badge {task["verdict"]}">{task["verdict"].upper()}</span>'
        worst = c.get("worst_layer")
        if worst:
            detail += f"<br>worst: {_e(worst)} ({fmt_ratio(c.get('worst_deviation_ratio'))} deviate)"
        run = c["candidate_run"]
        cards.append(
            f'<div class="card"><b>{_e(c["candidate"])}</b> vs {_e(c["reference"])} '
            f'<span class="badge {c["verdict"]}">{c["verdict"].upper()}</span><br>{detail}<br>'
            f'<span class="muted">{_e(run.get("backend"))} {_e(run.get("precision"))}, '
            f"{_e(run.get('execution'))}</span></div>"
        )
    return f'<div class="cards" id="summary">{"".join(cards)}</div>'


def _task(c: dict[str, Any]) -> str:
    """The task-level agreement of a comparison (top-1 / top-k per output, user scores) as a small table."""
    task = c.get("task")
    if not task:
        return ""
    rows = []
    for output, a in task.get("classification", {}).items():
        rows.append(
            (output, "top-1 agreement", fmt_share(a["top1_agreement"]), f"{a['rows_disagreeing']} rows changed")
        )
        rows.append((output, f"top-{a['k']} overlap", fmt_share(a["topk_overlap"]), f"of {a.get('classes')} classes"))
    for name, sc in task.get("scores", {}).items():
        rows.append((task["func"], f"{name} (mean)", fmt_num(sc["mean"], 4), f"min {fmt_num(sc['min'], 4)}"))
    if "scores_error" in task:
        rows.append((task["func"], "score", "—", f"not computed: {task['scores_error']}"))
    body = "".join(
        f"<tr><td>{_e(a)}</td><td>{_e(b)}</td><td class=n>{_e(v)}</td><td>{_e(d)}</td></tr>" for a, b, v, d in rows
    )
    failures = "".join(f"<li>{_e(f)}</li>" for f in task["failures"])
    return (
        f'<h3 id="task-{_e(c["candidate"])}">{_e(c["candidate"])}: task-level agreement '
        f'<span class="badge {task["verdict"]}">{task["verdict"].upper()}</span></h3>'
        f"<table><thead><tr><th>Output</th><th>Measure</th><th>Value</th><th>Detail</th></tr></thead>"
        f"<tbody>{body}</tbody></table>" + (f"<ul>{failures}</ul>" if failures else "")
    )


def _table(c: dict[str, Any], report: dict[str, Any]) -> str:
    t = threshold_label(c)
    heads = [
        ("Layer", ""),
        ("Op", ""),
        (f"Count with rel err &gt; {_e(t)}", "n"),
        ("Total", "n"),
        ("Per sample", "n"),
        ("Deviation ratio", "n"),
        ("Cosine", "n"),
        ("Max abs err", "n"),
        ("SQNR dB", "n"),
        ("Local SQNR dB", "n"),
        ("Inherited", "n"),
        ("Verdict", ""),
    ]
    head = "".join(f'<th class="{cls}">{text}</th>' for text, cls in heads)
    rows = []
    for layer in c["layers"]:
        m = layer["metrics"]
        per_sample = m["elements"] // max(1, c["samples"])
        fail = layer["verdict"] == "fail"
        why = "; ".join(layer["failures"]) + (f" — {layer['weight_note']}" if layer.get("weight_note") else "")
        exe = execution_label(layer, c)
        rows.append(
            f"<tr{' class=failrow' if fail else ''}>"
            f'<td data-v="{int(layer["index"])}">{_e(layer_name(layer) + exe)}</td><td>{_e(layer["op_type"])}</td>'
            + _num_cell(fmt_int(m["deviating"]), m["deviating"])
            + _num_cell(fmt_int(m["elements"]), m["elements"])
            + _num_cell(fmt_int(per_sample), per_sample)
            + _num_cell(fmt_ratio(m["deviation_ratio"]), m["deviation_ratio"])
            + _num_cell(fmt_cos(m["cosine"]), m["cosine"])
            + _num_cell(fmt_num(m["max_abs_error"], 3), m["max_abs_error"])
            + _num_cell(fmt_num(m["sqnr_db"], 4), m["sqnr_db"])
            + _attribution_cells(layer.get("attribution"))
            + f'<td title="{_e(why)}">{"<b>FAIL</b>" if fail else "pass"}</td></tr>'
        )
    cand = _e(c["candidate"])
    return (
        f'<h2 id="table-{cand}">{cand} vs {_e(c["reference"])} — {c["verdict"].upper()}</h2>'
        f'<p class="muted">{len(c["layers"])} layers in network order; click a column to sort; hover a verdict '
        "for the reasons.</p>"
        f'<div class="scroll"><table class="sortable layers" data-candidate="{cand}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _attribution_cells(a: dict[str, Any] | None) -> str:
    """Local SQNR (the layer alone on the reference's inputs) and the inherited share of its error."""
    if not a or a.get("status") != "ok":
        why = (a or {}).get("why", (a or {}).get("status", "no attribution"))
        return f'<td class="n" data-v="" title="{_e(why)}">—</td><td class="n" data-v="">—</td>'
    share = a.get("inherited_share")
    local = a["local"]["sqnr_db"]
    return _num_cell(fmt_num(local, 4), local) + _num_cell("—" if share is None else f"{share:.0%}", share)


def _dl(items: list[tuple[str, str]]) -> str:
    return "<dl>" + "".join(f"<dt>{_e(k)}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"


def _config(report: dict[str, Any]) -> str:
    import yaml

    exp = report["experiment"]
    out = ['<h2 id="config">Config</h2>']
    items = [
        ("config", f"<code>{_e(exp.get('config', '?'))}</code>"),
        ("digest", f"<code>{_e(exp['config_digest'])}</code>"),
    ]
    if exp.get("overrides"):
        items.append(("--set", " ".join(f"<code>{_e(o)}</code>" for o in exp["overrides"])))
    out.append(_dl(items))
    if "config_data" in exp:
        text = yaml.safe_dump(exp["config_data"], sort_keys=False, default_flow_style=None, width=110)
        out.append(f"<pre>{_e(text)}</pre>")
    return "\n".join(out)


def _provenance(report: dict[str, Any]) -> str:
    model = report["model"]
    items = [
        ("model", f"<code>{_e(json.dumps(model['origin']))}</code>"),
        ("model digest", f"<code>{_e(model['digest'])}</code>"),
        ("samples", _e(report["samples"])),
    ]
    for name, material in report["inputs"].items():
        items.append((f"input '{name}'", f"<code>{_e(json.dumps(material))}</code>"))
    seen: set[str] = set()
    for c in report["comparisons"]:
        for name, run in ((c["reference"], c["reference_run"]), (c["candidate"], c["candidate_run"])):
            if name in seen:
                continue
            seen.add(name)
            pinned = report["runs"].get(name, {}).get("pinned") or []
            text = f"{run.get('backend')} {run.get('precision')}, executed {run.get('execution')} — {run.get('device')}"
            if pinned:
                text += f"; pinned to FP32: {', '.join(pinned)}"
            items.append((f"run {name}", _e(text)))
    items.append(("libraries", _e(", ".join(f"{k} {v}" for k, v in report["libraries"].items()))))
    notes = list(report["experiment"].get("notes", []))
    for c in report["comparisons"]:
        notes += [f"{c['candidate']}: {n}" for n in c["candidate_run"].get("notes", [])]
    items += [("note", _e(n)) for n in notes]
    execution = report.get("execution")
    if execution:
        ran = [s for s, v in execution["stages"].items() if v["status"] == "ran"]
        cached = [s for s, v in execution["stages"].items() if v["status"] == "cached"]
        items.append(("stages run", _e(", ".join(ran) or "none")))
        items.append(("from the cache", _e(", ".join(cached) or "none")))
        items.append(("written", _e(execution.get("finished", ""))))
    return '<h2 id="provenance">Provenance</h2>\n' + _dl(items)
