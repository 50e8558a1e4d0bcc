"""report.json in the output directory: the cached compact report with the config path and execution spliced in
gives exactly the text that encoding the whole document gives, and anything laid out otherwise is encoded."""

from __future__ import annotations

import json
from typing import Any

from layerscope.pipelines.reports.outputs import _spliced
from layerscope.runner.jsonio import encode


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
