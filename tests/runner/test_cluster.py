"""The Dask executor on a LocalCluster of worker processes: same outcomes as local threads, failures skip their
dependents, a worker killed mid-stage leaves only a temporary directory and the stage runs again elsewhere,
and a worker that cannot see the cache or runs another environment is refused before anything is submitted."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("distributed", reason="the dask extra is not installed")

import cloudpickle

from layerscope.runner.cache import Cache
from layerscope.runner.cluster import DaskExecutor
from layerscope.runner.errors import StageError, UsageError
from layerscope.runner.execute import Executor, decide
from layerscope.runner.graph import Plan, Stage, StageContext

# The workers cannot import the tests package: send this module's functions by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as lc:
        yield lc.scheduler_address


class Action:
    """A stage action that writes what it read; optionally fails, or waits to be killed on its first attempt."""

    def __init__(self, sid: str, *, fail: bool = False, killed_once: Path | None = None) -> None:
        self.sid, self.fail, self.killed_once = sid, fail, killed_once

    def __call__(self, ctx: StageContext) -> None:
        if self.fail:
            raise StageError(f"{self.sid} cannot be built")
        if self.killed_once is not None and not self.killed_once.exists():
            (ctx.out_dir / "partial").write_text("half-written")
            self.killed_once.write_text(str(os.getpid()))  # the test kills this process now
            time.sleep(120)
        deps = {role: e.file("out.txt").read_text() for role, e in ctx.inputs.items()}
        (ctx.out_dir / "out.txt").write_text(f"{self.sid}<-{sorted(deps.items())}")
        ctx.progress.start(2)
        ctx.progress.advance(2)


def plan_of(fail: str = "", killed_once: Path | None = None) -> Plan:
    def st(sid: str, kind: str, deps: dict[str, str] | None = None) -> Stage:
        action = Action(
            sid, fail=sid == fail, killed_once=killed_once if kind == "dump" and sid.endswith("16]") else None
        )
        return Stage(sid, kind, {"sid": sid}, action, "1", deps or {})

    return Plan(
        [
            st("build[fp32]", "build"),
            st("build[fp16]", "build"),
            st("dump[fp32]", "dump", {"build": "build[fp32]"}),
            st("dump[fp16]", "dump", {"build": "build[fp16]"}),
            st("compare[fp16]", "compare", {"reference": "dump[fp32]", "candidate": "dump[fp16]"}),
            st("report", "report", {"compare:fp16": "compare[fp16]"}),
        ]
    )


class Events:
    def __init__(self) -> None:
        self.started: list[str] = []
        self.finished: dict[str, Any] = {}
        self.advanced: dict[str, float] = {}

    def stage_started(self, sid: str, description: str) -> Any:
        self.started.append(sid)
        events = self

        class P:
            def start(self, total: float | None, description: str = "") -> None:
                pass

            def advance(self, amount: float = 1.0) -> None:
                events.advanced[sid] = events.advanced.get(sid, 0.0) + amount

            def log(self, message: str) -> None:
                pass

        return P()

    def stage_finished(self, outcome: Any) -> None:
        self.finished[outcome.sid] = outcome


def outputs(outcomes: dict[str, Any]) -> dict[str, str]:
    return {sid: o.entry.file("out.txt").read_text() for sid, o in outcomes.items() if o.entry is not None}


def test_dask_matches_local_threads_and_reports_back(tmp_path: Path, cluster: str) -> None:
    local_cache, dask_cache = Cache(tmp_path / "a"), Cache(tmp_path / "b")
    plan = plan_of()
    local = Executor(local_cache, jobs=2).execute(plan, decide(plan, local_cache))
    events = Events()
    remote = DaskExecutor(dask_cache, address=cluster, reporter=events).execute(plan, decide(plan, dask_cache))
    assert {sid: o.status for sid, o in remote.items()} == {sid: "ran" for sid in plan.ids()}
    assert outputs(remote) == outputs(local)
    assert all(o.worker and o.worker.startswith("tcp://") for o in remote.values())
    assert sorted(events.finished) == sorted(plan.ids())
    # Progress came back from the workers (events may trail the results by a moment).
    deadline = time.monotonic() + 5
    while set(events.started) != set(plan.ids()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert set(events.started) == set(plan.ids())
    again = DaskExecutor(dask_cache, address=cluster).execute(plan, decide(plan, dask_cache))
    assert {o.status for o in again.values()} == {"cached"}


def test_a_failed_stage_skips_its_dependents_on_the_workers(tmp_path: Path, cluster: str) -> None:
    cache = Cache(tmp_path)
    plan = plan_of(fail="dump[fp16]")
    out = DaskExecutor(cache, address=cluster).execute(plan, decide(plan, cache))
    assert out["dump[fp16]"].status == "failed"
    assert "cannot be built" in (out["dump[fp16]"].error or "")
    assert out["compare[fp16]"].status == "skipped"
    assert "dump[fp16]" in out["compare[fp16]"].reason
    assert out["report"].status == "skipped"
    assert out["dump[fp32]"].status == "ran"


def test_a_worker_killed_mid_stage_leaves_a_temporary_and_the_stage_runs_again(tmp_path: Path, cluster: str) -> None:
    cache = Cache(tmp_path / "cache")
    marker = tmp_path / "killed-pid"
    plan = plan_of(killed_once=marker)
    killed: list[int] = []

    def killer() -> None:
        deadline = time.monotonic() + 60
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)  # the pid is written; the stage is sleeping inside its temporary directory
        pid = int(marker.read_text())
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    thread = threading.Thread(target=killer)
    thread.start()
    out = DaskExecutor(cache, address=cluster).execute(plan, decide(plan, cache))
    thread.join()
    assert killed, "the worker was never killed"
    assert {sid: o.status for sid, o in out.items()} == {sid: "ran" for sid in plan.ids()}
    assert outputs(out)["dump[fp16]"].startswith("dump[fp16]<-")
    assert not out["dump[fp16]"].entry.file("partial").exists()  # the retry wrote a fresh directory
    # What the killed attempt left is a temporary directory of a dead process, which gc removes.
    left = [p for p in (cache.base / "tmp").iterdir() if f"-{killed[0]}-" in p.name]
    assert len(left) == 1 and (left[0] / "partial").exists()
    removal = cache.gc()
    assert left[0] in [p for p, _, _ in removal.removed]


def test_a_worker_that_cannot_see_the_cache_is_refused(tmp_path: Path, cluster: str) -> None:
    from distributed import Client

    cache = Cache(tmp_path / "cache")
    plan = plan_of()
    with Client(cluster) as client:
        # Each worker gets its own (empty) directory at the cache's path: as if the cache were not shared.
        client.run(_hide_cache, str(cache.base / "tmp"))
    try:
        with pytest.raises(UsageError, match="cannot read the cache"):
            DaskExecutor(cache, address=cluster).execute(plan, decide(plan, cache))
    finally:
        with Client(cluster) as client:
            client.run(_unhide_cache)


def test_a_worker_with_another_environment_is_refused(tmp_path: Path, cluster: str) -> None:
    cache = Cache(tmp_path)
    plan = plan_of()
    with pytest.raises(UsageError, match="another environment"):
        DaskExecutor(cache, address=cluster, environment=_pid_environment).execute(plan, decide(plan, cache))


def test_a_stage_needing_a_resource_no_worker_has_is_refused(tmp_path: Path, cluster: str) -> None:
    cache = Cache(tmp_path)
    stage = Stage("build[trt]", "build", {}, Action("build[trt]"), "1", resources={"GPU": 1})
    plan = Plan([stage])
    with pytest.raises(UsageError, match="needs a worker with resource GPU"):
        DaskExecutor(cache, address=cluster).execute(plan, decide(plan, cache))


def _pid_environment() -> dict[str, Any]:
    return {"pid": os.getpid()}


_REAL_READ_TEXT: Any = None


def _hide_cache(tmp: str) -> None:
    """On a worker: reading the probe fails as it would on a machine without the shared directory."""
    global _REAL_READ_TEXT
    _REAL_READ_TEXT = Path.read_text

    def read_text(self: Path, *args: Any, **kwargs: Any) -> str:
        if str(self).startswith(tmp):
            raise FileNotFoundError(2, "No such file or directory", str(self))
        return _REAL_READ_TEXT(self, *args, **kwargs)

    Path.read_text = read_text  # type: ignore[method-assign]


def _unhide_cache() -> None:
    if _REAL_READ_TEXT is not None:
        Path.read_text = _REAL_READ_TEXT  # type: ignore[method-assign]
