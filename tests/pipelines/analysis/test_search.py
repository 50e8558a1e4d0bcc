"""Error attribution and the search for layers to keep in FP32, on a model with one FP16-hostile layer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from layerscope.cli import main
from layerscope.pipelines.analysis.search import Search
from layerscope.pipelines.experiment import load_experiment
from tests.models import hostile_model

CONFIG = """\
name: hostile
model: m.onnx
samples: 2
inputs:
  input: {shape: [1, 4, 8, 8], source: {random: normal, seed: 0}}
runs:
  fp32: {precision: fp32}
  fp16: {precision: fp16}
thresholds: {rel_error: 0.1, max_deviation_ratio: 0.05, min_cosine: 0.999}
"""


@pytest.fixture
def hostile(write_config) -> Path:
    path = write_config(CONFIG)
    hostile_model(path.parent / "m.onnx")
    return path


def layers(out: str) -> dict[str, dict]:
    doc = json.loads(Path(out, "report.json").read_text())
    return {x["node"]: x for x in doc["comparisons"][0]["layers"]}


def test_attribution_blames_the_hostile_layer_locally_and_its_successors_as_inherited(hostile: Path) -> None:
    assert main(["run", str(hostile), "--out", "o", "-q"]) == 1
    by_node = layers("o")
    conv1 = by_node["conv1"]["attribution"]
    assert conv1["status"] == "ok" and conv1["local_verdict"] == "fail"
    assert conv1["inherited_share"] == pytest.approx(0.0, abs=1e-6)  # all of conv1's error is its own
    for successor in ("relu1", "conv2"):
        a = by_node[successor]["attribution"]
        assert by_node[successor]["verdict"] == "fail" and a["local_verdict"] == "pass"
        assert a["inherited_share"] > 0.99  # failing, but only because of what arrives from conv1
    assert by_node["conv0"]["attribution"]["inherited_share"] == pytest.approx(0.0, abs=1e-6)  # first layer
    md = Path("o/report.md").read_text()
    assert "### Error attribution: local or inherited" in md and "| conv1 | 94.5312% | 94.5312% |" in md


def test_fix_pins_exactly_the_hostile_layer_minimally_and_reruns_from_the_cache(hostile: Path, capsys) -> None:
    assert main(["fix", str(hostile), "--run", "fp16"]) == 0
    captured = capsys.readouterr()
    out = captured.out
    snippet = yaml.safe_load(Path("reports/hostile/fix-fp16.yaml").read_text())
    assert snippet == {"fp16": {"overrides": [{"layers": ["conv1"], "precision": "fp32"}]}}
    assert "layers: [conv1]" in out and "inference passes" in captured.err  # progress and cost on stderr
    assert yaml.safe_load(out) == snippet  # stdout is the snippet alone: `fix ... > overrides.yaml` works
    result = json.loads(Path("reports/hostile/fix-fp16.json").read_text())
    assert result["found"] == ["conv1"] and result["minimal"] is True
    assert result["sensitivity"][0]["layer"] == "conv1"  # ranked first: it fails locally (attribution)
    assert result["ranked_by"] == "attribution" and result["sensitivity"][0]["local_fails"] is True
    removal = [s for s in result["steps"] if s["action"] == "without conv1"]
    assert removal and not removal[0]["passed"]  # minimal: without conv1 the thresholds fail
    assert result["cost"]["ran"] > 0
    # the user's config is untouched; pasting the snippet makes the run pass
    assert "overrides" not in hostile.read_text()
    assert (
        main(
            [
                "run",
                str(hostile),
                "--out",
                "o",
                "-q",
                "--set",
                "runs.fp16.overrides=[{layers: [conv1], precision: fp32}]",
            ]
        )
        == 0
    )
    # a second search is served from the cache
    assert main(["fix", str(hostile), "--run", "fp16", "-q"]) == 0
    again = json.loads(Path("reports/hostile/fix-fp16.json").read_text())
    assert again["found"] == ["conv1"] and again["cost"]["ran"] == 0 and again["cost"]["inference_runs"] == 0


def test_a_passing_run_needs_nothing(hostile: Path) -> None:
    exp = load_experiment(hostile, ["runs.fp16.overrides=[{layers: [conv1], precision: fp32}]"])
    result = Search(exp, "fp16").search()
    assert result.found == () and [s["action"] for s in result.steps] == ["baseline"]


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_search_works_for_other_precisions(hostile: Path, precision: str) -> None:
    """BF16 (emulated) has FP32's range: conv1 is harmless there; INT8 goes through calibration and Q/DQ."""
    exp = load_experiment(
        hostile,
        [
            f"runs.fp16.precision={precision}",
            "calibration.samples=2",
            "thresholds.min_sqnr_db=25",
            "thresholds.max_deviation_ratio=1",
        ],
    )
    result = Search(exp, "fp16", max_candidates=5).search()
    assert result.steps and result.steps[0]["action"] == "baseline"
    if result.found is not None:  # whatever was found really passes, and is recorded as the last passing step
        assert Search(exp, "fp16").evaluate(result.found).passed
        assert any(s["passed"] and s["size"] == len(result.found) for s in result.steps)


def test_fix_refuses_the_reference_run(hostile: Path, capsys) -> None:
    assert main(["fix", str(hostile), "--run", "fp32"]) == 2
    assert "--run must name a candidate run" in capsys.readouterr().err
    assert main(["fix", str(hostile), "--run", "fp16", "--target", "nope"]) == 2


def test_snippet_is_valid_yaml_for_awkward_names() -> None:
    from layerscope.pipelines.reports.fix_report import _yaml_name

    for name in ["conv0", "/enc/conv0/Conv", "p2o.BatchNormalization.1", "a: b", "0abc"]:
        assert yaml.safe_load(f"[{_yaml_name(name)}]") == [name]


def test_fix_works_in_the_streaming_mode(hostile: Path) -> None:
    """dump.keep: none plans stream stages, not compare stages: the search reads their compare.json."""
    result = Search(load_experiment(hostile, ["dump.keep=none"]), "fp16").search()
    assert result.found == ("conv1",) and result.minimal
    assert result.cost.inference_runs > 0 and result.cost.inference_runs % 2 == 0  # each stream runs both models


def test_fix_out_puts_the_files_there_and_quiet_leaves_stderr_empty(hostile: Path, capsys) -> None:
    assert main(["fix", str(hostile), "--run", "fp16", "--out", "fx", "-q"]) == 0
    captured = capsys.readouterr()
    assert Path("fx/fix-fp16.yaml").read_text() == captured.out and captured.err == ""
    assert {p.name for p in Path("fx").iterdir()} == {"fix-fp16.yaml", "fix-fp16.md", "fix-fp16.json"}
    assert not Path("reports/hostile/fix-fp16.yaml").exists()
    md = Path("fx/fix-fp16.md").read_text()
    assert "## Ranking (error attribution)" in md and "| conv1 | **yes** |" in md
