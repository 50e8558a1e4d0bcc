"""Reports of schema version 1 (histogram counts written as {"bin": count}, each with its layout) and 2 (no
packed layers) still load, round-trip, render and diff against the current version's, which stores the counts
as runs from a start bin, leaves the layouts out and packs large comparisons (test_packing)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

from layerscope.cli import main
from layerscope.pipelines.metrics.stats import HISTOGRAM_LAYOUTS, bin_counts
from layerscope.pipelines.reports.read import load_report
from tests.conftest import SMALL_UNET

CONFIG = SMALL_UNET + "report: {formats: [json, html]}\n"


def as_version_1(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` as layerscope wrote it before schema version 2."""
    old = copy.deepcopy(doc)
    old["schema_version"] = 1
    for comparison in old["comparisons"]:
        for layer in comparison["layers"]:
            hists = layer["metrics"].get("histograms", {})
            for name, hist in hists.items():
                counts = {str(k): v for k, v in sorted(bin_counts(hist).items())}
                hists[name] = {**HISTOGRAM_LAYOUTS[name], **hist, "counts": counts}
                del hists[name]["start"]
    return old


def charts(text: str) -> list[str]:
    return re.findall(r"<svg.*?</svg>", text, flags=re.S)


def test_a_version_1_report_reads_renders_and_diffs_like_its_version_2_self(write_config) -> None:
    path = write_config(CONFIG)
    assert main(["run", str(path), "--out", "new", "-q"]) in (0, 1)
    new = json.loads(Path("new/report.json").read_text())
    assert new["schema_version"] == 3 and "histograms_file" not in new  # small: written as version 2 was
    hists = [x["metrics"]["histograms"] for c in new["comparisons"] for x in c["layers"]]
    assert hists and all(isinstance(h["rel_error"]["counts"], list) and "scheme" not in h["rel_error"] for h in hists)
    assert any(v < 0 for h in hists for v in h["rel_error"]["counts"])  # the runs of empty bins are exercised
    old = as_version_1(new)
    Path("old").mkdir()
    Path("old/report.json").write_text(json.dumps(old))

    report = load_report(Path("old/report.json"))
    assert report.schema_version == 1 and report.to_dict() == old
    assert main(["report", "old", "--format", "html", "-o", "old.html"]) == 0
    page = Path("old.html").read_text()
    assert 'id="chart-histograms"' in page
    assert charts(page) == charts(Path("new/report.html").read_text())  # the same bins drawn from either form
    assert main(["report", "old", "--format", "md", "-o", "old.md"]) == 0
    assert main(["diff", "old", "new"]) == 0  # same metrics: no regression either way
    assert main(["diff", "new", "old"]) == 0


def test_a_version_2_report_reads_renders_and_diffs_like_its_version_3_self(write_config) -> None:
    path = write_config(CONFIG)
    assert main(["run", str(path), "--out", "new", "-q"]) in (0, 1)
    new = json.loads(Path("new/report.json").read_text())
    old = {**new, "schema_version": 2}
    Path("old").mkdir()
    Path("old/report.json").write_text(json.dumps(old))

    report = load_report(Path("old/report.json"))
    assert report.schema_version == 2 and report.to_dict() == old
    assert main(["report", "old", "--format", "html", "-o", "old.html"]) == 0
    assert charts(Path("old.html").read_text()) == charts(Path("new/report.html").read_text())
    assert main(["report", "old", "--format", "md", "-o", "old.md"]) == 0
    assert main(["diff", "old", "new"]) == 0
    assert main(["diff", "new", "old"]) == 0
