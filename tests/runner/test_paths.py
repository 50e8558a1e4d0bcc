"""Paths a config or model names: relative ones stay inside their folder, links followed; absolute ones as written."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from layerscope.runner.errors import UsageError
from layerscope.runner.paths import confined, fixed_prefix, inside, is_explicit, leaving


def test_relative_inside_is_resolved(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    assert confined(tmp_path, "sub/../x.npy", "input file") == (tmp_path / "x.npy").resolve()


@pytest.mark.parametrize("written", ["../x", "sub/../../x", "./../../etc/passwd"])
def test_relative_outside_is_refused(tmp_path: Path, written: str) -> None:
    (tmp_path / "sub").mkdir()
    with pytest.raises(UsageError, match=r"outside .*write an absolute path"):
        confined(tmp_path / "sub", written, "input file")


def test_a_link_leading_out_is_outside(tmp_path: Path) -> None:
    (tmp_path / "inner").mkdir()
    os.symlink(tmp_path, tmp_path / "inner" / "up")
    assert not inside(tmp_path / "inner" / "up" / "x", tmp_path / "inner")
    with pytest.raises(UsageError, match="outside"):
        confined(tmp_path / "inner", "up/x", "model")


def test_absolute_and_home_paths_are_explicit(tmp_path: Path) -> None:
    assert is_explicit("/etc/hosts") and is_explicit("~/data.npy") and not is_explicit("data.npy")
    assert confined(tmp_path, "/etc/hosts", "model") == Path("/etc/hosts").resolve()


def test_nul_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="NUL"):
        confined(tmp_path, "a\x00b", "model")


def test_listed_files_that_links_take_outside_are_refused_for_relative_entries(tmp_path: Path) -> None:
    folder, outside = tmp_path / "in", tmp_path / "out.txt"
    folder.mkdir()
    outside.write_text("x")
    (folder / "ok.txt").write_text("y")
    (folder / "link.txt").symlink_to(outside)
    found = [str(folder / "link.txt"), str(folder / "ok.txt")]
    kept, problems = leaving("in/*.txt", folder, found)
    assert kept == [str(folder / "ok.txt")]
    assert len(problems) == 1 and problems[0].startswith(f"{folder / 'link.txt'} (listed for 'in/*.txt') resolves to")
    assert leaving(str(folder / "*.txt"), folder, found) == (found, [])  # absolute: the writer's choice
    assert fixed_prefix(Path("/a/b/*.png")) == Path("/a/b")
    assert fixed_prefix(Path("/a/**/c/*.png")) == Path("/a")
