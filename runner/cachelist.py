"""What the artifact cache holds, grouped for a person: by experiment and run, with totals and filters.

``cache ls`` of a cache after one ``fix`` is hundreds of entries named like ``build[fp16~36:fba9daef]`` (one
per configuration the search tried). Listed flat they say nothing; grouped by the experiment that made them and
the run they belong to, with the search's trials folded into one line per run, they say where the space went.
An entry records the experiment that made it (the executor writes it into the manifest); entries from before
that, and the derived files every experiment shares (model summaries, chart figures, git blobs), are grouped
as such.
"""

from __future__ import annotations

import fnmatch
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

UNKNOWN = "(not recorded)"
SHARED = "(shared)"
_STAGE = re.compile(r"^(?P<kind>[a-z_]+)\[(?P<run>[^\]~]+)(?P<trial>~[^\]]*)?\]$")


@dataclass(frozen=True)
class Item:
    """One cache entry as listed."""

    path: Path
    kind: str  # build, dump, compare, attribute, report, model, summary, figures, markdown, gitblob
    stage: str  # the stage id (``build[fp16]``) or what made it (``model summary``)
    experiment: str
    run: str  # the run it belongs to ("" for the report and shared files)
    trial: bool  # made by `fix` trying a set of pinned layers
    size: int
    used: float  # last use (mtime), seconds since the epoch


def item(path: Path, manifest: dict[str, Any] | None) -> Item | None:
    """The listing of one entry (None: removed by a concurrent gc while listed)."""
    try:
        used = path.stat().st_mtime
    except FileNotFoundError:
        return None
    kind = path.parent.parent.name
    if manifest is None:
        return Item(path, kind, "(corrupt)", UNKNOWN, "", False, 0, used)
    stage = str(manifest.get("stage", "(unnamed)"))
    size = sum(int(f.get("size", 0)) for f in manifest.get("files", {}).values())
    m = _STAGE.match(stage)
    is_stage = m is not None or stage == "report"
    experiment = str(manifest.get("experiment") or (UNKNOWN if is_stage else SHARED))
    run = m.group("run") if m else ""
    return Item(path, kind, stage, experiment, run, bool(m and m.group("trial")), size, used)


def select(
    items: Iterable[Item],
    *,
    kinds: Iterable[str] = (),
    experiment: str | None = None,
    older_than_s: float | None = None,
) -> list[Item]:
    """The items of the given kinds, of experiments matching a glob, unused for longer than ``older_than_s``."""
    wanted = set(kinds)
    now = time.time()
    return [
        x
        for x in items
        if (not wanted or x.kind in wanted)
        and (experiment is None or fnmatch.fnmatchcase(x.experiment, experiment))
        and (older_than_s is None or now - x.used > older_than_s)
    ]


@dataclass(frozen=True)
class Group:
    experiment: str
    run: str  # "" for the report and shared files; "fp16 (fix trials)" for the search's entries
    count: int
    size: int
    kinds: tuple[str, ...]  # in pipeline order
    last_used: float


_ORDER = ("build", "dump", "compare", "attribute", "report", "model", "summary", "figures", "markdown", "gitblob")


def groups(items: Iterable[Item]) -> list[Group]:
    """One group per experiment and run (the search's trials of a run apart), largest experiment first, then by
    run name."""
    buckets: dict[tuple[str, str], list[Item]] = {}
    for x in items:
        run = f"{x.run} (fix trials)" if x.trial else x.run
        buckets.setdefault((x.experiment, run), []).append(x)
    by_exp: dict[str, int] = {}
    for (exp, _), xs in buckets.items():
        by_exp[exp] = by_exp.get(exp, 0) + sum(x.size for x in xs)
    out = [
        Group(
            exp,
            run,
            len(xs),
            sum(x.size for x in xs),
            tuple(sorted({x.kind for x in xs}, key=lambda k: (_ORDER.index(k) if k in _ORDER else len(_ORDER), k))),
            max(x.used for x in xs),
        )
        for (exp, run), xs in buckets.items()
    ]
    special = (UNKNOWN, SHARED)
    return sorted(out, key=lambda g: (g.experiment in special, -by_exp[g.experiment], g.experiment, g.run))
