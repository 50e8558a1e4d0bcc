"""The domain side of the command line: load an experiment, plan it, write its outputs, re-render reports.

``runner.cli`` parses arguments, decides and executes plans, and prints; everything it needs to know
about experiments, models and reports comes through the functions here.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from layerscope.runner.errors import EXIT_OK, EXIT_STAGE, EXIT_THRESHOLD, UsageError
from layerscope.runner.files import atomic_write

if TYPE_CHECKING:
    from layerscope.pipelines.experiment import Experiment
    from layerscope.runner.cache import Cache
    from layerscope.runner.execute import Outcome, Reporter
    from layerscope.runner.graph import Plan


def load(config: str, overrides: list[str], cache_dir: str | None, *, deep: bool = False) -> Experiment:
    from layerscope.pipelines.experiment import load_experiment

    return load_experiment(config, overrides, cache_dir=cache_dir, deep=deep)


def plan(exp: Experiment) -> Plan:
    from layerscope.pipelines.stages import plan_for

    return plan_for(exp)


def describe(exp: Experiment) -> str:
    runs = ", ".join(
        f"{r.name} ({r.backend} {r.precision}{', ' + str(len(r.pinned)) + ' pinned' if r.pinned else ''})"
        for r in exp.runs.values()
    )
    return (
        f"{exp.source}: valid — model {exp.model.display} ({len(exp.model.summary.nodes)} nodes), "
        f"{len(exp.tensors)} tensors selected, {exp.samples} sample{'s' if exp.samples != 1 else ''}, runs: {runs}; "
        f"compare {', '.join(exp.candidates)} against {exp.reference}"
    )


def default_cache_dir() -> Path:
    from layerscope.pipelines.experiment import resolve_cache_dir

    return resolve_cache_dir(None, None, Path.cwd())


def output_dir(exp: Experiment, out: str | None) -> Path:
    return Path(out) if out else Path(exp.report_dir)


def write_outputs(
    exp: Experiment,
    plan: Plan,
    outcomes: Mapping[str, Outcome],
    out_dir: Path,
    cache: Cache,
    started: float,
) -> tuple[dict[str, Any] | None, int]:
    """Write report.json, the configured report formats and dump links into ``out_dir``; returns (report, exit code)."""

    report_outcome = outcomes.get("report")
    if report_outcome is None or report_outcome.entry is None:
        return None, EXIT_STAGE
    report = json.loads(report_outcome.entry.file("report.json").read_text())
    # The config's path as given is provenance of this invocation, not of the cached report: a path is in no
    # cache key, so running the same config by another path reuses everything.
    report["experiment"] = {"config": exp.source, **report["experiment"]}
    report["execution"] = {
        "stages": {
            sid: {"status": o.status, "seconds": round(o.seconds, 3), "key": plan[sid].key, "reason": o.reason}
            for sid, o in outcomes.items()
        },
        "cache": str(cache.root),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": round(time.time() - started, 3),
    }
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(out_dir / "report.json", json.dumps(report, indent=1, allow_nan=False))
        # What the report stage wrote (the report without `execution`), by content: the key of cached HTML charts.
        content_key = report_outcome.entry.manifest["files"]["report.json"]["sha256"]
        for fmt in exp.report_formats:
            if fmt in RENDERERS:
                atomic_write(out_dir / f"report.{fmt}", RENDERERS[fmt](report, cache, content_key))
        _link_dumps(exp, plan, outcomes, out_dir, cache)
        _copy_calibration_cache(plan, outcomes, out_dir, cache)
    except OSError as exc:
        raise UsageError(f"cannot write the report into {out_dir}: {exc.strerror or exc}") from None
    failed = any(o.status in ("failed", "skipped") for o in outcomes.values())
    if failed:
        return report, EXIT_STAGE
    return report, EXIT_OK if report["verdict"] == "pass" else EXIT_THRESHOLD


def _link_dumps(exp: Experiment, plan: Plan, outcomes: Mapping[str, Outcome], out_dir: Path, cache: Cache) -> None:
    """dumps/<run>.h5 -> the dump in the cache (a link: dumps can be gigabytes; kept while the entry lives)."""
    from layerscope.pipelines.stages.dump import DUMP_FILE, stage_id

    links = out_dir / "dumps"
    links.mkdir(exist_ok=True)
    for run in [exp.reference, *exp.candidates]:
        sid = stage_id(run)
        entry = outcomes[sid].entry if sid in outcomes else None
        if entry is None:
            entry = cache.lookup("dump", plan[sid].key, touch=False).entry
        link = links / f"{run}.h5"
        if entry is None:
            with contextlib.suppress(FileNotFoundError):
                link.unlink()
            continue
        tmp = links / f".{run}.h5.{os.getpid()}.tmp"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.symlink(entry.file(DUMP_FILE), tmp)
        os.replace(tmp, link)  # atomic: a concurrent run never sees a missing or half-made link


def _copy_calibration_cache(plan: Plan, outcomes: Mapping[str, Outcome], out_dir: Path, cache: Cache) -> None:
    """calibration.cache: the INT8 scales in TensorRT's format, ready for a TensorRT 10 `flags` build."""
    from layerscope.pipelines.stages.calibrate import STAGE_ID, TRT_CACHE

    if STAGE_ID not in plan.stages:
        return
    entry = outcomes[STAGE_ID].entry or cache.lookup("calibrate", plan[STAGE_ID].key, touch=False).entry
    if entry is not None and entry.file(TRT_CACHE).is_file():
        atomic_write(out_dir / TRT_CACHE, entry.file(TRT_CACHE).read_text())


def _markdown(report: dict[str, Any], cache: Cache | None, content_key: str | None) -> str:
    from layerscope.pipelines.reports.markdown import markdown

    return markdown(report)


def _html(report: dict[str, Any], cache: Cache | None, content_key: str | None) -> str:
    from layerscope.pipelines.reports.html import render_html

    return render_html(report, cache, content_key)


# report.json is always written; these render the other formats a config may ask for (report.formats).
# A renderer gets the report, the cache (None: do not cache) and the digest of the report's cached content.
Renderer = Callable[[dict[str, Any], "Cache | None", "str | None"], str]
RENDERERS: dict[str, Renderer] = {"md": _markdown, "html": _html}


def load_report(path: str) -> dict[str, Any]:
    p = Path(path)
    if p.is_dir():
        p = p / "report.json"
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"no report at {p}") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read report {p}: {exc}") from None
    if not isinstance(data, dict) or data.get("schema") != "layerscope-report":
        raise UsageError(f"{p} is not a layerscope report")
    return data


def render(report: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(report, indent=1)
    return RENDERERS[fmt](report, None, None)


def diff(
    old: str, new: str, tolerance: list[str], *, cache_dir: str | None, reporter: Reporter | None = None
) -> dict[str, Any]:
    """The diff of two sides (report.json, run directory, config, REV:config) as JSON-ready data."""
    from layerscope.pipelines.reports.diff import Tolerance, diff_reports
    from layerscope.pipelines.sides import load_side

    tol = Tolerance.parse(tolerance)  # before running anything: a typo should not cost a run
    a = load_side(old, cache_dir=cache_dir, reporter=reporter)
    b = load_side(new, cache_dir=cache_dir, reporter=reporter)
    return diff_reports(a.report, b.report, labels=(a.label, b.label), tolerance=tol)


def render_diff(doc: dict[str, Any], fmt: str, *, limit: int) -> str:
    from layerscope.pipelines.reports import diff_render

    if fmt == "json":
        return diff_render.as_json(doc)
    if fmt == "md":
        return diff_render.markdown(doc, limit=limit)
    return diff_render.text(doc, limit=limit)


def backends_table() -> list[tuple[str, bool, str, str]]:
    from layerscope.pipelines import backends

    rows = []
    for name in backends.names():
        b = backends.get(name)
        ok, why = b.availability()
        versions = ", ".join(f"{k} {v}" for k, v in b.versions().items())
        rows.append((name, ok, why or b.device(), versions))
    return rows


def zoo_list() -> list[tuple[str, str, str]]:
    from layerscope.pipelines.models.zoo import ZOO

    return [(m.name, f"{m.package} {m.version}", m.description) for m in ZOO.values()]


def zoo_fetch(name: str, cache_root: Path, log: Any) -> Path:
    from layerscope.pipelines.models.zoo import fetch

    return fetch(cache_root, name, log=log)


def fix(
    exp: Experiment,
    run: str,
    *,
    targets: list[str] | None,
    max_candidates: int,
    jobs: int,
    reporter: Any,
    log: Callable[[str], None],
) -> tuple[Any, dict[str, Path]]:
    """Search the layers to pin for ``run`` to pass; write the snippet and the search report."""
    from layerscope.pipelines.analysis.search import Search
    from layerscope.pipelines.reports import fix_report

    missing = [t for t in targets or [] if t not in exp.tensors]
    if missing:
        raise UsageError(f"--target {missing[0]!r} is not a compared tensor of {exp.name}")
    search = Search(exp, run, targets=targets, max_candidates=max_candidates, jobs=jobs, reporter=reporter, log=log)
    result = search.search(attribution=_local_errors(exp, run, jobs, reporter))
    return result, fix_report.write(exp, result, Path(exp.report_dir))


def _local_errors(exp: Experiment, run: str, jobs: int, reporter: Any) -> dict[str, float] | None:
    """Local error power per layer from the attribution stage (run, or from the cache), to pick candidates."""
    import json

    from layerscope.pipelines.stages import plan_for
    from layerscope.pipelines.stages.attribute import stage_id
    from layerscope.runner.execute import plan_decisions, run_plan
    from layerscope.runner.jsonio import as_float

    if not exp.attribution or run not in exp.candidates:
        return None
    plan = plan_for(exp)
    sid = stage_id(run)
    decisions = plan_decisions(plan, exp.cache, exp.scope, only=[sid])
    outcome = run_plan(plan, exp.cache, exp.scope, decisions, jobs=jobs, reporter=reporter)[sid]
    if outcome.entry is None:
        return None
    doc = json.loads(outcome.entry.file("attribution.json").read_text())
    producer = exp.model.summary.producer_of()
    errors: dict[str, float] = {}
    for tensor, result in doc["tensors"].items():
        if result["status"] == "ok" and tensor in producer:
            node = producer[tensor].name
            errors[node] = max(errors.get(node, 0.0), as_float(result["local"]["rmse"]) ** 2)
    return errors
