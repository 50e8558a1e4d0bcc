"""Leases: the cache entries a live run uses are safe from ``cache gc`` and ``cache clear``.

A run (``run``, ``diff`` of a config, each step of ``fix``) writes a lease file before it decides what is
cached, and removes it when it is done:

    v1/leases/<host>-<pid>-<random>.json   {"pid", "host", "started", "command", "keys": [...]}

``keys`` are the keys of every stage of its plan (what it may read or write, upstream included) and of the
entries holding its files (a builtin model, files of a config at a git revision). ``gc`` and ``clear`` keep
every entry a live lease names. A lease is live while its process runs: on this host that is checked by pid
(the lease of a run killed by ``kill -9`` is stale and removed by the next ``gc``); a lease from another host
sharing the cache cannot be checked and counts as live for a day after it was last written.

Writing a lease and deciding which entries to remove exclude each other through one lock
(``v1/locks/gc.lock``), held only for that moment: gc moves what it removes out of ``objects/`` under the
lock and deletes it after. So an entry is either gone before a run decides (the run sees a miss and makes it
again) or kept until the run has ended; a run never decides "cached" and then finds the entry removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from layerscope.runner.errors import CacheError
from layerscope.runner.files import atomic_write

REMOTE_LEASE_SECONDS = 24 * 3600


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
        where = "" if self.host == socket.gethostname() else f" on {self.host}"
        return f"pid {self.pid}{where} since {since} ({self.command})"


class Lease:
    """A live run's claim on cache keys; extend it with :meth:`add` (under the gc lock)."""

    def __init__(self, base: Path, keys: Iterable[str]) -> None:
        self.base = base
        self.keys: set[str] = set(keys)
        host = socket.gethostname()
        self.path = base / "leases" / f"{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}.json"
        self.started = time.time()

    def _write(self) -> None:
        doc = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": self.started,
            "command": " ".join(["layerscope", *sys.argv[1:]])[:200],
            "keys": sorted(self.keys),
        }
        atomic_write(self.path, json.dumps(doc))

    def add(self, keys: Iterable[str]) -> None:
        """Claim more keys (call under the gc lock, before deciding anything about them)."""
        new = set(keys) - self.keys
        if new:
            self.keys |= new
            self._write()

    def release(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink()


@contextlib.contextmanager
def gc_lock(base: Path) -> Iterator[None]:
    """The lock between writing a lease and choosing what to remove."""
    from filelock import FileLock

    try:
        (base / "locks").mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(base / "locks" / "gc.lock"))
        lock.acquire()
    except OSError as exc:
        raise CacheError(f"cannot change the cache {base.parent}: {exc.strerror or exc}") from None
    try:
        yield
    finally:
        lock.release()


def take(base: Path, keys: Iterable[str]) -> Lease | None:
    """Write a lease on ``keys``; None when the cache cannot be written (read-only: nothing can remove
    entries then either, and the run only reads)."""
    lease = Lease(base, keys)
    try:
        with gc_lock(base):
            lease.path.parent.mkdir(parents=True, exist_ok=True)
            lease._write()
    except (OSError, CacheError):
        return None
    return lease


@contextlib.contextmanager
def holding(base: Path, keys: Iterable[str]) -> Iterator[Lease | None]:
    """A lease on ``keys`` for the block: decide, run and read the entries inside it."""
    lease = take(base, keys)
    try:
        yield lease
    finally:
        if lease is not None:
            lease.release()


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
    if info.host != socket.gethostname():
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
