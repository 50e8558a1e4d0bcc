"""report.json in the output directory: the cached compact report with the config path and execution spliced in
gives exactly the text that encoding the whole document gives, and anything laid out otherwise is encoded; a
cached rerun takes the verdict from the report stage's record only where report.json's text begins with it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from layerscope.api import execute
from layerscope.pipelines.reports import outputs, packing
from layerscope.pipelines.reports.outputs import ReportHead, _spliced
from layerscope.runner.jsonio import encode
from tests.conftest import SMALL_UNET


def _stage_report() -> dict[str, Any]:
    return {
        "schema": "layerscope-report",
        "schema_version": 3,
        "verdict": "fail",
        "experiment": {"name": 'ünïcode "quoted"', "notes": ["a"]},
        "comparisons": [{"layers": [[1.0, 1e-17, 0.1 + 0.2, "nan", None]]}],
        "histograms_file": "report.histograms.json",
    }


def _invocation(report: dict[str, Any], config: str) -> dict[str, Any]:
    report["experiment"] = {"config": config, **report["experiment"]}
    report["execution"] = {"stages": {"report": {"status": "cached", "seconds": 0.0}}, "cache": "/c/ä"}
    return report


def test_splicing_gives_the_text_of_encoding_the_whole_document() -> None:
    cached = encode(_stage_report(), compact=True)
    for config in ("chain.yaml", 'dir with "quotes"/ü.yaml'):
        report = _invocation(json.loads(cached), config)
        assert _spliced(cached, report) == encode(report, compact=True)


def test_a_text_laid_out_otherwise_is_not_spliced() -> None:
    report = _invocation(_stage_report(), "c.yaml")
    assert _spliced(json.dumps(_stage_report(), indent=1), report) is None  # not compact
    reordered = {"verdict": "fail", **{k: v for k, v in _stage_report().items() if k != "verdict"}}
    assert _spliced(encode(reordered, compact=True), _invocation(dict(reordered), "c.yaml")) is None
    no_execution = _invocation(_stage_report(), "c.yaml")
    del no_execution["execution"]
    assert _spliced(encode(_stage_report(), compact=True), no_execution) is None


def test_splicing_an_indented_report_gives_the_text_of_encoding_it() -> None:
    """A report below INDENT_UP_TO is written with one-space indents, which json encodes without its C encoder:
    the invocation's parts are spliced into the indented text the report stage cached, byte for byte."""
    cached = json.dumps(_stage_report(), indent=1)
    for config in ("chain.yaml", 'dir with "quotes"/ü.yaml'):
        report = _invocation(json.loads(cached), config)
        assert _spliced(cached, report, indent=True) == encode(report) == json.dumps(report, indent=1)
    nested = _invocation(json.loads(cached), "c.yaml")
    nested["experiment"]["config"] = {"path": "c.yaml", "layers": [1, {"a": None}]}  # a value of several lines
    assert _spliced(cached, nested, indent=True) == json.dumps(nested, indent=1)
    assert _spliced(encode(_stage_report(), compact=True), _invocation(_stage_report(), "c"), indent=True) is None
    empty = {**_stage_report(), "experiment": {}}
    assert _spliced(json.dumps(empty, indent=1), _invocation(dict(empty), "c"), indent=True) is None


# -- a cached rerun reads only the verdict of report.json -----------------------------------------------------
def _packed_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Any]:
    """The small UNet run twice with every comparison packed (compact report.json); the second run's Execution."""
    monkeypatch.setattr(packing, "PACK_AT", 1)
    config = tmp_path / "exp.yaml"
    config.write_text(SMALL_UNET + "report: {formats: [json, md]}\n")
    execute(config, cache_dir=tmp_path / "cache", out=tmp_path / "out")
    return config, execute(config, cache_dir=tmp_path / "cache", out=tmp_path / "out")


def _check_written(result: Any, out: Path) -> None:
    """report.json is the encoding of the whole document, and the run's document is that report's."""
    text = (out / "report.json").read_text()
    written = json.loads(text)
    assert text == encode(written, compact=True)
    assert result.verdict == written["verdict"] in ("pass", "fail")
    assert result.document == packing.unpack_report(written, out)
    assert result.document["experiment"]["config"] == written["experiment"]["config"]


def test_a_cached_rerun_writes_the_report_from_the_verdict_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _config, result = _packed_run(tmp_path, monkeypatch)
    assert all(o.status == "cached" for o in result.outcomes.values())
    assert isinstance(result._written, ReportHead)  # the record was used: report.json was not parsed
    assert set(result._written) == {"schema", "schema_version", "verdict", "experiment", "execution"}
    _check_written(result, tmp_path / "out")
    assert "layers" in (tmp_path / "out" / "report.md").read_text()


@pytest.mark.parametrize("damage", ["wrong verdict", "no record", "other schema version"])
def test_a_verdict_record_that_disagrees_with_the_report_is_not_believed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    config, first = _packed_run(tmp_path, monkeypatch)
    true_verdict = first.verdict
    real_head = outputs._head

    def damaged(entry: Any, cached: str) -> dict[str, Any] | None:
        head = real_head(entry, cached)
        assert head is not None
        if damage == "no record":
            return None
        if damage == "wrong verdict":
            return {**head, "verdict": "pass" if head["verdict"] == "fail" else "fail"}
        return {**head, "schema_version": head["schema_version"] + 1}

    monkeypatch.setattr(outputs, "_head", damaged)
    result = execute(config, cache_dir=tmp_path / "cache", out=tmp_path / "out")
    assert not isinstance(result._written, ReportHead)  # the whole report was read
    assert result.verdict == true_verdict
    _check_written(result, tmp_path / "out")


def test_the_verdict_record_needs_the_report_stages_verdict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An entry whose manifest has no (or no valid) verdict, as one written before the record was read: no head."""
    _config, result = _packed_run(tmp_path, monkeypatch)
    entry = result.outcomes["report"].entry
    cached = entry.file("report.json").read_text()
    assert outputs._head(entry, cached) is not None
    for manifest in ({}, {"result": {}}, {"result": {"verdict": "maybe"}}, {"result": "fail"}):
        assert outputs._head(dataclasses.replace(entry, manifest=manifest), cached) is None
    assert outputs._head(entry, json.dumps(json.loads(cached), indent=1)) is None  # an indented report: parsed
