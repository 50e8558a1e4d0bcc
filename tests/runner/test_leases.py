"""Leases keep the entries of a live command safe from gc and clear; a dead process's lease is ignored."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from layerscope.runner import leases
from layerscope.runner.cache import Cache


def publish(cache: Cache, key: str) -> Path:
    with cache.lock(key), cache.staging("dump", key) as tmp:
        (tmp / "dump.h5").write_bytes(b"x" * 100)
        return cache.publish("dump", key, tmp, {"stage": "dump[x]"}).path


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_session_claims_what_it_looks_up_and_gc_keeps_it(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    used, other = publish(cache, "a" * 64), publish(cache, "b" * 64)
    with leases.session():
        assert cache.lookup("dump", "a" * 64).entry is not None
        removal = cache.gc(max_bytes=0)
        assert [p for p, _, _ in removal.kept] == [used]
        assert [p for p, _, _ in removal.removed] == [other]
        assert [info.pid for info in removal.leases] == [os.getpid()]
        assert used.exists() and not other.exists()
    assert not list((tmp_path / "v1" / "leases").glob("*.json"))  # released with the session
    assert [p for p, _, _ in cache.gc(max_bytes=0).removed] == [used]


def test_outside_a_session_nothing_is_claimed(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    publish(cache, "c" * 64)
    cache.lookup("dump", "c" * 64)
    assert not (tmp_path / "v1" / "leases").exists() or not list((tmp_path / "v1" / "leases").iterdir())


def test_a_published_entry_is_claimed_before_it_is_visible(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    with leases.session():
        path = publish(cache, "d" * 64)
        (lease,) = leases.live(cache.base)
        assert "d" * 64 in lease.keys
        assert cache.clear().kept[0][0] == path  # clear keeps it too


def test_the_lease_of_a_dead_process_is_ignored_and_pruned(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    path = publish(cache, "e" * 64)
    stale = tmp_path / "v1" / "leases" / f"{os.uname().nodename}-{dead_pid()}-0000.json"
    stale.parent.mkdir(parents=True, exist_ok=True)
    doc = {"pid": dead_pid(), "host": os.uname().nodename, "started": 0, "keys": ["e" * 64]}
    stale.write_text(json.dumps(doc))
    assert leases.live(cache.base) == []
    removal = cache.gc(max_bytes=0)
    assert [p for p, _, _ in removal.removed] == [path] and not removal.kept
    assert not stale.exists()


def test_a_half_written_lease_is_stale(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    publish(cache, "f" * 64)
    broken = tmp_path / "v1" / "leases" / "host-1-x.json"
    broken.parent.mkdir(parents=True, exist_ok=True)
    broken.write_text('{"pid": 1, "keys": ["ff')
    assert leases.live(cache.base) == []
    assert len(cache.gc(max_bytes=0).removed) == 1


def test_a_lease_from_another_host_counts_while_it_is_recent(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    path = publish(cache, "9" * 64)
    remote = tmp_path / "v1" / "leases" / "elsewhere-1-x.json"
    remote.parent.mkdir(parents=True, exist_ok=True)
    remote.write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": 0, "keys": ["9" * 64]}))
    assert [p for p, _, _ in cache.gc(max_bytes=0).kept] == [path]
    old = os.stat(remote).st_mtime - leases.REMOTE_LEASE_SECONDS - 60
    os.utime(remote, (old, old))
    assert [p for p, _, _ in cache.gc(max_bytes=0).removed] == [path]


def test_gc_says_which_run_folders_it_breaks(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    entry = publish(cache, "7" * 64)
    run = tmp_path / "run"
    (run / "dumps").mkdir(parents=True)
    os.symlink(entry / "dump.h5", run / "dumps" / "fp16.h5")
    cache.record_links(run)
    assert cache.gc(max_bytes=0, dry_run=True).broken_links == [run.absolute()]
    assert cache.gc(max_bytes=0).broken_links == [run.absolute()]
