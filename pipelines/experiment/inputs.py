"""Input samples: seeded random tensors or arrays read from .npy / .npz / HDF5, one sample at a time.

Random sample ``i`` of an input comes from ``numpy.random.default_rng([seed, i])``, so it is the same
whatever the number of samples. Files hold samples along their first axis. An input's digest (part of the
dump key) is its generator parameters (with numpy's version, which owns the stream) or the file's bytes
and the array name inside it.
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


def input_material(spec: InputSpec, digests: FileDigests) -> dict[str, Any]:
    src = dict(spec.source)
    if "random" in src:
        from importlib.metadata import version

        numpy_minor = ".".join(version("numpy").split(".")[:2])
        draw = ".integers(low, high, endpoint=True)" if src["random"] == "uniform" and _integer(spec.dtype) else ""
        return {
            "shape": spec.shape,
            "dtype": spec.dtype,
            "source": src,
            "generator": f"numpy {numpy_minor} default_rng([seed, i]){draw}",
        }
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


@contextmanager
def _open_array(spec: InputSpec) -> Iterator[Any]:
    """The array-like (samples first) behind a file source, opened lazily (memory-mapped where possible)."""
    import numpy as np

    path = Path(spec.source["file"])
    try:
        if path.suffix == ".npy":
            yield np.load(path, mmap_mode="r", allow_pickle=False)
        elif path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                key = spec.source["key"]
                if key not in z.files:
                    raise UsageError(f"{path.name} has no array {key!r} (it has: {', '.join(z.files)})")
                yield z[key]
        else:
            import h5py

            with h5py.File(path, "r") as f:
                name = spec.source["dataset"]
                if name not in f or not isinstance(f[name], h5py.Dataset):
                    raise UsageError(f"{path.name} has no dataset {name!r}")
                yield f[name]
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read input file {path}: {exc}") from None


def probe_file(spec: InputSpec) -> tuple[int, tuple[int, ...]]:
    """(number of samples, shape of one sample) of a file source."""
    with _open_array(spec) as arr:
        if len(arr.shape) == 0:
            raise UsageError(f"{Path(spec.source['file']).name}: expected samples along the first axis, got a scalar")
        return int(arr.shape[0]), tuple(int(d) for d in arr.shape[1:])


@contextmanager
def sample_reader(spec: InputSpec, samples: int) -> Iterator[Any]:
    """A function i -> the i-th sample, checked against the spec's shape and dtype."""
    import numpy as np

    if "random" in spec.source:
        yield lambda i: _random_sample(spec, i)
        return
    with _open_array(spec) as arr:
        name = Path(spec.source["file"]).name
        if arr.shape[0] < samples:
            raise UsageError(f"{name} holds {arr.shape[0]} samples; the config asks for {samples}")
        if spec.shape is not None and tuple(arr.shape[1:]) != tuple(spec.shape):
            raise UsageError(f"{name}: samples have shape {list(arr.shape[1:])}, the config says {list(spec.shape)}")
        dtype = np.dtype(spec.dtype)

        def read(i: int) -> np.ndarray:
            value = np.asarray(arr[i])
            if value.dtype != dtype:
                if not np.can_cast(value.dtype, dtype, casting="same_kind"):
                    raise UsageError(f"{name}: {value.dtype} samples cannot be used as {dtype} input {spec.name!r}")
                value = value.astype(dtype)
            return np.ascontiguousarray(value)

        yield read
