"""report.html: its structure (charts, sortable tables, nothing external), charts served from the cache on a
cached rerun, re-rendering with ``layerscope report``, and (when Chromium is installed) a real screenshot."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from layerscope.cli import main
from tests.conftest import SMALL_UNET

TWO_CANDIDATES = (
    SMALL_UNET.replace(
        "  fp16: {backend: onnxruntime, precision: fp16}\n",
        "  fp16: {backend: onnxruntime, precision: fp16}\n  bf16: {backend: onnxruntime, precision: bf16}\n",
    )
    .replace("candidates: [fp16]", "candidates: [fp16, bf16]")
    .replace("max_deviation_ratio: 0.5", "max_deviation_ratio: 0.01")
    + "report: {formats: [json, md, html]}\n"
)


class Page(HTMLParser):
    """Tags with their attributes, the ids of the elements an <svg> sits in, table rows per table."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.stack: list[tuple[str, dict[str, str | None]]] = []
        self.svg_parents: list[str | None] = []
        self.rows: list[int] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "svg" and not any(t == "svg" for t, _ in self.stack):
            self.svg_parents.append(self.stack[-1][1].get("id") if self.stack else None)
        if tag == "table":
            self.rows.append(0)
        if tag == "tr" and any(t == "tbody" for t, _ in self.stack):
            self.rows[-1] += 1
        self.stack.append((tag, a))

    def handle_endtag(self, tag: str) -> None:
        while self.stack:
            if self.stack.pop()[0] == tag:
                break

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(text: str) -> Page:
    page = Page()
    page.feed(text)
    return page


def test_html_structure_charts_tables_and_nothing_external(write_config) -> None:
    path = write_config(TWO_CANDIDATES)
    assert main(["run", str(path), "--out", "o", "-q"]) == 1  # bf16 fails the 1% limit
    text = Path("o/report.html").read_text()
    page = parse(text)
    assert page.svg_parents == ["chart-deviation", "chart-histograms", "chart-range"]
    tables = [a for t, a in page.tags if t == "table" and "sortable" in (a.get("class") or "")]
    assert [a["data-candidate"] for a in tables] == ["fp16", "bf16"]
    assert page.rows[:2] == [22, 22]  # every layer of the small UNet, per comparison
    words = " ".join(page.text)
    for expected in (
        "Count with rel err > 10%",
        "Deviation ratio",
        "first failing: conv0",  # marked on the depth chart
        "limit (max deviation ratio)",
        "fp16 max 65504",
        "fp16 smallest subnormal 5.96e-8",
        "deviate (> 0.1)",  # histogram panel titles
        "Provenance",
    ):
        assert expected in words, expected
    assert any(t == "script" for t, _ in page.tags) and "table.sortable" in text
    # self-contained: no element loads anything, and no URL appears outside XML namespace declarations
    for tag, attrs in page.tags:
        assert tag not in ("link", "img", "iframe", "object", "embed"), tag
        for name in ("src", "href", "xlink:href"):
            value = attrs.get(name)
            assert value is None or value.startswith("#"), (tag, name, value)
    assert not re.search(r"https?:|//[a-z]", re.sub(r'xmlns(:\w+)?="[^"]*"', "", text))
    assert "@import" not in text and not re.search(r"url\((?!#)", text)  # url(#clip) is internal


def test_cached_rerun_does_not_redraw_charts(write_config, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_config(TWO_CANDIDATES)
    main(["run", str(path), "--out", "o", "-q"])
    first = Path("o/report.html").read_text()
    from layerscope.pipelines.reports import plots

    drawn: list[str] = []
    real = plots.figures

    def counting(report: dict) -> dict[str, str]:
        drawn.append(report["experiment"]["config_digest"])
        return real(report)

    monkeypatch.setattr(plots, "figures", counting)
    main(["run", str(path), "--out", "o", "-q"])
    assert drawn == []
    assert _charts(Path("o/report.html").read_text()) == _charts(first)
    main(["run", str(path), "--out", "o", "-q", "--set", "thresholds.max_deviation_ratio=0.02"])
    assert len(drawn) == 1  # another report: other charts


def _charts(text: str) -> list[str]:
    return re.findall(r"<svg.*?</svg>", text, flags=re.S)


def test_cached_rerun_never_imports_matplotlib(write_config) -> None:
    path = write_config(TWO_CANDIDATES)
    main(["run", str(path), "--out", "o", "-q"])
    code = (
        "import sys\nfrom layerscope.cli import main\n"
        f"code = main(['run', {str(path)!r}, '--out', 'o', '-q'])\n"
        "print(code, 'matplotlib' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[-1] == "1 False"


def test_report_command_rerenders_html(write_config) -> None:
    path = write_config(TWO_CANDIDATES)
    main(["run", str(path), "--out", "o", "-q"])
    assert main(["report", "o", "--format", "html", "-o", "again.html"]) == 0
    # drawn afresh without the cache, and identical: the charts are reproducible
    assert Path("again.html").read_text() == Path("o/report.html").read_text()


def test_every_point_has_a_native_tooltip_and_the_local_error_is_drawn(write_config) -> None:
    path = write_config(TWO_CANDIDATES)
    main(["run", str(path), "--out", "o", "-q"])
    text = Path("o/report.html").read_text()
    chart = text[text.index('id="chart-deviation"') : text.index("</figure>", text.index('id="chart-deviation"'))]
    titles = re.findall(r"<title>(.*?)</title>", chart, flags=re.S)
    doc = json.loads(Path("o/report.json").read_text())
    layers = [(c["candidate"], x) for c in doc["comparisons"] for x in c["layers"]]
    assert len(titles) == len(layers) == 44  # one per point: 22 layers x 2 candidates
    for title, (candidate, x) in zip(titles, layers, strict=True):
        assert title.startswith(f"{x['node']} ({x['op_type']}) · {candidate} · {x['verdict'].upper()}")
        assert "deviation ratio" in title and "SQNR" in title and "cosine" in title
    assert any("local SQNR" in t and "inherited" in t for t in titles)  # attribution's local error
    assert "fp16: local error (layer alone)" in chart and "bf16: local error (layer alone)" in chart
    assert '<h2 id="depth">Deviation ratio along the network</h2>' in text


def _layer(i: int, sqnr: float, ratio: float, **limits: float) -> dict:
    metrics = {"deviation_ratio": ratio, "sqnr_db": sqnr, "cosine": 0.99, "max_abs_error": 0.1}
    return {"tensor": f"t{i}", "metrics": metrics, "limits": limits, "verdict": "pass"}


def test_the_chart_plots_the_metric_that_decides() -> None:
    from layerscope.pipelines.reports.chartdata import DEVIATION, SQNR, decisive

    def report(*layers: dict) -> dict:
        return {"comparisons": [{"layers": list(layers)}]}

    # INT8 as configured: deviation limit 100% (off), an SQNR floor of 18 dB
    int8 = report(
        _layer(0, 17.96, 0.4, max_deviation_ratio=1.0, min_sqnr_db=18),
        _layer(1, 30, 0.2, max_deviation_ratio=1.0, min_sqnr_db=18),
    )
    assert decisive(int8) is SQNR
    fp16 = report(_layer(0, 60, 0.02, max_deviation_ratio=0.01), _layer(1, 60, 0.0, max_deviation_ratio=0.01))
    assert decisive(fp16) is DEVIATION
    # both in force: the one that fails more layers
    both = report(
        _layer(0, 10, 0.001, max_deviation_ratio=0.01, min_sqnr_db=18),
        _layer(1, 12, 0.0, max_deviation_ratio=0.01, min_sqnr_db=18),
    )
    assert decisive(both) is SQNR
    both["comparisons"][0]["layers"][1]["metrics"].update(deviation_ratio=0.5, sqnr_db=40)
    both["comparisons"][0]["layers"][0]["metrics"]["deviation_ratio"] = 0.5
    assert decisive(both) is DEVIATION  # 2 break the ratio, 1 the SQNR


def test_sqnr_chart_for_int8_limits(write_config) -> None:
    path = write_config(
        TWO_CANDIDATES.replace("max_deviation_ratio: 0.01", "max_deviation_ratio: 1.0\n  min_sqnr_db: 62")
    )
    main(["run", str(path), "--out", "o", "-q"])
    text = Path("o/report.html").read_text()
    assert '<h2 id="depth">SQNR along the network</h2>' in text and "limit (min SQNR)" in text
    assert "SQNR (dB; higher is better)" in text


def _many_layers(doc: dict, copies: int) -> dict:
    import copy

    for c in doc["comparisons"]:
        base, c["layers"] = c["layers"], []
        for k in range(copies):
            for x in base:
                y = copy.deepcopy(x)
                y.update(tensor=f"{x['tensor']}_{k}", node=f"{x['node']}_{k}", index=len(c["layers"]))
                c["layers"].append(y)
    return doc


def test_300_layers_are_each_named_on_a_chart_that_scrolls(write_config) -> None:
    from layerscope.pipelines.reports.html import render_html

    path = write_config(TWO_CANDIDATES)
    main(["run", str(path), "--out", "o", "-q"])
    doc = _many_layers(json.loads(Path("o/report.json").read_text()), 15)  # 330 layers
    text = render_html(doc)
    Path("big.html").write_text(text)
    start = text.index('id="chart-deviation"')
    assert text[text.rindex("<figure", 0, start) : start].startswith('<figure class="chart wide"')
    chart = text[start : text.index("</figure>", start)]
    width = float(re.search(r'<svg[^>]*width="([0-9.]+)pt"', chart).group(1))
    assert width > 330 * 0.1 * 72  # inches of room for every label
    assert "every" not in re.sub(r"<title>.*?</title>", "", chart, flags=re.S).split("layer, in network order")[1][:30]
    assert all(f">{doc['comparisons'][0]['layers'][i]['node']}<" in chart for i in (0, 100, 329))
    assert len(re.findall(r"<title>", chart)) == 660


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _screenshot(page: Path, shot: Path, tmp_path: Path) -> None:
    browser = _chromium()
    assert browser is not None
    cmd = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--screenshot={shot}",
        "--window-size=1280,2400",
        page.resolve().as_uri(),
    ]
    subprocess.run(cmd, capture_output=True, timeout=120, check=False, env={**os.environ, "HOME": str(tmp_path)})
    assert shot.is_file(), "Chromium wrote no screenshot"


@pytest.mark.slow
@pytest.mark.skipif(_chromium() is None, reason="Chromium is not installed (Debian: apt-get install chromium)")
def test_screenshot_in_headless_chromium(write_config, tmp_path: Path) -> None:
    from PIL import Image

    from layerscope.pipelines.reports.html import render_html

    path = write_config(TWO_CANDIDATES)
    main(["run", str(path), "--out", "o", "-q"])
    Path("big.html").write_text(render_html(_many_layers(json.loads(Path("o/report.json").read_text()), 15)))
    for page in (Path("o/report.html"), Path("big.html")):  # 22 layers, and 330 on a chart that scrolls
        shot = tmp_path / f"{page.stem}.png"
        _screenshot(page, shot, tmp_path)
        with Image.open(shot) as im:
            assert im.size == (1280, 2400)
            colours = im.convert("RGB").getcolors(maxcolors=1 << 20) or []
        # a rendered page: many colours (charts, tables), and the red of the FAIL badge and the limit line
        assert len(colours) > 200
        assert any(r > 150 and g < 80 and b < 80 for _, (r, g, b) in colours)
