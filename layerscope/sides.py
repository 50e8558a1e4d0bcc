"""The two sides of ``layerscope diff``, each turned into a report document.

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

import posixpath
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from layerscope.runner.errors import UsageError
from layerscope.runner.paths import confined, is_explicit

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


def load_side(
    arg: str,
    *,
    cache_dir: str | None,
    reporter: Reporter | None = None,
    jobs: int | None = None,
    overrides: list[str] | None = None,
) -> Side:
    """One side; ``overrides`` (``--set``) apply to a config side and are an error on a report side."""
    from layerscope.api import report_for
    from layerscope.runner.gitrev import parse_rev_path

    progress = reporter if reporter is not None else False
    rev_path = parse_rev_path(arg)
    if rev_path is not None:
        exp = experiment_at_revision(rev_path.rev, rev_path.path, cache_dir=cache_dir, overrides=overrides)
        return Side(arg, "revision", report_for(exp, progress=progress, jobs=jobs))
    path = Path(arg)
    if path.is_dir() or path.suffix == ".json":
        from layerscope.pipelines.reports.read import read_report

        if overrides:
            raise UsageError(
                f"{arg}: --set changes a config side; this side is a finished report",
                hint="give the config (or REV:path/to/config.yaml) to run it with the overrides",
            )

        return Side(arg, "report", read_report(arg))
    if path.suffix in CONFIG_SUFFIXES:
        from layerscope.pipelines.experiment import load_experiment

        exp = load_experiment(path, overrides=overrides, cache_dir=cache_dir)
        return Side(arg, "config", report_for(exp, progress=progress, jobs=jobs))
    if not path.exists():
        raise UsageError(f"{arg}: no such file or directory (nor REV:path/to/config.yaml)")
    raise UsageError(f"{arg}: expected a report.json, a run directory, a config (.yaml) or REV:path/to/config.yaml")


def experiment_at_revision(
    rev: str, path: str, *, cache_dir: str | None, overrides: list[str] | None = None
) -> Experiment:
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
        if is_explicit(rel):
            return Path(rel).expanduser().resolve()  # outside the repository: the same file at any revision
        # The path rule of every config (runner/paths.py): a relative path stays inside the config's folder.
        if posixpath.normpath(rel).split("/")[0] == "..":
            confined(config_dir, rel, "the path")  # raises, with the usual message
        in_repo = posixpath.normpath(posixpath.join(repo_dir, rel))
        found = git.materialise(in_repo, cache)
        if found is not None:
            return found
        notes.append(f"{rel} is not tracked at {rev}: read from the working tree")
        return confined(config_dir, rel, "the path")

    exp = load_experiment_text(text, f"{rev}:{path}", config_dir, overrides, cache_dir=cache_dir, resolve_file=resolve)
    return replace(exp, notes=(*exp.notes, *dict.fromkeys(notes))) if notes else exp
