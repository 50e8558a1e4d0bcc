"""Plans: dependency order, cycle detection, keys from inputs (not ids), stage selection."""

from __future__ import annotations

import pytest

from layerscope.runner.errors import UsageError
from layerscope.runner.graph import Plan, Stage


def noop(ctx: object) -> None:
    pass


def stage(sid: str, kind: str, deps: dict[str, str] | None = None, **params: object) -> Stage:
    return Stage(id=sid, kind=kind, params=params, action=noop, version="1", deps=deps or {})


def seed_plan() -> Plan:
    return Plan(
        [
            stage("report", "report", {"compare:fp16": "compare[fp16]"}),
            stage("compare[fp16]", "compare", {"reference": "dump[fp32]", "candidate": "dump[fp16]"}, t=0.1),
            stage("dump[fp16]", "dump", {"build": "build[fp16]"}),
            stage("dump[fp32]", "dump", {"build": "build[fp32]"}),
            stage("build[fp16]", "build", precision="fp16"),
            stage("build[fp32]", "build", precision="fp32"),
        ]
    )


def test_order_respects_dependencies() -> None:
    order = seed_plan().ids()
    for before, after in [("build[fp16]", "dump[fp16]"), ("dump[fp32]", "compare[fp16]"), ("compare[fp16]", "report")]:
        assert order.index(before) < order.index(after)


def test_cycle_is_reported() -> None:
    with pytest.raises(ValueError, match="cycle"):
        Plan([stage("a", "x", {"in": "b"}), stage("b", "x", {"in": "a"})])


def test_unknown_dependency_is_reported() -> None:
    with pytest.raises(ValueError, match="unknown stage"):
        Plan([stage("a", "x", {"in": "zzz"})])


def test_keys_depend_on_inputs_not_on_ids() -> None:
    a = Plan([stage("build[fp16]", "build", precision="fp16")])
    b = Plan([stage("build[half]", "build", precision="fp16")])
    c = Plan([stage("build[fp16]", "build", precision="bf16")])
    assert a["build[fp16]"].key == b["build[half]"].key
    assert a["build[fp16]"].key != c["build[fp16]"].key


def test_upstream_change_changes_downstream_keys_only() -> None:
    p1 = seed_plan()
    stages = [s.stage for s in p1]
    changed = [Stage(**{**s.__dict__, "params": {"precision": "bf16"}}) if s.id == "build[fp16]" else s for s in stages]
    p2 = Plan(changed)
    differ = {sid for sid in p1.ids() if p1[sid].key != p2[sid].key}
    assert differ == {"build[fp16]", "dump[fp16]", "compare[fp16]", "report"}


def test_select_by_id_kind_and_glob() -> None:
    plan = seed_plan()
    assert plan.select(["dump[fp16]"]) == {"dump[fp16]"}
    assert plan.select(["build"]) == {"build[fp16]", "build[fp32]"}
    assert plan.select(["*fp32*"]) == {"build[fp32]", "dump[fp32]"}
    assert plan.downstream(["dump[fp32]"]) == {"dump[fp32]", "compare[fp16]", "report"}
    assert plan.upstream(["dump[fp16]"]) == {"dump[fp16]", "build[fp16]"}


def test_unknown_stage_suggests() -> None:
    with pytest.raises(UsageError, match=r"no stage matches 'dump\[fp61\]'; did you mean 'dump\[fp16\]'\?"):
        seed_plan().select(["dump[fp61]"])


def test_merged_plans_hold_a_stage_of_the_same_key_once() -> None:
    from layerscope.runner.graph import merge_plans

    a = seed_plan()
    b = Plan(
        [
            stage("build[fp32]", "build", precision="fp32"),  # the same as a's: one stage
            stage("build[fp16]", "build", precision="bf16"),  # same id, another computation: its own
            stage("dump[fp32]", "dump", {"build": "build[fp32]"}),
            stage("dump[fp16]", "dump", {"build": "build[fp16]"}),
        ]
    )
    merged, ids = merge_plans({"a": a, "b": b})
    assert ids["b"]["build[fp32]"] == ids["a"]["build[fp32]"] == "a/build[fp32]"
    assert ids["b"]["dump[fp32]"] == "a/dump[fp32]"  # its upstream is shared, and so is it
    assert ids["b"]["build[fp16]"] == "b/build[fp16]"
    assert merged["b/dump[fp16]"].stage.deps == {"build": "b/build[fp16]"}
    # Keys are unchanged by merging: the cache serves the same entries.
    for prefix, plan in (("a", a), ("b", b)):
        assert all(merged[ids[prefix][sid]].key == plan[sid].key for sid in plan.ids())
    assert len(merged.ids()) == len(a.ids()) + 2
