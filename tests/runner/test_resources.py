"""Room for a run: free disk, available memory, and the words for a full disk."""

from __future__ import annotations

import errno
from pathlib import Path

from layerscope.runner.resources import available_memory, disk_full, existing_ancestor, free_disk, human


def test_human() -> None:
    assert [human(n) for n in (0, 1023, 1536, 3 << 30, 5 << 40)] == ["0 B", "1023 B", "1.5 KiB", "3.0 GiB", "5.0 TiB"]


def test_free_disk_of_a_folder_to_be_made(tmp_path: Path) -> None:
    assert existing_ancestor(tmp_path / "a" / "b") == tmp_path
    free = free_disk(tmp_path / "a" / "b")
    assert free is not None and free > 0
    memory = available_memory()
    assert memory is not None and memory > 0


def test_disk_full_messages(tmp_path: Path) -> None:
    nospace = disk_full(OSError(errno.ENOSPC, "No space left on device"), tmp_path / "x", needed=3 << 20)
    assert nospace.exit_code == 3
    assert nospace.message.startswith(f"no space left on device writing {tmp_path / 'x'} (needs ~3.0 MiB, free ")
    quota = disk_full(OSError(errno.EDQUOT, "Disk quota exceeded", str(tmp_path / "y")))
    assert quota.message.startswith(f"disk quota exceeded writing {tmp_path / 'y'} (free ")
    limit = disk_full(OSError(errno.EFBIG, "File too large"), tmp_path)
    assert "size limit" in limit.message and "ulimit -f" in limit.message and "free" not in limit.message
