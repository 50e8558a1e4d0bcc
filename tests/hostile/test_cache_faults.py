"""Environment faults: a disk that fills up, a cache that cannot be written, a corrupt entry, `cache gc` while
runs use the cache. Nothing is corrupted, nothing is reported that did not happen, and every message says
what happened (exit 3 for the machine's faults), never "internal error"."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from layerscope.runner.cache import Cache
from tests.hostile.conftest import layerscope_process


def file_size_limit(limit: int):
    """A preexec function: the process may write no file larger than ``limit`` bytes (``ulimit -f``)."""

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def comparisons(out: Path) -> list:
    return json.loads((out / "report.json").read_text())["comparisons"]


def test_a_full_disk_during_a_dump_is_said_and_leaves_nothing_behind(write_config, isolated_cache, tmp_path) -> None:
    """Real code path: the process's file size limit (RLIMIT_FSIZE) makes the dump's HDF5 writes fail with EFBIG,
    as a full disk makes them fail with ENOSPC (the same handling; the message for ENOSPC is tested below)."""
    config = write_config()
    work = Path.cwd()
    layerscope_process("validate", str(config), cwd=work).expect(0)  # the model and its summary: small files
    r = layerscope_process("run", str(config), "-q", "--out", "o", cwd=work, preexec=file_size_limit(64 << 10))
    r.expect(3, "failed: a file reached the size limit of 64.0 KiB for this process (ulimit -f)", "dumps need ~")
    assert "h5py" not in r.err  # h5py's own complaints while closing the file are not shown (-v shows them)
    assert list((isolated_cache / "v1" / "tmp").iterdir()) == []  # no temporary left
    assert not (isolated_cache / "v1" / "objects" / "dump").exists()  # no partial dump published
    layerscope_process("run", str(config), "-q", "--out", "o", cwd=work).expect(0)
    layerscope_process("run", str(config), "-q", "--out", "clean", "--no-cache", cwd=work).expect(0)
    assert comparisons(work / "o") == comparisons(work / "clean")  # the rerun is the run that never failed


def test_a_full_output_folder_leaves_no_temporary(write_config) -> None:
    config = write_config()
    work = Path.cwd()
    layerscope_process("run", str(config), "-q", "--out", "o", cwd=work).expect(0)
    r = layerscope_process("run", str(config), "-q", "--out", "full", cwd=work, preexec=file_size_limit(4 << 10))
    r.expect(3, "a file reached the size limit", "writing full")
    assert [p.name for p in (work / "full").iterdir()] == []  # no .report.json.<pid>.tmp


def test_no_space_left_on_device_is_said_as_such(cli, write_config, monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC itself cannot be caused without a small filesystem (root and a mount): the write of the report is
    made to fail with it (monkeypatched), and what the user sees is checked."""
    import errno

    from layerscope.pipelines.reports import outputs

    def full(path: Path, data: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    config = write_config()
    cli("run", str(config), "-q", "--out", "o").expect(0)
    monkeypatch.setattr(outputs, "atomic_write", full)
    r = cli("run", str(config), "-q", "--out", "o2").expect(3, "no space left on device writing", "report.json (free")
    assert "hint: free some space" in r.err


def test_corrupt_dump_is_replaced_even_when_the_report_is_cached(cli, write_config, isolated_cache) -> None:
    config = write_config()
    cli("run", str(config), "-q", "--out", "o").expect(0)
    before = comparisons(Path("o"))
    dump = Path("o/dumps/fp16.h5").resolve()
    with dump.open("r+b") as f:  # flip bytes in the middle: same size, other content
        f.seek(dump.stat().st_size // 2)
        f.write(b"\xff" * 64)
    r = cli("run", str(config), "--out", "o")
    r.expect(0)
    stages = json.loads(Path("o/report.json").read_text())["execution"]["stages"]
    assert stages["dump[fp16]"]["status"] == "ran" and "checksum mismatch" in stages["dump[fp16]"]["reason"]
    assert stages["report"]["status"] == "cached"
    assert Path("o/dumps/fp16.h5").exists()  # the run folder's link is back, to the new entry
    assert comparisons(Path("o")) == before


# -- a cache that cannot be written ---------------------------------------------------------------------------
def _read_only_wrapper(cache: Path) -> list[str] | None:
    """A command prefix that runs with ``cache`` read-only: a read-only bind mount in a mount namespace of its
    own (root), or, for a non-root user, the write permission taken away. None when neither is possible."""
    if os.geteuid() != 0:
        subprocess.run(["chmod", "-R", "a-w", str(cache)], check=True)
        return []
    unshare = shutil.which("unshare")
    if unshare is None or subprocess.run([unshare, "-m", "true"], capture_output=True).returncode != 0:
        return None
    script = f'mount --bind -o ro "{cache}" "{cache}" && exec "$@"'
    return [unshare, "-m", "sh", "-c", script, "sh"]


def test_read_only_cache(write_config, isolated_cache) -> None:
    config = write_config()
    work = Path.cwd()
    layerscope_process("run", str(config), "-q", "--out", "o", cwd=work).expect(0)
    entries = sorted(p.parent for p in (isolated_cache / "v1" / "objects").rglob("manifest.json"))
    wrap = _read_only_wrapper(isolated_cache)
    if wrap is None:
        pytest.skip("cannot make the cache read-only here: root without `unshare -m` (mount namespaces)")
    try:
        # A fully cached run only reads: it works (it used to fail with an internal error).
        r = layerscope_process("run", str(config), "-q", "--out", "o2", cwd=work, wrap=wrap).expect(0, "PASS")
        assert comparisons(work / "o2") == comparisons(work / "o")
        layerscope_process("cache", "ls", "--entries", cwd=work, wrap=wrap).expect(0, "dump[fp16]")
        # gc and clear cannot remove anything, and say so instead of "removed 9 entries".
        for args in (["cache", "gc", "--max-size", "0"], ["cache", "clear", "--yes"]):
            r = layerscope_process(*args, cwd=work, wrap=wrap).expect(3)
            assert "cannot change the cache" in r.err or "could not remove" in r.err, r.err
            assert "removed 9" not in r.out and "cleared" not in r.out
        assert sorted(p.parent for p in (isolated_cache / "v1" / "objects").rglob("manifest.json")) == entries
    finally:
        if os.geteuid() != 0:
            subprocess.run(["chmod", "-R", "u+w", str(isolated_cache)], check=True)


# -- gc while runs use the cache -------------------------------------------------------------------------------
@pytest.mark.slow
def test_gc_during_active_runs_never_breaks_them(write_config, isolated_cache) -> None:
    """`cache gc --max-size 0` in a loop while runs start, run and write their outputs: every run succeeds and
    links its dumps (without leases, 5 of 5 runs failed this way: FileNotFoundError, missing links). The links
    dangle afterwards: the loop's last gc may come after the run ended, which is what gc is for."""
    config = write_config()
    work = Path.cwd()
    cache = Cache(isolated_cache)
    for i in range(2):
        shutil.rmtree(isolated_cache, ignore_errors=True)
        cmd = [sys.executable, "-m", "layerscope", "run", str(config), "-q", "--out", f"o{i}"]
        proc = subprocess.Popen(cmd, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(0.3 * i)  # the first run meets gc from its start, the second once it has begun
        while proc.poll() is None:
            cache.gc(max_bytes=0)
            time.sleep(0.01)
        _, err = proc.communicate()
        assert proc.returncode == 0, err
        assert "internal error" not in err and "Traceback" not in err
        assert sorted(p.name for p in (work / f"o{i}" / "dumps").iterdir()) == ["fp16.h5", "fp32.h5"]
    # The runs are over: their leases are gone, and gc removes everything it was asked to.
    removal = cache.gc(max_bytes=0)
    assert not removal.kept and not list((isolated_cache / "v1" / "leases").glob("*.json"))


# -- an interrupted run ----------------------------------------------------------------------------------------
def test_ctrl_c_exits_130_and_the_rerun_is_whole(write_config, isolated_cache) -> None:
    import signal

    config = write_config()
    work = Path.cwd()
    cmd = [sys.executable, "-m", "layerscope", "run", str(config), "-q", "--out", "o", "--set", "samples=400"]
    proc = subprocess.Popen(cmd, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (isolated_cache / "v1" / "tmp").is_dir() or not list((isolated_cache / "v1" / "tmp").iterdir()):
        assert proc.poll() is None and time.time() < deadline, "the run ended before it could be interrupted"
        time.sleep(0.05)  # a stage is writing now
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "layerscope: interrupted" in err, err
    assert "Traceback" not in err
    assert list((isolated_cache / "v1" / "tmp").iterdir()) == []  # what was being written is gone
    layerscope_process("run", str(config), "-q", "--out", "o", "--set", "samples=3", cwd=work).expect(0)
