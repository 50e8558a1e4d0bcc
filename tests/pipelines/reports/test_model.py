"""The typed report: an exact round trip of real runs' report.json (fp16 with attribution, INT8 with Q/DQ
statistics, a hostile layer with a weight note, an overflow to inf), typed access, the DataFrame, and
validation before reading."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

import layerscope
from layerscope.cli import main
from layerscope.pipelines.reports.model import Report
from layerscope.pipelines.reports.read import ReportError, load_report
from layerscope.runner.errors import EXIT_USAGE, UsageError
from tests.conftest import SMALL_UNET
from tests.models import chain_model, hostile_model
from tests.pipelines.analysis.test_search import CONFIG as HOSTILE
from tests.pipelines.lowering.test_quantize import INT8

CHAIN = """\
name: chain
model: m.onnx
samples: 2
inputs:
  input: {shape: [1, 4, 8, 8], source: {random: normal, seed: 0}}
runs:
  fp32: {precision: fp32}
  fp16: {precision: fp16}
attribution: false  # feeding the FP16 layers values beyond 65504 warns (numpy's cast): not this test's subject
"""


def run(write_config, kind: str) -> Path:
    """A real run of ``kind``; its report.json."""
    if kind == "fp16":
        path = write_config(SMALL_UNET)
    elif kind == "int8":
        path = write_config(INT8)
    elif kind == "hostile":
        path = write_config(HOSTILE)
        hostile_model(path.parent / "m.onnx")
    else:  # values beyond 65504: inf in FP16
        path = write_config(CHAIN)
        chain_model(path.parent / "m.onnx", scale=1e5)
    report = layerscope.run(path, out=f"out-{kind}")
    assert report.files["json"] == Path(f"out-{kind}/report.json")
    return report.files["json"]


@pytest.mark.parametrize("kind", ["fp16", "int8", "hostile", "overflow"])
def test_to_dict_reproduces_report_json_exactly(write_config, kind: str) -> None:
    path = run(write_config, kind)
    text = path.read_text()
    doc = json.loads(text)
    report = load_report(path)
    assert report.to_dict() == doc
    assert report.to_json() == text  # key order and number formatting too
    assert Report.from_dict(report.to_dict()) == report
    assert not any(layer.extra or layer.metrics.extra for c in report.comparisons for layer in c.layers)


def test_typed_access(write_config) -> None:
    report = load_report(run(write_config, "hostile"))
    assert report.verdict == "fail" and not report.passed
    fp16 = report.comparison("fp16")
    assert fp16.first_failing_layer == "conv1" and fp16.failing_layers >= 1
    conv1 = fp16.layer("conv1")
    assert conv1.name == "conv1" and conv1.op == "Conv" and not conv1.passed
    assert conv1.reasons and "relative error" in conv1.reasons[0]
    assert isinstance(conv1.metrics.deviation_ratio, float) and conv1.limits.max_deviation_ratio == 0.05
    assert conv1.weight_note is not None and "clamped" in conv1.weight_note
    assert conv1.attribution is not None and conv1.attribution.local is not None
    assert conv1.attribution.local_verdict == "fail"
    assert report.experiment.config is not None and report.execution is not None
    assert {s.status for s in report.execution.stages.values()} == {"ran"}


def test_infinities_are_floats_and_undefined_stays_none(write_config) -> None:
    report = load_report(run(write_config, "overflow"))
    out = report.comparison("fp16").layer("output")
    assert out.metrics.nonfinite_introduced > 0 and out.metrics.max_rel_error == math.inf
    assert out.verdict == "fail"
    conv0 = report.comparison("fp16").layer("conv0")
    assert conv0.limits.min_cosine is None  # not configured: undefined, not a number


def test_to_pandas_one_row_per_comparison_and_layer(write_config) -> None:
    report = load_report(run(write_config, "int8"))
    df = report.to_pandas()
    assert len(df) == sum(len(c.layers) for c in report.comparisons)
    assert list(df[["candidate", "tensor"]].itertuples(index=False, name=None))[:2] == [
        ("int8", report.comparisons[0].layers[0].tensor),
        ("int8", report.comparisons[0].layers[1].tensor),
    ]
    assert not [c for c in df.columns if "hist" in c]
    numeric = df.drop(columns=["candidate", "reference", "tensor", "layer", "op_type", "index", "execution", "verdict"])
    assert set(numeric.dtypes.astype(str)) == {"float64"}
    layers = [layer for c in report.comparisons for layer in c.layers]
    assert list(df["quant_scale"].notna()) == [x.metrics.quant is not None for x in layers]
    assert list(df["prequant_sqnr_db"].notna()) == [x.prequant_metrics is not None for x in layers]
    assert (df["quant_scale"].dropna() > 0).all() and df["quant_scale"].notna().sum() > len(df) // 2
    assert df["limit_min_cosine"].isna().all()  # None -> NaN


def test_to_pandas_keeps_inf(write_config) -> None:
    df = load_report(run(write_config, "overflow")).to_pandas()
    row = df[df["tensor"] == "output"].iloc[0]
    assert row["max_rel_error"] == math.inf and row["nonfinite_introduced"] > 0


def test_to_pandas_without_pandas_names_the_extra(write_config, monkeypatch: pytest.MonkeyPatch) -> None:
    report = load_report(run(write_config, "fp16"))
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas -> ImportError
    with pytest.raises(UsageError) as err:
        report.to_pandas()
    assert "pandas" in err.value.message and err.value.hint == 'pip install "layerscope[pandas]"'


def test_an_invalid_report_is_one_clear_error_with_exit_2(write_config, capsys) -> None:
    path = run(write_config, "fp16")
    doc = json.loads(path.read_text())
    doc["comparisons"][0]["layers"][0]["metrics"]["cosine"] = "high"
    del doc["comparisons"][0]["verdict"]
    path.write_text(json.dumps(doc))
    with pytest.raises(ReportError) as err:
        load_report(path)
    assert err.value.exit_code == EXIT_USAGE
    assert "is not a valid layerscope report" in err.value.message
    assert "/comparisons/0/layers/0/metrics/cosine" in err.value.message
    assert "/comparisons/0: 'verdict' is a required property" in err.value.message
    capsys.readouterr()
    assert main(["report", str(path.parent)]) == 2
    stderr = capsys.readouterr().err
    assert "is not a valid layerscope report" in stderr and "Traceback" not in stderr
    path.write_text(json.dumps({"schema": "something-else"}))
    with pytest.raises(ReportError, match="is not a layerscope report"):
        load_report(path)
