"""report: apply the thresholds to every compared layer, name the root cause, and assemble report.json.

The headline leads with the root cause -- the layers that fail *locally* by attribution, worst local SQNR
first -- then the first failing layer (:func:`root_causes`). Attribution is an optional input: when its stage
failed the report is still written, and says the root cause is unknown and why.

Key: the compare keys, the resolved limits per layer and what the report states about the experiment
(config digest and overrides, model, inputs, runs, library versions). This stage is cheap; what it
writes is the report without the volatile part (which stages came from the cache, timings), which the
command adds when it writes the report into the output directory.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from layerscope._version import __version__
from layerscope.pipelines.experiment.inputs import input_material
from layerscope.pipelines.metrics.limits import check
from layerscope.pipelines.metrics.task_limits import with_task
from layerscope.runner.codeversion import code_version
from layerscope.runner.files import atomic_write
from layerscope.runner.graph import Stage, StageContext
from layerscope.runner.hashing import canonical_json
from layerscope.runner.jsonio import as_float, dumps

if TYPE_CHECKING:
    from layerscope.pipelines.experiment import Experiment, Limits

# 3: large comparisons' layers packed, most of their histograms beside report.json (reports.packing);
# 2: histogram counts as runs from a start bin (schemas/report.schema.json)
SCHEMA_VERSION = 3
LIBRARIES = ("numpy", "onnx", "onnxruntime", "h5py", "ml_dtypes", "jsonschema", "pyyaml")


def library_versions() -> dict[str, str]:
    from layerscope.runner.versions import installed_version

    return {"layerscope": __version__, **{lib: installed_version(lib) or "missing" for lib in LIBRARIES}}


def weight_note(layer: dict[str, Any], fmt: str) -> str | None:
    """A layer's weights the format cannot hold, in words (the likely cause when such a layer fails)."""
    w = layer.get("weights")
    if not w:
        return None
    parts = []
    if w.get("clamped"):
        parts.append(f"{w['clamped']} weights clamped to the {fmt} maximum (largest |w| {w['max_abs']:.3g})")
    if w.get("raised"):
        parts.append(f"{w['raised']} weights raised to the smallest {fmt} subnormal")
    if w.get("subnormal"):
        parts.append(f"{w['subnormal']} weights are {fmt} subnormals")
    return "; ".join(parts) or None


def experiment_record(exp: Experiment) -> dict[str, Any]:
    runs = {
        name: {"backend": r.backend, "precision": r.precision, "options": dict(r.options), "pinned": list(r.pinned)}
        for name, r in exp.runs.items()
    }
    return {
        "experiment": {
            "name": exp.name,
            "description": exp.description,
            "config_digest": exp.config_digest,
            "overrides": list(exp.document.overrides),
            # What `layerscope diff` compares between two config versions: the data as validated.
            "config_data": exp.document.data,
            "notes": list(exp.notes),
        },
        "model": {"origin": exp.model.origin, "digest": exp.model.digest, "producer": exp.model.summary.producer},
        "inputs": {s.name: input_material(s, exp.cache.digests) for s in exp.inputs},
        "samples": exp.samples,
        "runs": runs,
        "reference": exp.reference,
        "candidates": list(exp.candidates),
        "libraries": library_versions(),
        **({"calibration": _calibration_record(exp)} if exp.calibration is not None else {}),
    }


def _calibration_record(exp: Experiment) -> dict[str, Any]:
    cal = exp.calibration
    assert cal is not None
    if cal.cache is not None:
        return {"imported_trt_cache": cal.cache.name, "notes": list(cal.notes)}
    return {
        "method": cal.method,
        **({"percentile": cal.percentile} if cal.method == "percentile" else {}),
        "samples": cal.samples,
        "per_channel_weights": cal.per_channel,
        "inputs": {s.name: input_material(s, exp.cache.digests) for s in cal.inputs},
        "notes": list(cal.notes),
    }


def make(
    exp: Experiment,
    compare_ids: dict[str, str],
    attribute_ids: dict[str, str] | None = None,
    task_ids: dict[str, str] | None = None,
    attribution_unavailable: dict[str, str] | None = None,
) -> Stage:
    """``attribution_unavailable``: candidates whose attribution cannot run, with why (streaming keeps no dumps)."""
    attribute_ids, task_ids = attribute_ids or {}, task_ids or {}
    unavailable = attribution_unavailable or {}
    record = experiment_record(exp)
    producer = exp.model.summary.producer_of()
    limits = {t: exp.thresholds.for_layer(producer[t].name if t in producer else t) for t in exp.tensors}

    def action(ctx: StageContext) -> None:
        comparisons = []
        for cand in exp.candidates:
            data = json.loads(ctx.inputs[f"compare:{cand}"].file("compare.json").read_text())
            attribution: dict[str, Any] | None = None
            if f"attribute:{cand}" in ctx.inputs:
                attribution = json.loads(ctx.inputs[f"attribute:{cand}"].file("attribution.json").read_text())
            elif cand in attribute_ids:  # the stage failed: the report is written all the same, and says so
                attribution = {
                    "unavailable": f"the stage {attribute_ids[cand]} failed (its error is in the stage list)"
                }
            elif cand in unavailable:
                attribution = {"unavailable": unavailable[cand]}
            else:
                attribution = {"off": True}
            comparison = _comparison(exp.reference, cand, data, limits, attribution)
            if f"task:{cand}" in ctx.inputs:
                found = json.loads(ctx.inputs[f"task:{cand}"].file("task.json").read_text())
                comparison = with_task(comparison, found, exp.thresholds.task)
            comparisons.append(comparison)
        verdict = "pass" if all(c["verdict"] == "pass" for c in comparisons) else "fail"
        report = {
            "schema": "layerscope-report",
            "schema_version": SCHEMA_VERSION,
            "verdict": verdict,
            **record,
            "comparisons": comparisons,
        }
        from layerscope.pipelines.reports.packing import HISTOGRAMS_FILE, pack_report

        packed, histograms = pack_report(report, dumps)
        if histograms is not None:  # one cache entry: both files are published together
            atomic_write(ctx.out_dir / HISTOGRAMS_FILE, histograms)
        atomic_write(ctx.out_dir / "report.json", dumps(packed, compact=histograms is not None))
        ctx.result["verdict"] = verdict

    return Stage(
        id="report",
        kind="report",
        params={
            "record": record,
            # Each distinct limit once with the tensors that have it: the same map as one entry per tensor (the
            # key covers every tensor's limits), a fraction of the text to digest at 8,000 layers.
            "limits_by_value": limits_by_value(limits),
            **({"task_limits": exp.thresholds.task.to_json()} if task_ids else {}),
            **({"attribution_unavailable": unavailable} if unavailable else {}),
        },
        action=action,
        version=code_version(__name__),
        deps={
            **{f"compare:{c}": cid for c, cid in compare_ids.items()},
            **{f"attribute:{c}": aid for c, aid in attribute_ids.items()},
            **{f"task:{c}": tid for c, tid in task_ids.items()},
        },
        description="report",
        explain=explain_params,
        # Attribution is an optional analysis: a failed attribute stage never costs the report.
        optional=frozenset(f"attribute:{c}" for c in attribute_ids),
    )


def _comparison(
    reference: str,
    candidate: str,
    data: dict[str, Any],
    limits: dict[str, Limits],
    attribution: dict[str, Any] | None = None,
) -> dict[str, Any]:
    from layerscope.pipelines.analysis.attribution import inherited_share

    local = (attribution or {}).get("tensors", {})
    as_json = _limits_json(limits)
    layers = []
    for layer in data["layers"]:
        lim = limits[layer["tensor"]]
        failures = check(layer["metrics"], lim)
        verdict = "fail" if failures else "pass"
        entry = {**layer, "limits": as_json[layer["tensor"]], "verdict": verdict, "failures": failures}
        note = weight_note(layer, data["format"])
        if note:
            entry["weight_note"] = note
        found = local.get(layer["tensor"])
        if found is not None:
            entry["attribution"] = {"status": found["status"], **({"why": found["why"]} if "why" in found else {})}
            if found["status"] == "ok":
                local_failures = check(found["local"], lim)
                entry["attribution"]["local"] = found["local"]
                entry["attribution"]["local_verdict"] = "fail" if local_failures else "pass"
                entry["attribution"]["inherited_share"] = inherited_share(layer["metrics"], found["local"])
                if local_failures:
                    entry["attribution"]["local_failures"] = local_failures
        layers.append(entry)
    failing = [layer for layer in layers if layer["verdict"] == "fail"]
    worst = max(layers, key=lambda x: _ratio(x["metrics"]["deviation_ratio"]), default=None)
    causes, cause_note = root_causes(layers, attribution)
    return {
        "reference": reference,
        "candidate": candidate,
        "reference_run": data["reference"],
        "candidate_run": data["candidate"],
        "samples": data["samples"],
        "format": data["format"],
        "format_limits": data["format_limits"],
        "verdict": "fail" if failing else "pass",
        "root_causes": causes,
        **({"root_cause_note": cause_note} if cause_note else {}),
        "first_failing_layer": failing[0]["node"] if failing else None,
        "first_failing_tensor": failing[0]["tensor"] if failing else None,
        "failing_layers": len(failing),
        "worst_layer": worst["node"] if worst else None,
        "worst_deviation_ratio": worst["metrics"]["deviation_ratio"] if worst else None,
        "layers": layers,
        "not_observable": data["not_observable"],
        **(
            {"attribution_note": attribution["backend_note"]} if attribution and attribution.get("backend_note") else {}
        ),
        "not_observable_reasons": data.get("not_observable_reasons", {}),
    }


def _limits_json(limits: dict[str, Limits]) -> dict[str, dict[str, Any]]:
    """Each tensor's limits as JSON, converted once per Limits object (most layers share the default one);
    each tensor gets its own copy, so that no two layers of a report share an object."""
    converted: dict[int, dict[str, Any]] = {}  # by identity: equal limits may differ in type (1 and 1.0)
    out = {}
    for t, lim in limits.items():
        found = converted.get(id(lim))
        if found is None:
            found = converted[id(lim)] = lim.to_json()
        out[t] = dict(found)
    return out


def limits_by_value(limits: dict[str, Limits]) -> list[list[Any]]:
    """``[[limit as JSON, [tensors, sorted]], ...]``, ordered by the limit's canonical JSON: every tensor's limits,
    grouped (equal limits of different types, 1 and 1.0, stay apart: they are grouped by canonical JSON)."""
    converted: dict[int, tuple[str, dict[str, Any]]] = {}
    groups: dict[str, tuple[dict[str, Any], list[str]]] = {}
    for t, lim in limits.items():
        found = converted.get(id(lim))
        if found is None:
            as_json = lim.to_json()
            found = converted[id(lim)] = (canonical_json(as_json), as_json)
        groups.setdefault(found[0], (found[1], []))[1].append(t)
    return [[groups[c][0], sorted(groups[c][1])] for c in sorted(groups)]


def _layer_limits(params: Any) -> dict[str, Any]:
    """Each tensor's limits from the stage's params, grouped (``limits_by_value``) or, as recorded by earlier
    versions, one entry per tensor (``limits``)."""
    if "limits_by_value" in params:
        return {t: lim for lim, tensors in params["limits_by_value"] for t in tensors}
    return dict(params.get("limits", {}))


def _paths(a: Any, b: Any, prefix: str = "") -> list[str]:
    """The deepest key paths where two config trees differ (``runs.fp16.overrides``)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for k in sorted(a.keys() | b.keys(), key=str):
            path = f"{prefix}.{k}" if prefix else str(k)
            out += [path] if (k in a) != (k in b) else _paths(a[k], b[k], path) if k in a else []
        return out
    return [] if a == b else [prefix]


def explain_params(old: Any, new: Any) -> list[str]:
    """What changed in the report stage's key, in the config's terms: ``runs.fp16.overrides`` rather than
    ``record.experiment.config_data.runs.fp16.overrides``, ``thresholds for layer "1000"`` rather than
    ``limits.1000.max_deviation_ratio`` (a tensor name, not an index). Parts that follow from the config
    (its digest, the runs' pinned layers) are left out when the config's own keys say what changed."""
    ra, rb = old.get("record", {}), new.get("record", {})
    config = _paths(ra.get("experiment", {}).get("config_data"), rb.get("experiment", {}).get("config_data"))
    out = list(config)
    if not config and ra.get("experiment", {}).get("config_digest") != rb.get("experiment", {}).get("config_digest"):
        out.append("the config")
    if ra.get("experiment", {}).get("overrides") != rb.get("experiment", {}).get("overrides"):
        out.append("--set")
    for key, words in (("model", "the model"), ("samples", "samples"), ("calibration", "calibration")):
        if ra.get(key) != rb.get(key) and not any(p.split(".")[0] == key for p in config):
            out.append(words)
    out += [
        f"input {n!r}"
        for n in sorted(ra.get("inputs", {}).keys() | rb.get("inputs", {}).keys())
        if ra.get("inputs", {}).get(n) != rb.get("inputs", {}).get(n) and not config
    ]
    libs_a, libs_b = ra.get("libraries", {}), rb.get("libraries", {})
    out += [f"{lib} version" for lib in sorted(libs_a.keys() | libs_b.keys()) if libs_a.get(lib) != libs_b.get(lib)]
    if not any(p.startswith("thresholds") for p in config):
        la, lb = _layer_limits(old), _layer_limits(new)
        layers = sorted(t for t in la.keys() | lb.keys() if la.get(t) != lb.get(t))
        if 0 < len(layers) <= 3:
            out += [f'thresholds for layer "{t}"' for t in layers]
        elif layers:
            out.append(f"thresholds for {len(layers)} layers")
        if old.get("task_limits") != new.get("task_limits"):
            out.append("task thresholds")
    return out


ROOT_CAUSES_LISTED = 10


def _ratio(value: Any) -> float:
    v = as_float(value)
    return -1.0 if v != v else v


def _local_sqnr(layer: dict[str, Any]) -> float:
    v = as_float(layer["attribution"]["local"]["sqnr_db"])
    return -math.inf if v != v else v  # undefined local error: as bad as it gets, listed first


def root_causes(
    layers: list[dict[str, Any]], attribution: dict[str, Any] | None
) -> tuple[list[dict[str, Any]], str | None]:
    """The layers that fail *locally* (computed alone on the reference's inputs, they break their own limits),
    worst local SQNR first and network order between equals; and a note when the root cause is unknown.

    A layer that fails only because of what it inherits is not a root cause: the first failing layer in
    network order is often one of those (it shows the error first, it did not make it).
    """
    failing = [x for x in layers if x["verdict"] == "fail"]
    if attribution is None or attribution.get("off"):
        off = "attribution is turned off (attribution: false), so the root cause is unknown"
        return [], off if failing else None
    if attribution.get("unavailable"):
        return [], f"attribution is unavailable ({attribution['unavailable']}), so the root cause is unknown"
    local = [x for x in layers if x.get("attribution", {}).get("local_verdict") == "fail"]
    local.sort(key=lambda x: (_local_sqnr(x), x["index"]))
    causes = [
        {
            "layer": x["node"],
            "tensor": x["tensor"],
            "index": x["index"],
            "op_type": x["op_type"],
            "local_sqnr_db": x["attribution"]["local"]["sqnr_db"],
            "local_cosine": x["attribution"]["local"]["cosine"],
            "local_deviation_ratio": x["attribution"]["local"]["deviation_ratio"],
            "inherited_share": x["attribution"]["inherited_share"],
            "local_failures": x["attribution"].get("local_failures", []),
        }
        for x in local[:ROOT_CAUSES_LISTED]
    ]
    note: str | None = None
    if len(local) > ROOT_CAUSES_LISTED:
        note = f"{len(local)} layers fail locally; the {ROOT_CAUSES_LISTED} with the worst local SQNR are listed"
    elif failing and not local:
        unattributed = [x for x in failing if x.get("attribution", {}).get("status") not in ("ok", None)]
        if unattributed:
            note = (
                f"no attributable layer fails locally; {len(unattributed)} failing layers could not be attributed "
                f"(first: {unattributed[0]['node']}: {unattributed[0]['attribution'].get('why', 'no reason')}), "
                "so the root cause is unknown"
            )
        else:
            note = "no layer fails locally: the error accumulates over many layers, none breaks its limits alone"
    return causes, note
