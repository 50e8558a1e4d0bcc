"""Read files of a git revision without checking anything out: the ``REV:path`` arguments of ``diff``.

A revision is resolved to its commit once, so a branch that moves while a command runs cannot mix two
versions. ``path`` follows git's own rule for ``REV:path``: relative to the repository root, unless it starts
with ``./`` or ``../`` (then relative to the current directory). Files a config refers to can be
materialised from the same commit into the artifact cache, keyed by their blob id, so that a config at a
revision is run with the files of that revision; a file the revision does not track has no other version
than the working tree's, and the caller decides what to do with it.
"""

from __future__ import annotations

import posixpath
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from layerscope.runner.cache import Cache, Entry
from layerscope.runner.errors import UsageError
from layerscope.runner.hashing import digest

_REV_PATH = re.compile(r"^(?P<rev>[^:\s][^:]*):(?P<path>[^:].*)$")
_LFS_POINTER = b"version https://git-lfs.github.com/spec/"


@dataclass(frozen=True)
class RevPath:
    rev: str
    path: str  # as written after the colon

    def __str__(self) -> str:
        return f"{self.rev}:{self.path}"


def parse_rev_path(arg: str) -> RevPath | None:
    """``REV:path`` -> RevPath; None when ``arg`` is an existing file or directory, or not of that form."""
    if Path(arg).exists():
        return None
    m = _REV_PATH.match(arg)
    return RevPath(m.group("rev"), m.group("path")) if m else None


class GitRevision:
    """One commit of the repository around ``cwd``, read with ``git cat-file``."""

    def __init__(self, rev: str, cwd: Path | None = None) -> None:
        self.rev = rev
        self.cwd = (cwd or Path.cwd()).resolve()
        self.toplevel = Path(self._git("rev-parse", "--show-toplevel", what="find the repository").strip())
        # --end-of-options: a revision that looks like an option (--output=x) is read as a revision, never obeyed.
        self.commit = self._git(
            "rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}", what=f"resolve {rev!r}"
        )
        self.commit = self.commit.strip()

    def repo_path(self, path: str) -> str:
        """``path`` of a ``REV:path`` argument, relative to the repository root (git's rule)."""
        if path.startswith(("./", "../")) or path in (".", ".."):
            full = (self.cwd / path).resolve()
            try:
                return full.relative_to(self.toplevel).as_posix()
            except ValueError:
                raise UsageError(f"{self.rev}:{path}: outside the repository {self.toplevel}") from None
        return posixpath.normpath(path)

    def blob_id(self, repo_path: str) -> str | None:
        """The blob at ``repo_path`` in this commit, or None when the commit has no such file."""
        out = self._git(
            "rev-parse", "--verify", "--quiet", "--end-of-options", f"{self.commit}:{repo_path}", check=False
        )
        blob = out.strip()
        if not blob:
            return None
        kind = self._git("cat-file", "-t", "--end-of-options", blob, what=f"inspect {repo_path}").strip()
        return blob if kind == "blob" else None

    def read_bytes(self, repo_path: str) -> bytes:
        blob = self.blob_id(repo_path)
        if blob is None:
            raise UsageError(f"{self.rev}:{repo_path}: no such file at {self.rev} (commit {self.commit[:12]})")
        data = self._run(["cat-file", "blob", "--end-of-options", blob], what=f"read {repo_path}")
        if data.startswith(_LFS_POINTER):
            raise UsageError(
                f"{self.rev}:{repo_path} is a Git LFS pointer; layerscope does not read LFS objects from a revision",
                hint=f"check out {self.rev}, run the config, and diff the run directories",
            )
        return data

    def read_text(self, repo_path: str) -> str:
        try:
            return self.read_bytes(repo_path).decode("utf-8")
        except UnicodeDecodeError:
            raise UsageError(f"{self.rev}:{repo_path} is not UTF-8 text") from None

    def materialise(self, repo_path: str, cache: Cache) -> Path | None:
        """The file as of this commit, stored in ``cache`` by blob id; None when the commit does not track it."""
        blob = self.blob_id(repo_path)
        if blob is None:
            return None
        name = posixpath.basename(repo_path)  # keep the name: readers go by the suffix (.npy, .onnx, ...)
        key = digest({"git_blob": blob, "name": name})
        entry = _lookup(cache, key)
        if entry is None:
            data = self.read_bytes(repo_path)
            with cache.lock(key):
                entry = _lookup(cache, key)
                if entry is None:
                    with cache.staging("gitblob", key) as tmp:
                        (tmp / name).write_bytes(data)
                        entry = cache.publish("gitblob", key, tmp, {"stage": f"git {blob[:12]} {repo_path}"})
        return entry.file(name)

    # -- running git -------------------------------------------------------------------------------------
    def _git(self, *args: str, what: str = "", check: bool = True) -> str:
        try:
            return self._run(list(args), what=what, check=check).decode("utf-8", "replace")
        except UsageError:
            if check:
                raise
            return ""

    def _run(self, args: list[str], *, what: str, check: bool = True) -> bytes:
        try:
            proc = subprocess.run(["git", *args], cwd=self.cwd, capture_output=True, check=False)
        except FileNotFoundError:
            raise UsageError("git is not installed; a REV:path argument is read with git") from None
        if proc.returncode != 0:
            if not check:
                return b""
            detail = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            reason = detail[-1] if detail else f"git exited with status {proc.returncode}"
            if args[:2] == ["rev-parse", "--verify"]:  # its message would only repeat the argument
                reason = "no such revision"
            raise UsageError(f"{self.rev}: cannot {what} in {self.cwd}: {reason}")
        return proc.stdout


def _lookup(cache: Cache, key: str) -> Entry | None:
    return cache.lookup("gitblob", key).entry
