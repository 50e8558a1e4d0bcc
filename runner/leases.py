"""Leases: the cache entries a live command uses are safe from ``cache gc`` and ``cache clear``.

A command that runs stages (``run``, ``diff`` of a config, ``fix``) opens a lease :func:`session`. Inside it,
every key the process looks up or publishes in a cache is *claimed* before the entry is checked or made
visible, and written to the process's lease file of that cache:

    v1/leases/<host>-<pid>-<random>.json   {"pid", "host", "started", "command", "keys": [...]}

So the lease names every entry the command reads (a builtin model, a config's files at a git revision, each
stage's upstream entries) or writes. ``gc`` and ``clear`` keep every entry a live lease names. A lease is live
while its process runs: on this host that is checked by pid (the lease of a process killed by ``kill -9`` is
stale, ignored, and removed by the next ``gc``); a lease from another host sharing the cache cannot be checked
and counts as live for a day after it was last written. The session ends with the command and removes the file.

Claiming and choosing what to remove exclude each other through one lock (``v1/locks/gc.lock``), held only
for that moment: gc moves what it removes out of ``objects/`` under the lock and deletes it afterwards. So an
entry is either gone before a command looks it up (a miss: the command makes it again) or kept until the
command has ended: a command never finds "cached" and then the entry removed. Claims are batched where the
keys are known up front (the executor claims a whole plan before deciding), so a cached rerun takes the lock
once or twice. A cache that cannot be written (read-only) takes no lease: nothing can remove its entries either.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from layerscope.runner.errors import CacheError
from layerscope.runner.files import atomic_write

REMOTE_LEASE_SECONDS = 24 * 3600


def host() -> str:
    """This machine's name, as leases and temporary directories record it."""
    return os.uname().nodename


@dataclass(frozen=True)
class LeaseInfo:
    path: Path
    pid: int
    host: str
    started: float
    command: str
    keys: frozenset[str]

    def describe(self) -> str:
        since = time.strftime("%H:%M", time.localtime(self.started))
        where = "" if self.host == host() else f" on {self.host}"
        return f"pid {self.pid}{where} since {since} ({self.command})"


class Lease:
    """A live run's claim on cache keys; extend it with :meth:`add` (under the gc lock)."""

    def __init__(self, base: Path, keys: Iterable[str]) -> None:
        self.base = base
        self.keys: set[str] = set(keys)
        self.path = base / "leases" / f"{host()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.json"
        self.started = time.time()

    def _write(self) -> None:
        doc = {
            "pid": os.getpid(),
            "host": host(),
            "started": self.started,
            "command": " ".join(["layerscope", *sys.argv[1:]])[:200],
            "keys": sorted(self.keys),
        }
        atomic_write(self.path, json.dumps(doc))

    def add(self, keys: Iterable[str]) -> None:
        """Claim more keys (under the gc lock, before anything is decided about them)."""
        new = set(keys) - self.keys
        if new:
            self.keys |= new
            self._write()

    def release(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink()


@contextlib.contextmanager
def gc_lock(base: Path) -> Iterator[None]:
    """The lock between claiming keys and choosing what to remove (an exclusive ``flock``: cheap enough to take
    on every claim of a cached rerun, and released by the kernel when a holder dies)."""
    import fcntl

    try:
        (base / "locks").mkdir(parents=True, exist_ok=True)
        fd = os.open(base / "locks" / "gc.lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise CacheError(f"cannot change the cache {base.parent}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


_SESSIONS = 0  # nesting depth of session() in this process
_LEASES: dict[Path, Lease] = {}
_STATE = threading.Lock()


@contextlib.contextmanager
def session() -> Iterator[None]:
    """Claims made by this process until the block ends are leases (nested sessions share them)."""
    global _SESSIONS
    with _STATE:
        _SESSIONS += 1
    try:
        yield
    finally:
        with _STATE:
            _SESSIONS -= 1
            done = list(_LEASES.values()) if _SESSIONS == 0 else []
            if _SESSIONS == 0:
                _LEASES.clear()
        for lease in done:
            lease.release()


def claim(base: Path, keys: Iterable[str]) -> None:
    """Claim ``keys`` of the cache at ``base`` for this process's session (nothing outside a session). Call
    before looking an entry up or publishing it."""
    with _STATE:
        if _SESSIONS == 0:
            return
        lease = _LEASES.get(base)
        new = set(keys) - (lease.keys if lease is not None else set())
        if not new:
            return
        if lease is None:
            lease = _LEASES[base] = Lease(base, ())
        try:
            with gc_lock(base):
                lease.path.parent.mkdir(parents=True, exist_ok=True)
                lease.add(new)
        except (OSError, CacheError):
            lease.keys |= new  # a cache we cannot write: no one can remove its entries either; do not retry


def live(base: Path, *, prune: bool = False) -> list[LeaseInfo]:
    """The leases of runs that are still alive; ``prune`` removes the stale ones (gc)."""
    folder = base / "leases"
    out: list[LeaseInfo] = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            doc = json.loads(path.read_text())
            info = LeaseInfo(
                path,
                int(doc["pid"]),
                str(doc["host"]),
                float(doc["started"]),
                str(doc.get("command", "")),
                frozenset(str(k) for k in doc["keys"]),
            )
            alive = _alive(info, path)
        except FileNotFoundError:
            continue  # released while we looked
        except (OSError, ValueError, KeyError, TypeError):
            info, alive = None, False  # unreadable: a lease half-written by a killed process
        if alive and info is not None:
            out.append(info)
        elif prune:
            with contextlib.suppress(OSError):
                path.unlink()
    return out


def _alive(info: LeaseInfo, path: Path) -> bool:
    if info.host != host():
        return time.time() - path.stat().st_mtime < REMOTE_LEASE_SECONDS
    if info.pid == os.getpid():
        return True
    try:
        os.kill(info.pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists, owned by someone else
        return True
    return True
