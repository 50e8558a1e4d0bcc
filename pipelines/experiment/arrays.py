"""Array files as input sources: ``.npy`` (memory-mapped), ``.npz`` (one named array) and HDF5 (one dataset).

Two layouts are accepted, told apart by rank alone, so neither is a guess:

* **samples first**: the array has one axis more than the input; sample ``i`` is ``array[i]``
  (``(N, 1, 3, 224, 224)`` for a ``[1, 3, 224, 224]`` input);
* **stacked along the batch axis**: the array has the input's rank; sample ``i`` is the ``i``-th slice of the
  input's batch size along the first axis (``(N, 3, 224, 224)`` for ``[1, 3, 224, 224]``: the natural layout of
  a stack of images; with a ``[8, ...]`` input, samples are rows 0-7, 8-15, ...).

Without a shape (neither in the config nor static in the model), the file's samples are its first axis.
Counts, shapes and dtypes are checked from the file's header at ``validate`` with the same messages as at run
time, each naming the file's actual shape.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from layerscope.runner.errors import UsageError

if TYPE_CHECKING:
    import numpy as np

    from layerscope.pipelines.experiment import InputSpec


@contextmanager
def open_array(spec: InputSpec) -> Iterator[Any]:
    """The array-like behind a file source, opened lazily (memory-mapped where possible)."""
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
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise UsageError(f"cannot read input file {path}: {exc}") from None


def header(spec: InputSpec) -> tuple[tuple[int, ...], np.dtype[Any]]:
    """(shape, dtype) of a file source without reading its data (an .npz member's header is read in place)."""
    import numpy as np

    path = Path(spec.source["file"])
    if path.suffix != ".npz":
        with open_array(spec) as arr:
            return tuple(int(d) for d in arr.shape), np.dtype(arr.dtype)
    try:
        with zipfile.ZipFile(path) as z:
            member = spec.source["key"] + ".npy"
            names = [n.removesuffix(".npy") for n in z.namelist()]
            if member not in z.namelist():
                raise UsageError(f"{path.name} has no array {spec.source['key']!r} (it has: {', '.join(names)})")
            with z.open(member) as f:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(f)
                elif version == (2, 0):
                    shape, _, dtype = np.lib.format.read_array_header_2_0(f)
                else:  # a newer header format: read the array instead
                    with open_array(spec) as arr:
                        return tuple(int(d) for d in arr.shape), np.dtype(arr.dtype)
                return tuple(int(d) for d in shape), np.dtype(dtype)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise UsageError(f"cannot read input file {path}: {exc}") from None


def layout(file_shape: tuple[int, ...], spec: InputSpec) -> tuple[int, int]:
    """(samples in the file, rows per sample along its first axis; 0 = samples first). Raises UsageError
    naming the file's shape when it is neither layout of the input's shape."""
    name = Path(spec.source["file"]).name
    if len(file_shape) == 0:
        raise UsageError(f"{name} holds a scalar; expected samples along the first axis")
    want = spec.shape
    if want is None:
        return file_shape[0], 0
    if len(file_shape) == len(want) + 1 and file_shape[1:] == tuple(want):
        return file_shape[0], 0
    if len(want) >= 1 and len(file_shape) == len(want) and file_shape[1:] == tuple(want[1:]) and want[0] > 0:
        if file_shape[0] % want[0]:
            raise UsageError(
                f"{name} has shape {list(file_shape)}: {file_shape[0]} rows along the batch axis is not a "
                f"multiple of the input's batch size {want[0]} (shape {list(want)})"
            )
        return file_shape[0] // want[0], want[0]
    raise UsageError(
        f"{name} has shape {list(file_shape)}, which holds neither samples of shape {list(want)} along a first "
        f"axis ([N, {', '.join(map(str, want))}]) nor a stack of them along the batch axis "
        f"([N, {', '.join(map(str, want[1:]))}])"
    )


def _enough(spec: InputSpec, shape: tuple[int, ...], samples: int) -> int:
    """Rows per sample (0: samples first), after checking that the file holds ``samples`` samples."""
    count, rows = layout(shape, spec)
    if count < samples:
        name = Path(spec.source["file"]).name
        raise UsageError(f"{name} holds {count} samples (shape {list(shape)}); the config asks for {samples}")
    return rows


def probe_array(spec: InputSpec, samples: int) -> tuple[int, ...]:
    """The shape of one sample of a file source, from its header, after checking its count and dtype."""
    import numpy as np

    shape, dtype = header(spec)
    _enough(spec, shape, samples)
    want = np.dtype(spec.dtype)
    if dtype != want and not np.can_cast(dtype, want, casting="same_kind"):
        name = Path(spec.source["file"]).name
        raise UsageError(
            f"{name} holds {dtype} values (shape {list(shape)}), which cannot be used as {want} input {spec.name!r}"
        )
    return tuple(spec.shape) if spec.shape is not None else shape[1:]


@contextmanager
def array_reader(spec: InputSpec, samples: int) -> Iterator[Any]:
    from layerscope.pipelines.experiment.inputs import conform

    name = Path(spec.source["file"]).name
    with open_array(spec) as arr:
        rows = _enough(spec, tuple(int(d) for d in arr.shape), samples)

        def read(i: int) -> np.ndarray:
            value = arr[i] if rows == 0 else arr[i * rows : (i + 1) * rows]
            return conform(value, spec, f"{name}, sample {i}")

        yield read
