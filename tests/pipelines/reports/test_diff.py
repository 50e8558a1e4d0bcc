"""layerscope diff: reports of configs that differ in one threshold, one pinned layer, one precision; the
regression gate's exit codes; sides given as run directories, report.json files and configs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from layerscope.cli import main
from layerscope.pipelines.reports.diff import Tolerance, diff_reports, metric_change, tree_changes


def run(config: Path, out: str, *sets: str) -> dict:
    args = ["run", str(config), "--out", out, "-q"]
    for s in sets:
        args += ["--set", s]
    assert main(args) in (0, 1)
    return json.loads(Path(out, "report.json").read_text())


@pytest.fixture
def base(write_config) -> tuple[Path, dict]:
    path = write_config()
    return path, run(path, "base")


def test_threshold_change_flips_verdicts_and_leaves_metrics(base) -> None:
    path, old = base
    new = run(path, "strict", "thresholds.max_deviation_ratio=0.001")
    doc = diff_reports(old, new)
    assert doc["config_changes"] == [
        {"key": "thresholds.max_deviation_ratio", "old": 0.5, "new": 0.001},
        {"key": "--set", "old": [], "new": ["thresholds.max_deviation_ratio=0.001"]},
    ]
    (c,) = doc["comparisons"]
    assert c["verdict"] == ["pass", "fail"]
    assert c["verdict_changes"] and all(f["old"] == "pass" and f["new"] == "fail" for f in c["verdict_changes"])
    # compare did not rerun: the metrics are identical, only verdicts moved
    assert all(all(m["factor"] == 1.0 for m in x["metrics"].values()) for x in c["layers"])
    assert doc["regressions"][0] == "fp16: verdict went from pass to fail"
    assert doc["provenance_changes"] == []


def test_pinned_layer_shows_as_config_and_execution_change(base) -> None:
    path, old = base
    new = run(path, "pinned", "runs.fp16.overrides=[{layers: [up0], precision: fp32}]")
    doc = diff_reports(old, new)
    keys = {c["key"]: c for c in doc["config_changes"]}
    assert keys["runs.fp16.overrides"] == {
        "key": "runs.fp16.overrides",
        "new": [{"layers": ["up0"], "precision": "fp32"}],
    }
    (c,) = doc["comparisons"]
    up0 = next(x for x in c["layers"] if x["tensor"] == "up0")
    assert up0["execution"] == ["emulated", "pinned"]
    assert c["added"] == [] and c["removed"] == []
    # layers before up0 run the same graph: unchanged, so not listed
    assert "conv0" not in {x["tensor"] for x in c["layers"]}


def test_precision_change_is_a_regression_in_text_md_and_json(base, capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = base
    run(path, "bf16", "runs.fp16.precision=bf16")
    capsys.readouterr()
    assert main(["diff", "base", "bf16/report.json", "--fail-on-regression"]) == 1
    text = capsys.readouterr().out
    assert "  runs.fp16.precision  fp16  →  bf16\n" in text
    assert "fp16 vs fp32:" in text and "worse" in text and "Regressions (tolerance 10%):" in text
    # worst first: the change factors are sorted, largest first
    doc = json.loads(_out(capsys, ["diff", "base", "bf16", "--format", "json"]))
    factors = [x["worse_factor"] for x in doc["comparisons"][0]["layers"]]
    assert factors == sorted(factors, key=lambda f: -math.inf if f == "nan" else -float(f))
    assert any(x["regressed"] for x in doc["comparisons"][0]["layers"])
    md = _out(capsys, ["diff", "base", "bf16", "--format", "md", "--limit", "3"])
    assert md.startswith("## layerscope diff: `base` → `bf16`")
    assert "| `runs.fp16.precision` | `fp16` | `bf16` |" in md
    assert "| Layer | Op | Deviation ratio | Cosine | Max abs err | SQNR dB | Change |" in md
    assert "in 22 of 22 layers, worst first (the 3 of 22 regressed layers that got worst)" in md


def _out(capsys: pytest.CaptureFixture[str], args: list[str]) -> str:
    assert main(args) == 0
    return capsys.readouterr().out


def test_gate_exit_codes(base, capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = base
    run(path, "same")
    run(path, "lenient", "thresholds.max_deviation_ratio=0.9")
    assert main(["diff", "base", "same", "--fail-on-regression"]) == 0
    assert "Config changes: none" in capsys.readouterr().out
    assert main(["diff", "base", "lenient", "--fail-on-regression", "--tolerance", "0"]) == 0  # nothing got worse
    assert main(["diff", "lenient", "base", "--fail-on-regression"]) == 0  # a stricter limit every layer still meets
    assert main(["diff", "base", "nowhere", "--fail-on-regression"]) == 2
    assert main(["diff", "base", "same", "--tolerance", "cosin=0.1"]) == 2
    err = capsys.readouterr().err
    assert "nowhere: no such file or directory" in err and "unknown metric 'cosin'" in err
    assert "Traceback" not in err


def test_config_sides_run_missing_stages_then_come_from_the_cache(write_config, capsys) -> None:
    a = write_config(name="a.yaml")
    b = write_config(name="b.yaml")
    b.write_text(b.read_text().replace("max_deviation_ratio: 0.5", "max_deviation_ratio: 0.0001"))
    assert main(["diff", str(a), str(b), "--fail-on-regression"]) == 1
    captured = capsys.readouterr()
    assert "ran" in captured.err and "report" in captured.err  # progress goes to stderr, the diff to stdout
    assert "\n  thresholds.max_deviation_ratio  0.5  →  0.0001\n" in captured.out
    assert "Verdicts pass → fail (21): conv0, bn0, relu0" in captured.out and "Metrics: no change" in captured.out
    assert main(["diff", str(a), str(b), "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert "ran " not in captured.err and captured.err.count("cached") == 14  # 7 stages per side
    assert json.loads(captured.out)["schema"] == "layerscope-diff"


def test_a_failing_config_side_exits_3(write_config, capsys) -> None:
    a = write_config(name="a.yaml")
    b = write_config(name="b.yaml")
    import numpy as np

    np.save(b.parent / "x.npy", np.zeros((2, 1, 3, 8, 8), np.float32))  # samples of another shape
    b.write_text(b.read_text().replace("source: {random: normal, seed: 0}", "source: {file: x.npy}"))
    assert main(["diff", str(a), str(b), "-q"]) == 3
    assert "dump[fp32] failed" in capsys.readouterr().err


def test_tree_changes_reports_the_deepest_differing_path() -> None:
    a = {"runs": {"fp16": {"precision": "fp16"}}, "layers": ["conv0"], "o": [{"l": [1]}]}
    b = {
        "runs": {"fp16": {"precision": "bf16", "overrides": [{"layers": ["up0"]}]}},
        "layers": "all",
        "o": [{"l": [2]}],
    }
    assert tree_changes(a, b) == [
        {"key": "layers", "old": ["conv0"], "new": "all"},
        {"key": "o[0].l", "old": [1], "new": [2]},
        {"key": "runs.fp16.overrides", "new": [{"layers": ["up0"]}]},
        {"key": "runs.fp16.precision", "old": "fp16", "new": "bf16"},
    ]


def test_metric_change_uses_error_quantities_and_floors() -> None:
    assert metric_change("cosine", 0.999, 0.998, 0.1)["regressed"]  # 1 - cos doubled
    assert not metric_change("cosine", 0.999, 0.99895, 0.1)["regressed"]  # 5% worse: within 10%
    assert metric_change("sqnr_db", 40.0, 30.0, 0.1)["factor"] == pytest.approx(10.0, rel=1e-3)
    assert not metric_change("deviation_ratio", 0.0, 5e-7, 0.0)["regressed"]  # below the noise floor
    assert metric_change("deviation_ratio", 0.0, 2e-3, 0.0)["regressed"]
    # the examples: 0.0000% -> 0.0185% deviating is no "x186 worse", nor a change in cosine's 8th decimal
    tiny = metric_change("deviation_ratio", 0.0, 1.85e-4, 0.1)
    assert not tiny["regressed"] and tiny["factor"] == pytest.approx(1.185, rel=1e-3)
    assert not metric_change("cosine", 0.99999991, 0.99999983, 0.1)["regressed"]
    assert metric_change("cosine", 0.9999, 0.9995, 0.1)["regressed"]  # 1 - cos x5, well above the floor
    assert not metric_change("sqnr_db", 110.0, 95.0, 0.1)["regressed"]  # both far below 80 dB of noise
    assert metric_change("sqnr_db", 40.0, 35.0, 0.1)["regressed"]
    assert metric_change("sqnr_db", "inf", 60.0, 0.1)["regressed"]  # identical before, noisy now
    assert not metric_change("max_abs_error", 0.2, 0.1, 0.0)["regressed"]  # better


def test_tolerance_parsing() -> None:
    tol = Tolerance.parse(["0.05", "cosine=0.5"])
    assert tol.of("deviation_ratio") == 0.05 and tol.of("cosine") == 0.5
    with pytest.raises(Exception, match="must be a finite number, 0 or more"):
        Tolerance.parse(["-1"])


def test_reports_without_config_data_compare_config_digests(base) -> None:
    path, old = base
    new = run(path, "other", "thresholds.max_deviation_ratio=0.4")
    del old["experiment"]["config_data"]  # as written before reports recorded it
    doc = diff_reports(old, new)
    assert doc["notes"] == ["report A does not record its config data: only the config digests are compared"]
    assert doc["config_changes"][0]["key"] == "config digest"


def test_an_undefined_metric_is_never_read_as_a_perfect_one() -> None:
    from layerscope.pipelines.reports.diff import metric_change

    became_defined = metric_change("cosine", None, 0.999999935, 0.1)
    assert not became_defined["regressed"] and became_defined["factor"] != became_defined["factor"]  # NaN
    became_undefined = metric_change("cosine", 0.999999935, None, 0.1)
    assert became_undefined["regressed"]  # a layer whose cosine became undefined (a value became Inf) got worse


def test_set_changes_config_sides(base, capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = base
    capsys.readouterr()
    args = ["diff", str(path), str(path), "-q", "--format", "json"]
    doc = json.loads(_out(capsys, [*args, "--set-b", "runs.fp16.precision=bf16"]))
    assert {"key": "runs.fp16.precision", "old": "fp16", "new": "bf16"} in doc["config_changes"]
    assert {"key": "--set", "old": [], "new": ["runs.fp16.precision=bf16"]} in doc["config_changes"]
    # --set goes to both sides: the same config twice is no change; A's own --set-a comes after it
    doc = json.loads(_out(capsys, [*args, "--set", "runs.fp16.precision=bf16", "--set-a", "runs.fp16.precision=fp16"]))
    assert {"key": "runs.fp16.precision", "old": "fp16", "new": "bf16"} in doc["config_changes"]
    assert main(["diff", "base", str(path), "--set-a", "thresholds.max_deviation_ratio=0.9"]) == 2
    assert "--set changes a config side; this side is a finished report" in capsys.readouterr().err


def test_a_shortened_list_keeps_every_regressed_layer() -> None:
    from layerscope.pipelines.reports.diff_render import shown_layers

    layers = [{"tensor": str(i), "regressed": i in (7, 9)} for i in range(10)]
    shown, note = shown_layers(layers, 3)
    assert [x["tensor"] for x in shown] == ["7", "9", "0"]
    assert note == " (all 2 regressed layers, then the 1 that changed most)"
    assert shown_layers(layers, 0) == (layers, "")
