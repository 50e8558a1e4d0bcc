"""Decide what must run, then run it: cached stages are skipped, independent stages run in parallel, and a
failed stage skips its dependents (saying which).

Deciding is separate from running so that ``plan`` can print exactly what ``run`` would do. A stage runs
only if it is *needed* -- it is a target, or a stage that will run reads it -- and it has no valid cache
entry (or is forced). So a cached report needs nothing upstream, and a cached dump does not need its
engine even if the engine was evicted.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

from layerscope.runner.cache import Cache, Entry, Lookup
from layerscope.runner.capture import routed, stage_warnings
from layerscope.runner.errors import LayerscopeError, UsageError
from layerscope.runner.graph import Plan, PlannedStage, Progress, StageContext
from layerscope.runner.hashing import canonical_json, digest
from layerscope.runner.resources import disk_full, is_disk_full

Status = Literal["cached", "run", "not-needed"]
OutcomeStatus = Literal["cached", "ran", "failed", "skipped", "not-needed"]
_LOST = frozenset({"failed", "skipped"})


@dataclass(frozen=True)
class Decision:
    sid: str
    status: Status
    reason: str
    lookup: Lookup


@dataclass
class Outcome:
    sid: str
    status: OutcomeStatus
    reason: str = ""
    entry: Entry | None = None
    seconds: float = 0.0
    error: str | None = None
    traceback: str | None = None
    fault: str | None = None  # "disk" or "memory": the machine ran out, the stage has no bug
    without: tuple[str, ...] = ()  # optional inputs it ran without (their stages failed)
    worker: str | None = None  # where it ran, when not in this process (a Dask worker's address)


class Reporter(Protocol):
    def stage_started(self, sid: str, description: str) -> Progress: ...
    def stage_finished(self, outcome: Outcome) -> None: ...


class _NullProgress:
    def start(self, total: float | None, description: str = "") -> None:
        pass

    def advance(self, amount: float = 1.0) -> None:
        pass

    def log(self, message: str) -> None:
        pass


class NullReporter:
    def stage_started(self, sid: str, description: str) -> Progress:
        return _NullProgress()

    def stage_finished(self, outcome: Outcome) -> None:
        pass


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out or {prefix: {}}
    return {prefix: value}


def explain_change(
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    explain: Callable[[Mapping[str, Any], Mapping[str, Any]], list[str]] | None = None,
) -> str:
    """Which parts of a stage's key material changed, in words (``explain``: the stage's words for its params)."""
    old, new = json.loads(canonical_json(old)), json.loads(canonical_json(new))
    a, b = _flatten(old), _flatten(new)
    changed = sorted(k for k in a.keys() | b.keys() if a.get(k, ...) != b.get(k, ...))
    parts: list[str] = []
    deps = [k.split(".", 1)[1] for k in changed if k.startswith("deps.")]
    params = [k.split(".", 1)[1] for k in changed if k.startswith("params.")]
    if "version" in changed:
        parts.append("stage code changed")
    if params and explain is not None:
        params = explain(old.get("params", {}), new.get("params", {})) or params
    if params:
        shown = ", ".join(params[:4]) + (f" (+{len(params) - 4} more)" if len(params) > 4 else "")
        parts.append(f"changed {shown}")
    if deps:
        parts.append(f"upstream {', '.join(deps)} changed")
    return "; ".join(parts) or "parameters changed"


def decide(
    plan: Plan,
    cache: Cache,
    *,
    state: Mapping[str, Any] | None = None,
    force: Iterable[str] = (),
    targets: Iterable[str] | None = None,
) -> dict[str, Decision]:
    forced = plan.downstream(force)
    cache.claim(ps.key for ps in plan)  # a live lease on the whole plan before anything is decided
    lookups = {ps.stage.id: cache.lookup(ps.stage.kind, ps.key, touch=False) for ps in plan}
    dependents = plan.dependents()
    # By default the targets are the final products: stages nothing else reads.
    target_ids = set(targets) if targets is not None else {sid for sid, ds in dependents.items() if not ds}
    needed: set[str] = set()
    decisions: dict[str, Decision] = {}
    for ps in reversed(list(plan)):
        sid = ps.stage.id
        lk = lookups[sid]
        # A corrupt entry is replaced by the next run that plans its stage, even when nothing downstream needs it
        # now (a cached report): a damaged artifact must not linger (a run folder links to its dump).
        corrupt = lk.entry is None and lk.reason != "missing" and targets is None
        is_needed = sid in target_ids or sid in needed or corrupt
        if is_needed and sid in forced:
            decisions[sid] = Decision(sid, "run", "forced", lk)
        elif lk.entry is not None:
            decisions[sid] = Decision(sid, "cached", "cached", lk)
        elif is_needed:
            decisions[sid] = Decision(sid, "run", _why_missing(ps, lk, state), lk)
        else:
            why = "not needed: what reads it is cached" if targets is None else "not needed for the selected stages"
            decisions[sid] = Decision(sid, "not-needed", f"{why} ({lk.reason})", lk)
        if decisions[sid].status == "run":
            needed.update(ps.stage.deps.values())
    return {sid: decisions[sid] for sid in plan.ids()}


def _why_missing(ps: PlannedStage, lk: Lookup, state: Mapping[str, Any] | None) -> str:
    if lk.reason != "missing":
        return lk.reason
    previous = (state or {}).get(ps.stage.id)
    if not previous:
        return "first run: nothing cached for it"
    if previous.get("key") == ps.key:
        return "cache entry missing (removed by gc or clear)"
    return explain_change(previous.get("material", {}), ps.key_material, ps.stage.explain)


class Executor:
    def __init__(
        self, cache: Cache, *, jobs: int = 1, reporter: Reporter | None = None, experiment: str | None = None
    ) -> None:
        self.cache = cache
        self.experiment = experiment  # recorded in the entries it makes, for `cache ls` (not part of any key)
        self.jobs = max(1, jobs)
        self.reporter = reporter or NullReporter()
        self.cpus = os.cpu_count() or 1
        self.warnings: list[str] = []

    def execute(self, plan: Plan, decisions: Mapping[str, Decision]) -> dict[str, Outcome]:
        with routed() as unattributed:
            outcomes = self._execute(plan, decisions)
        self.warnings = unattributed  # raised outside a stage's own thread (its workers)
        return outcomes

    def _execute(self, plan: Plan, decisions: Mapping[str, Decision]) -> dict[str, Outcome]:
        outcomes = settled(plan, decisions, self.cache, self.reporter)
        pending = [sid for sid in plan.ids()]
        to_run = [sid for sid in pending if decisions[sid].status == "run"]
        for module in dict.fromkeys(m for sid in to_run for m in plan[sid].stage.imports):
            with contextlib.suppress(ImportError):  # optional (an accelerated path): the stage copes without it
                importlib.import_module(module)
        running: dict[Future[Outcome], str] = {}
        with ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="stage") as pool:
            while to_run or running:
                for sid in list(to_run):
                    deps = plan[sid].stage.deps
                    optional = plan[sid].stage.optional
                    lost = {role for role, d in deps.items() if (o := outcomes.get(d)) and o.status in _LOST}
                    failed = [deps[role] for role in sorted(lost - optional)]
                    if failed:
                        to_run.remove(sid)
                        outcomes[sid] = Outcome(sid, "skipped", f"skipped: depends on failed {', '.join(failed)}")
                        self.reporter.stage_finished(outcomes[sid])
                    elif all(
                        role in lost or ((o := outcomes.get(d)) is not None and o.entry is not None)
                        for role, d in deps.items()
                    ):
                        if len(running) >= self.jobs:
                            break
                        to_run.remove(sid)
                        inputs = {role: outcomes[d].entry for role, d in deps.items() if role not in lost}
                        # Share the cores among what runs now: a stage running alone gets all of them.
                        startable = sum(1 for s in to_run if self._ready(plan, s, outcomes)) + 1
                        threads = max(1, self.cpus // max(1, min(self.jobs, len(running) + startable)))
                        fut = pool.submit(self._run_one, plan, sid, decisions[sid], inputs, threads)  # type: ignore[arg-type]
                        running[fut] = sid
                if not running:
                    if to_run:  # nothing can start and nothing runs: a dependency did not resolve
                        for sid in to_run:
                            outcomes[sid] = Outcome(sid, "skipped", "skipped: dependencies unavailable")
                            self.reporter.stage_finished(outcomes[sid])
                        to_run.clear()
                    break
                done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for fut in done:
                    sid = running.pop(fut)
                    outcomes[sid] = fut.result()
                    self.reporter.stage_finished(outcomes[sid])
        return {sid: outcomes[sid] for sid in plan.ids()}

    @staticmethod
    def _ready(plan: Plan, sid: str, outcomes: Mapping[str, Outcome]) -> bool:
        stage = plan[sid].stage
        return all(
            (o := outcomes.get(d)) is not None
            and (o.entry is not None or (role in stage.optional and o.status in _LOST))
            for role, d in stage.deps.items()
        )

    def _run_one(self, plan: Plan, sid: str, decision: Decision, inputs: Mapping[str, Entry], threads: int) -> Outcome:
        progress = self.reporter.stage_started(sid, plan[sid].stage.description or sid)
        return run_stage(self.cache, plan[sid], decision.reason, inputs, threads, progress, self.experiment)


def settled(plan: Plan, decisions: Mapping[str, Decision], cache: Cache, reporter: Reporter) -> dict[str, Outcome]:
    """The outcomes of the stages that need not run (cached, or not needed), for any executor."""
    outcomes: dict[str, Outcome] = {}
    for sid in plan.ids():
        d = decisions[sid]
        if d.status == "not-needed":
            outcomes[sid] = Outcome(sid, "not-needed", d.reason)
        elif d.status == "cached":
            outcomes[sid] = Outcome(sid, "cached", "cached", entry=d.lookup.entry)
            if d.lookup.entry is not None:
                cache.lookup(d.lookup.entry.kind, d.lookup.entry.key)  # records the use for gc
            reporter.stage_finished(outcomes[sid])
    return outcomes


def run_stage(
    cache: Cache,
    ps: PlannedStage,
    reason: str,
    inputs: Mapping[str, Entry],
    threads: int,
    progress: Progress,
    experiment: str | None = None,
) -> Outcome:
    """Run one stage into the cache: under its key's lock, into a temporary directory published atomically.

    Shared by every executor (the local threads here, a Dask worker in :mod:`.cluster`): a stage's failure is an
    outcome, never an exception, so one failing stage cannot take the others down with it. ``experiment`` is
    recorded in the entry's manifest (``cache ls`` groups by it; not part of any key)."""
    stage = ps.stage
    sid = stage.id
    start = time.perf_counter()
    key = ps.key
    without = sorted(set(stage.deps) - set(inputs))
    if without:  # optional inputs failed: a result of its own, never served for the stage's key
        key = digest({"key": ps.key, "without": without})
    try:
        with cache.lock(key):
            if reason != "forced":
                lk = cache.lookup(stage.kind, key)
                if lk.entry is not None:  # another process published it while we waited
                    return Outcome(sid, "cached", "cached (made by a concurrent run)", entry=lk.entry)
            with cache.staging(stage.kind, key) as tmp:
                ctx = StageContext(out_dir=tmp, inputs=inputs, progress=progress, threads=threads)
                with stage_warnings() as caught:
                    stage.action(ctx)
                if caught:  # kept in the manifest: a cached stage's report shows them too
                    ctx.result["warnings"] = list(caught)
                entry = cache.publish(
                    stage.kind,
                    key,
                    tmp,
                    {
                        "stage": sid,
                        "material": dict(ps.key_material),
                        "result": ctx.result,
                        **({"experiment": experiment} if experiment else {}),
                    },
                )
        return Outcome(sid, "ran", reason, entry=entry, seconds=time.perf_counter() - start, without=tuple(without))
    except LayerscopeError as exc:
        return _failed(sid, reason, start, exc.render())
    except MemoryError as exc:  # the machine's fault, not the stage's: say what happened, not "a bug"
        return _failed(sid, reason, start, f"out of memory{f' ({exc})' if str(exc) else ''}", "memory")
    except OSError as exc:
        if not is_disk_full(exc):
            return _failed(sid, reason, start, f"internal error: {type(exc).__name__}: {exc}")
        where = exc.filename or cache.base / "tmp"
        return _failed(sid, reason, start, disk_full(exc, where).render(), "disk")
    except Exception as exc:  # a bug in a stage must not take the other stages down with it
        return _failed(sid, reason, start, f"internal error: {type(exc).__name__}: {exc}")


def _failed(sid: str, reason: str, start: float, error: str, fault: str | None = None) -> Outcome:
    """The outcome of a stage that raised (call inside the except block: it keeps the traceback for -v)."""
    return Outcome(
        sid,
        "failed",
        reason,
        seconds=time.perf_counter() - start,
        error=error,
        traceback=traceback.format_exc(),
        fault=fault,
    )


def plan_decisions(
    plan: Plan, cache: Cache, scope: str, *, force: Iterable[str] = (), only: Iterable[str] = ()
) -> dict[str, Decision]:
    """Decisions for a plan from command-line style selections: ``force`` and ``only`` hold stage ids, kinds
    or globs (``*`` in ``force`` means every stage)."""
    force = list(force)
    forced = set(plan.ids()) if "*" in force else plan.select(force) if force else set()
    only = list(only)
    targets = plan.upstream(plan.select(only)) if only else None
    return decide(plan, cache, state=cache.read_state(scope), force=forced, targets=targets)


@dataclass(frozen=True)
class ExecutorChoice:
    """Where stages run: ``local`` threads of this process (the default), or ``dask``: the workers of a Dask
    cluster at ``address`` (None: a LocalCluster of worker processes on this machine started for the run).
    ``visible`` are paths besides the cache that every worker must see (the models stages read)."""

    kind: Literal["local", "dask"] = "local"
    address: str | None = None
    visible: tuple[str, ...] = ()
    # What a worker must share with this process for the keys computed here to describe its results (code,
    # library versions, CPU): a picklable function, evaluated here and on every worker and compared.
    environment: Callable[[], Mapping[str, Any]] | None = None

    @staticmethod
    def parse(kind: str | None, address: str | None = None) -> ExecutorChoice:
        """From ``--executor``/``--scheduler``: a scheduler address means Dask; Dask without one reads
        ``DASK_SCHEDULER_ADDRESS`` (Dask's own variable) and starts a LocalCluster when it is unset."""
        kind = kind or ("dask" if address else "local")
        if kind not in ("local", "dask"):
            raise UsageError(f"unknown executor {kind!r}: choose local or dask")
        if kind == "local":
            if address:
                raise UsageError("--scheduler needs --executor dask")
            return ExecutorChoice()
        return ExecutorChoice("dask", address or os.environ.get("DASK_SCHEDULER_ADDRESS") or None)

    def needing(
        self, paths: Iterable[str], environment: Callable[[], Mapping[str, Any]] | None = None
    ) -> ExecutorChoice:
        """The same choice, with paths every worker must see and the environment they must share."""
        visible = tuple(dict.fromkeys([*self.visible, *paths]))
        return replace(self, visible=visible, environment=environment or self.environment)


class StageExecutor(Protocol):
    warnings: list[str]

    def execute(self, plan: Plan, decisions: Mapping[str, Decision]) -> dict[str, Outcome]: ...


def make_executor(
    choice: ExecutorChoice | None,
    cache: Cache,
    *,
    jobs: int = 1,
    reporter: Reporter | None = None,
    experiment: str | None = None,
) -> StageExecutor:
    """The executor for a choice; ``jobs`` is the number of parallel stages (threads, or a LocalCluster's
    worker processes); ``experiment`` is recorded in the entries made."""
    if choice is None or choice.kind == "local":
        return Executor(cache, jobs=jobs, reporter=reporter, experiment=experiment)
    from layerscope.runner.cluster import DaskExecutor

    return DaskExecutor(
        cache,
        address=choice.address,
        workers=jobs,
        reporter=reporter,
        visible=choice.visible,
        environment=choice.environment,
        experiment=experiment,
    )


def run_plan(
    plan: Plan,
    cache: Cache,
    scope: str,
    decisions: Mapping[str, Decision],
    *,
    jobs: int = 1,
    reporter: Reporter | None = None,
    warnings: list[str] | None = None,
    executor: ExecutorChoice | None = None,
    experiment: str | None = None,
) -> dict[str, Outcome]:
    """Execute decided stages and remember what each stage last ran with (to explain staleness later).
    Warnings raised outside a stage's own thread are appended to ``warnings`` (each stage's are in its entry).
    ``experiment`` names the experiment in the entries made (``cache ls`` groups by it)."""
    runner = make_executor(executor, cache, jobs=jobs, reporter=reporter, experiment=experiment)
    outcomes = runner.execute(plan, decisions)
    if warnings is not None:
        warnings.extend(runner.warnings)
    remember(cache, scope, plan, outcomes)
    return outcomes


def remember(cache: Cache, scope: str, plan: Plan, outcomes: Mapping[str, Outcome]) -> None:
    """Write what each stage last ran with, to explain staleness later."""
    with contextlib.suppress(OSError):  # it only explains staleness later: a read-only or full cache is no failure
        previous = cache.read_state(scope)
        state = new_state(plan, outcomes, previous)
        if _keys(state) != _keys(previous):  # a key is the digest of its material: same keys, same state
            cache.write_state(scope, state)


def _keys(state: Mapping[str, Any]) -> dict[str, Any]:
    return {sid: entry.get("key") if isinstance(entry, dict) else entry for sid, entry in state.items()}


def new_state(plan: Plan, outcomes: Mapping[str, Outcome], previous: Mapping[str, Any]) -> dict[str, Any]:
    """The state to remember after a run: for each stage that now has an entry, its key and material."""
    state: dict[str, Any] = {k: v for k, v in previous.items() if k in plan.stages}
    for sid, out in outcomes.items():
        if out.status in {"cached", "ran"} and not out.without:  # a partial result is not the stage's entry
            ps = plan[sid]
            state[sid] = {"key": ps.key, "material": ps.key_material}
    return state
