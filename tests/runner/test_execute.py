"""Deciding what runs (cached, stale with a reason, not needed) and running it (parallel, failures skip dependents)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from layerscope.runner.cache import Cache
from layerscope.runner.errors import StageError
from layerscope.runner.execute import Executor, decide, explain_change, new_state
from layerscope.runner.graph import Plan, Stage, StageContext


class Recorder:
    def __init__(self) -> None:
        self.ran: list[str] = []
        self.lock = threading.Lock()

    def action(self, sid: str, *, fail: bool = False, crash: bool = False, sleep: float = 0.0):
        def run(ctx: StageContext) -> None:
            with self.lock:
                self.ran.append(sid)
            time.sleep(sleep)
            if fail:
                raise StageError(f"{sid} cannot be built")
            if crash:
                raise ZeroDivisionError("bug")
            deps = {role: e.file("out.txt").read_text() for role, e in ctx.inputs.items()}
            (ctx.out_dir / "out.txt").write_text(f"{sid}<-{sorted(deps.items())}")

        return run


def seed_plan(
    rec: Recorder, *, threshold: float = 0.1, precision: str = "fp16", fail: str = "", sleep: float = 0.0
) -> Plan:
    def st(sid: str, kind: str, deps: dict[str, str] | None = None, **params: object) -> Stage:
        return Stage(sid, kind, params, rec.action(sid, fail=sid == fail, sleep=sleep), "1", deps or {})

    return Plan(
        [
            st("build[fp32]", "build", precision="fp32"),
            st("build[fp16]", "build", precision=precision),
            st("dump[fp32]", "dump", {"build": "build[fp32]"}),
            st("dump[fp16]", "dump", {"build": "build[fp16]"}),
            st("compare[fp16]", "compare", {"reference": "dump[fp32]", "candidate": "dump[fp16]"}, t=threshold),
            st("report", "report", {"compare:fp16": "compare[fp16]"}),
        ]
    )


def run(plan: Plan, cache: Cache, state: dict | None = None, **kw: object):
    decisions = decide(plan, cache, state=state, **kw)  # type: ignore[arg-type]
    outcomes = Executor(cache, jobs=2).execute(plan, decisions)
    return decisions, outcomes


def test_first_run_runs_everything_second_nothing(tmp_path: Path) -> None:
    cache, rec = Cache(tmp_path), Recorder()
    decisions, outcomes = run(seed_plan(rec), cache)
    assert {d.reason for d in decisions.values()} == {"first run: nothing cached for it"}
    assert sorted(rec.ran) == sorted(seed_plan(rec).ids())
    assert all(o.status == "ran" for o in outcomes.values())
    rec2 = Recorder()
    decisions, outcomes = run(seed_plan(rec2), cache)
    assert rec2.ran == []
    assert {d.status for d in decisions.values()} == {"cached"}
    assert all(o.status == "cached" for o in outcomes.values())


def test_threshold_change_reruns_compare_and_report_with_reason(tmp_path: Path) -> None:
    cache, rec = Cache(tmp_path), Recorder()
    plan = seed_plan(rec)
    _, outcomes = run(plan, cache)
    state = new_state(plan, outcomes, {})
    rec2 = Recorder()
    decisions, _ = run(seed_plan(rec2, threshold=0.2), cache, state)
    assert sorted(rec2.ran) == ["compare[fp16]", "report"]
    assert decisions["compare[fp16]"].reason == "changed t"
    assert decisions["report"].reason == "upstream compare:fp16 changed"


def test_evicted_upstream_is_not_rebuilt_when_downstream_is_cached(tmp_path: Path) -> None:
    cache, rec = Cache(tmp_path), Recorder()
    plan = seed_plan(rec)
    run(plan, cache)
    import shutil

    shutil.rmtree(cache.entry_dir("build", plan["build[fp16]"].key))
    rec2 = Recorder()
    decisions, _ = run(seed_plan(rec2, threshold=0.3), cache)
    assert sorted(rec2.ran) == ["compare[fp16]", "report"]
    assert decisions["build[fp16]"].status == "not-needed"
    assert decisions["build[fp16]"].reason == "not needed: what reads it is cached (missing)"


def test_failure_skips_dependents_and_says_which(tmp_path: Path) -> None:
    cache, rec = Cache(tmp_path), Recorder()
    _, outcomes = run(seed_plan(rec, fail="build[fp16]"), cache)
    assert outcomes["build[fp16]"].status == "failed"
    assert outcomes["build[fp16]"].error == "build[fp16] cannot be built"
    assert outcomes["dump[fp16]"].reason == "skipped: depends on failed build[fp16]"
    assert outcomes["compare[fp16]"].reason == "skipped: depends on failed dump[fp16]"
    assert outcomes["report"].status == "skipped"
    assert outcomes["dump[fp32]"].status == "ran"  # independent work still happens
    assert cache.lookup("dump", seed_plan(Recorder())["dump[fp32]"].key).entry is not None


def test_a_bug_in_a_stage_is_reported_as_internal_error(tmp_path: Path) -> None:
    rec = Recorder()
    plan = Plan([Stage("x", "build", {}, rec.action("x", crash=True), "1")])
    _, outcomes = run(plan, Cache(tmp_path))
    assert outcomes["x"].status == "failed"
    assert outcomes["x"].error == "internal error: ZeroDivisionError: bug"
    assert "ZeroDivisionError" in (outcomes["x"].traceback or "")


def test_independent_stages_run_in_parallel(tmp_path: Path) -> None:
    rec = Recorder()
    active, peak = [0], [0]
    lock = threading.Lock()

    def slow(ctx: StageContext) -> None:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.2)
        with lock:
            active[0] -= 1
        (ctx.out_dir / "out.txt").write_text("x")

    plan = Plan([Stage(f"build[{i}]", "build", {"i": i}, slow, "1") for i in range(2)])
    decisions = decide(plan, Cache(tmp_path))
    Executor(Cache(tmp_path), jobs=2).execute(plan, decisions)
    assert peak[0] == 2
    _ = rec


def test_force_reruns_stage_and_dependents(tmp_path: Path) -> None:
    cache, rec = Cache(tmp_path), Recorder()
    run(seed_plan(rec), cache)
    rec2 = Recorder()
    decisions, _ = run(seed_plan(rec2), cache, force=["dump[fp32]"])
    assert sorted(rec2.ran) == ["compare[fp16]", "dump[fp32]", "report"]
    assert decisions["dump[fp32]"].reason == "forced"


def test_targets_limit_the_run(tmp_path: Path) -> None:
    cache, rec = Cache(tmp_path), Recorder()
    plan = seed_plan(rec)
    run(plan, cache, targets=plan.upstream(["dump[fp16]"]))
    assert sorted(rec.ran) == ["build[fp16]", "dump[fp16]"]


def test_explain_change_wording() -> None:
    old = {"kind": "dump", "version": "1", "params": {"samples": 2, "tensors": ["a"]}, "deps": {"build": "k1"}}
    new = {"kind": "dump", "version": "2", "params": {"samples": 4, "tensors": ["a"]}, "deps": {"build": "k2"}}
    assert explain_change(old, new) == "stage code changed; changed samples; upstream build changed"


def optional_plan(rec: Recorder, *, fail: bool) -> Plan:
    """compare + an optional analysis, both read by report (as the attribute stage is)."""
    return Plan(
        [
            Stage("compare", "compare", {}, rec.action("compare"), "1"),
            Stage("analysis", "attribute", {}, rec.action("analysis", fail=fail), "1"),
            Stage(
                "report",
                "report",
                {},
                rec.action("report"),
                "1",
                {"compare": "compare", "analysis": "analysis"},
                optional=frozenset({"analysis"}),
            ),
        ]
    )


def test_a_failed_optional_input_does_not_skip_its_reader(tmp_path: Path) -> None:
    cache, rec = Cache(tmp_path), Recorder()
    _, outcomes = run(optional_plan(rec, fail=True), cache)
    assert outcomes["analysis"].status == "failed"
    assert outcomes["report"].status == "ran" and outcomes["report"].entry is not None
    assert "analysis" not in outcomes["report"].entry.file("out.txt").read_text()


def test_a_result_made_without_an_optional_input_is_never_served_once_it_succeeds(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    run(optional_plan(Recorder(), fail=True), cache)
    rec = Recorder()
    decisions, outcomes = run(optional_plan(rec, fail=False), cache)
    assert decisions["report"].status == "run"  # the partial report lives under a key of its own
    assert "analysis" in outcomes["report"].entry.file("out.txt").read_text()
    again = Recorder()
    decisions, _ = run(optional_plan(again, fail=False), cache)
    assert decisions["report"].status == "cached" and again.ran == []


def test_warnings_a_stage_raises_are_kept_with_it_not_printed(tmp_path: Path, capsys, recwarn) -> None:
    import warnings

    import numpy as np

    def noisy(ctx: StageContext) -> None:
        with warnings.catch_warnings():  # pytest's filterwarnings=error would raise: let it through here
            warnings.simplefilter("always")
            np.array([1e6], np.float32).astype(np.float16)  # numpy: overflow encountered in cast
        (ctx.out_dir / "out.txt").write_text("x")

    plan = Plan([Stage("noisy", "dump", {}, noisy, "1")])
    _, outcomes = run(plan, Cache(tmp_path))
    entry = outcomes["noisy"].entry
    assert entry is not None
    assert any("overflow" in w for w in entry.manifest["result"]["warnings"])
    assert capsys.readouterr().err == ""


def test_remember_writes_the_state_only_when_a_key_changed(tmp_path: Path) -> None:
    from layerscope.runner.execute import remember

    cache, rec = Cache(tmp_path), Recorder()
    plan = seed_plan(rec)
    _, outcomes = run(plan, cache)
    remember(cache, "s", plan, outcomes)
    state_file = cache.base / "state" / "s.json"
    state_file.write_text(state_file.read_text() + " ")  # a mark that a rewrite would remove
    remember(cache, "s", plan, outcomes)
    assert state_file.read_text().endswith(" ")
    changed = seed_plan(Recorder(), threshold=0.2)
    _, outcomes = run(changed, cache)
    remember(cache, "s", changed, outcomes)
    assert not state_file.read_text().endswith(" ")
    assert cache.read_state("s")["report"]["key"] == changed["report"].key
