"""The Python API: run an experiment, plan it, diff two results, search what to pin, load and export a report.

Every function takes what the command line takes (a config as a path or as a dict, ``--set`` overrides as
strings) and returns typed results; problems are raised as the same exceptions the command line turns into
its exit codes (:class:`~layerscope.runner.errors.SpecError`: invalid config, 2; ``UsageError``: 2;
``StageError``: a stage failed, 3); the results are in :mod:`layerscope.results`. Nothing is printed unless
``progress`` asks for it. This module, the sides of a diff (:mod:`layerscope.sides`) and the command line
(:mod:`layerscope.cli`, a thin shell over this module) are the only places that wire the generic engine
(``runner/``) to the domain (``pipelines/``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from functools import cached_property, wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, Union

from layerscope.runner.errors import RunError, StageError, UsageError

if TYPE_CHECKING:
    from layerscope.pipelines.analysis.search import SearchResult
    from layerscope.pipelines.experiment import Experiment
    from layerscope.pipelines.experiment.budget import Estimate
    from layerscope.pipelines.reports.model import Report
    from layerscope.results import Diff, Exported, FixResult, Plan, SweepDiff, SweepResult
    from layerscope.runner.cache import Cache
    from layerscope.runner.execute import Decision, Outcome, Reporter

Config = Union[str, "os.PathLike[str]", Mapping[str, Any]]
F = TypeVar("F", bound=Callable[..., Any])


def _leased(function: F) -> F:
    """The entries a command reads or writes are claimed for its duration: a concurrent `layerscope cache gc`
    or `clear` keeps them (runner/leases.py). Every function that runs stages is wrapped."""

    @wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from layerscope.runner.leases import session

        with session():
            return function(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


Progress = Union[bool, "Reporter"]

# The results' types are in layerscope.results and the report's in layerscope.pipelines.reports; this module
# imports them when a function needs them: defining dataclasses costs time a cached rerun should not pay.
__all__ = ["diff", "diff_sweeps", "fix", "load_report", "plan", "run", "sweep"]


# -- the API ----------------------------------------------------------------------------------------------
@_leased
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
    executor: str | None = None,
    scheduler: str | None = None,
) -> Report:
    """Run an experiment: what is not cached runs; the report is written into ``out`` (default: the config's
    ``report.dir``) and returned. ``force`` reruns stages (ids like ``dump[fp16]``, kinds, globs; ``*``: all)
    and what depends on them; ``no_cache`` keeps this run's artifacts under ``out/artifacts``. ``executor``
    is ``"local"`` (threads of this process, the default) or ``"dask"`` (a Dask cluster at ``scheduler`` or
    ``$DASK_SCHEDULER_ADDRESS``; without either, a LocalCluster of ``jobs`` worker processes). A failed stage
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
        executor=executor,
        scheduler=scheduler,
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
    from layerscope.results import Plan, PlannedStage
    from layerscope.runner.execute import plan_decisions

    exp = load_experiment(config, overrides=overrides, cache_dir=cache_dir)
    stage_plan = plan_for(exp)
    decisions = plan_decisions(stage_plan, exp.cache, exp.scope, force=force, only=only)
    stages = tuple(
        PlannedStage(sid, stage_plan[sid].stage.kind, d.status, d.reason, stage_plan[sid].key)
        for sid, d in decisions.items()
    )
    return Plan(exp.name, exp.cache.root, stages)


@_leased
def diff(
    a: str | os.PathLike[str],
    b: str | os.PathLike[str],
    *,
    tolerance: Iterable[str] = (),
    overrides: Iterable[str] = (),
    overrides_a: Iterable[str] = (),
    overrides_b: Iterable[str] = (),
    cache_dir: str | os.PathLike[str] | None = None,
    jobs: int | None = None,
    progress: Progress = False,
) -> Diff:
    """What changed from ``a`` to ``b``. Each is a report.json, a run directory, a config or
    ``REV:path/to/config.yaml`` (read with git); a config's report comes from the cache, missing stages run
    first. ``tolerance`` items are ``0.05`` (every metric) or ``cosine=0.5`` (one metric). ``overrides``
    (``--set`` items) apply to both config sides, ``overrides_a``/``overrides_b`` to one, after them."""
    from layerscope import sides
    from layerscope.pipelines.reports.diff import Tolerance, diff_reports
    from layerscope.results import Diff

    tol = Tolerance.parse(tolerance)  # before running anything: a typo should not cost a run
    cache = _str(cache_dir)
    reporter = _reporter(progress)
    both = list(overrides)
    old = sides.load_side(str(a), cache_dir=cache, reporter=reporter, jobs=_jobs(jobs), overrides=[*both, *overrides_a])
    new = sides.load_side(str(b), cache_dir=cache, reporter=reporter, jobs=_jobs(jobs), overrides=[*both, *overrides_b])
    return Diff.from_dict(diff_reports(old.report, new.report, labels=(old.label, new.label), tolerance=tol))


@_leased
def fix(
    config: Config,
    run: str,
    *,
    overrides: Iterable[str] = (),
    cache_dir: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    targets: Sequence[str] | None = None,
    max_candidates: int = 64,
    max_tries: int = 24,
    prove_minimal: bool = False,
    jobs: int | None = None,
    progress: Progress = False,
    log: Callable[[str], None] | None = None,
) -> FixResult:
    """Search a minimal set of layers of candidate ``run`` to keep in FP32 so that every threshold passes.

    Layers are ranked by attribution's local error, the layers that fail locally (root causes) first (at most
    ``max_candidates``; without attribution: by how much pinning each alone helps the ``targets``, default the
    model's outputs), then a short passing prefix of the ranking is shrunk (groups of layers removed, in
    batches) while the budget of ``max_tries`` pinned sets lasts; ``FixResult.minimal`` says whether the set was
    proven minimal (no single removal passes), which ``prove_minimal=True`` does whatever the budget. Tries
    run in batches (trial stages) that dump nothing and judge only what decides each compared layer's verdict.
    Every configuration tried goes through the cache. The
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
    search = Search(
        exp,
        run,
        targets=targets,
        max_candidates=max_candidates,
        max_tries=max_tries,
        prove_minimal=prove_minimal,
        jobs=n,
        reporter=reporter,
        log=log,
    )
    result = search.search()
    files = fix_report.write(exp, result, Path(out) if out else Path(exp.report_dir))
    snippet = fix_report.snippet(exp, result) if result.found is not None else None
    return _fix_result(result, snippet, files)


@_leased
def sweep(
    sweep_file: str | os.PathLike[str],
    *,
    overrides: Iterable[str] = (),
    cache_dir: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    jobs: int | None = None,
    progress: Progress = False,
    force: Iterable[str] = (),
    executor: str | None = None,
    scheduler: str | None = None,
) -> SweepResult:
    """Run a sweep file (configs × a matrix of overrides) as one graph: identical stages run once. Each
    experiment's report goes into its own folder under ``out`` (default: the sweep's ``report.dir``), with
    the summary (sweep.json, .md, .html). ``overrides`` apply to every experiment; ``executor``/``scheduler``
    as for :func:`run`. A failed stage does not raise: its experiments have status ``error`` in the result."""
    from layerscope import sweeps as sw
    from layerscope.executors import choose
    from layerscope.pipelines.reports.model import Report
    from layerscope.results import SweepExperiment, SweepResult
    from layerscope.sweep_summary import summary_document, write_summary

    started = time.time()
    spec = sw.load_spec(sweep_file, overrides=overrides, out=_str(out))
    experiments = sw.load_experiments(spec, _str(cache_dir))
    where = choose(executor, scheduler, [e[3] for e in experiments])
    runs, stats = sw.run_sweep(
        spec, experiments, jobs=_jobs(jobs), reporter=_reporter(progress), executor=where, force=force
    )
    label = where.kind if where.kind == "local" else f"dask {where.address or 'LocalCluster'}"
    document = summary_document(spec, runs, started=started, executor=label, stats=stats)
    files = write_summary(document, spec.out_dir, spec.formats)
    rows = tuple(
        SweepExperiment(
            r.id,
            r.config,
            r.overrides,
            row["status"],
            r.out_dir,
            None if r.report is None else Report.from_dict(r.report, files=r.files or {}),
            r.error,
            row["seconds"],
            row["cached"],
            row["shared"],
        )
        for r, row in zip(runs, document["experiments"], strict=True)
    )
    return SweepResult(spec.name, document["verdict"], spec.out_dir, rows, document, files)


def diff_sweeps(a: str | os.PathLike[str], b: str | os.PathLike[str], *, tolerance: float = 0.1) -> SweepDiff:
    """What changed between two sweep summaries (sweep.json or the sweep's folder), per experiment and
    candidate: verdicts, worst deviation ratios, root causes. ``regressed``: a pass became fail/error, or a
    worst deviation ratio got more than ``tolerance`` (relative) worse."""
    from layerscope.results import SweepDiff
    from layerscope.sweep_summary import diff_summaries, read_summary

    old, new = read_summary(a), read_summary(b)
    for arg, doc in ((a, old), (b, new)):
        if doc is None:
            raise UsageError(f"{os.fspath(arg)}: not a sweep summary (sweep.json or a sweep's folder)")
    assert old is not None and new is not None
    try:
        return SweepDiff(diff_summaries(old, new, tolerance=tolerance))
    except (KeyError, TypeError, AttributeError, ValueError) as exc:  # edited or truncated by hand
        raise UsageError(f"a sweep summary is malformed ({type(exc).__name__}: {exc}): {a} or {b}") from None


def load_report(path: str | os.PathLike[str]) -> Report:
    """The report of a run directory or a report.json, validated against the report schema first
    (:class:`~layerscope.pipelines.reports.read.ReportError`, exit 2, when it is not a valid report)."""
    from layerscope.pipelines.reports.read import load_report as read

    return read(path)


def export(
    report: str | os.PathLike[str] | Report,
    format: str,
    *,
    out: str | os.PathLike[str] | None = None,
    tracking_uri: str | None = None,
    mlflow_experiment: str | None = None,
) -> Exported:
    """Export a report (a run directory, a report.json or a :class:`Report`) for another tool.

    ``csv`` / ``parquet``: the per-layer table, one row per (comparison, layer), to ``out`` (default
    ``layers.csv`` / ``layers.parquet`` beside report.json). ``dvc``: ``metrics.json`` (the headline numbers)
    and ``layers.csv`` into the folder ``out`` (default ``dvc/`` beside report.json). ``mlflow``: the headline
    metrics, verdict tags, the per-layer table and the report files, logged to the active MLflow run (or a new
    one named after the experiment) at ``tracking_uri`` (default: MLflow's own, ``$MLFLOW_TRACKING_URI``)."""
    from layerscope.pipelines.reports import export as ex
    from layerscope.pipelines.reports.model import Report as ReportType
    from layerscope.results import Exported

    if format not in ex.FORMATS:
        raise UsageError(f"unknown export format {format!r}; formats: {', '.join(ex.FORMATS)}")
    if format != "mlflow" and (tracking_uri or mlflow_experiment):
        raise UsageError("tracking_uri and mlflow_experiment apply to the mlflow format only")
    loaded = report if isinstance(report, ReportType) else load_report(report)
    base = Path(loaded.files["json"]).parent if "json" in loaded.files else Path.cwd()
    if format == "mlflow":
        if out is not None:
            raise UsageError("the mlflow export logs to a tracking server: it takes no output path")
        return Exported(format, {}, ex.log_mlflow(loaded, tracking_uri=tracking_uri, experiment=mlflow_experiment))
    if format == "dvc":
        return Exported(format, ex.write_dvc(loaded, Path(out) if out is not None else base / "dvc"))
    path = Path(out) if out is not None else base / f"layers.{format}"
    if format == "csv":
        from layerscope.runner.files import atomic_write

        atomic_write(path, ex.to_csv(loaded))
    else:
        ex.write_parquet(loaded, path)
    return Exported(format, {"table": path})


# -- shared with the command line -------------------------------------------------------------------------
class Execution:
    """A run as the command line needs it: the experiment, the stages' outcomes, the verdict, and the report
    document with the files written (None when ``only`` selected stages that do not include the report). The
    document is unpacked (packing.py) and the typed report built on first use: a warm rerun that prints only
    the verdict never reads thousands of layers."""

    def __init__(
        self,
        experiment: Experiment,
        outcomes: dict[str, Outcome],
        out_dir: Path,
        written: dict[str, Any] | None = None,
        files: dict[str, Path] | None = None,
    ) -> None:
        self.experiment = experiment
        self.outcomes = outcomes
        self.out_dir = out_dir
        self._written = written  # as written into out_dir (maybe packed)
        self.verdict: str | None = None if written is None else written["verdict"]
        self.files = files or {}

    @cached_property
    def document(self) -> dict[str, Any] | None:
        from layerscope.pipelines.reports.outputs import ReportHead
        from layerscope.pipelines.reports.packing import unpack_report

        written = self._written
        if isinstance(written, ReportHead):  # only the verdict was read: the whole report now
            written = written.load()
        return None if written is None else unpack_report(written, self.out_dir)

    @cached_property
    def report(self) -> Report | None:
        from layerscope.pipelines.reports.model import Report

        return None if self.document is None else Report.from_dict(self.document, files=self.files)


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


def validate(
    config: Config, *, overrides: Iterable[str] = (), cache_dir: str | os.PathLike[str] | None = None
) -> tuple[Experiment, Estimate]:
    """``layerscope validate``: the experiment checked against the schema, the model and its input files, and
    its size estimate checked against this machine's memory and the cache's free disk (UsageError, exit 2,
    when the run cannot fit)."""
    from layerscope.pipelines.experiment.budget import estimate
    from layerscope.pipelines.stages import plan_for
    from layerscope.runner.execute import plan_decisions

    exp = load_experiment(config, overrides=overrides, cache_dir=cache_dir, deep=True)
    est = estimate(exp)
    check_room(exp, plan_decisions(plan_for(exp), exp.cache, exp.scope), est)
    return exp, est


def check_room(exp: Experiment, decisions: Mapping[str, Decision], est: Estimate | None = None) -> Estimate | None:
    """Refuse a run whose dumps to make cannot fit in memory or on the cache's disk (before anything runs);
    the estimate, when dumps are to be made."""
    from layerscope.pipelines.stages.dump import stage_id

    dumping = sum(
        1
        for run in {exp.reference, *exp.candidates}
        if stage_id(run) in decisions and decisions[stage_id(run)].status == "run"
    )
    if not dumping:
        return None
    from layerscope.pipelines.experiment.budget import check, estimate

    est = est or estimate(exp)
    check(exp, est, dumping=dumping)
    return est


def _say_needs(outcomes: Mapping[str, Outcome], est: Estimate | None, decisions: Mapping[str, Decision]) -> None:
    """A stage that found the disk full: add what the run's dumps needed (the executor cannot know it)."""
    from layerscope.runner.resources import human

    if est is None:
        return
    dumping = sum(1 for sid, d in decisions.items() if sid.startswith("dump[") and d.status == "run")
    for o in outcomes.values():
        if o.fault == "disk" and o.error is not None:
            o.error = o.error.replace("\n", f"; this run's dumps need ~{human(est.disk(dumping))}\n", 1)


@_leased
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
    executor: str | None = None,
    scheduler: str | None = None,
) -> Execution:
    """:func:`run`, with ``only`` (run just what these stages need) and every stage's outcome."""
    from layerscope.executors import choose
    from layerscope.pipelines.reports.outputs import write_outputs
    from layerscope.pipelines.stages import plan_for
    from layerscope.runner.execute import plan_decisions, run_plan

    started = time.time()
    n = _jobs(jobs)
    exp = load_experiment(config, overrides=overrides, cache_dir=cache_dir)
    where = choose(executor, scheduler, [exp])
    out_dir = Path(out) if out else Path(exp.report_dir)
    if no_cache:
        exp = replace(exp, cache=_private_cache(out_dir))
    stage_plan = plan_for(exp)
    decisions = plan_decisions(stage_plan, exp.cache, exp.scope, force=force, only=only)
    est = check_room(exp, decisions)
    caught: list[str] = []
    outcomes = run_plan(
        stage_plan,
        exp.cache,
        exp.scope,
        decisions,
        jobs=n,
        reporter=_reporter(progress),
        warnings=caught,
        experiment=exp.name,
        executor=where,
    )
    _say_needs(outcomes, est, decisions)
    if any(o.status in ("failed", "skipped") and not _optional(stage_plan, o.sid) for o in outcomes.values()):
        raise RunError(outcomes)
    if outcomes["report"].entry is None:  # `only` did not need the report
        return Execution(exp, outcomes, out_dir)
    written, files = write_outputs(exp, stage_plan, outcomes, out_dir, exp.cache, started, caught, unpacked=False)
    return Execution(exp, outcomes, out_dir, written, files)


@_leased
def report_for(exp: Experiment, *, jobs: int | None = None, progress: Progress = False) -> dict[str, Any]:
    """The experiment's report document from the cache, running the stages that are missing first; no output
    directory is written (``diff`` of a config)."""
    from layerscope.pipelines.reports.outputs import report_document
    from layerscope.pipelines.stages import plan_for
    from layerscope.runner.execute import plan_decisions, run_plan

    stage_plan = plan_for(exp)
    decisions = plan_decisions(stage_plan, exp.cache, exp.scope)
    check_room(exp, decisions)
    outcomes = run_plan(
        stage_plan, exp.cache, exp.scope, decisions, jobs=_jobs(jobs), reporter=_reporter(progress), experiment=exp.name
    )
    failed = [o for o in outcomes.values() if o.status == "failed" and not _optional(stage_plan, o.sid)]
    entry = outcomes["report"].entry
    if failed or entry is None:
        why = "; ".join(f"{o.sid} failed: {o.error}" for o in failed) or "the report stage did not run"
        raise StageError(f"{exp.source}: {why}")
    return report_document(exp, entry)


# -- helpers ----------------------------------------------------------------------------------------------
def _optional(stage_plan: Any, sid: str) -> bool:
    """A stage every dependent of which reads it as an optional input (attribution): its failure is recorded in
    the report, and the run goes on."""
    readers = [ps.stage for ps in stage_plan if sid in ps.stage.deps.values()]
    return bool(readers) and all(role in s.optional for s in readers for role, dep in s.deps.items() if dep == sid)


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


def _fix_result(result: SearchResult, snippet: str | None, files: dict[str, Path]) -> FixResult:
    from layerscope.results import FixCost, FixResult

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
        ranked_by=result.ranked_by,
        files=files,
    )
