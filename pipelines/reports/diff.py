"""What changed between two reports: config, per-comparison verdicts and metrics, provenance, regressions.

Pure functions over report.json data (``old`` is side A, ``new`` side B); rendering is in ``diff_render``.
Every metric is compared through an *error quantity* that grows when the layer gets worse: the deviation
ratio, 1 − cosine, the max abs error, and the noise-to-signal power 10^(−SQNR/10). A layer got "×k worse"
when its largest error quantity grew k-fold; a metric *regressed* when its error quantity grew by more than
the tolerance (relative: 0.1 = 10%) and by more than a small absolute floor below which a change is noise
(see ``FLOORS``). The diff is cheap (milliseconds), so it is computed on demand rather than cached as a stage.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from layerscope.pipelines.reports.format import fmt_cos, fmt_num, fmt_ratio
from layerscope.runner.errors import UsageError
from layerscope.runner.jsonio import as_float

METRICS = ("deviation_ratio", "cosine", "max_abs_error", "sqnr_db")
METRIC_LABELS = {
    "deviation_ratio": "Deviation ratio",
    "cosine": "Cosine",
    "max_abs_error": "Max abs err",
    "sqnr_db": "SQNR dB",
}
# Changes of an error quantity at or below these are noise, whatever the tolerance, and the change factor is
# measured from the floor up (so 0.0000% -> 0.0185% deviating is "x1.19", not "x186 worse"): 0.1% of a
# tensor's elements deviating; 1 - cosine of 1e-7 (a change in cosine's 8th decimal is rounding, not a
# regression); a noise power 80 dB below the signal.
FLOORS = {"deviation_ratio": 1e-3, "cosine": 1e-7, "max_abs_error": 0.0, "sqnr_db": 1e-8}
DEFAULT_TOLERANCE = 0.1
_TINY = 1e-30


@dataclass(frozen=True)
class Tolerance:
    """How much (relative) each metric's error quantity may grow before it counts as a regression."""

    default: float = DEFAULT_TOLERANCE
    per_metric: Mapping[str, float] = field(default_factory=dict)

    def of(self, metric: str) -> float:
        return self.per_metric.get(metric, self.default)

    def to_json(self) -> dict[str, float]:
        return {m: self.of(m) for m in METRICS}

    @classmethod
    def parse(cls, items: Iterable[str]) -> Tolerance:
        """``0.05`` (every metric) and ``cosine=0.5`` (one metric) items, as given to ``--tolerance``."""
        default = DEFAULT_TOLERANCE
        per: dict[str, float] = {}
        for item in items:
            name, _, value = item.rpartition("=")
            try:
                number = float(value)
            except ValueError:
                raise UsageError(f"--tolerance {item}: expected a number like 0.1 or METRIC=NUMBER") from None
            if not (math.isfinite(number) and number >= 0):
                raise UsageError(f"--tolerance {item}: must be a finite number, 0 or more")
            if not name:
                default = number
            elif name in METRICS:
                per[name] = number
            else:
                raise UsageError(f"--tolerance {item}: unknown metric {name!r}; metrics: {', '.join(METRICS)}")
        return cls(default, per)


def error_quantity(metric: str, value: Any) -> float:
    """The metric as an error that grows when the layer gets worse; NaN when the metric is undefined (null)."""
    v = as_float(value)
    if math.isnan(v):
        return math.nan  # (max(0.0, 1 - nan) would be 0.0: an undefined cosine read as a perfect one)
    if metric == "cosine":
        return max(0.0, 1.0 - v)
    if metric == "sqnr_db":
        return 0.0 if v == math.inf else math.inf if v == -math.inf else 10.0 ** (-v / 10.0)
    return v


def _same(a: Any, b: Any) -> bool:
    x, y = as_float(a), as_float(b)
    return x == y or (math.isnan(x) and math.isnan(y))


def metric_change(metric: str, old: Any, new: Any, tolerance: float) -> dict[str, Any]:
    e_old, e_new = error_quantity(metric, old), error_quantity(metric, new)
    floor = FLOORS[metric]
    if math.isnan(e_old) or math.isnan(e_new):
        factor, worse = math.nan, math.isnan(e_new) and not math.isnan(e_old)
    elif e_old == e_new:
        factor, worse = 1.0, False
    else:
        factor = (e_new + floor + _TINY) / (e_old + floor + _TINY) if math.isfinite(e_new) else math.inf
        growth = e_new - e_old if math.isfinite(e_new) or not math.isfinite(e_old) else math.inf
        worse = growth > max(tolerance * e_old, floor)
    return {"old": old, "new": new, "factor": factor, "regressed": bool(worse)}


# -- config ---------------------------------------------------------------------------------------------
def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Key paths like ``runs.fp16.options.execution`` -> value (lists stay whole)."""
    if isinstance(value, Mapping) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def tree_changes(a: Any, b: Any, prefix: str = "") -> list[dict[str, Any]]:
    """The differences of two config trees at the deepest key path where they differ, so an added section
    reads as one change (``runs.fp16.overrides: (not set) → [{layers: [up1], precision: fp32}]``). Lists of
    equal length are compared item by item (``overrides[0].layers``); otherwise a list is one value."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        out = []
        for k in sorted(a.keys() | b.keys(), key=str):
            path = f"{prefix}.{k}" if prefix else str(k)
            if k not in a:
                out.append({"key": path, "new": b[k]})
            elif k not in b:
                out.append({"key": path, "old": a[k]})
            else:
                out += tree_changes(a[k], b[k], path)
        return out
    nested = isinstance(a, list) and isinstance(b, list) and any(isinstance(v, (Mapping, list)) for v in a + b)
    if nested and len(a) == len(b) and a != b:
        return [c for i, (x, y) in enumerate(zip(a, b, strict=True)) for c in tree_changes(x, y, f"{prefix}[{i}]")]
    return [] if a == b and type(a) is type(b) else [{"key": prefix, "old": a, "new": b}]


def _changes(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = []
    for key in sorted(a.keys() | b.keys()):
        if key in a and key in b and a[key] == b[key]:
            continue
        change: dict[str, Any] = {"key": key}
        if key in a:
            change["old"] = a[key]
        if key in b:
            change["new"] = b[key]
        out.append(change)
    return out


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """(changes, notes): the config's key paths, the --set overrides, and the digests of model and inputs."""
    notes = []
    ea, eb = old["experiment"], new["experiment"]
    if "config_data" in ea and "config_data" in eb:
        changes = tree_changes(ea["config_data"], eb["config_data"])
    else:
        which = " and ".join(s for s, e in (("A", ea), ("B", eb)) if "config_data" not in e)
        notes.append(f"report {which} does not record its config data: only the config digests are compared")
        changes = _changes({"config digest": ea["config_digest"]}, {"config digest": eb["config_digest"]})
    changes += _changes({"--set": ea.get("overrides", [])}, {"--set": eb.get("overrides", [])})
    changes += _changes({"model.digest": old["model"]["digest"]}, {"model.digest": new["model"]["digest"]})
    changes += _changes(_input_digests(old), _input_digests(new))
    return changes, notes


def _input_digests(report: dict[str, Any]) -> dict[str, Any]:
    # the parts of an input's material the config does not show: the file's bytes, the generator's version
    out = {}
    for name, material in report.get("inputs", {}).items():
        for k in ("file_sha256", "generator", "script_sha256"):
            if k in material:
                out[f"inputs.{name}.{k}"] = material[k]
        for image in material.get("images", []):  # one line per image whose bytes changed
            out[f"inputs.{name}.images.{image['name']}"] = image["sha256"]
    return out


# -- comparisons ----------------------------------------------------------------------------------------
def _pair_comparisons(old: dict[str, Any], new: dict[str, Any]) -> tuple[list[tuple[Any, Any]], list[str], list[str]]:
    a = {c["candidate"]: c for c in old["comparisons"]}
    b = {c["candidate"]: c for c in new["comparisons"]}
    pairs = [(a[n], b[n]) for n in a if n in b]
    only_a, only_b = [n for n in a if n not in b], [n for n in b if n not in a]
    if len(only_a) == 1 and len(only_b) == 1:  # one candidate on each side, renamed: still the same question
        pairs.append((a[only_a[0]], b[only_b[0]]))
        only_a, only_b = [], []
    return pairs, only_a, only_b


def _layer_diff(la: dict[str, Any], lb: dict[str, Any], tol: Tolerance) -> dict[str, Any] | None:
    ma, mb = la["metrics"], lb["metrics"]
    metrics = {m: metric_change(m, ma[m], mb[m], tol.of(m)) for m in METRICS}
    same = all(_same(ma[m], mb[m]) for m in METRICS)
    if same and la["verdict"] == lb["verdict"] and la.get("execution") == lb.get("execution"):
        return None
    factors = [c["factor"] for c in metrics.values() if not math.isnan(c["factor"])]
    worst = max(factors, key=lambda f: abs(math.log10(f)) if 0 < f < math.inf else math.inf, default=1.0)
    return {
        "tensor": lb["tensor"],
        "node": lb["node"],
        "op_type": lb["op_type"],
        "index": lb["index"],
        "verdict": [la["verdict"], lb["verdict"]],
        "execution": [la.get("execution"), lb.get("execution")],  # native, emulated, pinned (to FP32)
        "metrics": metrics,
        # sort key: the largest growth of an error quantity, or the largest shrink when none grew
        "worse_factor": max(factors) if any(f > 1 for f in factors) else worst,
        "regressed": any(c["regressed"] for c in metrics.values()),
    }


def comparison_diff(ca: dict[str, Any], cb: dict[str, Any], tol: Tolerance) -> dict[str, Any]:
    la = {x["tensor"]: x for x in ca["layers"]}
    lb = {x["tensor"]: x for x in cb["layers"]}
    changed = [d for t, x in lb.items() if t in la and (d := _layer_diff(la[t], x, tol)) is not None]
    changed.sort(key=lambda d: (-_log_factor(d["worse_factor"]), d["index"]))
    flips = [
        {"tensor": d["tensor"], "node": d["node"], "old": d["verdict"][0], "new": d["verdict"][1]}
        for d in sorted(changed, key=lambda d: d["index"])
        if d["verdict"][0] != d["verdict"][1]
    ]
    return {
        "candidate": cb["candidate"],
        "reference": cb["reference"],
        "candidate_before": ca["candidate"],
        "verdict": [ca["verdict"], cb["verdict"]],
        "failing_layers": [ca.get("failing_layers", 0), cb.get("failing_layers", 0)],
        "first_failing_layer": [ca["first_failing_layer"], cb["first_failing_layer"]],
        "verdict_changes": flips,
        "layers": changed,
        "compared_layers": len([t for t in lb if t in la]),
        "added": [_layer_ref(x) for t, x in lb.items() if t not in la],
        "removed": [_layer_ref(x) for t, x in la.items() if t not in lb],
        **task_diff(ca.get("task"), cb.get("task"), tol),
    }


# -- task-level agreement -------------------------------------------------------------------------------
def _task_values(task: dict[str, Any]) -> dict[str, tuple[str, Any]]:
    """label -> (kind, value): shares (agreement, overlap: at most 1) and user scores (higher is better)."""
    out: dict[str, tuple[str, Any]] = {}
    for output, a in task.get("classification", {}).items():
        out[f"top-1 agreement ({output})"] = ("share", a["top1_agreement"])
        out[f"top-{a['k']} overlap ({output})"] = ("share", a["topk_overlap"])
    for name, sc in task.get("scores", {}).items():
        out[f"score {name} (mean)"] = ("score", sc["mean"])
    return out


def task_change(kind: str, old: Any, new: Any, tolerance: float) -> dict[str, Any]:
    """A task measure that got lower is worse. For a share the error is 1 - share (the disagreement), judged
    like a layer metric; a user score regressed when it dropped by more than ``tolerance`` of its size."""
    if old is None or new is None:
        return {"old": old, "new": new, "regressed": old is not None and new is None}
    if kind == "share":
        change = metric_change("cosine", old, new, tolerance)  # the same error quantity: 1 - value
        return {"old": old, "new": new, "regressed": change["regressed"]}
    a, b = as_float(old), as_float(new)
    return {"old": old, "new": new, "regressed": bool(a - b > max(tolerance * abs(a), 1e-12))}


def task_diff(ta: dict[str, Any] | None, tb: dict[str, Any] | None, tol: Tolerance) -> dict[str, Any]:
    """The task section of a comparison's diff: its verdicts and every measure whose value changed."""
    if not ta and not tb:
        return {}
    va, vb = _task_values(ta or {}), _task_values(tb or {})
    changes = []
    for label in [k for k in vb if k in va]:
        (kind, old), (_, new) = va[label], vb[label]
        if old != new:
            changes.append({"measure": label, "kind": kind, **task_change(kind, old, new, tol.default)})
    return {
        "task": {
            "verdict": [(ta or {}).get("verdict"), (tb or {}).get("verdict")],
            "changes": changes,
            "added": [k for k in vb if k not in va],
            "removed": [k for k in va if k not in vb],
        }
    }


def fmt_task(kind: str, value: Any) -> str:
    if value is None:
        return "—"
    return f"{as_float(value):.2%}" if kind == "share" else fmt_num(value, 4)


def _layer_ref(layer: dict[str, Any]) -> dict[str, Any]:
    return {"tensor": layer["tensor"], "node": layer["node"], "op_type": layer["op_type"], "verdict": layer["verdict"]}


def _log_factor(f: float) -> float:
    if math.isnan(f):
        return 0.0
    if f <= 0:
        return -math.inf
    return math.inf if f == math.inf else math.log10(f)


# -- provenance -----------------------------------------------------------------------------------------
def _provenance(report: dict[str, Any]) -> dict[str, Any]:
    out = {f"libraries.{k}": v for k, v in report.get("libraries", {}).items()}
    for c in report["comparisons"]:
        for name, run in ((c["reference"], c["reference_run"]), (c["candidate"], c["candidate_run"])):
            for k, v in flatten({k: v for k, v in run.items() if k not in ("notes", "model_digest")}).items():
                out[f"runs.{name}.{k}"] = v
    return out


def provenance_changes(old: dict[str, Any], new: dict[str, Any]) -> list[dict[str, Any]]:
    a, b = _provenance(old), _provenance(new)
    # a run that exists on one side only is a config change, not a provenance one
    runs_a = {k.split(".")[1] for k in a if k.startswith("runs.")}
    runs_b = {k.split(".")[1] for k in b if k.startswith("runs.")}
    both = runs_a & runs_b
    keep = [k for k in a.keys() | b.keys() if not k.startswith("runs.") or k.split(".")[1] in both]
    return _changes({k: a[k] for k in keep if k in a}, {k: b[k] for k in keep if k in b})


# -- everything -----------------------------------------------------------------------------------------
def diff_reports(
    old: dict[str, Any],
    new: dict[str, Any],
    *,
    labels: tuple[str, str] = ("A", "B"),
    tolerance: Tolerance | None = None,
) -> dict[str, Any]:
    tol = tolerance or Tolerance()
    config, notes = config_changes(old, new)
    pairs, only_old, only_new = _pair_comparisons(old, new)
    comparisons = [comparison_diff(ca, cb, tol) for ca, cb in pairs]
    doc = {
        "schema": "layerscope-diff",
        "old": {"label": labels[0], "name": old["experiment"]["name"], "verdict": old["verdict"]},
        "new": {"label": labels[1], "name": new["experiment"]["name"], "verdict": new["verdict"]},
        "config_changes": config,
        "notes": notes,
        "comparisons": comparisons,
        "comparisons_removed": only_old,
        "comparisons_added": only_new,
        "provenance_changes": provenance_changes(old, new),
        "tolerance": tol.to_json(),
    }
    doc["regressions"] = regressions(doc)
    return doc


def regressions(doc: dict[str, Any]) -> list[str]:
    """Why the regression gate fails, one line per reason (empty: it passes)."""
    out = []
    for c in doc["comparisons"]:
        name = c["candidate"]
        if c["verdict"] == ["pass", "fail"]:
            out.append(f"{name}: verdict went from pass to fail")
        task = c.get("task")
        if task and task["verdict"] == ["pass", "fail"]:
            out.append(f"{name}: task-level agreement went from pass to fail")
        for ch in (task or {}).get("changes", []):
            if ch["regressed"]:
                out.append(
                    f"{name}: {ch['measure']} {fmt_task(ch['kind'], ch['old'])} → {fmt_task(ch['kind'], ch['new'])} "
                    f"(worse by more than {fmt_tolerance(doc['tolerance']['deviation_ratio'])})"
                )
        for flip in c["verdict_changes"]:
            if flip["new"] == "fail":
                out.append(f"{name}: {flip['node'] or flip['tensor']} went from pass to fail")
        for layer in c["layers"]:
            for m, ch in layer["metrics"].items():
                if ch["regressed"]:
                    out.append(
                        f"{name}: {layer['node'] or layer['tensor']}: {METRIC_LABELS[m].lower()} "
                        f"{fmt_metric(m, ch['old'])} → {fmt_metric(m, ch['new'])} "
                        f"(worse by more than {fmt_tolerance(doc['tolerance'][m])})"
                    )
    return out


def fmt_metric(metric: str, value: Any) -> str:
    if metric == "deviation_ratio":
        return fmt_ratio(value)
    if metric == "cosine":
        return fmt_cos(value)
    return fmt_num(value, 3 if metric == "max_abs_error" else 4)


def fmt_tolerance(t: float) -> str:
    return f"{t * 100:g}%"
