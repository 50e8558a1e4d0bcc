"""Stages and the plan: declared dependencies -> an acyclic graph with keys computed before anything runs.

A :class:`Stage` is a plain object: an id (``build[fp16]``), a kind, the parameters that determine its
output, its upstream stages by role, and an action that writes files into a directory. Keys are derived
from inputs, never from outputs, so a whole plan -- and whether each stage is cached -- is known without
running anything. A stage's key digests its kind, its code version, its parameters and the *keys* of its
dependencies by role; stage ids are not part of it, so renaming a run keeps its cache.
"""

from __future__ import annotations

import fnmatch
import graphlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from layerscope.runner.errors import UsageError
from layerscope.runner.hashing import digest
from layerscope.runner.suggest import suggest

if TYPE_CHECKING:
    from layerscope.runner.cache import Entry


class Progress(Protocol):
    def start(self, total: float | None, description: str = "") -> None: ...
    def advance(self, amount: float = 1.0) -> None: ...
    def log(self, message: str) -> None: ...


@dataclass
class StageContext:
    """What a stage action gets: where to write, its dependencies' entries by role, progress, threads."""

    out_dir: Path
    inputs: Mapping[str, Entry]
    progress: Progress
    threads: int = 1
    result: dict[str, Any] = field(default_factory=dict)  # small summary stored in the manifest


Action = Callable[[StageContext], None]


@dataclass(frozen=True)
class Stage:
    id: str
    kind: str
    params: Mapping[str, Any]
    action: Action
    version: str
    deps: Mapping[str, str] = field(default_factory=dict)  # role -> upstream stage id
    description: str = ""
    # Modules the action imports. The executor imports them once, in one thread, before running stages in
    # parallel: a first import racing in two threads can fail (numpy's C extension does).
    imports: tuple[str, ...] = ()
    # Roles whose stage may fail without skipping this one: the action then runs without that input (an
    # optional analysis). Such a run is published under a key of its own (see execute.py), never under the
    # stage's key, so a later run whose optional input succeeds is not served the result made without it.
    optional: frozenset[str] = frozenset()
    # The stage's own words for what changed in its params (old, new) -> phrases, used by `plan` to explain
    # staleness in the user's terms; None: the changed key paths of the params are listed.
    explain: Callable[[Mapping[str, Any], Mapping[str, Any]], list[str]] | None = field(default=None, compare=False)
    # Worker resources the action needs, for executors that place stages on machines (Dask: a TensorRT build
    # asks for {"GPU": 1} and lands on a worker started with that resource). The local executor ignores them.
    resources: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class PlannedStage:
    stage: Stage
    key: str
    key_material: Mapping[str, Any]  # what went into the key, to explain staleness


class Plan:
    """Stages in a dependency order, each with its key."""

    def __init__(self, stages: Iterable[Stage]) -> None:
        by_id: dict[str, Stage] = {}
        for s in stages:
            if s.id in by_id:
                raise ValueError(f"duplicate stage id {s.id}")
            by_id[s.id] = s
        sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
        for s in by_id.values():
            for dep in s.deps.values():
                if dep not in by_id:
                    raise ValueError(f"stage {s.id} depends on unknown stage {dep}")
            sorter.add(s.id, *s.deps.values())
        try:
            order = list(sorter.static_order())
        except graphlib.CycleError as exc:
            raise ValueError(f"stage graph has a cycle: {' -> '.join(exc.args[1])}") from exc
        self.stages: dict[str, PlannedStage] = {}
        for sid in order:
            s = by_id[sid]
            material = {
                "kind": s.kind,
                "version": s.version,
                "params": dict(s.params),
                "deps": {role: self.stages[dep].key for role, dep in sorted(s.deps.items())},
            }
            self.stages[sid] = PlannedStage(s, digest(material), material)

    def __iter__(self) -> Any:
        return iter(self.stages.values())

    def __getitem__(self, sid: str) -> PlannedStage:
        return self.stages[sid]

    def ids(self) -> list[str]:
        return list(self.stages)

    def dependents(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {sid: set() for sid in self.stages}
        for ps in self.stages.values():
            for dep in ps.stage.deps.values():
                out[dep].add(ps.stage.id)
        return out

    def downstream(self, roots: Iterable[str]) -> set[str]:
        """The roots and every stage that (transitively) depends on them."""
        dependents = self.dependents()
        return _closure(roots, lambda sid: dependents[sid])

    def upstream(self, roots: Iterable[str]) -> set[str]:
        """The roots and everything they (transitively) depend on."""
        return _closure(roots, lambda sid: self.stages[sid].stage.deps.values())

    def select(self, patterns: Iterable[str]) -> set[str]:
        """Stage ids matching any pattern: an id (``dump[fp16]``), a kind (``dump``) or a glob."""
        chosen: set[str] = set()
        for pat in patterns:
            matched = {
                sid
                for sid, ps in self.stages.items()
                if sid == pat or ps.stage.kind == pat or fnmatch.fnmatchcase(sid, pat)
            }
            # A glob like build[fp16] is a character class to fnmatch; exact ids are tried first above.
            if not matched:
                hint = suggest(pat, self.stages)
                raise UsageError(f"no stage matches {pat!r}{hint} (stages: {', '.join(self.stages)})")
            chosen |= matched
        return chosen


def _closure(roots: Iterable[str], neighbours: Callable[[str], Iterable[str]]) -> set[str]:
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        sid = todo.pop()
        if sid not in seen:
            seen.add(sid)
            todo.extend(neighbours(sid))
    return seen


def merge_plans(plans: Mapping[str, Plan]) -> tuple[Plan, dict[str, dict[str, str]]]:
    """Many plans as one graph in which a stage whose key another plan already has appears once.

    ``plans`` maps a prefix (an experiment of a sweep) to its plan. A stage keeps its id under its prefix
    (``prefix/build[fp16]``) unless an earlier stage has the same key: the keys digest everything that
    determines a stage's output, so the two are the same computation and run once. Returns the merged plan
    and, per prefix, each original stage id -> its id in the merged plan."""
    from dataclasses import replace

    by_key: dict[str, str] = {}
    merged: list[Stage] = []
    ids: dict[str, dict[str, str]] = {}
    for prefix, plan in plans.items():
        mine: dict[str, str] = {}
        for sid, ps in plan.stages.items():  # dependency order: a stage's upstream stages are mapped already
            if ps.key in by_key:
                mine[sid] = by_key[ps.key]
                continue
            new_id = f"{prefix}/{sid}"
            deps = {role: mine[dep] for role, dep in ps.stage.deps.items()}
            merged.append(replace(ps.stage, id=new_id, deps=deps))
            by_key[ps.key] = mine[sid] = new_id
        ids[prefix] = mine
    return Plan(merged), ids
