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
