"""`layerscope export`: the per-layer table as CSV and Parquet, DVC's metrics and plots files, an MLflow run
(against a local file store); the same through the API."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

import layerscope
from layerscope.cli import main
from layerscope.pipelines.reports.export import flat_metrics, headline, to_csv
from tests.conftest import SMALL_UNET


@pytest.fixture
def run_dir(write_config) -> Path:
    # a strict deviation limit: some layers fail, so the headline has failing layers to count
    path = write_config(SMALL_UNET.replace("max_deviation_ratio: 0.5", "max_deviation_ratio: 0.004"))
    assert main(["run", str(path), "--out", "o", "-q", "--exit-zero"]) == 0  # failed thresholds, exit 0 asked
    return Path("o")


def test_csv_has_one_row_per_layer_with_flat_numeric_columns(run_dir: Path) -> None:
    report = layerscope.load_report(run_dir)
    assert report.verdict == "fail"
    assert main(["export", str(run_dir), "--format", "csv"]) == 0
    with (run_dir / "layers.csv").open() as f:
        rows = list(csv.DictReader(f))
    layers = [x for c in report.comparisons for x in c.layers]
    assert len(rows) == len(layers) == 22
    assert [r["tensor"] for r in rows] == [x.tensor for x in layers]
    first = rows[0]
    assert {"candidate", "reference", "verdict", "deviation_ratio", "cosine", "sqnr_db", "limit_min_cosine"} <= set(
        first
    )
    for r, x in zip(rows, layers, strict=True):
        assert float(r["deviation_ratio"]) == pytest.approx(x.metrics.deviation_ratio)
        assert r["cosine"] == "" if x.metrics.cosine is None else float(r["cosine"]) == pytest.approx(x.metrics.cosine)
    # undefined values are empty cells, never "nan"; the limit nobody set is empty
    assert not any(v.lower() == "nan" for r in rows for v in r.values()) and first["limit_min_cosine"] == ""


def test_parquet_matches_to_pandas(run_dir: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    out = layerscope.export(run_dir, "parquet")
    assert out.files == {"table": run_dir / "layers.parquet"}
    table = pq.read_table(out.files["table"])
    frame = layerscope.load_report(run_dir).to_pandas()
    assert table.column_names == list(frame.columns)
    assert str(table.schema.field("index").type) == "int64" and str(table.schema.field("sqnr_db").type) == "double"
    got = table.column("sqnr_db").to_pylist()
    want = list(frame["sqnr_db"])
    assert all((g is None and math.isnan(w)) or g == pytest.approx(w) for g, w in zip(got, want, strict=True))


def test_dvc_files(run_dir: Path) -> None:
    assert main(["export", str(run_dir), "--format", "dvc", "-o", "metrics"]) == 0
    doc = json.loads(Path("metrics/metrics.json").read_text())
    report = layerscope.load_report(run_dir)
    c = report.comparisons[0]
    fp16 = doc["comparisons"]["fp16"]
    assert doc["pass"] == 0 and fp16["pass"] == 0
    assert fp16["failing_layers"] == c.failing_layers > 0 and fp16["compared_layers"] == 22
    assert fp16["worst_deviation_ratio"] == pytest.approx(max(x.metrics.deviation_ratio for x in c.layers))
    assert fp16["first_failing_index"] == next(x.index for x in c.layers if x.verdict == "fail")
    assert Path("metrics/layers.csv").read_text() == to_csv(report)
    assert flat_metrics(headline(report))["fp16.failing_layers"] == c.failing_layers


def test_mlflow_logs_to_a_local_file_store(run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps its file store for tests like this
    uri = (tmp_path / "mlruns").as_uri()
    args = ["export", str(run_dir), "--format", "mlflow", "--tracking-uri", uri, "--mlflow-experiment", "acc"]
    assert main(args) == 0
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("acc").experiment_id])
    c = layerscope.load_report(run_dir).comparisons[0]
    assert run.data.metrics["fp16.failing_layers"] == c.failing_layers
    assert run.data.metrics["pass"] == 0.0
    assert run.data.tags["layerscope.verdict"] == "fail" and run.data.params["fp16.precision"] == "fp16"
    files = {a.path for a in client.list_artifacts(run.info.run_id, "layerscope")}
    assert {"layerscope/layers.csv", "layerscope/metrics.json", "layerscope/report.json"} <= files
    assert "layerscope/report.md" in files
    assert mlflow.active_run() is None  # the run it started is ended


def test_export_usage_errors(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(run_dir), "--format", "dvc", "--tracking-uri", "file:///x"]) == 2
    assert "apply to --format mlflow only" in capsys.readouterr().err
    assert main(["export", str(run_dir), "--format", "parquet", "-o", "-"]) == 2
    assert main(["export", "nowhere", "--format", "csv"]) == 2
    assert main(["export", str(run_dir), "--format", "csv", "-o", "-"]) == 0
    assert capsys.readouterr().out.startswith("candidate,reference,tensor,layer,op_type,index,")
