"""report.json's packed layer table and its histograms file (schema version 3): a packed report reads, renders,
diffs and exports exactly as its plain self, and a missing, stale or broken part is handled, never trusted."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from layerscope.cli import main
from layerscope.pipelines.reports import packing
from layerscope.pipelines.reports.plots import WORST_LAYERS
from layerscope.pipelines.reports.read import load_report, read_report
from layerscope.runner.jsonio import encode
from tests.conftest import SMALL_UNET
from tests.zoo.recompute import assert_run_agrees

CONFIG = SMALL_UNET + "report: {formats: [json, md, html]}\n"


def charts(text: str) -> list[str]:
    return re.findall(r"<svg.*?</svg>", text, flags=re.S)


def histogram_chart(page: str) -> str:
    found = re.search(r'id="chart-histograms">(.*?)</figure>', page, flags=re.S)
    return found.group(1) if found else ""


def without_execution(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "execution"}


@pytest.fixture
def plain_and_packed(write_config, monkeypatch: pytest.MonkeyPatch) -> None:
    """plain/: the small UNet's report as written; packed/: the same report stage rerun with every comparison
    packed and all but the 6 worst layers' histograms beside it."""
    path = write_config(CONFIG)
    assert main(["run", str(path), "--out", "plain", "-q"]) in (0, 1)
    monkeypatch.setattr(packing, "PACK_AT", 1)
    monkeypatch.setattr(packing, "SHOWN_HISTOGRAMS", WORST_LAYERS)
    assert main(["run", str(path), "--out", "packed", "-q", "--force", "report"]) in (0, 1)


def test_the_report_shows_at_least_the_histograms_the_html_draws() -> None:
    assert packing.SHOWN_HISTOGRAMS >= WORST_LAYERS


@pytest.mark.usefixtures("plain_and_packed")
def test_a_packed_report_reads_renders_diffs_and_recomputes_as_its_plain_self() -> None:
    raw = json.loads(Path("packed/report.json").read_text())
    assert raw["schema_version"] == 3
    assert all(packing.is_packed(c["layers"]) for c in raw["comparisons"])
    assert raw["histograms_file"]["layers"] > 0 and Path("packed", packing.HISTOGRAMS_FILE).is_file()
    assert "histograms_file" not in json.loads(Path("plain/report.json").read_text())

    plain, packed = load_report("plain"), load_report("packed")
    assert without_execution(packed.to_dict()) == without_execution(plain.to_dict())
    # The page the run wrote and one re-rendered from the files: the same charts as the plain report's.
    assert charts(Path("packed/report.html").read_text()) == charts(Path("plain/report.html").read_text())
    assert main(["report", "packed", "--format", "html", "-o", "again.html"]) == 0
    assert charts(Path("again.html").read_text()) == charts(Path("plain/report.html").read_text())
    assert main(["report", "packed", "--format", "json", "-o", "unpacked.json"]) == 0
    unpacked = json.loads(Path("unpacked.json").read_text())
    assert isinstance(unpacked["comparisons"][0]["layers"], list) and "histograms_file" not in unpacked
    assert main(["diff", "plain", "packed"]) == 0 and main(["diff", "packed", "plain"]) == 0
    assert main(["export", "plain", "--format", "csv", "-o", "plain.csv"]) == 0
    assert main(["export", "packed", "--format", "csv", "-o", "packed.csv"]) == 0
    assert Path("plain.csv").read_text() == Path("packed.csv").read_text()
    assert_run_agrees(Path("packed"))


@pytest.mark.usefixtures("plain_and_packed")
@pytest.mark.parametrize("fault", ["missing", "stale"])
def test_without_its_own_histograms_file_a_packed_report_reads_and_says_where_they_are(fault: str) -> None:
    side = Path("packed", packing.HISTOGRAMS_FILE)
    if fault == "missing":
        side.unlink()
    else:  # another run's file (or one edited): its digest is not the one report.json names
        side.write_text(side.read_text().replace('"start":', '"start": ', 1))
    doc = read_report("packed")
    assert doc["histograms_file"]["file"] == packing.HISTOGRAMS_FILE  # still says where they were
    layers = [x for c in doc["comparisons"] for x in c["layers"]]
    with_hists = [x for x in layers if "histograms" in x["metrics"]]
    assert 0 < len(with_hists) < len(layers)
    # The worst layers keep theirs: the page draws the same histograms (the range chart's percentiles, drawn
    # from every layer's |reference| histogram, lack the moved ones).
    assert main(["report", "packed", "--format", "html", "-o", "page.html"]) == 0
    drawn = histogram_chart(Path("page.html").read_text())
    assert drawn and drawn == histogram_chart(Path("plain/report.html").read_text())


@pytest.mark.usefixtures("plain_and_packed")
def test_a_broken_packed_table_is_one_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    doc = json.loads(Path("packed/report.json").read_text())
    doc["comparisons"][0]["layers"]["rows"][0].append(1)  # one value more than its shape has
    Path("packed/report.json").write_text(json.dumps(doc))
    assert main(["report", "packed"]) == 2
    assert "packed layer table is malformed" in capsys.readouterr().err


def test_packing_keeps_every_value_its_type_and_the_key_order(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setattr(packing, "PACK_AT", 2)
    monkeypatch.setattr(packing, "SHOWN_HISTOGRAMS", 1)

    def layer(i: int, value: Any, **more: Any) -> dict[str, Any]:
        metrics = {"elements": 4, "deviation_ratio": i / 10, "ref_nan": 0, "range": {"max_abs": 2.0}}
        metrics["histograms"] = {"rel_error": {"start": i, "counts": [1, -2, 3]}}
        local = {"elements": 4, "deviation_ratio": 0.0, "ref_nan": 0, "range": {"max_abs": 2.0 + (i == 2)}}
        out = {"tensor": f"t{i}", "value": value, "shape": [1, 4], "opts": {}, "metrics": metrics}
        return {**out, **more, "attribution": {"status": "ok", "local": local}}

    layers = [layer(0, 1), layer(1, 1.0), layer(2, True, note="n"), layer(3, None), layer(4, [1, {"a": 1}])]
    doc = {"comparisons": [{"candidate": "c", "first_failing_tensor": None, "layers": layers}]}
    original = json.loads(json.dumps(doc))
    packed, side = packing.pack_report(doc, encode)
    assert side is not None and packing.is_packed(packed["comparisons"][0]["layers"])
    assert doc == original  # the document given is left as it was
    (tmp_path / packing.HISTOGRAMS_FILE).write_text(side)
    back = packing.unpack_report(json.loads(json.dumps(packed)), tmp_path)
    assert json.dumps(back) == json.dumps(original)  # types (1, 1.0, true), lists, {} and key order
    again = packing.unpack_report(json.loads(json.dumps(packed)), tmp_path)
    again["comparisons"][0]["layers"][0]["shape"].append(9)  # defaults are copied, never shared
    assert again["comparisons"][0]["layers"][1]["shape"] == [1, 4]
