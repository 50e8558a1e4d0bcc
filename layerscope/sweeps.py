"""``layerscope sweep``: many experiments (configs × a matrix of ``--set`` overrides) run as one graph.

A sweep file (schemas/sweep.schema.json) names configs by path or glob and a matrix of overrides; every
(config, combination) is an experiment. Their plans are merged into one graph (:func:`runner.graph.merge_plans`)
in which a stage whose key another experiment already has appears once: the FP32 reference of a model, its
calibration and any identical candidate are computed once, whatever executor runs the graph. Each experiment
then gets its own report, exactly as ``layerscope run`` writes it, and the sweep one summary
(:mod:`layerscope.sweep_summary`) linking to them. A stage failure fails only the experiments that need it.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import json
import os
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from layerscope.runner.errors import SpecError, UsageError

if TYPE_CHECKING:
    from layerscope.pipelines.experiment import Experiment
    from layerscope.runner.execute import ExecutorChoice, Outcome, Reporter
    from layerscope.runner.graph import Plan

DEFAULT_FORMATS = ("json", "md", "html")
MAX_EXPERIMENTS = 2000  # a matrix multiplies: a typo in it should not plan a million experiments


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep file: its experiments (config, overrides, id) and where the summary goes."""

    name: str
    source: str
    experiments: tuple[tuple[str, Path, tuple[str, ...]], ...]  # (id, config path, overrides)
    out_dir: Path
    formats: tuple[str, ...]


def load_spec(path: str | os.PathLike[str], *, overrides: Iterable[str] = (), out: str | None = None) -> SweepSpec:
    """Read and validate a sweep file; expand its globs and its matrix (every problem at once, with positions)."""
    from layerscope.runner.spec import load_document, nonfinite_problems, validate_schema
    from layerscope.schemas.loader import load_schema

    file = Path(path)
    doc = load_document(file)
    problems = validate_schema(doc, load_schema("sweep")) + nonfinite_problems(doc)
    if problems:
        raise SpecError(problems, doc.source)
    data: dict[str, Any] = doc.data
    base = file.resolve().parent
    configs: list[Path] = []
    for i, pattern in enumerate(data["configs"]):
        full = pattern if os.path.isabs(pattern) else str(base / pattern)
        found = sorted(Path(p) for p in glob.glob(full, recursive=True)) if glob.has_magic(pattern) else [Path(full)]
        found = [p for p in found if p.is_file()]
        if not found:
            raise SpecError([doc.problem(f"/configs/{i}", f"{pattern!r} matches no config file")], doc.source)
        configs += [p for p in found if p not in configs]
    matrix: dict[str, list[Any]] = data.get("matrix") or {}
    combos = list(itertools.product(*matrix.values())) if matrix else [()]
    if len(configs) * len(combos) > MAX_EXPERIMENTS:
        raise SpecError(
            [doc.problem("/matrix", f"{len(configs) * len(combos)} experiments; a sweep may have {MAX_EXPERIMENTS}")],
            doc.source,
        )
    common = [*data.get("set", []), *overrides]
    experiments: list[tuple[str, Path, tuple[str, ...]]] = []
    seen: set[str] = set()
    for config in configs:
        for combo in combos:
            sets = [f"{k}={json.dumps(v)}" for k, v in zip(matrix, combo, strict=True)]
            label = config.stem + "".join(f" {k}={_short(v)}" for k, v in zip(matrix, combo, strict=True))
            ident = label
            n = 2
            while ident in seen:  # two configs of the same name in different folders
                ident, n = f"{label} #{n}", n + 1
            seen.add(ident)
            experiments.append((ident, config, (*common, *sets)))
    name = str(data.get("name") or file.stem)
    report = data.get("report") or {}
    out_dir = Path(out) if out else Path(report.get("dir") or f"sweep-{slug(name)}")
    if not out_dir.is_absolute() and not out and report.get("dir"):
        out_dir = base / out_dir  # the file's own setting is relative to the file, as a config's paths are
    return SweepSpec(name, doc.source, tuple(experiments), out_dir, tuple(report.get("formats") or DEFAULT_FORMATS))


def _short(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def slug(text: str) -> str:
    """A folder name for an experiment id: safe characters only, bounded."""
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", text).strip("_")[:120] or "experiment"


# -- running --------------------------------------------------------------------------------------------
@dataclass
class ExperimentRun:
    """One experiment of a sweep: what it is, what its stages did, and its report (None when a stage failed)."""

    id: str
    config: Path
    overrides: tuple[str, ...]
    out_dir: Path
    experiment: Experiment
    plan: Plan
    outcomes: dict[str, Outcome]
    shared: int  # stages it shares with an earlier experiment of the sweep (run once for both)
    owned: frozenset[str]  # its stages that are its own in the graph (not shared with an earlier one)
    report: dict[str, Any] | None = None
    files: dict[str, Path] | None = None
    error: str | None = None


def load_experiments(spec: SweepSpec, cache_dir: str | None) -> list[tuple[str, Path, tuple[str, ...], Experiment]]:
    """Every experiment validated before anything runs: one invalid combination is a usage error up front."""
    from layerscope.pipelines.experiment import load_experiment

    return [(i, c, o, load_experiment(c, list(o), cache_dir=cache_dir)) for i, c, o in spec.experiments]


def run_sweep(
    spec: SweepSpec,
    experiments: list[tuple[str, Path, tuple[str, ...], Experiment]],
    *,
    jobs: int,
    reporter: Reporter,
    executor: ExecutorChoice,
    force: Iterable[str] = (),
) -> tuple[list[ExperimentRun], dict[str, int]]:
    """Run the experiments as one graph per cache (normally one) and write each experiment's report; with the
    number of distinct stages and of those that ran."""
    from layerscope.pipelines.reports.outputs import write_outputs
    from layerscope.pipelines.stages import plan_for
    from layerscope.runner.execute import decide, make_executor, remember
    from layerscope.runner.graph import merge_plans

    started = time.time()
    by_cache: dict[str, list[int]] = {}
    for n, (_i, _c, _o, exp) in enumerate(experiments):
        by_cache.setdefault(str(exp.cache.root), []).append(n)
    runs: list[ExperimentRun] = []
    stats = {"unique_stages": 0, "ran": 0}
    folders: set[str] = set()
    for members in by_cache.values():
        cache = experiments[members[0]][3].cache
        plans = {str(n): plan_for(experiments[n][3]) for n in members}
        merged, ids = merge_plans(plans)
        forced = _forced(plans, ids, list(force))
        decisions = decide(merged, cache, force=forced)
        _check_room(experiments, members, ids, decisions)
        # The entries are shared by experiments: `cache ls` groups them under the sweep's name.
        runner = make_executor(executor, cache, jobs=jobs, reporter=reporter, experiment=f"sweep {spec.name}")
        outcomes = runner.execute(merged, decisions)
        stats["unique_stages"] += len(outcomes)
        stats["ran"] += sum(1 for o in outcomes.values() if o.status == "ran")
        for n in members:
            ident, config, overrides, exp = experiments[n]
            mine = {sid: replace(outcomes[m], sid=sid) for sid, m in ids[str(n)].items()}
            owned = frozenset(sid for sid, m in ids[str(n)].items() if m.startswith(f"{n}/"))
            folder = slug(ident)
            while folder in folders:
                folder += "_"
            folders.add(folder)
            run = ExperimentRun(
                ident, config, overrides, spec.out_dir / folder, exp, plans[str(n)], mine, len(mine) - len(owned), owned
            )
            remember(cache, exp.scope, run.plan, mine)
            failed = [o for o in mine.values() if o.status in ("failed", "skipped") and not _optional(run.plan, o.sid)]
            if failed:
                run.error = "; ".join(
                    f"{o.sid} failed: {o.error}" if o.status == "failed" else f"{o.sid} {o.reason}" for o in failed
                )
            else:
                run.report, run.files = write_outputs(exp, run.plan, mine, run.out_dir, cache, started, runner.warnings)
            runs.append(run)
    order = {e[0]: k for k, e in enumerate(experiments)}
    return sorted(runs, key=lambda r: order[r.id]), stats


def _forced(plans: Mapping[str, Plan], ids: Mapping[str, Mapping[str, str]], force: list[str]) -> set[str]:
    """--force patterns name stages as in one experiment (``dump[fp16]``, ``build``, ``*``): in every one."""
    forced: set[str] = set()
    for pattern in force:
        matched: set[str] = set()
        for prefix, plan in plans.items():
            with contextlib.suppress(UsageError):  # not in this experiment; an error only if in none
                matched |= {ids[prefix][sid] for sid in plan.select([pattern])}
        if not matched:
            raise UsageError(f"--force {pattern!r}: no stage of the sweep's experiments matches it")
        forced |= matched
    return forced


def _optional(plan: Plan, sid: str) -> bool:
    """A stage the report can do without (attribution): its failure is recorded in the report."""
    from layerscope.api import _optional as optional

    return optional(plan, sid)


def _check_room(
    experiments: list[tuple[str, Path, tuple[str, ...], Experiment]],
    members: list[int],
    ids: Mapping[str, Mapping[str, str]],
    decisions: Mapping[str, Any],
) -> None:
    """Refuse, before anything runs, a sweep whose dumps cannot fit (each experiment's own estimate)."""
    from layerscope.api import check_room

    for n in members:
        exp = experiments[n][3]
        check_room(exp, {sid: decisions[m] for sid, m in ids[str(n)].items()})
