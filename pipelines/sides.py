"""The two sides of ``layerscope diff``, each turned into a report.

A side is a report.json, a run directory, a config file, or a config at a git revision (``REV:path``, read
with git, nothing checked out). A config's report comes from the cache; stages that are missing run first,
exactly as ``layerscope run`` would run them (so a second diff of the same configs runs nothing), but no
output directory is written.

Relative model and input paths of a config at a revision: a file the revision tracks is read from that
revision (materialised into the cache by blob id), so a model or input that changed between the two versions
is diffed as it was; a file the revision does not track (an ignored data file, a model kept out of git) has
no other version than the working tree's, and is read from the working tree's copy of the config's directory,
with a note in the report saying so.
"""

from __future__ import annotations

import json
import os
import posixpath
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from layerscope.runner.errors import StageError, UsageError

if TYPE_CHECKING:
    from layerscope.pipelines.experiment import Experiment
    from layerscope.runner.cache import Cache
    from layerscope.runner.execute import Reporter

CONFIG_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class Side:
    label: str  # as given on the command line
    kind: str  # "report", "config" or "revision"
    report: dict[str, Any]


def load_side(arg: str, *, cache_dir: str | None, reporter: Reporter | None = None, jobs: int | None = None) -> Side:
    from layerscope.runner.gitrev import parse_rev_path

    rev_path = parse_rev_path(arg)
    if rev_path is not None:
        exp = experiment_at_revision(rev_path.rev, rev_path.path, cache_dir=cache_dir)
        return Side(arg, "revision", report_for(exp, reporter=reporter, jobs=jobs))
    path = Path(arg)
    if path.is_dir() or path.suffix == ".json":
        from layerscope.pipelines.app import load_report

        return Side(arg, "report", load_report(arg))
    if path.suffix in CONFIG_SUFFIXES:
        from layerscope.pipelines.experiment import load_experiment

        return Side(arg, "config", report_for(load_experiment(path, cache_dir=cache_dir), reporter=reporter, jobs=jobs))
    if not path.exists():
        raise UsageError(f"{arg}: no such file or directory (nor REV:path/to/config.yaml)")
    raise UsageError(f"{arg}: expected a report.json, a run directory, a config (.yaml) or REV:path/to/config.yaml")


def experiment_at_revision(rev: str, path: str, *, cache_dir: str | None) -> Experiment:
    from layerscope.pipelines.experiment import load_experiment_text
    from layerscope.runner.gitrev import GitRevision

    git = GitRevision(rev)
    repo_path = git.repo_path(path)
    if not repo_path.endswith(CONFIG_SUFFIXES):
        raise UsageError(f"{rev}:{path}: expected a config (.yaml) at the revision")
    text = git.read_text(repo_path)
    repo_dir = posixpath.dirname(repo_path)
    config_dir = git.toplevel / repo_dir
    notes: list[str] = []

    def resolve(rel: str, cache: Cache) -> Path:
        if os.path.isabs(os.path.expanduser(rel)):
            return Path(rel).expanduser().resolve()  # outside the repository: the same file at any revision
        in_repo = posixpath.normpath(posixpath.join(repo_dir, rel))
        if not in_repo.startswith("../"):
            found = git.materialise(in_repo, cache)
            if found is not None:
                return found
        notes.append(f"{rel} is not tracked at {rev}: read from the working tree")
        return (config_dir / rel).resolve()

    exp = load_experiment_text(text, f"{rev}:{path}", config_dir, cache_dir=cache_dir, resolve_file=resolve)
    return replace(exp, notes=(*exp.notes, *dict.fromkeys(notes))) if notes else exp


def report_for(exp: Experiment, *, reporter: Reporter | None = None, jobs: int | None = None) -> dict[str, Any]:
    """The experiment's report from the cache, running the stages that are missing first."""
    from layerscope.pipelines.stages import plan_for
    from layerscope.runner.execute import plan_decisions, run_plan

    plan = plan_for(exp)
    decisions = plan_decisions(plan, exp.cache, exp.scope)
    outcomes = run_plan(
        plan, exp.cache, exp.scope, decisions, jobs=jobs or min(4, os.cpu_count() or 1), reporter=reporter
    )
    failed = [o for o in outcomes.values() if o.status == "failed"]
    entry = outcomes["report"].entry
    if failed or entry is None:
        why = "; ".join(f"{o.sid} failed: {o.error}" for o in failed) or "the report stage did not run"
        raise StageError(f"{exp.source}: {why}")
    report: dict[str, Any] = json.loads(entry.file("report.json").read_text())
    report["experiment"] = {"config": exp.source, **report["experiment"]}  # as write_outputs does
    return report
