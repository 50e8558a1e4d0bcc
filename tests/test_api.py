"""The Python API: run, plan, diff, fix and load_report return typed results, print nothing unless asked, and
raise the exceptions that carry the command line's exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import layerscope
from tests.conftest import SMALL_UNET
from tests.models import hostile_model
from tests.pipelines.analysis.test_search import CONFIG as HOSTILE


def test_run_a_config_path_silently_and_get_the_typed_report(write_config, capsys) -> None:
    path = write_config()
    report = layerscope.run(path, out="o")
    assert capsys.readouterr() == ("", "")  # progress=False: nothing printed
    assert isinstance(report, layerscope.Report)
    assert report.verdict == "pass" and report.experiment.name == "small"
    assert set(report.files) == {"json", "md", "html"} and report.files["md"].is_file()
    assert report == layerscope.load_report("o")  # what was written is what was returned
    c = report.comparison("fp16")
    assert [x.tensor for x in c.layers[:3]] == ["conv0", "bn0", "relu0"]
    assert c.layers[0].metrics.elements == 2 * 4 * 16 * 16
    assert report.execution is not None and {s.status for s in report.execution.stages.values()} == {"ran"}
    again = layerscope.run(path, out="o")
    assert again.execution is not None and {s.status for s in again.execution.stages.values()} == {"cached"}


def test_a_config_dict_with_overrides_as_for_set(tmp_path: Path) -> None:
    config = yaml.safe_load(SMALL_UNET)
    config["report"] = {"dir": str(tmp_path / "dict-run")}
    report = layerscope.run(config, overrides=["thresholds.max_deviation_ratio=0", "thresholds.rel_error=1e-9"])
    assert report.verdict == "fail" and report.comparison("fp16").first_failing_layer == "conv0"
    assert report.experiment.overrides == ("thresholds.max_deviation_ratio=0", "thresholds.rel_error=1e-9")
    assert report.files["json"] == tmp_path / "dict-run" / "report.json"
    assert report.experiment.config == "<config>"
    assert config["runs"]["fp16"] == {"backend": "onnxruntime", "precision": "fp16"}  # the caller's dict untouched
    with pytest.raises(layerscope.UsageError, match=r"list of KEY\.PATH=VALUE strings"):
        layerscope.run(config, overrides="samples=3")  # type: ignore[arg-type]


def test_an_invalid_config_dict_raises_spec_error_with_pointers() -> None:
    config = yaml.safe_load(SMALL_UNET)
    config["thresholds"]["max_deviation_ratio"] = 1.5
    config["compare"]["reference"] = "fp23"
    with pytest.raises(layerscope.SpecError) as err:
        layerscope.plan(config)
    assert err.value.exit_code == 2
    assert [(p.pointer, p.line) for p in err.value.problems] == [
        ("/thresholds/max_deviation_ratio", None),
        ("/compare/reference", None),
    ]
    with pytest.raises(layerscope.UsageError, match="config value at /model/path is a object"):
        layerscope.plan({**config, "model": {"path": object()}})


def test_plan_says_what_would_run_and_why(write_config) -> None:
    path = write_config()
    before = layerscope.plan(path)
    assert isinstance(before, layerscope.Plan) and not before.cached
    assert {s.status for s in before.stages} == {"run"} and {s.reason for s in before.stages} == {
        "first run: nothing cached for it"
    }
    layerscope.run(path, out="o")
    assert layerscope.plan(path).cached
    pinned = layerscope.plan(path, overrides=["runs.fp16.overrides=[{layers: [conv0], precision: fp32}]"])
    assert set(pinned.to_run) == {"build[fp16]", "dump[fp16]", "compare[fp16]", "attribute[fp16]", "report"}
    assert next(s for s in pinned.stages if s.id == "build[fp16]").reason == "changed plan.pinned"
    only = layerscope.plan(path, force=["dump[fp32]"], only=["dump[fp32]"])
    assert only.to_run == ("dump[fp32]",)


def test_diff_of_two_runs(write_config) -> None:
    path = write_config()
    layerscope.run(path, out="a")
    layerscope.run(path, out="b", overrides=["runs.fp16.overrides=[{layers: [conv0], precision: fp32}]"])
    d = layerscope.diff("a", "b")
    assert isinstance(d, layerscope.Diff)
    assert (d.old.label, d.new.label) == ("a", "b") and d.old.verdict == "pass"
    assert [c["key"] for c in d.config_changes][:1] == ["runs.fp16.overrides"]
    assert d.comparisons[0]["candidate"] == "fp16"
    # pinning conv0 changes the numbers downstream, some for the worse: what the regression gate is for
    assert d.regressed and all(line.startswith("fp16: ") for line in d.regressions)
    assert d.render("md").startswith("## layerscope diff: `a` → `b`")
    strict = layerscope.diff("a", "b", tolerance=["1000"])
    assert not strict.regressed and strict.tolerance["cosine"] == 1000
    assert '"schema": "layerscope-diff"' in d.render("json")
    with pytest.raises(layerscope.UsageError, match="unknown diff format"):
        d.render("pdf")


def test_fix_finds_the_hostile_layer(write_config) -> None:
    path = write_config(HOSTILE)
    hostile_model(path.parent / "m.onnx")
    steps: list[str] = []
    result = layerscope.fix(path, "fp16", out="fix", log=steps.append)
    assert isinstance(result, layerscope.FixResult) and result.passed
    assert result.found == ("conv1",) and result.minimal
    assert result.snippet is not None and "layers: [conv1]" in result.snippet
    assert result.files["yaml"].read_text() == result.snippet
    assert steps and result.cost.ran > 0


def test_a_failed_stage_raises_run_error_with_exit_3(write_config) -> None:
    import numpy as np

    path = write_config()
    np.save(path.parent / "x.npy", np.zeros((2, 1, 3, 8, 8), np.float32))
    with pytest.raises(layerscope.RunError) as err:
        layerscope.run(path, out="o", overrides=["inputs.input.source={file: x.npy}"])
    assert err.value.exit_code == 3 and isinstance(err.value, layerscope.StageError)
    lines = err.value.lines()
    assert lines[0].startswith("dump[fp32] failed: x.npy has shape [2, 1, 3, 8, 8], which holds neither samples")
    assert any(line.startswith("compare[fp16] skipped: depends on failed dump") for line in lines)
    assert str(err.value) == "\n".join(lines)
    assert not Path("o/report.json").exists()


def test_progress_goes_to_stderr(write_config, capsys) -> None:
    layerscope.run(write_config(), out="o", progress=True)
    out, err = capsys.readouterr()
    assert out == "" and "ran" in err and "report" in err
