"""Reading files of a git revision: REV:path parsing, git's path rule, blobs materialised into the cache."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from layerscope.runner.cache import Cache
from layerscope.runner.errors import UsageError
from layerscope.runner.gitrev import GitRevision, RevPath, parse_rev_path

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def git(repo: Path, *args: str) -> None:
    cmd = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false", *args]
    subprocess.run(cmd, cwd=repo, check=True, capture_output=True)


def test_parse_rev_path(tmp_path: Path) -> None:
    assert parse_rev_path("HEAD~1:configs/a.yaml") == RevPath("HEAD~1", "configs/a.yaml")
    assert parse_rev_path("main:./a.yaml") == RevPath("main", "./a.yaml")
    assert parse_rev_path("configs/a.yaml") is None
    assert parse_rev_path(":a.yaml") is None  # git's index syntax: not a revision
    odd = tmp_path / "odd:name.yaml"
    odd.write_text("")
    assert parse_rev_path(str(odd)) is None  # an existing file wins


@needs_git
def test_read_and_materialise(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "repo"
    (repo / "sub").mkdir(parents=True)
    git(repo, "init", "-q")
    (repo / "sub" / "a.txt").write_text("one")
    (repo / "sub" / "lfs.onnx").write_text("version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 1\n")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "one")
    (repo / "sub" / "a.txt").write_text("two")
    monkeypatch.chdir(repo / "sub")
    rev = GitRevision("HEAD")
    assert rev.repo_path("./a.txt") == "sub/a.txt" and rev.repo_path("sub/a.txt") == "sub/a.txt"
    assert rev.read_text("sub/a.txt") == "one"
    cache = Cache(tmp_path / "cache")
    path = rev.materialise("sub/a.txt", cache)
    assert path is not None and path.name == "a.txt" and path.read_text() == "one"
    assert rev.materialise("sub/a.txt", cache) == path  # by blob id: stored once
    assert rev.materialise("sub/untracked.txt", cache) is None
    with pytest.raises(UsageError, match="Git LFS pointer"):
        rev.read_bytes("sub/lfs.onnx")
    with pytest.raises(UsageError, match="no such revision"):
        GitRevision("v9.9")
