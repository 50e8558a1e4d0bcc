"""``layerscope cache ls|gc|clear``: the artifact cache seen and cleaned from the command line.

ls groups the entries by experiment and run with totals (runner/cachelist.py) and filters them; gc with no
limit says what it removes and how to free space; gc and clear print only what they removed, name the run
folders whose links they break and the live runs whose entries they kept, and exit 3 when something could not
be removed (runner/cache.py, runner/leases.py); clear asks before deleting anything. Sizes and durations
are read strictly: ``--max-size -5`` is an error, not "delete everything".
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

from layerscope.runner.errors import EXIT_OK, EXIT_STAGE, UsageError


def _size(text: str) -> int:
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    num, unit = (t[:-1], t[-1]) if t and t[-1] in units else (t, "")
    try:
        value = float(num) * units[unit]
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise UsageError(f"--max-size: cannot read {text!r} as a size of at least 0 (e.g. 20G, 500M)")
    return int(value)


def _duration(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    t = text.strip().lower()
    try:
        value = float(t[:-1]) * units[t[-1]] if t and t[-1] in units else float(t)
    except (ValueError, KeyError):
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise UsageError(f"--older-than: cannot read {text!r} as a duration of at least 0 (e.g. 30d, 12h)")
    return value


def cmd_cache(args: argparse.Namespace) -> int:
    from layerscope.runner.cache import Cache

    gc_only = [f for f, v in (("--max-size", args.max_size), ("--dry-run", args.dry_run)) if v]
    ls_flags = (("--kind", args.kind), ("--experiment", args.experiment), ("--entries", args.entries))
    ls_only = [f for f, v in ls_flags if v]
    if args.action != "gc" and gc_only:
        raise UsageError(f"{gc_only[0]} applies to `cache gc` only")
    if args.action != "ls" and ls_only:
        raise UsageError(f"{ls_only[0]} applies to `cache ls` only")
    if args.action == "clear" and args.older_than is not None:
        raise UsageError("--older-than applies to `cache gc` and `cache ls` only")
    if args.yes and args.action != "clear":
        raise UsageError("--yes applies to `cache clear` only")
    max_bytes = _size(args.max_size) if args.max_size is not None else None
    older = _duration(args.older_than) if args.older_than is not None else None
    cache = Cache(Path(args.cache_dir).expanduser() if args.cache_dir else default_cache_dir())
    if args.action == "ls":
        return _ls(cache, args, older)
    if args.action == "gc":
        removal = cache.gc(max_bytes=max_bytes, older_than_s=older, dry_run=args.dry_run)
        verb = "would remove" if args.dry_run else "removed"
        for path, size, why in removal.removed:
            print(f"{verb} {path} ({_human(size)}, {why})")
        print(f"{verb} {len(removal.removed)} entries, {_human(removal.removed_bytes)}")
        if max_bytes is None and older is None:
            _explain_plain_gc(cache, bool(removal.removed))
        return _removal_tail(removal, "would break" if args.dry_run else "broke")
    if not args.yes:
        _confirm_clear(cache)
    removal = cache.clear()
    print(f"cleared {cache.root} ({_human(removal.removed_bytes)})")
    return _removal_tail(removal, "broke")


def _explain_plain_gc(cache: Any, removed: bool) -> None:
    """`cache gc` with no limit removes only what no run can use: say so, and how to free space."""
    from layerscope.runner import cachelist

    items = [x for x in (cachelist.item(p, m) for p, m in cache.entries()) if x is not None]
    total = sum(x.size for x in items)
    what = "only" if removed else "nothing: without --max-size or --older-than it removes only"
    print(
        f"gc removed {what} unfinished temporaries and corrupt entries; the {len(items)} entries "
        f"({_human(total)}) every run can still use are kept."
    )
    print("to free space: `cache gc --max-size 20G` (least recently used first) or `cache gc --older-than 30d`;")
    print("`--dry-run` first says what either would remove; `cache ls` shows where the space is.")


def _ls(cache: Any, args: argparse.Namespace, older: float | None) -> int:
    from rich.markup import escape
    from rich.table import Table

    from layerscope.runner import cachelist

    everything = [x for x in (cachelist.item(p, m) for p, m in cache.entries()) if x is not None]
    items = cachelist.select(everything, kinds=args.kind, experiment=args.experiment, older_than_s=older)
    table = Table(title=f"cache {cache.root}", title_justify="left")
    if args.entries:
        for col in ("experiment", "kind", "stage", "key", "size", "last used"):
            table.add_column(col, justify="right" if col == "size" else "left")
        for x in sorted(items, key=lambda x: (x.experiment, x.run, x.stage)):
            table.add_row(
                escape(x.experiment), x.kind, escape(x.stage), x.path.name[:12], _human(x.size), _when(x.used)
            )
    else:
        for col in ("experiment", "run", "entries", "kinds", "size", "last used"):
            table.add_column(col, justify="right" if col in ("entries", "size") else "left")
        for g in cachelist.groups(items):
            table.add_row(
                escape(g.experiment),
                escape(g.run or "—"),
                str(g.count),
                ", ".join(g.kinds),
                _human(g.size),
                _when(g.last_used),
            )
    console = _console()
    if items:
        console.print(table)
    experiments = len({x.experiment for x in items} - {cachelist.SHARED, cachelist.UNKNOWN})
    plural = "s" if experiments != 1 else ""
    line = f"total {len(items)} entries, {_human(sum(x.size for x in items))}, {experiments} experiment{plural}"
    if len(items) != len(everything):
        line += f" (filtered; the cache holds {len(everything)} entries, {_human(sum(x.size for x in everything))})"
    console.print(line)
    return EXIT_OK


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


def _removal_tail(removal: Any, verb: str) -> int:
    """What gc or clear kept, broke and could not remove; exit 3 when something could not be removed."""
    if removal.kept:
        holders = "; ".join(info.describe() for info in removal.leases)
        print(f"kept {len(removal.kept)} entries in use by a running layerscope ({holders})")
    if removal.broken_links:
        print(f"{verb} the links into the cache of: {', '.join(str(d) for d in removal.broken_links)}")
    if removal.failed:
        for path, _size, why in removal.failed:
            _err(f"layerscope: could not remove {path}: {why}")
        failed_bytes = sum(size for _, size, _ in removal.failed)
        _err(
            f"layerscope: could not remove {len(removal.failed)} entries ({_human(failed_bytes)}); the rest was removed"
        )
        return EXIT_STAGE
    return EXIT_OK


def _confirm_clear(cache: Any) -> None:
    """`cache clear` deletes everything: ask, saying what it breaks (or refuse without a terminal to ask on)."""
    plan = cache.planned_removal()
    what = f"{len(plan.removed)} entries ({_human(plan.removed_bytes)}) in {cache.root}"
    if plan.broken_links:
        what += f"; this breaks the dumps/ links of {', '.join(str(d) for d in plan.broken_links)}"
    if plan.kept:
        what += f"; {len(plan.kept)} entries in use by a running layerscope are kept"
    if not sys.stdin.isatty():
        raise UsageError(f"cache clear would delete {what}", hint="pass --yes to confirm")
    answer = input(f"delete {what}? [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise UsageError("cache clear: nothing deleted")


def default_cache_dir() -> Path:
    from layerscope.pipelines.experiment import resolve_cache_dir

    return resolve_cache_dir(None, None, Path.cwd())


def _human(n: float) -> str:
    from layerscope.runner.resources import human

    return human(n)


def _err(text: str) -> None:
    print(text, file=sys.stderr)


def _console() -> Any:
    from layerscope.cli import _console as console

    return console()
