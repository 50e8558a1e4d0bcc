"""Canonical digests of parameters and files.

A stage's cache key is the digest of a canonical JSON rendering of everything that can change its output,
so two equal parameter sets always give the same key, whatever the dict order. File digests are SHA-256 of
the bytes, memoised by ``(path, size, mtime_ns, ctime_ns, inode, device)``: an unchanged file is never read
again, in this process or (through the on-disk memo) in a later one, and any change to those fields -- an
edit, a copy over it, a replacement by rename -- forces a real rehash.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from layerscope.runner.files import atomic_write

_CHUNK = 1 << 20


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace; floats as their shortest repr; non-finite floats as strings."""
    return json.dumps(_canonical(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _canonical(value: Any) -> Any:
    # Exact types first: a plan digests every stage's parameters (thousands of layers' limits), and an ABC
    # isinstance check per value was most of a warm run's planning. Subclasses take the general path below.
    t = type(value)
    if t is str or t is int or t is bool or value is None:
        return value
    if t is float:
        return value if math.isfinite(value) else repr(value)
    if t is dict:
        return {str(k): _canonical(v) for k, v in value.items()}
    if t is list or t is tuple:
        return [_canonical(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted(_canonical(v) for v in value)
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"cannot digest a value of type {type(value).__name__}: {value!r}")


def digest(value: Any) -> str:
    """Hex SHA-256 of the canonical JSON of ``value``."""
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()


def digest_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def hash_file(path: Path) -> str:
    """SHA-256 of a file's bytes, read in chunks (bounded memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _stat_key(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


class FileDigests:
    """Memoised file digests. ``memo_dir`` (optional) persists the memo across processes.

    Each memo entry is a small JSON file named by the digest of the absolute path, written atomically,
    so concurrent processes can share the directory without locks: the worst case is a redundant hash.
    """

    def __init__(self, memo_dir: Path | None = None) -> None:
        self._memo_dir = memo_dir
        self._mem: dict[str, tuple[list[int], str]] = {}
        self._lock = threading.Lock()
        self.hashed: list[Path] = []  # files actually read in this process (observable by tests and benchmarks)

    def __getstate__(self) -> dict[str, Any]:
        # Sent to another process (a Dask worker): the lock cannot travel, and the in-memory memo is keyed by
        # stat, which another host sees differently. The memo directory goes along.
        return {"memo_dir": self._memo_dir}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["memo_dir"])  # type: ignore[misc]

    def _memo_path(self, abspath: str) -> Path | None:
        if self._memo_dir is None:
            return None
        name = hashlib.sha256(abspath.encode("utf-8", "surrogateescape")).hexdigest()[:40]
        return self._memo_dir / name[:2] / f"{name}.json"

    def __call__(self, path: Path | str) -> str:
        abspath = os.path.abspath(path)
        st = os.stat(abspath)
        key = _stat_key(st)
        with self._lock:
            hit = self._mem.get(abspath)
        if hit is not None and hit[0] == key:
            return hit[1]
        memo = self._memo_path(abspath)
        if memo is not None:
            try:
                stored = json.loads(memo.read_text())
                if stored.get("path") == abspath and stored.get("stat") == key:
                    with self._lock:
                        self._mem[abspath] = (key, stored["sha256"])
                    return str(stored["sha256"])
            except (OSError, ValueError, KeyError):
                pass
        value = hash_file(Path(abspath))
        self.hashed.append(Path(abspath))
        # Stat again: a file that changed while it was read must not be memoised under the old stat.
        if _stat_key(os.stat(abspath)) != key:
            return value
        with self._lock:
            self._mem[abspath] = (key, value)
        if memo is not None:
            self._store(memo, {"path": abspath, "stat": key, "sha256": value})
        return value

    def record(self, path: Path, sha256: str) -> None:
        """Memoise a digest computed elsewhere (e.g. while the file was written)."""
        abspath = os.path.abspath(path)
        key = _stat_key(os.stat(abspath))
        with self._lock:
            self._mem[abspath] = (key, sha256)
        memo = self._memo_path(abspath)
        if memo is not None:
            self._store(memo, {"path": abspath, "stat": key, "sha256": sha256})

    @staticmethod
    def _store(memo: Path, payload: dict[str, Any]) -> None:
        try:
            memo.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(memo, json.dumps(payload))
        except OSError:
            pass  # the memo is an optimisation; a read-only cache still works, just slower
