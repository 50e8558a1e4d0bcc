"""Input samples, one at a time, from any source kind: seeded random tensors, array files (:mod:`.arrays`),
image folders (:mod:`.images`), Polygraphy data-loader scripts and ``--save-inputs`` JSON (:mod:`.feeds`).

Random sample ``i`` of an input comes from ``numpy.random.default_rng([seed, i])``, so it is the same
whatever the number of samples. An input's *material* (part of the dump and calibration keys, and recorded
in the report) is everything its values depend on: the generator's parameters (with numpy's version, which
owns the stream), a file's bytes and the array name in it, every image file's digest and the preprocessing,
a loader script's bytes and the files it declares it reads. Every reader checks each sample against the
config's shape and dtype and names the source and the sample when one does not fit.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from layerscope.runner.errors import UsageError
from layerscope.runner.hashing import FileDigests

if TYPE_CHECKING:
    import numpy as np

    from layerscope.pipelines.experiment import InputSpec


def source_kind(source: Any) -> str:
    """random | file | images | script."""
    for kind in ("random", "images", "script"):
        if kind in source:
            return kind
    return "file"


def input_material(spec: InputSpec, digests: FileDigests) -> dict[str, Any]:
    kind = source_kind(spec.source)
    src = dict(spec.source)
    if kind == "random":
        from layerscope.runner.versions import installed_version

        numpy_minor = ".".join((installed_version("numpy") or "missing").split(".")[:2])
        draw = ".integers(low, high, endpoint=True)" if src["random"] == "uniform" and _integer(spec.dtype) else ""
        return {
            "shape": spec.shape,
            "dtype": spec.dtype,
            "source": src,
            "generator": f"numpy {numpy_minor} default_rng([seed, i]){draw}",
        }
    if kind == "images":
        from layerscope.pipelines.experiment.images import image_material

        return {"shape": spec.shape, "dtype": spec.dtype, **image_material(spec, digests)}
    if kind == "script":
        from layerscope.pipelines.experiment.feeds import script_material

        return {"shape": spec.shape, "dtype": spec.dtype, **script_material(spec, digests)}
    path = Path(src.pop("file"))
    return {"shape": spec.shape, "dtype": spec.dtype, "file_sha256": digests(path), "name": path.name, **src}


def _integer(dtype: str) -> bool:
    return dtype.startswith(("int", "uint"))


def _random_sample(spec: InputSpec, i: int) -> np.ndarray:
    import numpy as np

    src = spec.source
    assert spec.shape is not None
    rng = np.random.default_rng([int(src["seed"]), i])
    dtype = np.dtype(spec.dtype)
    if src["random"] == "uniform" and dtype.kind in "iu":
        # Integers uniformly from [low, high], both ends included (rounding uniform floats would give the ends
        # half the probability of the values between).
        low, high = math.ceil(float(src["low"])), math.floor(float(src["high"]))
        return np.asarray(rng.integers(low, max(low, high), size=spec.shape, endpoint=True)).astype(dtype)
    if src["random"] == "normal":
        values = rng.standard_normal(spec.shape) * float(src["std"]) + float(src["mean"])
    else:
        values = rng.uniform(float(src["low"]), float(src["high"]), spec.shape)
    # np.asarray: for a 0-d input (shape []) rint, a comparison and astype return numpy scalars, which ONNX
    # Runtime and h5py refuse; a sample is always an array.
    if dtype.kind in "iu":
        return np.asarray(np.rint(values)).astype(dtype)
    if dtype.kind == "b":
        return np.asarray(
            values > (float(src["mean"]) if src["random"] == "normal" else (src["low"] + src["high"]) / 2)
        )
    return np.asarray(values).astype(dtype)


def conform(value: Any, spec: InputSpec, where: str) -> np.ndarray:
    """A sample as the input takes it: the config's shape exactly, cast to its dtype where numpy can do so
    without changing the kind of number (float64 -> float32 yes, float -> int no). ``where`` names the
    source and the sample in messages."""
    import numpy as np

    try:
        array = np.asarray(value)
    except Exception as exc:
        raise UsageError(f"{where}: input {spec.name!r} is not an array ({type(value).__name__}: {exc})") from None
    if array.dtype == object:
        raise UsageError(f"{where}: input {spec.name!r} is a {type(value).__name__}, not an array of numbers")
    if spec.shape is not None and tuple(array.shape) != tuple(spec.shape):
        raise UsageError(
            f"{where}: input {spec.name!r} has shape {list(array.shape)}, the config says {list(spec.shape)}"
        )
    dtype = np.dtype(spec.dtype)
    if array.dtype != dtype:
        if not np.can_cast(array.dtype, dtype, casting="same_kind"):
            raise UsageError(f"{where}: {array.dtype} values cannot be used as {dtype} input {spec.name!r}")
        array = array.astype(dtype)
    return np.ascontiguousarray(array)


def check_source(spec: InputSpec, samples: int) -> tuple[int, ...] | None:
    """The shape of one sample as far as it is known without running user code, after checking that the
    source holds ``samples`` samples of the input's shape and dtype (array files and Polygraphy JSON are
    opened; image folders were listed when the config was loaded; random sources are unbounded; scripts are
    not run). Raises UsageError with the same message the run would give."""
    kind = source_kind(spec.source)
    if kind != "file":
        return spec.shape
    if Path(spec.source["file"]).suffix == ".json":
        from layerscope.pipelines.experiment.feeds import probe_json

        return probe_json(spec, samples)
    from layerscope.pipelines.experiment.arrays import probe_array

    return probe_array(spec, samples)


def probe_file(spec: InputSpec) -> tuple[int, tuple[int, ...]]:
    """(samples, shape of one sample) of a file source, read from the file (array header, or the JSON)."""
    if Path(spec.source["file"]).suffix == ".json":
        from layerscope.pipelines.experiment.feeds import load_polygraphy_json

        feeds = load_polygraphy_json(Path(spec.source["file"]))
        first = feeds[0].get(spec.name) if feeds and isinstance(feeds[0], dict) else None
        return len(feeds), tuple(getattr(first, "shape", ()))
    from layerscope.pipelines.experiment.arrays import header, layout

    shape, _ = header(spec)
    count, _ = layout(shape, spec)
    return count, tuple(spec.shape) if spec.shape is not None else shape[1:]


@contextmanager
def sample_reader(spec: InputSpec, samples: int) -> Iterator[Any]:
    """A function i -> the i-th sample (i = 0, 1, ... in order), checked against the spec's shape and dtype."""
    kind = source_kind(spec.source)
    if kind == "random":
        yield lambda i: _random_sample(spec, i)
        return
    if kind == "images":
        from layerscope.pipelines.experiment.images import image_reader

        yield image_reader(spec, samples)
        return
    if kind == "script":
        from layerscope.pipelines.experiment.feeds import script_reader

        with script_reader(spec, samples) as read:
            yield read
        return
    if Path(spec.source["file"]).suffix == ".json":
        from layerscope.pipelines.experiment.feeds import json_reader

        yield json_reader(spec, samples)
        return
    from layerscope.pipelines.experiment.arrays import array_reader

    with array_reader(spec, samples) as read:
        yield read
