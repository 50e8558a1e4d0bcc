"""The HTML report's charts, drawn with matplotlib and returned as inline SVG text.

matplotlib is imported here only, and this module only when an HTML report is rendered and its charts are
not in the cache (``pipelines.html``), so a cached rerun never pays for it. Figures are made with
``matplotlib.figure.Figure`` (no pyplot: no global state, safe next to stage threads); text stays text
(``svg.fonttype: none``) so the SVG is small and searchable, and ids are salted for reproducible output.
Every chart reads report.json only:

* the metric that decides the verdict (``chartdata.decisive``: the deviation ratio, log, or SQNR) along network
  depth, one line per candidate and a dashed one of its local error (attribution), the per-layer limit as a
  dashed step line, the layers breaking it ringed, each candidate's first failing layer marked, and a native
  tooltip (SVG ``<title>``) on every point; 300+ layers get a wider chart with every layer named, which the
  page scrolls sideways;
* relative-error histograms of the worst layers (from ``metrics.histograms.rel_error``);
* the reference's |values| per layer (min–max and the 1st–99th percentile from ``ref_abs``) against
  the FP16 limits: smallest subnormal 5.96e-8, smallest normal 6.1e-5, largest finite 65504.
"""

from __future__ import annotations

import io
import math
import re
from typing import Any

from layerscope.pipelines.metrics.stats import bin_bounds, bin_counts, with_layout
from layerscope.pipelines.reports import chartdata, rows
from layerscope.runner.jsonio import as_float

FP16_SMALLEST_SUBNORMAL = 5.960464477539063e-08
FP16_SMALLEST_NORMAL = 6.103515625e-05
FP16_MAX = 65504.0
WORST_LAYERS = 6
RANGE_BOTTOM, RANGE_TOP = 1e-12, 1e9
_RC: dict[str, Any] = {
    "svg.fonttype": "none",
    "svg.hashsalt": "layerscope",
    "font.family": ["DejaVu Sans", "sans-serif"],
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


def figures(report: dict[str, Any]) -> dict[str, str]:
    """Chart name -> SVG text (an empty string when the report has nothing to draw for it)."""
    import matplotlib

    with matplotlib.rc_context(_RC):  # type: ignore[arg-type]  # (a dict of known keys; stubs want literals)
        return {
            "deviation": deviation_chart(report),
            "histograms": histogram_chart(report),
            "range": range_chart(report),
        }


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    # Inline SVG in HTML: the XML declaration, DOCTYPE and RDF metadata (with its external URIs) are not needed.
    text = text[text.index("<svg") :]
    text = re.sub(r"\s*<metadata>.*?</metadata>", "", text, flags=re.S)
    return text.strip()


def _label(layer: dict[str, Any]) -> str:
    return str(layer["node"] or layer["tensor"])


def _positions(report: dict[str, Any]) -> tuple[list[str], list[str], dict[str, int]]:
    """Tensors of every comparison in network order: (tensors, labels, tensor -> x)."""
    seen: dict[str, tuple[int, str]] = {}
    for c in report["comparisons"]:
        for layer in c["layers"]:
            seen.setdefault(layer["tensor"], (int(layer["index"]), _label(layer)))
    tensors = sorted(seen, key=lambda t: seen[t][0])
    return tensors, [seen[t][1] for t in tensors], {t: i for i, t in enumerate(tensors)}


def _layer_ticks(ax: Any, labels: list[str], width: float) -> None:
    n = len(labels)
    fit = max(1, int((width - 1.5) / chartdata.LABEL_PITCH))  # labels the width holds, one per pitch
    step = max(1, math.ceil(n / fit))
    ticks = list(range(0, n, step))
    ax.set_xticks(ticks)
    ax.set_xticklabels([labels[i] for i in ticks], rotation=90, fontsize=6.5 if n > 20 else 8)
    ax.set_xlim(-0.5, n - 0.5)
    ax.set_xlabel("layer, in network order" + (f" (every {step}th named)" if step > 1 else ""))


def deviation_chart(report: dict[str, Any], measure: chartdata.Measure | None = None) -> str:
    """The decisive metric along network depth (``measure``; default :func:`chartdata.decisive`): one line per
    candidate and a dashed one of its local error (attribution), the limit as a dashed step line, the layers
    that break it ringed, each candidate's first failing layer marked, a tooltip on every point."""
    from matplotlib.figure import Figure

    measure = measure or chartdata.decisive(report)
    comparisons = report["comparisons"]
    tensors, labels, pos = _positions(report)
    if not tensors:
        return ""
    values = [as_float(x["metrics"][measure.metric]) for c in comparisons for x in c["layers"]]
    values += [v for c in comparisons for x in c["layers"] if (v := chartdata.local_value(x, measure.metric))]
    limits = [as_float((x.get("limits") or {}).get(measure.limit_key)) for x in comparisons[0]["layers"]]
    place = _placer(measure, values + [v for v in limits if not math.isnan(v)])
    width = chartdata.chart_width(len(tensors))
    fig = Figure(figsize=(width, 4.6), layout="constrained")
    ax = fig.add_subplot()
    tips: list[tuple[str, list[str]]] = []
    for k, c in enumerate(comparisons):
        xs = [pos[x["tensor"]] for x in c["layers"]]
        ys = [place(x["metrics"][measure.metric]) for x in c["layers"]]
        marker = "o" if len(xs) <= 80 else None
        (line,) = ax.plot(xs, ys, marker=marker, ms=3, lw=1.4, label=f"{c['candidate']}", clip_on=False)
        local = [
            (pos[x["tensor"]], v) for x in c["layers"] if (v := chartdata.local_value(x, measure.metric)) is not None
        ]
        if local:
            ax.plot(
                [p for p, _ in local],
                [place(v) for _, v in local],
                ls=(0, (3, 2)),
                lw=1.0,
                marker="." if len(local) <= 80 else None,
                ms=3,
                color=line.get_color(),
                alpha=0.75,
                label=f"{c['candidate']}: local error (layer alone)",
                clip_on=False,
            )
        # an invisible marker over every point: the tooltip's hover target (a <title> each, added below)
        hover = ax.scatter(xs, ys, s=70, facecolors=(1, 1, 1, 0.004), edgecolors="none", zorder=6, clip_on=False)
        hover.set_gid(f"tips-{k}")
        tips.append((f"tips-{k}", [chartdata.tooltip(c["candidate"], x) for x in c["layers"]]))
        failing = [x for x in c["layers"] if rows.breaks(x, measure.metric)]
        ax.scatter(
            [pos[x["tensor"]] for x in failing],
            [place(x["metrics"][measure.metric]) for x in failing],
            s=40,
            facecolors="none",
            edgecolors="#c0392b",
            linewidths=1.2,
            zorder=4,
            clip_on=False,
            label="breaks the limit" if failing and k == 0 else None,
        )
        first = c.get("first_failing_tensor")
        if first in pos:
            layer = next(x for x in c["layers"] if x["tensor"] == first)
            y = place(layer["metrics"][measure.metric])
            ax.scatter([pos[first]], [y], s=90, marker="X", color=line.get_color(), edgecolor="black", zorder=5)
            ax.annotate(
                f"first failing: {_label(layer)}",
                (pos[first], y),
                xytext=(6, 10),
                textcoords="offset points",
                fontsize=8,
                color=line.get_color(),
            )
    if any(not math.isnan(v) for v in limits):
        lim_x = [pos[x["tensor"]] for x in comparisons[0]["layers"]]
        kind = "min" if measure.higher_is_better else "max"
        ax.step(
            lim_x,
            limits,
            where="mid",
            ls="--",
            lw=1.2,
            color="#c0392b",
            label=f"limit ({kind} {measure.axis.split(' (')[0]})",
        )
    _axis(ax, measure, values, place)
    _layer_ticks(ax, labels, width)
    ax.legend(
        loc="lower left", bbox_to_anchor=(0, 1), ncols=min(6, 2 * len(comparisons) + 2), fontsize=8, frameon=False
    )
    svg = _svg(fig)
    for gid, titles in tips:
        svg = chartdata.add_titles(svg, gid, titles)
    return svg


def _placer(measure: chartdata.Measure, values: list[float]) -> Any:
    """value -> y: log charts put 0 on the bottom edge; SQNR puts +inf (identical) on the top edge and -inf on
    the bottom; an undefined value is NaN (not drawn)."""
    if measure.log:
        positive = [v for v in values if v > 0 and math.isfinite(v)]
        floor = min(positive) / 4 if positive else 1e-6
        return lambda v: max(as_float(v), floor) if not math.isnan(as_float(v)) else math.nan
    low, high = chartdata.clip_sqnr(values)
    return lambda v: min(max(as_float(v), low), high)


def _axis(ax: Any, measure: chartdata.Measure, values: list[float], place: Any) -> None:
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_ylabel(measure.axis)
    ax.grid(True, which="major", axis="y", alpha=0.3)
    if not measure.log:
        ax.set_ylim(*chartdata.clip_sqnr(values))
        if any(math.isinf(v) for v in values):
            ax.text(0.005, 0.01, "identical (∞ dB) on the top edge", transform=ax.transAxes, fontsize=7, color="#666")
        return
    ax.set_yscale("log")
    if any(v <= 0 for v in values):
        ax.set_ylim(bottom=place(0.0))
        ax.text(0.005, 0.01, "0 is drawn on the bottom edge", transform=ax.transAxes, fontsize=7, color="#666")
    percent = FuncFormatter(lambda v, _: f"{v * 100:.3g}%")
    ax.yaxis.set_major_formatter(percent)
    low, high = ax.get_ylim()
    if math.log10(high / low) < 2:  # few decades: label 2x, 3x, 5x too, in the same format as the decades
        ax.yaxis.set_minor_locator(LogLocator(subs=(2, 3, 5)))
        ax.yaxis.set_minor_formatter(percent)
    else:
        ax.yaxis.set_minor_formatter(NullFormatter())


def _worst(report: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    pairs = [(c, x) for c in report["comparisons"] for x in c["layers"] if x["metrics"].get("histograms")]
    pairs.sort(key=lambda p: -as_float(p[1]["metrics"]["deviation_ratio"]))
    out, seen = [], set()
    for c, x in pairs:
        if x["tensor"] not in seen and as_float(x["metrics"]["deviation_ratio"]) > 0:
            seen.add(x["tensor"])
            out.append((c, x))
    return out[:WORST_LAYERS]


def histogram_chart(report: dict[str, Any]) -> str:
    from matplotlib.figure import Figure
    from matplotlib.ticker import LogLocator, NullLocator

    worst = _worst(report)
    if not worst:
        return ""
    cols = min(3, len(worst))
    rows = math.ceil(len(worst) / cols)
    fig = Figure(figsize=(10, 2.7 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, (c, layer) in zip(axes.flat, worst, strict=False):
        m = layer["metrics"]
        h = _hist(m, "rel_error")
        counts = h["counts"]
        n = max(1, int(m["elements"]))
        if counts:
            edges, values = _display_bins(counts, h)
            ax.stairs([v / n for v in values], edges, fill=True, alpha=0.6, color="#2e86c1")
            ax.set_xscale("log")
            ax.set_yscale("log")
            for axis in (ax.xaxis, ax.yaxis):  # decades only: minor ticks over ~20 decades took 2/3 of the page's time
                axis.set_major_locator(LogLocator(numticks=6))
                axis.set_minor_locator(NullLocator())
        t = float(layer["rel_error_threshold"])
        ax.axvline(t, ls="--", color="#c0392b", lw=1)
        ax.axvspan(t, ax.get_xlim()[1] if counts else t * 10, color="#c0392b", alpha=0.06)
        ratio = as_float(m["deviation_ratio"])
        name = _label(layer)
        name = name if len(name) <= 40 else name[:19] + "…" + name[-20:]
        ax.set_title(f"{name} ({c['candidate']})\n{ratio:.3%} deviate (> {t:g})", fontsize=8.5)
        extras = [f"exact: {int(h.get('zero', 0)) / n:.1%}"]
        if h.get("inf"):
            extras.append(f"infinite: {int(h['inf']):,}")
        ax.text(0.02, 0.97, "\n".join(extras), transform=ax.transAxes, va="top", fontsize=7, color="#444")
        ax.set_xlabel("relative error |x − ref| / |ref|", fontsize=7.5)
        ax.set_ylabel("fraction of elements", fontsize=7.5)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(worst) :]:
        ax.set_visible(False)
    return _svg(fig)


def _hist(metrics: dict[str, Any], name: str) -> dict[str, Any]:
    """A stored histogram by name, its counts as {bin index: count} whichever form the report wrote them in
    (runs from a start bin since schema version 2, a {"bin": count} object before; reports before 0.1 called
    the histograms rel_error_log10 / ref_abs_log10), with its layout's keys (version 2 leaves them out)."""
    hists = metrics.get("histograms", {})
    hist = with_layout(hists.get(name) or hists.get(f"{name}_log10") or {}, name)
    hist["counts"] = bin_counts(hist)
    hist.pop("start", None)
    return hist


def _display_bins(counts: dict[int, int], hist: dict[str, Any], per_decade: int = 10) -> tuple[list[float], list[int]]:
    """(edges, counts) at about ``per_decade`` log-spaced bins per decade over the occupied range of a stored
    histogram: each stored bin's count goes to the display bin holding its lower edge."""
    bounds = {i: bin_bounds(hist, i) for i in counts}
    positive = [b for b in bounds.values() if b[0] > 0] or [(1e-12, 1e-12)]
    lo = math.floor(math.log10(min(b[0] for b in positive)) * per_decade)
    hi = math.ceil(math.log10(max(b[1] for b in bounds.values())) * per_decade)
    edges = [10 ** (k / per_decade) for k in range(lo, max(hi, lo + 1) + 1)]
    values = [0] * (len(edges) - 1)
    for i, v in counts.items():
        start = max(bounds[i][0], edges[0])
        j = min(len(values) - 1, max(0, math.floor(math.log10(start) * per_decade) - lo))
        values[j] += v
    return edges, values


def _percentiles(hist: dict[str, Any], qs: tuple[float, ...]) -> list[float] | None:
    counts = sorted(hist["counts"].items())
    total = sum(v for _, v in counts)
    if not total:
        return None
    out = []
    for q in qs:
        rank, seen = q * total, 0
        for i, v in counts:
            seen += v
            if seen >= rank:
                low, high = bin_bounds(hist, i)
                out.append(high if q >= 0.5 else max(low, 1e-45))  # the bin's outer edge
                break
    return out


def range_chart(report: dict[str, Any]) -> str:
    from matplotlib.figure import Figure

    if not report["comparisons"]:
        return ""
    layers = report["comparisons"][0]["layers"]  # the reference's values: the same in every comparison
    _, labels, pos = _positions(report)
    if not layers:
        return ""
    width = chartdata.chart_width(len(labels))
    fig = Figure(figsize=(width, 4.6), layout="constrained")
    ax = fig.add_subplot()
    lows, highs = [FP16_SMALLEST_SUBNORMAL / 10], [FP16_MAX * 10]
    for x in layers:
        r = x["metrics"]["range"]
        mn, mx = r.get("min_abs_nonzero"), as_float(r["max_abs"])
        if mn is None or not mx > 0:
            continue
        mn = as_float(mn)
        colour = "#c0392b" if mn < FP16_SMALLEST_SUBNORMAL or mx > FP16_MAX else "#e67e22"
        if mn >= FP16_SMALLEST_NORMAL and mx <= FP16_MAX:
            colour = "#2e86c1"
        i = pos[x["tensor"]]
        ax.vlines(i, mn, mx, color=colour, lw=1, alpha=0.7)
        pct = _percentiles(_hist(x["metrics"], "ref_abs"), (0.01, 0.99))
        if pct:
            ax.vlines(i, pct[0], pct[1], color=colour, lw=5 if len(layers) <= 80 else 2.5)
        lows.append(mn)
        highs.append(mx)
    # Far below the smallest subnormal everything flushes to 0 alike, far above the max everything overflows:
    # clip there so one extreme layer does not squash the others; its line runs off the edge.
    bottom, top = max(min(lows) / 3, RANGE_BOTTOM), min(max(highs) * 3, RANGE_TOP)
    if min(lows) < bottom or max(highs) > top:
        ax.text(0.005, 0.01, "lines running off an edge continue beyond it", transform=ax.transAxes, fontsize=7)
    ax.axhspan(bottom, FP16_SMALLEST_SUBNORMAL, color="#c0392b", alpha=0.07)
    ax.axhspan(FP16_SMALLEST_SUBNORMAL, FP16_SMALLEST_NORMAL, color="#e67e22", alpha=0.07)
    ax.axhspan(FP16_MAX, top, color="#c0392b", alpha=0.07)
    for y, text in (
        (FP16_SMALLEST_SUBNORMAL, "fp16 smallest subnormal 5.96e-8"),
        (FP16_SMALLEST_NORMAL, "fp16 smallest normal 6.1e-5"),
        (FP16_MAX, "fp16 max 65504"),
    ):
        ax.axhline(y, color="#7f8c8d", lw=0.8, ls="--")
        ax.text(1.0, y, f" {text}", transform=ax.get_yaxis_transform(), va="center", fontsize=7.5, color="#555")
    ax.set_yscale("log")
    ax.set_ylim(bottom, top)
    ax.set_ylabel(f"|value| of the reference ({report.get('reference', 'fp32')}), log scale")
    ax.grid(True, which="major", axis="y", alpha=0.25)
    _layer_ticks(ax, labels, width)
    return _svg(fig)
