"""Content-addressed artifact store: a stage key maps to one immutable directory of files.

Layout under the cache root (``v1`` is the layout version; a future incompatible layout uses a new folder):

    v1/objects/<kind>/<key[:2]>/<key>/   published artifacts + manifest.json (written last, inside the entry)
    v1/tmp/                              entries being written; renamed into objects/ when complete
    v1/locks/<key>.lock                  one writer per key across processes (fcntl via filelock)
    v1/memo/                             file-digest memo (see hashing.FileDigests), loading's memos, and
                                         imports/: what each module imports (codeversion.remember_in)
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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from layerscope.runner import codeversion, leases
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
        # What each module imports, remembered by its text's digest (stage code versions; codeversion.py).
        codeversion.remember_in(self.base / "memo")
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

    def claim(self, keys: Iterable[str]) -> None:
        """Claim keys for this process's lease session at once (runner/leases.py): one lock for a whole plan."""
        leases.claim(self.base, keys)

    # -- reading --------------------------------------------------------------------------------------
    def lookup(self, kind: str, key: str, *, touch: bool = True) -> Lookup:
        leases.claim(self.base, [key])  # before checking: gc either removed it already, or keeps it now
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
        # The writer's pid and host are in the name: gc removes the temporary of a dead writer on this host; one
        # written by another host sharing the cache (a Dask worker) cannot be checked and waits until it is stale.
        tmp = self.base / "tmp" / f"{key[:16]}-{os.getpid()}-{uuid.uuid4().hex[:8]}@{leases.host()}"
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
        leases.claim(self.base, [key])  # before it is visible: a gc cannot take it from under its reader
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

    def gc(self, *, max_bytes: int | None = None, older_than_s: float | None = None, dry_run: bool = False) -> Removal:
        """Remove unfinished temporaries, corrupt entries, entries unused for ``older_than_s``, then the
        least recently used entries until the cache fits ``max_bytes``. Entries a live run holds a lease on
        are kept (and count towards the size). What could not be removed is said, never counted as removed."""
        with leases.gc_lock(self.base) if self.base.is_dir() and not dry_run else contextlib.nullcontext():
            held = leases.live(self.base, prune=not dry_run)
            leased = {k for info in held for k in info.keys}
            removal = Removal(leases=held)
            now = time.time()
            tmp_dir = self.base / "tmp"
            for tmp in sorted(tmp_dir.iterdir()) if tmp_dir.is_dir() else []:
                with contextlib.suppress(FileNotFoundError):
                    old = now - tmp.stat().st_mtime > _STALE_TMP_SECONDS
                    if old or tmp.name.startswith("trash-") or not _writer_alive(tmp.name):
                        removal.removed.append((tmp, _du(tmp), "unfinished temporary"))
            live: list[tuple[float, Path, int]] = []
            for path, manifest in self.entries():
                size = _du(path)
                if path.name in leased:
                    removal.kept.append((path, size, "in use by a running layerscope"))
                    continue
                if manifest is None or manifest.get("key") != path.name:
                    removal.removed.append((path, size, "corrupt or incomplete"))
                    continue
                used = path.stat().st_mtime
                if older_than_s is not None and now - used > older_than_s:
                    removal.removed.append((path, size, "unused"))
                    continue
                live.append((used, path, size))
            if max_bytes is not None:
                total = sum(s for _, _, s in live) + sum(s for _, s, _ in removal.kept)
                for _used, path, size in sorted(live):
                    if total <= max_bytes:
                        break
                    removal.removed.append((path, size, "least recently used"))
                    total -= size
            removal.broken_links = linked_dirs(self.base, {p.name for p, _, _ in removal.removed})
            if dry_run:
                return removal
            # Under the lock only move what goes out of objects/ (fast); delete after, without the lock.
            doomed = self._move_out(removal)
        self._delete(doomed, removal)
        return removal

    def clear(self) -> Removal:
        """Remove every entry, temporary, memo and state, except entries a live run holds a lease on; the lock
        and lease files stay (a process may hold them now)."""
        if not self.base.is_dir():
            return Removal()
        with leases.gc_lock(self.base):
            held = leases.live(self.base, prune=True)
            leased = {k for info in held for k in info.keys}
            removal = Removal(leases=held)
            for path, _manifest in self.entries():
                size = _du(path)
                if path.name in leased:
                    removal.kept.append((path, size, "in use by a running layerscope"))
                else:
                    removal.removed.append((path, size, "cleared"))
            for sub in ("tmp", "memo", "state", "shared", "links"):
                folder = self.base / sub
                for child in sorted(folder.iterdir()) if folder.is_dir() else []:
                    if sub == "tmp" and _writer_alive(child.name) and not child.name.startswith("trash-"):
                        continue  # a live run is writing it
                    removal.removed.append((child, _du(child), "cleared"))
            removal.broken_links = linked_dirs(self.base, {p.name for p, _, _ in removal.removed})
            doomed = self._move_out(removal)
        self._delete(doomed, removal)
        self._ensured = False
        return removal

    def planned_removal(self) -> Removal:
        """What :meth:`clear` would remove now (to ask before doing it)."""
        held = leases.live(self.base) if self.base.is_dir() else []
        leased = {k for info in held for k in info.keys}
        removal = Removal(leases=held)
        for path, _manifest in self.entries():
            target = removal.kept if path.name in leased else removal.removed
            target.append((path, _du(path), "in use by a running layerscope" if path.name in leased else "cleared"))
        removal.broken_links = linked_dirs(self.base, {p.name for p, _, _ in removal.removed})
        return removal

    def _move_out(self, removal: Removal) -> list[tuple[Path, Path, int, str]]:
        """Rename what is to be removed into tmp/ (atomic: no reader sees half an entry); what cannot be moved
        is recorded as failed and leaves the removed list."""
        doomed: list[tuple[Path, Path, int, str]] = []
        tmp = self.base / "tmp"
        for path, size, why in removal.removed:
            if path.parent == tmp and path.name.startswith("trash-"):
                doomed.append((path, path, size, why))
                continue
            trash = tmp / f"trash-{uuid.uuid4().hex[:12]}"
            try:
                tmp.mkdir(parents=True, exist_ok=True)
                os.replace(path, trash)
            except FileNotFoundError:
                continue  # gone meanwhile (another gc)
            except OSError as exc:
                removal.failed.append((path, size, exc.strerror or str(exc)))
                continue
            doomed.append((path, trash, size, why))
        moved = {d[0] for d in doomed}
        removal.removed = [r for r in removal.removed if r[0] in moved]
        return doomed

    @staticmethod
    def _delete(doomed: list[tuple[Path, Path, int, str]], removal: Removal) -> None:
        failed: set[Path] = set()
        for original, trash, size, _why in doomed:
            try:
                if trash.is_dir() and not trash.is_symlink():
                    shutil.rmtree(trash)
                else:
                    trash.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                removal.failed.append((original, size, exc.strerror or str(exc)))
                failed.add(original)
        removal.removed = [r for r in removal.removed if r[0] not in failed]

    # -- folders outside the cache that link to entries (a run directory's dumps/) ----------------------
    def record_links(self, folder: Path) -> None:
        """Remember that ``folder`` holds links into this cache, so that gc and clear can say what they break."""
        import hashlib

        folder = Path(folder).absolute()
        name = hashlib.sha256(str(folder).encode("utf-8", "surrogateescape")).hexdigest()[:24]
        with contextlib.suppress(OSError):  # a note for later messages, not part of any result
            (self.base / "links").mkdir(parents=True, exist_ok=True)
            atomic_write(self.base / "links" / f"{name}.json", json.dumps({"dir": str(folder)}))


@dataclass
class Removal:
    """What gc or clear removed, kept (a live run uses it) and could not remove, and the run folders whose
    links into the cache the removal breaks."""

    removed: list[tuple[Path, int, str]] = field(default_factory=list)
    kept: list[tuple[Path, int, str]] = field(default_factory=list)
    failed: list[tuple[Path, int, str]] = field(default_factory=list)
    broken_links: list[Path] = field(default_factory=list)
    leases: list[Any] = field(default_factory=list)

    @property
    def removed_bytes(self) -> int:
        return sum(size for _, size, _ in self.removed)


def linked_dirs(base: Path, keys: set[str]) -> list[Path]:
    """Recorded folders with a link (``*/<name>`` pointing into an entry) to one of ``keys``."""
    out: list[Path] = []
    links = base / "links"
    for note in sorted(links.glob("*.json")) if links.is_dir() and keys else []:
        try:
            folder = Path(json.loads(note.read_text())["dir"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        for link in sorted(folder.glob("*/*")) if folder.is_dir() else []:
            try:
                target = Path(os.readlink(link))
            except OSError:
                continue
            if target.parent.name in keys and base in target.parents:
                out.append(folder)
                break
    return out


def _writer_alive(name: str) -> bool:
    """Whether the process that created a temporary directory (named key-pid-random@host) still runs; one of
    another host counts as alive (until it is stale)."""
    name, _, host = name.partition("@")
    if host and host != leases.host():
        return True
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
