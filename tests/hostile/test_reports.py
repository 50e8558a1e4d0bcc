"""Hostile reports given to `layerscope report` and `layerscope diff`: each is refused after one look (exit 2),
never a KeyError, TypeError or RecursionError inside a renderer."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A real report.json (one run of the chain model), made once for the module."""
    import os

    from layerscope.cli import main
    from tests.hostile.conftest import CHAIN
    from tests.models import chain_model

    folder = tmp_path_factory.mktemp("good")
    chain_model(folder / "model.onnx")
    (folder / "exp.yaml").write_text(CHAIN)
    old = os.environ.get("LAYERSCOPE_CACHE_DIR")
    os.environ["LAYERSCOPE_CACHE_DIR"] = str(folder / "cache")
    try:
        assert main(["run", str(folder / "exp.yaml"), "-q", "--out", str(folder / "out")]) == 0
    finally:
        if old is None:
            os.environ.pop("LAYERSCOPE_CACHE_DIR")
        else:
            os.environ["LAYERSCOPE_CACHE_DIR"] = old
    return json.loads((folder / "out" / "report.json").read_text())


def _drop(key: str) -> Callable[[dict], object]:
    def edit(d: dict) -> dict:
        del d[key]
        return d

    return edit


def _set(path: tuple, value: object) -> Callable[[dict], object]:
    def edit(d: dict) -> dict:
        node = d
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value
        return d

    return edit


CASES: list[tuple[str, Callable[[dict], object] | str, str]] = [
    ("no comparisons", _drop("comparisons"), "/: 'comparisons' is a required property"),
    ("comparisons not a list", _set(("comparisons",), "x"), "/comparisons: 'x' is not of type 'array'"),
    ("layers of the wrong type", _set(("comparisons", 0, "layers"), {"a": 1}), "/comparisons/0/layers"),
    (
        "a newer schema",
        _set(("schema_version",), 999),
        "has report schema version 999; this layerscope reads versions 1 and 2",
    ),
    ("no version", _drop("schema_version"), "has report schema version None"),
    ("not a report", lambda d: [d], "is not a layerscope report"),
    ("another schema", _set(("schema",), "other"), "is not a layerscope report"),
    ("metric as a string", _set(("comparisons", 0, "layers", 0, "metrics", "cosine"), "high"), "/metrics/cosine"),
    ("NaN literal", "nan-literal", "NaN is not a JSON number"),
    ("Infinity literal", "inf-literal", "Infinity is not a JSON number"),
    ("nested 100000 deep", "deep", "nested too deeply"),
    ("truncated", "truncated", "cannot read report"),
    ("not UTF-8", "latin1", "cannot read report"),
]


def _write(path: Path, good: dict, edit: Callable[[dict], object] | str) -> None:
    if callable(edit):
        path.write_text(json.dumps(edit(copy.deepcopy(good))))
        return
    text = json.dumps(good)
    if edit == "nan-literal":
        text = text.replace('"cosine": ', '"cosine": NaN, "was": ', 1)
    elif edit == "inf-literal":
        text = text.replace('"cosine": ', '"cosine": Infinity, "was": ', 1)
    elif edit == "deep":
        text = '{"schema": "layerscope-report", "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    elif edit == "truncated":
        text = text[: len(text) // 2]
    path.write_bytes(text.encode("latin-1") + b"\xe9" if edit == "latin1" else text.encode())


@pytest.mark.parametrize(("what", "edit", "message"), CASES, ids=[c[0] for c in CASES])
def test_report_refuses_a_malformed_report(cli, good, tmp_path: Path, what: str, edit, message: str) -> None:
    path = tmp_path / "report.json"
    _write(path, good, edit)
    cli("report", str(path)).expect(2, message)
    cli("report", str(path), "--format", "md").expect(2, message)


@pytest.mark.parametrize(("what", "edit", "message"), CASES, ids=[c[0] for c in CASES])
def test_diff_refuses_a_malformed_report_on_either_side(cli, good, tmp_path: Path, what, edit, message) -> None:
    bad = tmp_path / "bad" / "report.json"
    bad.parent.mkdir()
    _write(bad, good, edit)
    ok = tmp_path / "ok.json"
    ok.write_text(json.dumps(good))
    cli("diff", str(bad), str(ok)).expect(2, message)
    cli("diff", str(ok), str(bad.parent)).expect(2, message)  # a run directory reads its report.json


def test_the_unmodified_report_is_read(cli, good, tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    path.write_text(json.dumps(good))
    cli("report", str(path), "--format", "md").expect(0, "## fp16 vs fp32")


def test_a_folder_without_a_report(cli, tmp_path: Path) -> None:
    cli("report", str(tmp_path)).expect(2, "no report at")
    cli("diff", str(tmp_path), str(tmp_path)).expect(2, "no report at")


def test_the_version_read_is_the_version_written() -> None:
    from layerscope.pipelines.reports.read import SCHEMA_VERSION as READ
    from layerscope.pipelines.stages.report import SCHEMA_VERSION as WRITTEN
    from layerscope.schemas import load_schema

    assert READ == WRITTEN == max(load_schema("report")["properties"]["schema_version"]["enum"])
