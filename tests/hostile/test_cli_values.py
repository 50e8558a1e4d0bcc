"""Hostile command-line values: every number, size and duration is checked before anything happens (exit 2),
and a user string never reaches git as an option."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["cache", "gc", "--max-size", "-5"], "--max-size: cannot read '-5' as a size of at least 0"),
        (["cache", "gc", "--max-size", "inf"], "--max-size: cannot read 'inf'"),
        (["cache", "gc", "--max-size", "nan"], "--max-size: cannot read 'nan'"),
        (["cache", "gc", "--max-size", "20X"], "--max-size: cannot read '20X'"),
        (["cache", "gc", "--older-than=-1d"], "--older-than: cannot read '-1d' as a duration of at least 0"),
        (["cache", "gc", "--older-than", "nand"], "--older-than: cannot read 'nand'"),
        (["cache", "ls", "--max-size", "1G"], "--max-size applies to `cache gc` only"),
        (["cache", "clear", "--dry-run"], "--dry-run applies to `cache gc` only"),
        (["cache", "gc", "--yes"], "--yes applies to `cache clear` only"),
        (["cache", "prune"], "invalid choice: 'prune'"),
        (["diff", "a.json", "b.json", "--limit", "-1"], "--limit must be at least 0, not -1"),
        (["diff", "a.json", "b.json", "--tolerance", "nan"], "--tolerance nan: must be a finite number"),
        (["diff", "a.json", "b.json", "--tolerance", "cosine=-1"], "--tolerance cosine=-1: must be a finite number"),
        (["diff", "a.json", "b.json", "--tolerance", "inf"], "--tolerance inf: must be a finite number"),
        (["diff", "a.json", "b.json", "--tolerance", "speed=0.1"], "unknown metric 'speed'"),
    ],
)
def test_bad_values_are_usage_errors(cli, args: list[str], message: str) -> None:
    cli(*args).expect(2, message)


def test_gc_with_a_negative_size_deletes_nothing(cli, write_config, isolated_cache) -> None:
    cli("run", str(write_config()), "-q", "--out", "o").expect(0)
    entries = sorted((isolated_cache / "v1" / "objects").rglob("manifest.json"))
    cli("cache", "gc", "--max-size", "-5").expect(2, "at least 0")  # it used to delete everything
    assert sorted((isolated_cache / "v1" / "objects").rglob("manifest.json")) == entries


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (["run", "{config}", "-j", "0"], "-j/--jobs must be at least 1, not 0"),
        (["run", "{config}", "--jobs", "-3"], "-j/--jobs must be at least 1, not -3"),
        (["fix", "{config}", "--run", "fp16", "--candidates", "0"], "--candidates must be at least 1, not 0"),
        (["fix", "{config}", "--run", "fp16", "-j", "0"], "-j/--jobs must be at least 1"),
        (["run", "{config}", "--force", "nosuchstage"], "nosuchstage"),
        (["run", "{config}", "--set", "no-equals-sign"], "expected KEY.PATH=VALUE"),
        (["run", "{config}", "--set", "runs..fp16=1"], "cannot parse the key path"),
        (["run", "{config}", "--set", "runs.fp16[99].x=1"], "index [99] is out of range"),
        (["report", "{config}", "--format", "pdf"], "invalid choice: 'pdf'"),
        (["validate"], "the following arguments are required: config"),
    ],
)
def test_bad_values_of_config_commands(cli, write_config, isolated_cache, command: list[str], message: str) -> None:
    config = str(write_config())
    cli(*[config if a == "{config}" else a for a in command]).expect(2, message)
    assert not (isolated_cache / "v1" / "objects" / "build").exists()  # refused before anything ran


def test_report_output_that_cannot_be_written(cli, write_config, tmp_path: Path) -> None:
    cli("run", str(write_config()), "-q", "--out", "o").expect(0)
    (tmp_path / "file").write_text("x")
    cli("report", "o", "--format", "md", "-o", str(tmp_path / "file" / "r.md")).expect(2, "cannot write")


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
@pytest.mark.parametrize("rev", ["--output=pwned", "--exec-path=pwned", "-p", "--git-dir=pwned"])
def test_option_like_revisions_never_reach_git_as_options(cli, write_config, rev: str) -> None:
    work = Path.cwd()
    subprocess.run(["git", "init", "-q"], cwd=work, check=True)
    config = write_config()
    cli("diff", "--", f"{rev}:{config}", str(config)).expect(2, f"{rev}: cannot resolve")
    assert not list(work.glob("pwned*")) and not list(config.parent.glob("pwned*"))
