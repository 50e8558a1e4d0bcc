"""Diff sides at a git revision (REV:path): read with git in a temporary repository, nothing checked out."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from layerscope.cli import main
from tests.conftest import SMALL_UNET

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def git(repo: Path, *args: str) -> str:
    cmd = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false", *args]
    return subprocess.run(cmd, cwd=repo, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A repository with configs/exp.yaml (reading inputs from configs/x.npy) committed twice."""
    root = tmp_path / "repo"
    (root / "configs").mkdir(parents=True)
    git(root, "init", "-q")
    config = SMALL_UNET.replace("source: {random: normal, seed: 0}", "source: {file: x.npy}")
    (root / "configs" / "exp.yaml").write_text(config)
    np.save(root / "configs" / "x.npy", np.random.default_rng(0).standard_normal((2, 1, 3, 16, 16), np.float32))
    git(root, "add", ".")
    git(root, "commit", "-qm", "v1")
    (root / "configs" / "exp.yaml").write_text(config.replace("max_deviation_ratio: 0.5", "max_deviation_ratio: 0.2"))
    git(root, "commit", "-qam", "v2: stricter")
    monkeypatch.chdir(root)
    return root


def diff_json(*args: str) -> dict:
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["diff", *args, "--format", "json", "-q"]) == 0
    return json.loads(buf.getvalue())


def test_diff_of_two_revisions_and_the_working_tree(repo: Path) -> None:
    doc = diff_json("HEAD~1:configs/exp.yaml", "HEAD:configs/exp.yaml")
    assert doc["old"]["label"] == "HEAD~1:configs/exp.yaml"
    assert doc["config_changes"] == [{"key": "thresholds.max_deviation_ratio", "old": 0.5, "new": 0.2}]
    # nothing checked out: the working tree still has v2, and HEAD did not move
    assert "0.2" in (repo / "configs" / "exp.yaml").read_text()
    assert git(repo, "status", "--porcelain") == ""
    # a path relative to the current directory, as git reads it (./), against the working tree's file
    doc = diff_json("HEAD~1:./configs/exp.yaml", "configs/exp.yaml")
    assert [c["key"] for c in doc["config_changes"]] == ["thresholds.max_deviation_ratio"]


def test_tracked_files_are_read_at_the_revision(repo: Path) -> None:
    # the working tree's input changes after the last commit: HEAD's config must still read HEAD's x.npy
    np.save(repo / "configs" / "x.npy", np.ones((2, 1, 3, 16, 16), np.float32))
    doc = diff_json("HEAD:configs/exp.yaml", "configs/exp.yaml")
    keys = [c["key"] for c in doc["config_changes"]]
    assert keys == ["inputs.input.file_sha256"]
    assert doc["comparisons"][0]["layers"]  # other inputs, other metrics


def test_untracked_files_come_from_the_working_tree_with_a_note(repo: Path) -> None:
    config = (repo / "configs" / "exp.yaml").read_text().replace("x.npy", "y.npy")
    (repo / "configs" / "exp.yaml").write_text(config)
    git(repo, "commit", "-qam", "v3: y.npy, not tracked")
    shutil.copy(repo / "configs" / "x.npy", repo / "configs" / "y.npy")
    from layerscope.sides import experiment_at_revision

    exp = experiment_at_revision("HEAD", "configs/exp.yaml", cache_dir=None)
    assert exp.notes[-1] == "y.npy is not tracked at HEAD: read from the working tree"
    assert exp.inputs[0].source["file"] == str((repo / "configs" / "y.npy").resolve())


def test_revision_errors_exit_2(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diff", "nosuchrev:configs/exp.yaml", "configs/exp.yaml"]) == 2
    assert "nosuchrev: cannot resolve 'nosuchrev'" in capsys.readouterr().err
    assert main(["diff", "HEAD:configs/missing.yaml", "configs/exp.yaml"]) == 2
    assert "HEAD:configs/missing.yaml: no such file at HEAD" in capsys.readouterr().err
    assert main(["diff", "HEAD:configs/x.npy", "configs/exp.yaml"]) == 2
    assert "expected a config (.yaml)" in capsys.readouterr().err


def test_outside_a_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    outside = tmp_path / "plain"
    outside.mkdir()
    monkeypatch.chdir(outside)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    assert main(["diff", "HEAD:exp.yaml", "HEAD:exp.yaml"]) == 2
    assert "cannot find the repository" in capsys.readouterr().err
