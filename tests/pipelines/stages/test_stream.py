"""The streaming mode (dump.keep: none | failing): the stream stage's metrics are those of dump + compare on the
same inputs, its disk is bounded, a verdict limit change reruns only the report, attribution says why it is
unavailable, and failing keeps the worst samples of the layers over their threshold."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import pytest

from layerscope.api import run
from layerscope.cli import main
from layerscope.pipelines.experiment import load_experiment
from layerscope.pipelines.metrics.stats import TensorStats
from layerscope.pipelines.stages import plan_for
from layerscope.pipelines.stages.compare import _config, metric_settings
from layerscope.pipelines.stages.stream import ATTRIBUTION_NEEDS_DUMPS
from layerscope.runner.jsonio import finite_json
from tests.conftest import SMALL_UNET
from tests.models import chain_model, hostile_model
from tests.pipelines.lowering.test_quantize import INT8_TEMPLATE

INT8 = INT8_TEMPLATE.replace("{extra_runs}", "").replace("samples: 2", "samples: 3")


def stage_file(path: Path, overrides: list[str], stage: str, name: str) -> Path:
    """A file of a stage's cache entry, found by the stage's key in the plan."""
    exp = load_experiment(path, overrides)
    planned = plan_for(exp).stages[stage]
    return exp.cache.entry_dir(planned.stage.kind, planned.key) / name


def compare_docs(write_config, text: str, candidate: str) -> tuple[dict, dict]:
    """compare.json of dump + compare, and of the stream stage, on the same config."""
    path = write_config(text)
    run(path, out="dumped")
    run(path, overrides=["dump.keep=none"], out="streamed")
    a = json.loads(stage_file(path, [], f"compare[{candidate}]", "compare.json").read_text())
    b = json.loads(stage_file(path, ["dump.keep=none"], f"stream[{candidate}]", "compare.json").read_text())
    return a, b


@pytest.mark.parametrize(
    ("text", "candidate"), [(SMALL_UNET.replace("samples: 2", "samples: 3"), "fp16"), (INT8, "int8")]
)
def test_stream_metrics_are_identical_to_dump_and_compare(write_config, text, candidate) -> None:
    a, b = compare_docs(write_config, text, candidate)
    assert len(a["layers"]) >= 5
    assert a["layers"] == b["layers"]  # every metric, histogram, prequant metric and field, in the same order
    for key in ("samples", "format", "format_limits", "not_observable", "not_observable_reasons", "candidate"):
        assert a[key] == b[key], key
    if candidate == "int8":
        assert any("prequant_metrics" in layer for layer in b["layers"])


HARD = """\
name: hard
model: m.onnx
samples: 3
inputs:
  input: {shape: [1, 4, 8, 8], source: {random: normal, seed: 0}}
runs:
  fp32: {precision: fp32}
  fp16: {precision: fp16}
thresholds: {rel_error: 0.1}
"""


@pytest.mark.parametrize("make", [hostile_model, lambda p: chain_model(p, scale=1e5)], ids=["clamped", "overflow"])
def test_stream_is_identical_on_hard_cases(write_config, make) -> None:
    """Weights FP16 cannot hold (the layer's `weights` record), and an overflow to Inf (infinite errors)."""
    path = write_config(HARD)
    make(path.parent / "m.onnx")
    run(path, out="dumped")
    run(path, overrides=["dump.keep=none"], out="streamed")
    a = json.loads(stage_file(path, [], "compare[fp16]", "compare.json").read_text())
    b = json.loads(stage_file(path, ["dump.keep=none"], "stream[fp16]", "compare.json").read_text())
    assert a["layers"] == b["layers"]
    if make is hostile_model:
        assert any("weights" in layer for layer in b["layers"])
    else:
        assert any(layer["metrics"]["infinite_errors"] for layer in b["layers"])


def test_stats_state_gives_back_the_metrics(write_config) -> None:
    path = write_config(SMALL_UNET)
    run(path, overrides=["dump.keep=none"], out="o")
    doc = json.loads(stage_file(path, ["dump.keep=none"], "stream[fp16]", "compare.json").read_text())
    states = json.loads(stage_file(path, ["dump.keep=none"], "stream[fp16]", "stats.json").read_text())
    exp = load_experiment(path, ["dump.keep=none"])
    settings = metric_settings(exp, exp.runs["fp16"])
    for layer in doc["layers"]:
        state = states["tensors"][layer["tensor"]]["state"]
        assert state["rel_hist"], layer["tensor"]  # the histogram to re-judge by is there
        restored = TensorStats.from_state(state, _config(settings, layer["tensor"]))
        assert finite_json(restored.result()) == layer["metrics"]  # as compare.json writes them


def test_plan_keys_in_streaming_mode(write_config) -> None:
    path = write_config(SMALL_UNET)

    def keys(overrides: list[str]) -> dict[str, str]:
        return {ps.stage.id: ps.key for ps in plan_for(load_experiment(path, overrides))}

    plain, explicit = keys([]), keys(["dump.keep=all"])
    assert plain == {**explicit, "report": plain["report"]}  # keep: all is today's plan and dump keys
    base = keys(["dump.keep=none"])
    assert set(base) == {"build[fp32]", "build[fp16]", "stream[fp16]", "report"}
    assert base["build[fp16]"] == plain["build[fp16]"]  # the same engines (backend sessions) as the dump mode
    for override, rerun in [
        ("thresholds.max_deviation_ratio=0.01", {"report"}),
        ("thresholds.min_cosine=0.99", {"report"}),
        ("thresholds.layers=[{match: conv0, max_deviation_ratio: 0.3}]", {"report"}),
        ("thresholds.rel_error=0.2", {"stream[fp16]", "report"}),  # which elements deviate: exact, from elements
        ("samples=3", {"stream[fp16]", "report"}),
        ("thresholds.abs_floor=1e-6", {"stream[fp16]", "report"}),
        ("dump.compression=lzf", {"report"}),  # nothing is dumped; the report records the config
        ("description=what changed", {"report"}),
        ("dump.keep=failing", {"stream[fp16]", "report"}),
        ("runs.fp16.precision=bf16", {"build[fp16]", "stream[fp16]", "report"}),
    ]:
        changed = keys(["dump.keep=none", override])
        assert {sid for sid in base if base[sid] != changed[sid]} == rerun, override


def test_attribution_says_it_needs_dumps_and_the_report_is_written(write_config) -> None:
    path = write_config(SMALL_UNET)
    assert main(["run", str(path), "--set", "dump.keep=none", "--out", "o", "-q"]) == 0
    report = json.loads(Path("o", "report.json").read_text())
    comparison = report["comparisons"][0]
    assert ATTRIBUTION_NEEDS_DUMPS in json.dumps(comparison)
    assert comparison["layers"]
    assert not Path("o/dumps/fp16.h5").exists() and not Path("o/kept").exists()  # keep: none keeps nothing
    assert main(["run", str(path), "--out", "o", "-q"]) == 0  # back to dumps: the links are there again
    assert Path("o/dumps/fp16.h5").is_file()


def test_task_metrics_need_dumps(write_config, capsys) -> None:
    path = write_config(SMALL_UNET)
    task = "compare.classification={outputs: [logits], top_k: 1}"
    assert main(["validate", str(path), "--set", task]) == 0
    assert main(["validate", str(path), "--set", task, "--set", "dump.keep=none"]) == 2
    assert "dump.keep: all" in capsys.readouterr().err


def test_failing_keeps_a_bounded_set_of_the_worst_samples(write_config) -> None:
    path = write_config(SMALL_UNET.replace("samples: 2", "samples: 4").replace("rel_error: 0.1", "rel_error: 0.001"))
    keep = ["dump.keep=failing", "dump.keep_worst=2"]
    run(path, overrides=keep, out="o")
    doc = json.loads(stage_file(path, keep, "stream[fp16]", "compare.json").read_text())
    failing = {x["tensor"]: x for x in doc["layers"] if x["metrics"]["deviating"]}
    assert failing
    assert Path("o/kept/fp16.h5").resolve() == stage_file(path, keep, "stream[fp16]", "kept.h5").resolve()
    with h5py.File("o/kept/fp16.h5") as f:
        names = {ds.attrs["onnx_name"] for ds in f["candidate"].values()}
        assert names == set(failing)
        for ds in f["candidate"].values():
            layer = failing[ds.attrs["onnx_name"]]
            samples = list(ds.attrs["samples"])
            assert ds.shape == (2, *layer["shape"]) and len(set(samples)) == 2 and set(samples) <= set(range(4))
            deviating = list(ds.attrs["deviating"])
            assert deviating == sorted(deviating, reverse=True) and sum(deviating) <= layer["metrics"]["deviating"]
            ref = f["reference"][ds.name.rsplit("/", 1)[1]]
            assert ref.shape == ds.shape and list(ref.attrs["samples"]) == samples


def test_keep_is_validated(write_config) -> None:
    path = write_config(SMALL_UNET)
    assert main(["validate", str(path), "--set", "dump.keep=some"]) == 2
