"""Image folders as inputs: preprocessing values against a hand computation, order, every error message, and
one image's digest in the key (tiny images generated here with Pillow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from layerscope.pipelines.experiment import load_experiment
from layerscope.pipelines.experiment.inputs import sample_reader
from layerscope.pipelines.stages import plan_for
from layerscope.runner.errors import SpecError, UsageError
from tests.models import classifier_model

CONFIG = """\
name: images
model: m.onnx
samples: 2
inputs:
  input:
    source: {images: photos, mean: [0.5, 0.4, 0.3], std: [0.2, 0.25, 0.5]}
runs:
  fp32: {precision: fp32}
  fp16: {precision: fp16}
"""


def pixels(seed: int, size: tuple[int, int] = (16, 16), channels: int = 3) -> np.ndarray:
    shape = (size[1], size[0], channels) if channels > 1 else (size[1], size[0])
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


@pytest.fixture
def setup(write_config):
    """(config path, photos folder) with a 16x16 classifier and two 16x16 RGB images b.png, a.png."""
    path = write_config(CONFIG)
    classifier_model(path.parent / "m.onnx")
    photos = path.parent / "photos"
    photos.mkdir()
    Image.fromarray(pixels(1)).save(photos / "b.png")
    Image.fromarray(pixels(2)).save(photos / "a.png")
    (photos / "notes.txt").write_text("not an image: ignored in a folder")
    return path, photos


def read(path: Path, overrides: list[str] | None = None, i: int = 0) -> np.ndarray:
    exp = load_experiment(path, overrides, deep=True)
    with sample_reader(exp.inputs[0], exp.samples) as reader:
        return np.asarray(reader(i))


def messages(path: Path, overrides: list[str], deep: bool = True) -> list[str]:
    with pytest.raises(SpecError) as err:
        load_experiment(path, overrides, deep=deep)
    return [f"{p.pointer}: {p.message}" for p in err.value.problems]


def test_values_are_scaled_normalised_and_in_sorted_order(setup) -> None:
    path, _ = setup
    x = read(path)  # sample 0 is a.png (sorted), shape from the model
    want = (pixels(2) / 255.0 - [0.5, 0.4, 0.3]) / [0.2, 0.25, 0.5]
    assert x.shape == (1, 3, 16, 16) and x.dtype == np.float32
    np.testing.assert_allclose(x[0], want.transpose(2, 0, 1).astype(np.float32), rtol=1e-6)
    bgr_nhwc = read(path, ["inputs.input.source.channels=BGR", "inputs.input.source.scale=1"], i=1)
    raw_b = (pixels(1).astype(np.float64) - [0.5, 0.4, 0.3]) / [0.2, 0.25, 0.5]
    np.testing.assert_allclose(bgr_nhwc[0], raw_b[:, :, ::-1].transpose(2, 0, 1).astype(np.float32), rtol=1e-6)


def test_shorter_side_then_centre_crop(setup) -> None:
    path, photos = setup
    for f in photos.glob("*.png"):
        f.unlink()
    big = pixels(3, size=(40, 24))  # 40 wide, 24 high
    Image.fromarray(big).save(photos / "wide.png")
    x = read(path, ["samples=1", "inputs.input.source.resize={shorter_side: 20}", "inputs.input.source.mean=0"])
    resized = Image.fromarray(big).resize((33, 20), Image.Resampling.BILINEAR)  # 40*20/24 = 33.3 -> 33
    crop = np.asarray(resized.crop((8, 2, 24, 18)), dtype=np.float64)  # round((33-16)/2) = 8, (20-16)/2 = 2
    want = (crop / 255.0) / [0.2, 0.25, 0.5]
    np.testing.assert_allclose(x[0], want.transpose(2, 0, 1).astype(np.float32), rtol=1e-6)


def test_gray_rgba_and_palette_images_become_rgb(setup) -> None:
    path, photos = setup
    Image.fromarray(pixels(4, channels=1)).save(photos / "a.png")  # grayscale: repeated into 3 channels
    rgba = np.dstack([pixels(5), np.full((16, 16), 7, np.uint8)])
    Image.fromarray(rgba).save(photos / "b.png")  # alpha dropped
    gray = read(path, ["inputs.input.source.mean=0", "inputs.input.source.std=1"])
    np.testing.assert_allclose(gray[0, 0], gray[0, 2])
    np.testing.assert_allclose(gray[0, 1], pixels(4, channels=1) / 255.0, rtol=1e-6)
    rgb = read(path, ["inputs.input.source.mean=0", "inputs.input.source.std=1"], i=1)
    np.testing.assert_allclose(rgb[0], (pixels(5) / 255.0).transpose(2, 0, 1), rtol=1e-6)


def test_globs_and_lists_in_the_order_written(setup) -> None:
    path, _ = setup
    exp = load_experiment(path, ["inputs.input.source.images=[photos/b.png, 'photos/*.png']", "samples=3"])
    assert [shown for _, shown in exp.inputs[0].source["files"]] == ["b.png", "a.png", "b.png"]
    with sample_reader(exp.inputs[0], 3) as reader:
        np.testing.assert_array_equal(reader(0), reader(2))


def test_missing_folder_no_images_too_few_and_wrong_channels(setup) -> None:
    path, photos = setup
    src = "/inputs/input/source"
    assert messages(path, ["inputs.input.source.images=nowhere"]) == [
        f"{src}/images: image folder not found: {path.parent / 'nowhere'}"
    ]
    (path.parent / "empty").mkdir()
    got = messages(path, ["inputs.input.source.images=empty"])
    assert got == [f"{src}/images: no image files in {path.parent / 'empty'} (looked for .png, .jpg, .jpeg, .bmp, "
                   ".gif, .tif, .tiff, .webp, .ppm, .pgm, .pnm)"]  # fmt: skip
    assert messages(path, ["inputs.input.source.images=photos/*.jpg"]) == [
        f"{src}/images: no file matches {photos / '*.jpg'}"
    ]
    assert messages(path, ["samples=3"]) == [f"{src}/images: 2 images found; the config asks for 3"]
    assert messages(path, ["inputs.input.source.channels=GRAY", "inputs.input.source.mean=0"]) == [
        f"{src}/channels: channels GRAY makes 1 channel, but the input's channel axis (axis 1 of [1, 3, 16, 16], "
        "layout NCHW) has 3"
    ]
    assert messages(path, ["inputs.input.source.layout=NHWC"]) == [
        f"{src}/channels: channels RGB makes 3 channels, but the input's channel axis (axis 3 of [1, 3, 16, 16], "
        "layout NHWC) has 16",
        f"{src}/mean: mean has 3 values; the input has 16 channels",
        f"{src}/std: std has 3 values; the input has 16 channels",
    ]


def test_an_unreadable_image_is_named_at_validate_and_at_run_time(setup) -> None:
    path, photos = setup
    (photos / "a.png").write_bytes(b"\x89PNG but not really")
    got = messages(path, [])
    assert got == [
        f"/inputs/input/source/images: cannot read image {photos / 'a.png'} (sample 0): "
        f"cannot identify image file '{photos / 'a.png'}'"
    ]
    exp = load_experiment(path)  # run time: the stage says the same, with the input's name
    with sample_reader(exp.inputs[0], 2) as reader, pytest.raises(UsageError) as err:
        reader(0)
    assert err.value.message == (
        f"cannot read image {photos / 'a.png'} (input 'input', sample 0): "
        f"cannot identify image file '{photos / 'a.png'}'"
    )


def test_changing_one_image_reruns_exactly_what_reads_it(setup) -> None:
    path, photos = setup
    cal = ["runs.int8={precision: int8}", "compare.candidates=[fp16, int8]", "calibration.samples=1"]

    def keys() -> dict[str, str]:
        return {ps.stage.id: ps.key for ps in plan_for(load_experiment(path, cal))}

    before = keys()
    Image.fromarray(pixels(9)).save(photos / "zz.png")  # a third image no sample reads
    assert keys() == before
    Image.fromarray(pixels(8)).save(photos / "b.png")  # sample 1 of the evaluation; not calibrated on
    after = keys()
    changed = {sid for sid in before if before[sid] != after[sid]}
    assert changed == {
        "dump[fp32]",
        "dump[fp16]",
        "dump[int8]",
        "compare[fp16]",
        "compare[int8]",
        "attribute[fp16]",
        "attribute[int8]",
        "report",
    }
    Image.fromarray(pixels(7)).save(photos / "a.png")  # sample 0: the one calibration sample too
    assert keys()["calibrate"] != after["calibrate"]


def test_a_changed_image_is_named_in_the_diff(setup) -> None:
    import layerscope

    path, photos = setup
    layerscope.run(path, overrides=["attribution=false"], out="a")
    Image.fromarray(pixels(8)).save(photos / "b.png")
    layerscope.run(path, overrides=["attribution=false"], out="b")
    changes = {c["key"] for c in layerscope.diff("a", "b").to_dict()["config_changes"]}
    assert changes == {"inputs.input.images.photos/b.png"}


def test_calibrating_on_images_changes_the_int8_scales(setup) -> None:
    """The same model calibrated on the photos and on noise over the same value range: other scales."""
    import layerscope
    from layerscope.pipelines.lowering.calibration_cache import read_trt_cache

    path, _ = setup
    int8 = ["runs.fp16.precision=int8", "attribution=false", "calibration.samples=2"]
    layerscope.run(path, overrides=int8, out="photos")  # calibrated on the two images (the evaluation's)
    noise = "calibration.inputs={input: {source: {random: uniform, low: -2.5, high: 2.5, seed: 1}}}"
    layerscope.run(path, overrides=[*int8, noise], out="noise")
    a = read_trt_cache(Path("photos/calibration.cache"))[2]
    b = read_trt_cache(Path("noise/calibration.cache"))[2]
    assert set(a) == set(b) and "conv0" in a
    assert a["conv0"] != b["conv0"] and a["input"] != b["input"]


def test_a_link_in_a_listed_folder_or_glob_may_not_lead_outside_the_config_folder(setup, tmp_path: Path) -> None:
    """A relative folder or glob is confined like a relative path: a link among its files that leads outside
    is refused by name, before anything opens it; an absolute entry is the writer's choice."""
    path, photos = setup
    secret = tmp_path / "elsewhere" / "secret.png"
    secret.parent.mkdir()
    Image.fromarray(pixels(3)).save(secret)
    (photos / "c.png").symlink_to(secret)
    why = (
        f"{photos / 'c.png'} (listed for {{!r}}) resolves to {secret}, outside {{}}: a relative entry must stay "
        "inside its folder (links are followed); write an absolute path to use files elsewhere"
    )
    src = "/inputs/input/source/images"
    assert messages(path, ["inputs.input.source.images=photos"]) == [f"{src}: " + why.format("photos", photos)]
    assert messages(path, ["inputs.input.source.images=photos/*.png"]) == [
        f"{src}: " + why.format("photos/*.png", photos)
    ]
    exp = load_experiment(path, [f"inputs.input.source.images={photos}", "samples=3"], deep=True)
    assert [shown for _, shown in exp.inputs[0].source["files"]] == ["photos/a.png", "photos/b.png", "photos/c.png"]
