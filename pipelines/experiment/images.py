"""Image folders as input sources, with the preprocessing every vision model needs (Pillow does the decoding).

``source: {images: DIR | GLOB | [DIR_OR_GLOB, ...] | {dataset: NAME, files: [...]}, ...}``: a folder's image
files (by suffix, not recursive) or a glob's matches (``**`` recurses), each sorted by path; entries in the
order written. Sample ``i`` is file ``i`` (with a batch of ``B`` in the input's shape: files ``iB .. iB+B-1``).
Per image, in this order:

1. decode, apply the EXIF orientation, convert to ``channels`` (RGB, BGR or GRAY; alpha is dropped, a
   palette is expanded; 16-bit and float grayscale images keep their values);
2. ``resize``: ``stretch`` to the input's H x W (default), ``{shorter_side: S}`` (the shorter side to S keeping
   the aspect ratio, then the centre H x W crop, as torchvision's Resize + CenterCrop), or ``none`` (the image
   must already be H x W); ``interpolation`` nearest | bilinear (default) | bicubic | lanczos | box;
3. ``x * scale`` (default 1/255 for float inputs, 1 for integer inputs), then ``(x - mean) / std`` (numbers or
   one per channel, in the channel order of ``channels``);
4. ``layout``: NCHW (default) or NHWC (CHW / HWC for a rank-3 input), then the input's dtype.

The files used (the first ``samples x B``) are listed when the config is loaded and each one's SHA-256 is in
the input's key material, so changing one image reruns exactly the stages that read it.
"""

from __future__ import annotations

import glob
from collections.abc import Callable, Mapping
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from layerscope.runner.errors import UsageError
from layerscope.runner.hashing import FileDigests
from layerscope.runner.paths import fixed_prefix, leaving

if TYPE_CHECKING:
    import numpy as np

    from layerscope.pipelines.experiment import InputSpec

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm")
CHANNELS = {"RGB": 3, "BGR": 3, "GRAY": 1}
PREPROCESSING = ("resize", "interpolation", "layout", "channels", "scale", "mean", "std")


# -- at load: which files, and is the preprocessing possible for this input ------------------------------
def parse_scale(value: Any) -> float:
    """A number, or a fraction written as text (``1/255``)."""
    if isinstance(value, str):
        try:
            return float(Fraction(value.replace(" ", "")))
        except (ValueError, ZeroDivisionError):
            raise UsageError(f"scale {value!r} is not a number or a fraction like 1/255") from None
    return float(value)


def geometry(shape: tuple[int, ...], layout: str) -> tuple[int, int, int, int]:
    """(batch, channels, height, width) of an input shape under a layout (rank 3: no batch axis)."""
    dims = shape if len(shape) == 3 else shape[1:]
    batch = 1 if len(shape) == 3 else shape[0]
    if layout == "NCHW":
        return batch, dims[0], dims[1], dims[2]
    return batch, dims[2], dims[0], dims[1]


def check_preprocessing(source: dict[str, Any], shape: tuple[int, ...] | None, dtype: str) -> list[tuple[str, str]]:
    """Problems (pointer below the source, message) of the preprocessing against the input's shape and dtype."""
    if shape is None:
        return [("", "shape is required for an images source (the model's input shape is not static)")]
    if len(shape) not in (3, 4):
        return [("", f"an images source needs an input of rank 3 or 4 (CHW/HWC, NCHW/NHWC), not {list(shape)}")]
    problems = []
    if dtype == "bool":
        problems.append(("", "an images source cannot feed a bool input"))
    _, channels, height, width = geometry(shape, source["layout"])
    want = CHANNELS[source["channels"]]
    if channels != want:
        axis = (0 if len(shape) == 3 else 1) if source["layout"] == "NCHW" else len(shape) - 1
        problems.append(
            (
                "/channels",
                f"channels {source['channels']} makes {want} channel{'s' if want > 1 else ''}, but the input's "
                f"channel axis (axis {axis} of {list(shape)}, layout {source['layout']}) has {channels}",
            )
        )
    for key in ("mean", "std"):
        value = source[key]
        if isinstance(value, list) and len(value) not in (1, channels):
            problems.append((f"/{key}", f"{key} has {len(value)} values; the input has {channels} channels"))
        if key == "std" and any(v == 0 for v in (value if isinstance(value, list) else [value])):
            problems.append(("/std", "std must not be 0"))
    resize = source["resize"]
    if isinstance(resize, dict) and resize["shorter_side"] < min(height, width):
        problems.append(
            (
                "/resize/shorter_side",
                f"shorter_side {resize['shorter_side']} is smaller than the {height}x{width} crop the input takes",
            )
        )
    try:
        parse_scale(source["scale"])
    except UsageError as exc:
        problems.append(("/scale", exc.message))
    return problems


def list_images(entries: list[str], resolve: Callable[[str], Path]) -> tuple[list[tuple[str, str]], list[str]]:
    """([(absolute path, name shown in the report)], problems) of the entries as written: folders and globs
    relative to the config (``resolve`` applies the config's path rules to each)."""
    files: list[tuple[str, str]] = []
    problems: list[str] = []
    for entry in entries:
        try:
            target = resolve(entry)
        except UsageError as exc:
            problems.append(exc.message)
            continue
        if glob.has_magic(entry):
            matches = sorted(p for p in glob.glob(str(target), recursive=True) if Path(p).is_file())
            if not matches:
                problems.append(f"no file matches {target}")
            base = fixed_prefix(target)
            matches, stray = leaving(entry, base or Path("/"), matches)
            problems += stray
            files += [(p, Path(p).relative_to(base).as_posix() if base else Path(p).name) for p in matches]
        elif target.is_dir():
            found = sorted(str(p) for p in target.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                problems.append(f"no image files in {target} (looked for {', '.join(IMAGE_SUFFIXES)})")
            found, stray = leaving(entry, target, found)
            problems += stray
            files += [(p, f"{Path(entry).name}/{Path(p).name}") for p in found]
        elif target.is_file():
            files.append((str(target), target.name))
        else:
            problems.append(f"image folder not found: {target}")
    return files, problems


def image_count(spec: InputSpec) -> int:
    batch = geometry(tuple(spec.shape or ()), spec.source["layout"])[0] if spec.shape else 1
    return len(spec.source["files"]) // max(1, batch)


def image_material(spec: InputSpec, digests: FileDigests) -> dict[str, Any]:
    src = spec.source
    return {
        "images": [{"name": shown, "sha256": digests(Path(path))} for path, shown in src["files"]],
        "preprocessing": {k: src[k] for k in PREPROCESSING},
    }


# -- at run time -------------------------------------------------------------------------------------------
def _open(path: str, channels: str) -> Any:
    """The decoded image, oriented, in the colour mode ``channels`` asks for (mode F for deep grayscale)."""
    from PIL import Image, ImageOps

    with Image.open(path) as img:
        img.load()
        oriented = ImageOps.exif_transpose(img) or img
    if oriented.mode in ("I", "F") or oriented.mode.startswith("I;16"):
        deep = oriented.convert("F") if oriented.mode != "F" else oriented
        return deep if channels == "GRAY" else ("deep-gray", deep)
    if oriented.mode == "P":  # a palette with transparency converts cleanly only through RGBA
        oriented = oriented.convert("RGBA")
    return oriented.convert("L" if channels == "GRAY" else "RGB")


def _resize(img: Any, src: Mapping[str, Any], height: int, width: int, what: str) -> Any:
    from PIL import Image

    resample = getattr(Image.Resampling, src["interpolation"].upper())
    resize = src["resize"]
    if resize == "none":
        if img.size != (width, height):
            raise UsageError(
                f"{what} is {img.size[0]}x{img.size[1]} (WxH); the input takes {width}x{height} and resize is none"
            )
        return img
    if resize == "stretch":
        return img.resize((width, height), resample) if img.size != (width, height) else img
    side = int(resize["shorter_side"])
    w, h = img.size
    ratio = side / min(w, h)
    nw, nh = max(width, round(w * ratio)), max(height, round(h * ratio))
    img = img.resize((nw, nh), resample) if (nw, nh) != (w, h) else img
    left, top = round((nw - width) / 2), round((nh - height) / 2)
    return img.crop((left, top, left + width, top + height))


def load_image(path: str, spec: InputSpec, what: str) -> np.ndarray:
    """One image preprocessed to (C, H, W) or (H, W, C) as the layout says, float64, before the dtype."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    src = spec.source
    assert spec.shape is not None
    _, _, height, width = geometry(tuple(spec.shape), src["layout"])
    try:
        img = _open(path, src["channels"])
        gray_to_rgb = isinstance(img, tuple)
        if gray_to_rgb:
            img = img[1]
        img = _resize(img, src, height, width, what)
        pixels = np.asarray(img, dtype=np.float64)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise UsageError(f"cannot read image {path} ({what}): {exc}") from None
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if gray_to_rgb:
        pixels = np.repeat(pixels, 3, axis=2)
    x = pixels * parse_scale(src["scale"])
    x = (x - np.asarray(src["mean"], dtype=np.float64)) / np.asarray(src["std"], dtype=np.float64)
    if src["channels"] == "BGR":
        x = x[:, :, ::-1]
    return np.transpose(x, (2, 0, 1)) if src["layout"] == "NCHW" else x


def image_reader(spec: InputSpec, samples: int) -> Callable[[int], np.ndarray]:
    import numpy as np

    from layerscope.pipelines.experiment.inputs import conform

    assert spec.shape is not None
    files = spec.source["files"]
    batch = geometry(tuple(spec.shape), spec.source["layout"])[0]
    if len(files) < samples * batch:
        raise UsageError(f"input {spec.name!r}: {len(files)} images for {samples} samples of {batch}")
    dtype = np.dtype(spec.dtype)

    def read(i: int) -> np.ndarray:
        what = f"input {spec.name!r}, sample {i}"
        images = [load_image(path, spec, what) for path, _ in files[i * batch : (i + 1) * batch]]
        x = np.stack(images) if len(spec.shape or ()) == 4 else images[0]
        if dtype.kind in "iu":
            x = np.rint(x)
            info = np.iinfo(dtype)
            if x.min() < info.min or x.max() > info.max:
                raise UsageError(
                    f"{what}: after scale, mean and std the values span [{x.min():g}, {x.max():g}], "
                    f"outside {dtype} ([{info.min}, {info.max}])"
                )
        return conform(x.astype(dtype), spec, what)

    return read


def peek(path: str) -> str | None:
    """Why an image file cannot be opened (its header only), or None when it can."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.verify()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        return str(exc) or type(exc).__name__
    return None
