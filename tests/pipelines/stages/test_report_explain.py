"""`plan` explains why the report must run in the config's terms, not as key paths of the stage's params."""

from __future__ import annotations

import pytest

from layerscope.cli import main
from layerscope.pipelines.stages.report import explain_params


def _params(**changes: object) -> dict:
    record = {
        "experiment": {"config_digest": "a", "overrides": [], "config_data": {"runs": {"fp16": {"precision": "fp16"}}}},
        "model": {"digest": "m"},
        "libraries": {"onnxruntime": "1.2"},
    }
    limits = {"1000": {"max_deviation_ratio": 0.01}, "p2o.Conv.5": {"max_deviation_ratio": 0.01}}
    params = {"record": record, "limits": limits}
    for path, value in changes.items():
        *parents, last = path.split("__")
        node: dict = params
        for p in parents:
            node = node[p]
        node[last] = value
    return params


def test_tensor_names_are_layers_not_indexes() -> None:
    new = _params()
    new["limits"]["1000"] = {"max_deviation_ratio": 0.2}
    new["limits"]["p2o.Conv.5"] = {"max_deviation_ratio": 0.2}
    assert explain_params(_params(), new) == ['thresholds for layer "1000"', 'thresholds for layer "p2o.Conv.5"']


def test_config_changes_are_config_key_paths_and_derived_parts_are_left_out() -> None:
    new = _params()
    new["record"]["experiment"]["config_digest"] = "b"
    new["record"]["experiment"]["overrides"] = ["runs.fp16.overrides=[...]"]
    new["record"]["experiment"]["config_data"]["runs"]["fp16"]["overrides"] = [{"layers": ["up1"]}]
    assert explain_params(_params(), new) == ["runs.fp16.overrides", "--set"]
    new = _params()
    new["record"]["libraries"]["onnxruntime"] = "1.3"
    assert explain_params(_params(), new) == ["onnxruntime version"]


def test_plan_says_first_run_and_config_terms(write_config, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config()
    assert main(["plan", str(path)]) == 0
    assert "first run: nothing cached for it" in capsys.readouterr().out  # was "never run"
    assert main(["run", str(path), "--out", "o", "-q"]) == 0
    capsys.readouterr()
    assert main(["plan", str(path), "--set", "runs.fp16.overrides=[{layers: [conv0], precision: fp32}]"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "changed runs.fp16.overrides, --set" in out
    assert "record." not in out and "config_digest" not in out


def test_limits_by_value_keeps_every_tensors_limits_and_explains_like_the_per_tensor_form() -> None:
    from layerscope.pipelines.experiment.spec import Limits
    from layerscope.pipelines.stages.report import limits_by_value

    shared, loose, as_int = Limits(), Limits(max_deviation_ratio=0.2), Limits(max_deviation_ratio=1)
    grouped = limits_by_value({"c": shared, "a": shared, "b": loose, "d": as_int, "e": Limits(max_deviation_ratio=1.0)})
    by_tensor = {t: lim for lim, tensors in grouped for t in tensors}
    assert by_tensor == {
        "a": shared.to_json(),
        "b": loose.to_json(),
        "c": shared.to_json(),
        "d": as_int.to_json(),
        "e": Limits(max_deviation_ratio=1.0).to_json(),
    }
    # 1 and 1.0 digest differently, so they are kept apart; tensors are sorted within a group
    assert sorted(len(tensors) for _, tensors in grouped) == [1, 1, 1, 2]
    assert ["a", "c"] in [tensors for _, tensors in grouped]
    old = {"record": _params()["record"], "limits_by_value": limits_by_value({"1000": shared, "x": shared})}
    new = {"record": _params()["record"], "limits_by_value": limits_by_value({"1000": loose, "x": shared})}
    assert explain_params(old, new) == ['thresholds for layer "1000"']
    assert explain_params(_params(), new) == [
        'thresholds for layer "1000"',
        'thresholds for layer "p2o.Conv.5"',
        'thresholds for layer "x"',
    ]
