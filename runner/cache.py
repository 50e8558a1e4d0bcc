"""Content-addressed artifact store: a stage key maps to one immutable directory of files.

Layout under the cache root (``v1`` is the layout version; a future incompatible layout uses a new folder):

    v1/objects/<kind>/<key[:2]>/<key>/   published artifacts + manifest.json (written last, inside the entry)
    v1/tmp/                              entries being written; renamed into objects/ when complete
    v1/locks/<key>.lock                  one writer per key across processes (fcntl via filelock)
    v1/memo/                             file-digest memo (see hashing.FileDigests)
    v1/state/                            the parameters each stage last ran with, to explain staleness

Publishing is atomic: a stage writes into a fresh temporary directory, every file is hashed into the
manifest, and the directory is renamed into place. A process killed mid-write leaves only a temporary
directory, which is never read and is removed by ``gc``. Every use verifies the entry against its manifest
(sizes, and digests through the memo, so an untouched file is not reread); a corrupt entry is reported as a
miss with its reason and is replaced by the next run.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from layerscope.runner.errors import CacheError
from layerscope.runner.files import atomic_write
from layerscope.runner.hashing import FileDigests

LAYOUT = "v1"
MANIFEST = "manifest.json"
_STALE_TMP_SECONDS = 6 * 3600


@dataclass(frozen=True)
class Entry:
    """A verified, published artifact directory."""

    key: str
    kind: str
    path: Path
    manifest: dict[str, Any]

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def size(self) -> int:
        return sum(int(f["size"]) for f in self.manifest.get("files", {}).values())


@dataclass(frozen=True)
class Lookup:
    """The result of looking a key up: an entry, or why there is none."""

    entry: Entry | None
    reason: str  # "hit", "missing", or what is wrong with the entry


class Cache:
    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser().absolute()
        self.base = self.root / LAYOUT
        self.digests = FileDigests(self.base / "memo")
        self._ensured = False

    # -- layout ---------------------------------------------------------------------------------------
    def _ensure(self) -> None:
        if self._ensured:
            return
        try:
            for sub in ("objects", "tmp", "locks", "memo", "state"):
                (self.base / sub).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CacheError(
                f"cannot use cache directory {self.root}: {exc.strerror or exc}",
                hint="choose another with --cache-dir or LAYERSCOPE_CACHE_DIR",
            ) from exc
        self._ensured = True

    def entry_dir(self, kind: str, key: str) -> Path:
        return self.base / "objects" / kind / key[:2] / key

    # -- reading --------------------------------------------------------------------------------------
    def lookup(self, kind: str, key: str, *, touch: bool = True) -> Lookup:
        path = self.entry_dir(kind, key)
        manifest_path = path / MANIFEST
        if not manifest_path.is_file():
            return Lookup(None, "missing" if not path.exists() else "incomplete entry (no manifest)")
        try:
            manifest = json.loads(manifest_path.read_text())
            files = manifest["files"]
            if manifest.get("key") != key:
                return Lookup(None, "corrupt entry (manifest names another key)")
        except (OSError, ValueError, KeyError, TypeError):
            return Lookup(None, "corrupt entry (unreadable manifest)")
        for name, meta in files.items():
            f = path / name
            try:
                if f.stat().st_size != int(meta["size"]):
                    return Lookup(None, f"corrupt entry ({name}: size changed)")
                if self.digests(f) != meta["sha256"]:
                    return Lookup(None, f"corrupt entry ({name}: checksum mismatch)")
            except FileNotFoundError:
                return Lookup(None, f"corrupt entry ({name} is missing)")
            except OSError as exc:
                return Lookup(None, f"corrupt entry ({name}: {exc.strerror or exc})")
        if touch:
            with contextlib.suppress(OSError):
                os.utime(path)  # last use, for gc; does not touch the files' own stat
        return Lookup(Entry(key, kind, path, manifest), "hit")

    # -- writing --------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, key: str, timeout: float = -1) -> Iterator[None]:
        from filelock import FileLock

        self._ensure()
        with FileLock(str(self.base / "locks" / f"{key}.lock"), timeout=timeout):
            yield

    @contextlib.contextmanager
    def staging(self, kind: str, key: str) -> Iterator[Path]:
        """A fresh temporary directory for a stage to write into; removed if the block raises."""
        self._ensure()
        tmp = self.base / "tmp" / f"{key[:16]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            yield tmp
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def publish(self, kind: str, key: str, staged: Path, meta: dict[str, Any]) -> Entry:
        """Hash the staged files into a manifest and move the directory into place atomically.

        Call under :meth:`lock`. An existing entry for the key (stale or forced) is replaced.
        """
        files: dict[str, dict[str, Any]] = {}
        for f in sorted(p for p in staged.rglob("*") if p.is_file()):
            rel = f.relative_to(staged).as_posix()
            if rel == MANIFEST:
                continue
            files[rel] = {"size": f.stat().st_size, "sha256": self.digests(f)}
        manifest = {"key": key, "kind": kind, "created": time.time(), **meta, "files": files}
        atomic_write(staged / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))
        final = self.entry_dir(kind, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        trash: Path | None = None
        if final.exists():
            trash = self.base / "tmp" / f"trash-{key[:16]}-{uuid.uuid4().hex[:8]}"
            os.replace(final, trash)
        os.replace(staged, final)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
        for rel in files:
            self.digests.record(final / rel, files[rel]["sha256"])
        return Entry(key, kind, final, manifest)

    # -- stage state (explains why a stage is stale) ---------------------------------------------------
    def read_state(self, scope: str) -> dict[str, Any]:
        try:
            return dict(json.loads((self.base / "state" / f"{scope}.json").read_text()))
        except (OSError, ValueError):
            return {}

    def write_state(self, scope: str, state: dict[str, Any]) -> None:
        self._ensure()
        atomic_write(self.base / "state" / f"{scope}.json", json.dumps(state, sort_keys=True))

    # -- maintenance ----------------------------------------------------------------------------------
    def entries(self) -> Iterator[tuple[Path, dict[str, Any] | None]]:
        objects = self.base / "objects"
        if not objects.is_dir():
            return
        for kind_dir in sorted(objects.iterdir()):
            for shard in sorted(kind_dir.iterdir()) if kind_dir.is_dir() else []:
                for entry in sorted(shard.iterdir()) if shard.is_dir() else []:
                    try:
                        yield entry, json.loads((entry / MANIFEST).read_text())
                    except (OSError, ValueError):
                        yield entry, None

    def gc(
        self, *, max_bytes: int | None = None, older_than_s: float | None = None, dry_run: bool = False
    ) -> list[tuple[Path, int, str]]:
        """Remove unfinished temporaries, corrupt entries, entries unused for ``older_than_s``, then the
        least recently used entries until the cache fits ``max_bytes``. Returns (path, bytes, why)."""
        removed: list[tuple[Path, int, str]] = []
        now = time.time()
        tmp_dir = self.base / "tmp"
        for tmp in sorted(tmp_dir.iterdir()) if tmp_dir.is_dir() else []:
            old = now - tmp.stat().st_mtime > _STALE_TMP_SECONDS
            if old or tmp.name.startswith("trash-") or not _writer_alive(tmp.name):
                removed.append((tmp, _du(tmp), "unfinished temporary"))
        live: list[tuple[float, Path, int]] = []
        for path, manifest in self.entries():
            size = _du(path)
            if manifest is None or manifest.get("key") != path.name:
                removed.append((path, size, "corrupt or incomplete"))
                continue
            used = path.stat().st_mtime
            if older_than_s is not None and now - used > older_than_s:
                removed.append((path, size, "unused"))
                continue
            live.append((used, path, size))
        if max_bytes is not None:
            total = sum(s for _, _, s in live)
            for _used, path, size in sorted(live):
                if total <= max_bytes:
                    break
                removed.append((path, size, "least recently used"))
                total -= size
        if not dry_run:
            for path, _, _ in removed:
                shutil.rmtree(path, ignore_errors=True)
        return removed

    def clear(self) -> int:
        size = _du(self.base) if self.base.exists() else 0
        shutil.rmtree(self.base, ignore_errors=True)
        self._ensured = False
        return size


def _writer_alive(name: str) -> bool:
    """Whether the process that created a temporary directory (named key-pid-random) still runs."""
    parts = name.split("-")
    if len(parts) < 3 or not parts[-2].isdigit():
        return True
    pid = int(parts[-2])
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _du(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total
