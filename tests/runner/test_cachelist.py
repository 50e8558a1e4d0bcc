"""`cache ls` groups entries by experiment and run; the search's trials fold into one line per run."""

from __future__ import annotations

import os
import time
from pathlib import Path

from layerscope.runner.cachelist import SHARED, UNKNOWN, groups, item, select


def _entry(tmp_path: Path, kind: str, name: str, manifest: dict | None) -> tuple[Path, dict | None]:
    path = tmp_path / "objects" / kind / name[:2] / name
    path.mkdir(parents=True)
    return path, manifest


def test_groups_fold_fix_trials_and_keep_shared_files_apart(tmp_path: Path) -> None:
    files = {"a.h5": {"size": 100}}
    raw = [
        _entry(tmp_path, "build", "k1", {"stage": "build[fp16]", "experiment": "unet", "files": files}),
        _entry(tmp_path, "dump", "k2", {"stage": "dump[fp16]", "experiment": "unet", "files": files}),
        *(
            _entry(tmp_path, "build", f"t{i}", {"stage": f"build[fp16~{i}:abcd]", "experiment": "unet", "files": files})
            for i in range(5)
        ),
        _entry(tmp_path, "report", "k3", {"stage": "report", "experiment": "unet", "files": files}),
        _entry(tmp_path, "summary", "k4", {"stage": "model summary", "files": files}),
        _entry(tmp_path, "dump", "k5", {"stage": "dump[fp32]", "files": files}),  # made before names were recorded
        _entry(tmp_path, "dump", "k6", None),  # corrupt
    ]
    items = [x for x in (item(p, m) for p, m in raw) if x is not None]
    got = [(g.experiment, g.run, g.count, g.size, g.kinds) for g in groups(items)]
    assert got == [
        ("unet", "", 1, 100, ("report",)),
        ("unet", "fp16", 2, 200, ("build", "dump")),
        ("unet", "fp16 (fix trials)", 5, 500, ("build",)),
        (UNKNOWN, "", 1, 0, ("dump",)),
        (UNKNOWN, "fp32", 1, 100, ("dump",)),
        (SHARED, "", 1, 100, ("summary",)),
    ]
    assert len(select(items, kinds=["build"], experiment="un*")) == 6
    assert select(items, older_than_s=3600) == []
    old = time.time() - 7200
    os.utime(raw[0][0], (old, old))
    assert [x.stage for x in select([item(*raw[0])], older_than_s=3600)] == ["build[fp16]"]  # type: ignore[list-item]
