"""The machine's room for a run: free disk space, available memory, and the error a full disk becomes.

A run that cannot fit is refused before it starts, with the estimate and what is free; a disk that fills up
anyway (another process, a ``ulimit -f``) is one message naming the place and the space left (exit 3), never
an internal error. Nothing here knows what a run is: the domain estimates, this module measures and words.
"""

from __future__ import annotations

import errno
import os
import shutil
import threading
from pathlib import Path

from layerscope.runner.errors import StageError

# errno values that mean "the disk (or the quota, or the file size limit) is full"
DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


class DiskFullError(StageError):
    """No space left where a file had to be written (exit 3)."""


def human(n: float) -> str:
    """Bytes for people: 1.5 GiB, 12 KiB."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def existing_ancestor(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists (where a folder to be made will live)."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def free_disk(path: Path) -> int | None:
    """Bytes free for an unprivileged writer on the filesystem that holds (or will hold) ``path``."""
    try:
        return shutil.disk_usage(existing_ancestor(path)).free
    except OSError:
        return None


def available_memory() -> int | None:
    """Memory a new allocation can get without swapping others out (Linux: MemAvailable + free swap)."""
    try:
        fields = {}
        with open("/proc/meminfo") as f:
            for line in f:
                key, _, rest = line.partition(":")
                fields[key] = int(rest.split()[0]) * 1024
        return fields["MemAvailable"] + fields.get("SwapFree", 0)
    except (OSError, KeyError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None


_FILLED_UP = threading.Event()


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the disk (or quota, or file size limit) is full; remembered for the process."""
    full = isinstance(exc, OSError) and exc.errno in DISK_FULL
    if full:
        _FILLED_UP.set()
    return full


def disk_filled_up() -> bool:
    """Whether this process met a full disk (the command line leaves without exit handlers then)."""
    return _FILLED_UP.is_set()


def disk_full(exc: OSError, where: Path | str | None = None, needed: int | None = None) -> DiskFullError:
    """The message for a write that failed because the disk, a quota or ``ulimit -f`` is full."""
    place = Path(where) if where is not None else Path(exc.filename) if exc.filename else None
    if exc.errno == errno.EFBIG:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        shown = f" of {human(limit)}" if limit != resource.RLIM_INFINITY else ""
        what = f"a file reached the size limit{shown} for this process (ulimit -f)"
    elif exc.errno == errno.EDQUOT:
        what = "disk quota exceeded"
    else:
        what = "no space left on device"
    details = []
    if needed is not None:
        details.append(f"needs ~{human(needed)}")
    free = free_disk(place) if place is not None and exc.errno != errno.EFBIG else None
    if free is not None:
        details.append(f"free {human(free)}")
    text = f"{what}{f' writing {place}' if place is not None else ''}"
    if details:
        text += f" ({', '.join(details)})"
    return DiskFullError(text, hint="free some space (`layerscope cache gc --max-size ...`) or choose another place")
