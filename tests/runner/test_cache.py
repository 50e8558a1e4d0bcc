"""The artifact store: atomic publish, verification on use, locks between processes, gc."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from layerscope.runner.cache import Cache


def publish(cache: Cache, key: str, files: dict[str, bytes], kind: str = "dump") -> Path:
    with cache.lock(key), cache.staging(kind, key) as tmp:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        return cache.publish(kind, key, tmp, {"stage": f"{kind}[x]"}).path


def test_publish_then_hit(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    path = publish(cache, "a" * 64, {"dump.h5": b"data", "lowering.json": b"{}"})
    found = cache.lookup("dump", "a" * 64)
    assert found.reason == "hit" and found.entry is not None and found.entry.path == path
    manifest = json.loads((path / "manifest.json").read_text())
    assert set(manifest["files"]) == {"dump.h5", "lowering.json"}
    assert cache.lookup("dump", "b" * 64).reason == "missing"


def test_hit_does_not_reread_files(tmp_path: Path) -> None:
    publish(Cache(tmp_path), "a" * 64, {"dump.h5": b"x" * 4096})
    later = Cache(tmp_path)  # a new process
    assert later.lookup("dump", "a" * 64).entry is not None
    assert later.digests.hashed == []


def test_corrupt_file_is_a_miss_with_reason_and_is_replaced(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    path = publish(cache, "c" * 64, {"dump.h5": b"good data"})
    (path / "dump.h5").write_bytes(b"evil data")  # same size, different bytes
    assert Cache(tmp_path).lookup("dump", "c" * 64).reason == "corrupt entry (dump.h5: checksum mismatch)"
    (path / "dump.h5").write_bytes(b"short")
    assert Cache(tmp_path).lookup("dump", "c" * 64).reason == "corrupt entry (dump.h5: size changed)"
    (path / "dump.h5").unlink()
    assert Cache(tmp_path).lookup("dump", "c" * 64).reason == "corrupt entry (dump.h5 is missing)"
    publish(cache, "c" * 64, {"dump.h5": b"good data"})
    assert Cache(tmp_path).lookup("dump", "c" * 64).entry is not None


def test_missing_manifest_is_never_used(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    path = publish(cache, "d" * 64, {"dump.h5": b"x"})
    (path / "manifest.json").unlink()
    assert cache.lookup("dump", "d" * 64).reason == "incomplete entry (no manifest)"


WRITER = """
import sys, time
from pathlib import Path
from layerscope.runner.cache import Cache
cache = Cache(Path(sys.argv[1]))
with cache.lock("e" * 64), cache.staging("dump", "e" * 64) as tmp:
    with open(tmp / "dump.h5", "wb") as f:
        f.write(b"half written")
        f.flush()
        print("writing", flush=True)
        time.sleep(60)
"""


def test_a_stage_killed_mid_write_leaves_no_usable_entry(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    cache = Cache(tmp_path)
    assert cache.lookup("dump", "e" * 64).entry is None
    assert not cache.entry_dir("dump", "e" * 64).exists()
    leftovers = list((tmp_path / "v1" / "tmp").iterdir())
    assert len(leftovers) == 1  # the dead writer's temporary ...
    removed = cache.gc().removed
    assert [why for _, _, why in removed] == ["unfinished temporary"]  # ... which gc removes
    assert list((tmp_path / "v1" / "tmp").iterdir()) == []
    # and the lock died with its holder: the key can be produced now
    publish(cache, "e" * 64, {"dump.h5": b"complete"})
    assert cache.lookup("dump", "e" * 64).entry is not None


RACER = """
import sys, time
from pathlib import Path
from layerscope.runner.cache import Cache
cache = Cache(Path(sys.argv[1]))
key = "f" * 64
if cache.lookup("dump", key).entry is None:
    with cache.lock(key):
        if cache.lookup("dump", key).entry is None:
            with cache.staging("dump", key) as tmp:
                with open(Path(sys.argv[2]), "a") as log:
                    log.write("computed\\n")
                time.sleep(0.5)
                (tmp / "dump.h5").write_bytes(b"result")
                cache.publish("dump", key, tmp, {"stage": "dump[x]"})
print(cache.lookup("dump", key).entry.file("dump.h5").read_bytes().decode())
"""


def test_concurrent_processes_compute_a_key_once(tmp_path: Path) -> None:
    log = tmp_path / "computed.log"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(tmp_path / "c"), str(log)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert outputs == ["result"] * 3
    assert log.read_text() == "computed\n"


def test_gc_by_size_removes_least_recently_used(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    old = publish(cache, "1" * 64, {"dump.h5": b"o" * 1000})
    publish(cache, "2" * 64, {"dump.h5": b"n" * 1000})
    past = time.time() - 3600
    os.utime(old, (past, past))
    removed = cache.gc(max_bytes=1500).removed
    assert [(p.name, why) for p, _, why in removed] == [("1" * 64, "least recently used")]
    assert cache.lookup("dump", "2" * 64).entry is not None


def test_gc_dry_run_and_age(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    old = publish(cache, "3" * 64, {"dump.h5": b"x"})
    past = time.time() - 10 * 86400
    os.utime(old, (past, past))
    assert [why for _, _, why in cache.gc(older_than_s=86400, dry_run=True).removed] == ["unused"]
    assert old.exists()
    cache.gc(older_than_s=86400)
    assert not old.exists()


def test_clear(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    publish(cache, "4" * 64, {"dump.h5": b"x" * 10})
    assert cache.clear().removed_bytes > 0
    assert cache.lookup("dump", "4" * 64).reason == "missing"


def test_unwritable_cache_is_a_clear_error(tmp_path: Path) -> None:
    import pytest

    from layerscope.runner.errors import CacheError

    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(CacheError, match="cannot use cache directory"):
        publish(Cache(blocker / "cache"), "5" * 64, {"x": b"y"})
