"""Atomic writes: the target holds the old content or the new one, and no temporary is left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from layerscope.runner.files import atomic_write


def test_text_and_bytes_replace_the_file_and_leave_no_temporary(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    target = folder / "report.json"
    atomic_write(target, "old")
    atomic_write(target, "néw")
    assert target.read_text(encoding="utf-8") == "néw"
    atomic_write(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert [p.name for p in folder.iterdir()] == ["report.json"]


def test_a_failed_write_keeps_the_old_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    target = folder / "state.json"
    atomic_write(target, "old")

    def broken_replace(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("layerscope.runner.files.os.replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in folder.iterdir()] == ["state.json"]
