"""A report exported to the tools a team already uses: CSV and Parquet tables, DVC's metrics and plots files,
an MLflow run.

The per-layer table has one row per (comparison, layer) and flat columns: the identifiers, then every metric,
range count, limit, quantization statistic and attribution value as a float (:func:`.table.row`, the same
record ``Report.to_pandas`` is made of). An undefined value is empty in CSV and null in Parquet; an infinite
error is ``inf``. The headline (:func:`headline`) is what ``dvc metrics diff`` compares and MLflow logs: the
verdict, per comparison its verdict, failing and compared layers, the worst value of each metric and the task
scores. JSON has no infinity: an infinite value is written as the string "inf" / "-inf", as in report.json.
Parquet needs pyarrow and MLflow needs mlflow (optional extras: ``layerscope[parquet]``,
``layerscope[mlflow]``); CSV and DVC files need nothing.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from layerscope.pipelines.reports.records import METRIC_FIELDS
from layerscope.pipelines.reports.table import IDENTIFIERS, row
from layerscope.runner.errors import UsageError
from layerscope.runner.files import atomic_write

if TYPE_CHECKING:
    from layerscope.pipelines.reports.model import Report

FORMATS = ("csv", "parquet", "dvc", "mlflow")
# The headline's worst value of each metric: the direction in which a layer is worse.
WORST = {"deviation_ratio": max, "cosine": min, "max_abs_error": max, "sqnr_db": min}


def rows(report: Report) -> list[dict[str, Any]]:
    """One flat record per (comparison, layer), in report order."""
    return [row(c.candidate, c.reference, layer) for c in report.comparisons for layer in c.layers]


def columns(records: list[dict[str, Any]]) -> list[str]:
    return list(records[0]) if records else [*IDENTIFIERS, *METRIC_FIELDS]


def to_csv(report: Report) -> str:
    """The per-layer table as CSV (undefined: empty cell; infinite: ``inf``)."""
    records = rows(report)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    cols = columns(records)
    writer.writerow(cols)
    for r in records:
        writer.writerow(["" if _undefined(r[c]) else _cell(r[c]) for c in cols])
    return out.getvalue()


def _undefined(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _cell(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)  # counts read as counts ("3", not "3.0")
    return value


def write_parquet(report: Report, path: Path) -> None:
    """The per-layer table as Parquet: identifiers as strings (``index`` int64), every other column float64."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise UsageError(
            "--format parquet needs pyarrow, which is not installed", hint='pip install "layerscope[parquet]"'
        ) from None
    records = rows(report)
    fields = []
    for c in columns(records):
        kind = pa.int64() if c == "index" else pa.string() if c in IDENTIFIERS else pa.float64()
        fields.append(pa.field(c, kind))
    schema = pa.schema(fields)
    data = {f.name: [None if _undefined(r[f.name]) else r[f.name] for r in records] for f in schema}
    table = pa.table(data, schema=schema)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _json_number(value: float | None) -> Any:
    if value is None or math.isnan(value):
        return None
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return int(value) if isinstance(value, int) else value


def headline(report: Report) -> dict[str, Any]:
    """The numbers a run is tracked by (``dvc metrics``, MLflow): verdicts as 1 (pass) / 0 (fail)."""
    out: dict[str, Any] = {"pass": int(report.passed), "comparisons": {}}
    for c in report.comparisons:
        entry: dict[str, Any] = {
            "pass": int(c.passed),
            "failing_layers": c.failing_layers,
            "compared_layers": len(c.layers),
            "first_failing_index": next((x.index for x in c.layers if x.verdict == "fail"), None),
        }
        for metric, pick in WORST.items():
            values = [v for x in c.layers if (v := getattr(x.metrics, metric)) is not None and not math.isnan(v)]
            entry[f"worst_{metric}"] = _json_number(pick(values)) if values else None
        for name, score in {**c.top1_agreement, **c.task_scores}.items():
            entry.setdefault("task", {})[name] = _json_number(score)
        out["comparisons"][c.candidate] = entry
    return out


def flat_metrics(doc: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """``{"comparisons": {"fp16": {"pass": 1}}}`` -> ``{"fp16.pass": 1.0}`` (the comparisons level dropped);
    only finite numbers (MLflow keeps none else)."""
    out: dict[str, float] = {}
    for k, v in doc.items():
        key = prefix if k == "comparisons" else f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flat_metrics(v, f"{key}." if key else ""))
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            out[key] = float(v)
    return out


def write_dvc(report: Report, out_dir: Path) -> dict[str, Path]:
    """``metrics.json`` (the headline, for ``dvc metrics``) and ``layers.csv`` (for ``dvc plots``)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"metrics": out_dir / "metrics.json", "layers": out_dir / "layers.csv"}
    atomic_write(files["metrics"], json.dumps(headline(report), indent=1, allow_nan=False) + "\n")
    atomic_write(files["layers"], to_csv(report))
    return files


def log_mlflow(report: Report, *, tracking_uri: str | None = None, experiment: str | None = None) -> str:
    """Log the headline metrics (``fp16.failing_layers``, ...), the verdict as tags, the per-layer table and the
    report's files to the active MLflow run, or to a new run named after the experiment. Returns the run id."""
    try:
        import mlflow
    except ImportError:
        raise UsageError(
            "--format mlflow needs mlflow, which is not installed", hint='pip install "layerscope[mlflow]"'
        ) from None
    import tempfile

    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    if experiment:
        mlflow.set_experiment(experiment)
    active = mlflow.active_run()
    run = active or mlflow.start_run(run_name=report.experiment.name)
    try:
        doc = headline(report)
        mlflow.log_metrics(flat_metrics(doc))
        tags = {"layerscope.verdict": report.verdict, "layerscope.experiment": report.experiment.name}
        tags |= {f"layerscope.{c.candidate}.verdict": c.verdict for c in report.comparisons}
        mlflow.set_tags(tags)
        mlflow.log_params({f"{name}.precision": r.precision for name, r in report.runs.items()})
        with tempfile.TemporaryDirectory(prefix="layerscope-mlflow-") as tmp:
            for name, text in (("layers.csv", to_csv(report)), ("metrics.json", json.dumps(doc, indent=1))):
                (Path(tmp) / name).write_text(text)
                mlflow.log_artifact(str(Path(tmp) / name), artifact_path="layerscope")
        for path in _report_files(report):
            mlflow.log_artifact(str(path), artifact_path="layerscope")
        return str(run.info.run_id)
    finally:
        if active is None:
            mlflow.end_run()


def _report_files(report: Report) -> list[Path]:
    """report.json and the md/html written beside it."""
    found = {Path(p) for p in report.files.values()}
    json_path = report.files.get("json")
    if json_path is not None:
        found |= {Path(json_path).with_suffix(s) for s in (".md", ".html")}
    return sorted(p for p in found if p.is_file())
