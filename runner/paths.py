"""Path rules for paths that a file (a config, a model) names: a relative path stays inside its folder.

A config or a model may come from someone else. What it names relative to itself must not reach the rest of
the machine through ``..`` or a symbolic link: such a path is resolved (links followed) and refused when it
lands outside the folder it is relative to, before anything opens it. A path written as absolute (or from the
home directory, ``~/...``) is the writer's explicit choice and is taken as written; that is how a config
reaches a file elsewhere.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

from layerscope.runner.errors import UsageError


def is_explicit(written: str) -> bool:
    """Whether a path as written is absolute (``/...``, ``~/...``): then it is taken as written."""
    return os.path.isabs(os.path.expanduser(written))


def inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` (resolved, links followed) is ``folder`` (resolved) or lies under it."""
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def confined(folder: Path, written: str, what: str) -> Path:
    """The path ``written`` relative to ``folder``, resolved; a UsageError when a relative one leaves ``folder``.

    ``what`` names the path in the message (``"input file"``). The file need not exist.
    """
    if "\x00" in written:
        raise UsageError(f"{what} {written!r} contains a NUL character")
    if is_explicit(written):
        return Path(written).expanduser().resolve()
    full = (folder / written).resolve()
    if not inside(full, folder):
        raise UsageError(
            f"{what} {written!r} resolves to {full}, outside {folder.resolve()}: a relative path must stay inside "
            "that folder (links are followed); write an absolute path to use a file elsewhere"
        )
    return full


def leaving(written: str, root: Path, found: list[str]) -> tuple[list[str], list[str]]:
    """(kept, problems): ``found`` are files listed under ``root`` (a folder or a glob's fixed prefix) for the
    entry ``written``; for a relative entry, a file that a link takes outside ``root`` is refused like a
    relative path that leaves its folder. An absolute entry is the writer's choice: everything is kept."""
    if is_explicit(written):
        return found, []
    kept = [f for f in found if inside(Path(f), root)]
    problems = [
        f"{f} (listed for {written!r}) resolves to {Path(f).resolve()}, outside {root.resolve()}: a relative entry "
        "must stay inside its folder (links are followed); write an absolute path to use files elsewhere"
        for f in found
        if f not in kept
    ]
    return kept, problems


def fixed_prefix(pattern: Path) -> Path | None:
    """The part of a glob pattern before its first wildcard (the folder its matches lie under), or None."""
    parts = []
    for part in pattern.parts:
        if glob.has_magic(part):
            break
        parts.append(part)
    return Path(*parts) if parts else None
