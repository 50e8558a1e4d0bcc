"""The Python API: run an experiment, plan it, diff two results, search what to pin, load a report.

Every function takes what the command line takes (a config as a path or as a dict, ``--set`` overrides as
strings) and returns typed results; problems are raised as the same exceptions the command line turns into
its exit codes (:class:`~layerscope.runner.errors.SpecError`: invalid config, 2; ``UsageError``: 2;
``StageError``: a stage failed, 3). Nothing is printed unless ``progress`` asks for it. This module and the
command line (:mod:`layerscope.cli`, a thin shell over it) are the only places that wire the generic engine
(``runner/``) to the domain (``pipelines/``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from layerscope.pipelines.reports.model import Report
from layerscope.pipelines.reports.read import load_report as _load_report
from layerscope.runner.errors import StageError, UsageError

if TYPE_CHECKING:
    from layerscope.pipelines.analysis.search import SearchResult
    from layerscope.pipelines.experiment import Experiment
    from layerscope.runner.cache import Cache
    from layerscope.runner.execute import Outcome, Reporter
    from layerscope.runner.graph import Plan as StagePlan

Config = Union[str, "os.PathLike[str]", Mapping[str, Any]]
Progress = Union[bool, "Reporter"]

__all__ = [
    "Diff",
    "DiffSide",
    "FixCost",
    "FixResult",
    "Plan",
    "PlannedStage",
    "RunError",
    "diff",
    "fix",
    "load_report",
    "plan",
    "run",
]


# -- results ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PlannedStage:
    id: str  # e.g. build[fp16]
    kind: str  # build, calibrate, dump, compare, attribute, report
    status: str  # cached | run | not-needed
    reason: str  # why it must run (what changed), or why it is not needed
    key: str  # the cache key: a digest of everything that can change the stage's output


@dataclass(frozen=True)
class Plan:
    """What ``run`` would do: every stage, whether it is cached or must run, and why."""

    experiment: str
    cache_dir: Path
    stages: tuple[PlannedStage, ...]

    @property
    def to_run(self) -> tuple[str, ...]:
        return tuple(s.id for s in self.stages if s.status == "run")

    @property
    def cached(self) -> bool:
        """Everything is in the cache: a run recomputes nothing."""
        return not self.to_run


@dataclass(frozen=True)
class DiffSide:
    label: str  # as given: a run directory, a report.json, a config or REV:config
    name: str  # the experiment's name
    verdict: str


@dataclass(frozen=True)
class Diff:
    """What changed between two results: config, verdicts, per-layer metrics worst first, provenance.

    The nested parts are the JSON of ``layerscope diff --format json`` (see docs/diff-and-html.md).
    """

    old: DiffSide
    new: DiffSide
    config_changes: tuple[dict[str, Any], ...]
    notes: tuple[str, ...]
    comparisons: tuple[dict[str, Any], ...]  # per candidate: verdicts, flips, changed layers worst first
    comparisons_removed: tuple[str, ...]
    comparisons_added: tuple[str, ...]
    provenance_changes: tuple[dict[str, Any], ...]
    tolerance: dict[str, float]  # per metric, how much worse counts as a regression (relative)
    regressions: tuple[str, ...]  # why the regression gate fails, one line per reason

    @property
    def regressed(self) -> bool:
        return bool(self.regressions)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Diff:
        return cls(
            old=DiffSide(**doc["old"]),
            new=DiffSide(**doc["new"]),
            config_changes=tuple(doc["config_changes"]),
            notes=tuple(doc["notes"]),
            comparisons=tuple(doc["comparisons"]),
            comparisons_removed=tuple(doc["comparisons_removed"]),
            comparisons_added=tuple(doc["comparisons_added"]),
            provenance_changes=tuple(doc["provenance_changes"]),
            tolerance=dict(doc["tolerance"]),
            regressions=tuple(doc["regressions"]),
        )

    def to_dict(self) -> dict[str, Any]:
        """The diff as JSON-ready data (non-finite numbers as floats; ``render("json")`` writes them as strings)."""
        return {
            "schema": "layerscope-diff",
            "old": vars(self.old).copy(),
            "new": vars(self.new).copy(),
            "config_changes": list(self.config_changes),
            "notes": list(self.notes),
            "comparisons": list(self.comparisons),
            "comparisons_removed": list(self.comparisons_removed),
            "comparisons_added": list(self.comparisons_added),
            "provenance_changes": list(self.provenance_changes),
            "tolerance": dict(self.tolerance),
            "regressions": list(self.regressions),
        }

    def render(self, fmt: str = "text", *, limit: int = 20) -> str:
        """``text`` (terminal), ``md`` (ready to paste in a PR) or ``json``; ``limit`` layers per comparison."""
        from layerscope.pipelines.reports import diff_render

        doc = self.to_dict()
        if fmt == "json":
            return diff_render.as_json(doc)
        if fmt == "md":
            return diff_render.markdown(doc, limit=limit)
        if fmt == "text":
            return diff_render.text(doc, limit=limit)
        raise UsageError(f"unknown diff format {fmt!r}; formats: text, md, json")


@dataclass(frozen=True)
class FixCost:
    ran: int  # stages that ran
    cached: int  # stages that came from the cache
    inference_runs: int  # dump stages that ran (each: every sample through one model)


@dataclass(frozen=True)
class FixResult:
    """A minimal set of layers to keep in FP32 so that every threshold passes, and how it was found."""

    run: str
    found: tuple[str, ...] | None  # the layers to pin; None: no set of the ranked layers passes
    minimal: bool  # removing any one layer of ``found`` fails a threshold
    base_pinned: tuple[str, ...]  # what the run pins already
    targets: tuple[str, ...]  # the tensors whose error ranked the layers
    candidates: tuple[str, ...]  # the layers ranked
    sensitivity: tuple[dict[str, Any], ...]  # per layer: error with it pinned, with only it reduced, gain
    steps: tuple[dict[str, Any], ...]  # each configuration tried, in order
    cost: FixCost
    notes: tuple[str, ...]
    snippet: str | None  # the ``overrides`` YAML to paste under the run (None when nothing passes)
    files: dict[str, Path] = field(default_factory=dict)  # md, json and (when found) yaml

    @property
    def passed(self) -> bool:
        return self.found is not None


class RunError(StageError):
    """Stages failed, and the stages that needed them were skipped (exit 3).

    ``outcomes``: the failed and skipped stages; ``stages``: every stage's outcome."""

    def __init__(self, stages: Mapping[str, Outcome]) -> None:
        self.stages = dict(stages)
        self.outcomes = [o for o in self.stages.values() if o.status in ("failed", "skipped")]
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        """One line per failed stage (with its error), then one per skipped stage."""
        failed = [f"{o.sid} failed: {o.error}" for o in self.outcomes if o.status == "failed"]
        return failed + [f"{o.sid} {o.reason}" for o in self.outcomes if o.status == "skipped"]


# -- the API ----------------------------------------------------------------------------------------------
def run(
    config: Config,
    *,
    overrides: Iterable[str] = (),
    cache_dir: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    jobs: int | None = None,
    progress: Progress = False,
    force: Iterable[str] = (),
    no_cache: bool = False,
) -> Report:
    """Run an experiment: what is not cached runs; the report is written into ``out`` (default: the config's
    ``report.dir``) and returned. ``force`` reruns stages (ids like ``dump[fp16]``, kinds, globs; ``*``: all)
    and what depends on them; ``no_cache`` keeps this run's artifacts under ``out/artifacts``. A failed stage
    raises :class:`RunError`; a threshold that fails is the report's verdict, not an exception."""
    result = execute(
        config,
        overrides=overrides,
        cache_dir=cache_dir,
        out=out,
        jobs=jobs,
        progress=progress,
        force=force,
        no_cache=no_cache,
    )
    assert result.report is not None  # without `only`, the report is always a target
    return result.report


def plan(
    config: Config,
    *,
    overrides: Iterable[str] = (),
    cache_dir: str | os.PathLike[str] | None = None,
    force: Iterable[str] = (),
    only: Iterable[str] = (),
) -> Plan:
    """What ``run`` would do, without running anything: each stage, cached or to run, and why."""
    from layerscope.pipelines.stages import plan_for
    from layerscope.runner.execute import plan_decisions

    exp = load_experiment(config, overrides=overrides, cache_dir=cache_dir)
    stage_plan = plan_for(exp)
    decisions = plan_decisions(stage_plan, exp.cache, exp.scope, force=force, only=only)
    stages = tuple(
        PlannedStage(sid, stage_plan[sid].stage.kind, d.status, d.reason, stage_plan[sid].key)
        for sid, d in decisions.items()
    )
    return Plan(exp.name, exp.cache.root, stages)


def diff(
    a: str | os.PathLike[str],
    b: str | os.PathLike[str],
    *,
    tolerance: Iterable[str] = (),
    cache_dir: str | os.PathLike[str] | None = None,
    jobs: int | None = None,
    progress: Progress = False,
) -> Diff:
    """What changed from ``a`` to ``b``. Each is a report.json, a run directory, a config or
    ``REV:path/to/config.yaml`` (read with git); a config's report comes from the cache, missing stages run
    first. ``tolerance`` items are ``0.05`` (every metric) or ``cosine=0.5`` (one metric)."""
    from layerscope import sides
    from layerscope.pipelines.reports.diff import Tolerance, diff_reports

    tol = Tolerance.parse(tolerance)  # before running anything: a typo should not cost a run
    cache = _str(cache_dir)
    reporter = _reporter(progress)
    old = sides.load_side(str(a), cache_dir=cache, reporter=reporter, jobs=_jobs(jobs))
    new = sides.load_side(str(b), cache_dir=cache, reporter=reporter, jobs=_jobs(jobs))
    return Diff.from_dict(diff_reports(old.report, new.report, labels=(old.label, new.label), tolerance=tol))


def fix(
    config: Config,
    run: str,
    *,
    overrides: Iterable[str] = (),
    cache_dir: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    targets: Sequence[str] | None = None,
    max_candidates: int = 64,
    jobs: int | None = None,
    progress: Progress = False,
    log: Callable[[str], None] | None = None,
) -> FixResult:
    """Search a minimal set of layers of candidate ``run`` to keep in FP32 so that every threshold passes.

    Layers are ranked by how much pinning each alone helps the ``targets`` (default: the model's outputs; at
    most ``max_candidates`` layers, those with the largest local error), then a short passing prefix of the
    ranking is shrunk until no layer can be dropped. Every configuration tried goes through the cache. The
    snippet and a report of the search are written into ``out`` (default: the config's ``report.dir``);
    the config is never edited. ``log`` receives one line per step (with ``progress=True``: stderr)."""
    from layerscope.pipelines.analysis.search import Search
    from layerscope.pipelines.reports import fix_report

    exp = load_experiment(config, overrides=overrides, cache_dir=cache_dir)
    missing = [t for t in targets or [] if t not in exp.tensors]
    if missing:
        raise UsageError(f"--target {missing[0]!r} is not a compared tensor of {exp.name}")
    reporter = _reporter(progress)
    if log is None:
        log = _stderr_log if progress else _no_log
    n = _jobs(jobs)
    search = Search(exp, run, targets=targets, max_candidates=max_candidates, jobs=n, reporter=reporter, log=log)
    result = search.search(attribution=_local_errors(exp, run, n, reporter))
    files = fix_report.write(exp, result, Path(out) if out else Path(exp.report_dir))
    snippet = fix_report.snippet(exp, result) if result.found is not None else None
    return _fix_result(result, snippet, files)


def load_report(path: str | os.PathLike[str]) -> Report:
    """The report of a run directory or a report.json, validated against the report schema first
    (:class:`~layerscope.pipelines.reports.read.ReportError`, exit 2, when it is not a valid report)."""
    return _load_report(path)


# -- shared with the command line -------------------------------------------------------------------------
@dataclass(frozen=True)
class Execution:
    """A run as the command line needs it: the experiment, the stages' outcomes, and the report (None when
    ``only`` selected stages that do not include the report)."""

    experiment: Experiment
    outcomes: dict[str, Outcome]
    report: Report | None
    out_dir: Path


def load_experiment(
    config: Config,
    *,
    overrides: Iterable[str] = (),
    cache_dir: str | os.PathLike[str] | None = None,
    deep: bool = False,
) -> Experiment:
    """A config (path or dict) validated and resolved; ``deep`` also reads input files' shapes."""
    from layerscope.pipelines.experiment import load_experiment as from_path
    from layerscope.pipelines.experiment import load_experiment_data

    if isinstance(overrides, str):
        raise UsageError("overrides is a list of KEY.PATH=VALUE strings, not one string")
    sets = list(overrides)
    if isinstance(config, Mapping):
        return load_experiment_data(config, sets, cache_dir=_str(cache_dir), deep=deep)
    return from_path(Path(config), sets, cache_dir=_str(cache_dir), deep=deep)


def execute(
    config: Config,
    *,
    overrides: Iterable[str] = (),
    cache_dir: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    jobs: int | None = None,
    progress: Progress = False,
    force: Iterable[str] = (),
    only: Iterable[str] = (),
    no_cache: bool = False,
) -> Execution:
    """:func:`run`, with ``only`` (run just what these stages need) and every stage's outcome."""
    from layerscope.pipelines.reports.outputs import write_outputs
    from layerscope.pipelines.stages import plan_for
    from layerscope.runner.execute import plan_decisions, run_plan

    started = time.time()
    n = _jobs(jobs)
    exp = load_experiment(config, overrides=overrides, cache_dir=cache_dir)
    out_dir = Path(out) if out else Path(exp.report_dir)
    if no_cache:
        exp = replace(exp, cache=_private_cache(out_dir))
    stage_plan = plan_for(exp)
    decisions = plan_decisions(stage_plan, exp.cache, exp.scope, force=force, only=only)
    outcomes = run_plan(stage_plan, exp.cache, exp.scope, decisions, jobs=n, reporter=_reporter(progress))
    if any(o.status in ("failed", "skipped") for o in outcomes.values()):
        raise RunError(outcomes)
    if outcomes["report"].entry is None:  # `only` did not need the report
        return Execution(exp, outcomes, None, out_dir)
    document, files = write_outputs(exp, stage_plan, outcomes, out_dir, exp.cache, started)
    return Execution(exp, outcomes, Report.from_dict(document, files=files), out_dir)


def report_for(exp: Experiment, *, jobs: int | None = None, progress: Progress = False) -> dict[str, Any]:
    """The experiment's report document from the cache, running the stages that are missing first; no output
    directory is written (``diff`` of a config)."""
    from layerscope.pipelines.reports.outputs import report_document
    from layerscope.pipelines.stages import plan_for
    from layerscope.runner.execute import plan_decisions, run_plan

    stage_plan = plan_for(exp)
    decisions = plan_decisions(stage_plan, exp.cache, exp.scope)
    outcomes = run_plan(stage_plan, exp.cache, exp.scope, decisions, jobs=_jobs(jobs), reporter=_reporter(progress))
    failed = [o for o in outcomes.values() if o.status == "failed"]
    entry = outcomes["report"].entry
    if failed or entry is None:
        why = "; ".join(f"{o.sid} failed: {o.error}" for o in failed) or "the report stage did not run"
        raise StageError(f"{exp.source}: {why}")
    return report_document(exp, entry)


# -- helpers ----------------------------------------------------------------------------------------------
def _str(path: str | os.PathLike[str] | None) -> str | None:
    return None if path is None else os.fspath(path)


def _jobs(jobs: int | None) -> int:
    if jobs is None:
        return min(4, os.cpu_count() or 1)
    if jobs < 1:
        raise UsageError("jobs (-j/--jobs) must be at least 1")
    return jobs


def _reporter(progress: Progress) -> Reporter:
    """False: nothing printed; True: progress on stderr; a Reporter: that one."""
    from layerscope.runner.execute import NullReporter

    if progress is False:
        return NullReporter()
    if progress is True:
        from rich.console import Console

        from layerscope.runner.progress import RichReporter

        return RichReporter(Console(stderr=True, highlight=False))
    return progress


def _private_cache(out_dir: Path) -> Cache:
    """--no-cache: a cache of this run's own under OUT/artifacts, emptied first."""
    import shutil

    from layerscope.runner.cache import Cache

    private = out_dir / "artifacts"
    shutil.rmtree(private, ignore_errors=True)
    return Cache(private)


def _no_log(message: str) -> None:
    pass


def _stderr_log(message: str) -> None:
    import sys

    print(message, file=sys.stderr)


def _local_errors(exp: Experiment, run: str, jobs: int, reporter: Reporter) -> dict[str, float] | None:
    """Local error power per layer from the attribution stage (run, or from the cache), to pick candidates."""
    from layerscope.pipelines.stages import plan_for
    from layerscope.pipelines.stages.attribute import stage_id
    from layerscope.runner.execute import plan_decisions, run_plan
    from layerscope.runner.jsonio import as_float, read_json

    if not exp.attribution or run not in exp.candidates:
        return None
    stage_plan: StagePlan = plan_for(exp)
    sid = stage_id(run)
    decisions = plan_decisions(stage_plan, exp.cache, exp.scope, only=[sid])
    outcome = run_plan(stage_plan, exp.cache, exp.scope, decisions, jobs=jobs, reporter=reporter)[sid]
    if outcome.entry is None:
        return None
    doc = read_json(outcome.entry.file("attribution.json"))
    producer = exp.model.summary.producer_of()
    errors: dict[str, float] = {}
    for tensor, result in doc["tensors"].items():
        if result["status"] == "ok" and tensor in producer:
            node = producer[tensor].name
            errors[node] = max(errors.get(node, 0.0), as_float(result["local"]["rmse"]) ** 2)
    return errors


def _fix_result(result: SearchResult, snippet: str | None, files: dict[str, Path]) -> FixResult:
    c = result.cost
    return FixResult(
        run=result.run,
        found=result.found,
        minimal=result.minimal,
        base_pinned=result.base_pinned,
        targets=result.targets,
        candidates=result.candidates,
        sensitivity=tuple(result.sensitivity),
        steps=tuple(result.steps),
        cost=FixCost(c.ran, c.cached, c.inference_runs),
        notes=tuple(result.notes),
        snippet=snippet,
        files=files,
    )
