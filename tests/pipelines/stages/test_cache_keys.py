"""Mutation test of cache keys: changing each config field changes exactly the keys of the stages that depend
on it, and nothing else. Keys are computed from inputs, so a changed key is exactly a stage that reruns."""

from __future__ import annotations

import pytest

from layerscope.pipelines.experiment import load_experiment
from layerscope.pipelines.stages import plan_for
from tests.conftest import SMALL_UNET

ALL = {"build[fp32]", "build[fp16]", "dump[fp32]", "dump[fp16]", "compare[fp16]", "attribute[fp16]", "report"}
AFTER_DUMPS = {"dump[fp32]", "dump[fp16]", "compare[fp16]", "attribute[fp16]", "report"}
FP16_CHAIN = {"build[fp16]", "dump[fp16]", "compare[fp16]", "attribute[fp16]", "report"}
METRICS = {"compare[fp16]", "attribute[fp16]", "report"}


def keys(path, overrides: list[str]) -> dict[str, str]:
    exp = load_experiment(path, overrides)
    return {ps.stage.id: ps.key for ps in plan_for(exp)}


MUTATIONS = [
    ("model.options.seed=1", ALL),
    ("model.options.base_channels=6", ALL),
    ("samples=3", AFTER_DUMPS),
    ("inputs.input.source.seed=7", AFTER_DUMPS),
    ("inputs.input.source.std=2.0", AFTER_DUMPS),
    ("inputs.input.shape=[1, 3, 32, 32]", AFTER_DUMPS),
    ("layers=[conv0, relu0]", AFTER_DUMPS),
    ("layers={include: all, exclude: [{op: MaxPool}]}", AFTER_DUMPS),
    ("dump.compression=lzf", AFTER_DUMPS),
    ("runs.fp16.precision=bf16", FP16_CHAIN),
    ("runs.fp16.options.execution=native", FP16_CHAIN),
    ("runs.fp16.overrides=[{layers: [conv0], precision: fp32}]", FP16_CHAIN),
    ("runs.fp16.options.graph_optimization=basic", {"dump[fp16]", *METRICS}),
    ("thresholds.rel_error=0.2", METRICS),
    ("thresholds.abs_floor=1e-6", METRICS),
    ("thresholds.layers=[{match: conv0, rel_error: 0.3}]", METRICS),
    ("thresholds.max_deviation_ratio=0.01", {"report"}),
    ("thresholds.min_cosine=0.99", {"report"}),
    ("thresholds.layers=[{match: conv0, max_deviation_ratio: 0.3}]", {"report"}),
    ("description=what changed", {"report"}),
    ("report.formats=[json]", {"report"}),
    ("runs.fp32.overrides=[{layers: all, precision: fp32}]", {"report"}),  # pinning in an FP32 run is a no-op
    ("runs.extra={precision: bf16}", {"report"}),  # a run nothing compares is not built
    ("attribution=false", {"report"}),  # (and attribute[fp16] is no longer planned)
]


@pytest.mark.parametrize(("override", "expected"), MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_each_change_reruns_exactly_its_dependents(write_config, override: str, expected: set[str]) -> None:
    path = write_config(SMALL_UNET)
    base = keys(path, [])
    changed = keys(path, [override])
    assert set(base) == ALL
    assert {sid for sid in ALL if base[sid] != changed.get(sid)} - (ALL - set(changed)) == expected


def test_key_order_and_formatting_change_nothing(write_config) -> None:
    path = write_config(SMALL_UNET)
    before = keys(path, [])
    lines = SMALL_UNET.splitlines()
    reordered = "\n".join(lines[lines.index("runs:") :] + lines[: lines.index("runs:")])
    write_config(reordered.replace("{random: normal, seed: 0}", "{seed: 0, random: normal}"))
    assert keys(path, []) == before


def test_renaming_a_run_keeps_its_cache(write_config) -> None:
    path = write_config(SMALL_UNET)
    base = keys(path, [])
    renamed = keys(
        path, ["runs.half={backend: onnxruntime, precision: fp16}", "~runs.fp16", "compare.candidates=[half]"]
    )
    for kind in ("build", "dump", "compare", "attribute"):
        assert renamed[f"{kind}[half]"] == base[f"{kind}[fp16]"]
    assert renamed["report"] != base["report"]


def test_moving_the_model_file_keeps_its_cache(write_config, tmp_path) -> None:
    from tests.models import chain_model

    text = """\
    name: chain
    model: {model}
    inputs: {{input: {{shape: [1, 4, 8, 8], source: {{random: normal}}}}}}
    runs: {{fp32: {{precision: fp32}}, fp16: {{precision: fp16}}}}
    """
    p1 = write_config(text.format(model="a.onnx"), "one.yaml")
    chain_model(p1.parent / "a.onnx")
    chain_model(p1.parent / "b.onnx")
    p2 = write_config(text.format(model="b.onnx"), "two.yaml")
    k1, k2 = keys(p1, []), keys(p2, [])
    assert {sid: k for sid, k in k1.items() if sid != "report"} == {sid: k for sid, k in k2.items() if sid != "report"}


def test_the_config_path_is_in_no_key(write_config, tmp_path) -> None:
    import os

    path = write_config(SMALL_UNET)
    by_absolute = keys(path, [])
    os.chdir(path.parent)
    assert keys(path.name, []) == by_absolute  # same config, given by a relative path


# -- compare's and attribute's per-tensor settings are keyed grouped by value (issue 14) ---------------------------
def test_moving_one_tensor_between_setting_groups_changes_the_metric_keys(write_config) -> None:
    path = write_config(SMALL_UNET)
    one = keys(path, ["thresholds.layers=[{match: conv0, rel_error: 0.3}]"])
    two = keys(path, ["thresholds.layers=[{match: conv0, rel_error: 0.3}, {match: relu0, rel_error: 0.3}]"])
    assert {sid for sid in ALL if one[sid] != two[sid]} == METRICS


def test_grouped_settings_hold_exactly_each_tensors_setting() -> None:
    from layerscope.pipelines.stages.compare import key_settings
    from layerscope.runner.hashing import digest

    per_tensor = {
        "b": {"rel_error": 0.1, "abs_floor": 0.0},
        "a": {"rel_error": 0.1, "abs_floor": 0.0},
        "c": {"rel_error": 1, "abs_floor": 0.0},  # 1 and 1.0 are different settings, as in canonical JSON
        "d": {"rel_error": 1.0, "abs_floor": 0.0},
        "e": {"rel_error": float("nan"), "abs_floor": 0.0},
    }
    settings = {"format": "fp16", "limits": {"max": 65504.0}, "per_tensor": per_tensor}
    grouped = key_settings(settings)
    assert "per_tensor" not in grouped and grouped["format"] == "fp16" and grouped["limits"] == {"max": 65504.0}
    back = {t: setting for setting, tensors in grouped["per_tensor_by_value"] for t in tensors}
    assert back.keys() == per_tensor.keys() and all(
        back[t] is per_tensor[t] or back[t] == per_tensor[t] for t in "abcd"
    )
    assert len(grouped["per_tensor_by_value"]) == 4
    reordered = {**settings, "per_tensor": dict(reversed(per_tensor.items()))}
    assert digest(key_settings(reordered)) == digest(grouped)  # the tensors' order decides nothing
    for t in per_tensor:  # any one tensor's setting changed changes the material
        changed = {**per_tensor, t: {"rel_error": 0.5, "abs_floor": 0.0}}
        assert digest(key_settings({**settings, "per_tensor": changed})) != digest(grouped), t
