"""The HDF5 dump: one file per run, written one sample at a time; small tensors packed, large ones a dataset each.

Layout (``format = "layerscope-dump"``, ``format_version = 2``)::

    /                      attrs: format, format_version, run, backend, precision, execution, samples,
                                  model_digest, inputs (JSON: name -> digest material), tool_version,
                                  library versions (JSON), device, created, tensor_index (JSON, below)
    /packed/<dtype>        dataset (samples, elements) of one dtype (float16, float32, int64, bool, ...): the
                           values of every small tensor of that dtype (at most PACK_ELEMENTS per sample),
                           flattened (C order) and concatenated in the order they were written; where each one
                           lies is in tensor_index
    /tensors/<escaped>     a larger tensor: dataset (samples, *shape), dtype as the runtime returned it (float16
                           for a FP16 layer, float32 otherwise); attrs: onnx_name, node, op_type,
                           index (network order), dtype_executed (format the value was computed or
                           rounded in), execution (native | emulated | fp32-fallback | pinned | ...), lowered_name, and
                           weights (JSON, only when the layer reads weights the format cannot hold:
                           counts clamped / raised / subnormal and the largest |w|), quant (JSON, quantized
                           runs: type, scale, zero_point, qmin, qmax of the tensor's Q/DQ pair)
    /prequant/<escaped>    quantized runs: the value before the Q/DQ pair (the tensor's value holds the value
                           after it, which is what the next layer reads); never packed
    /inputs/<escaped>      dataset (samples, *shape): the inputs fed to the model; attrs: onnx_name; never packed

``tensor_index`` is ``{"tensors": {<escaped name>: {"attrs": {...}, "shape": [...], "dtype": "float32",
"packed": <offset>}}, "prequant": [<escaped name>, ...]}``: every tensor's attributes (those a /tensors dataset
carries), per-sample shape and stored dtype; ``packed`` (packed tensors only) is the element offset of its
values in each row of /packed/<dtype>, so sample ``i`` of it is ``packed[dtype][i, offset:offset + size]``
reshaped to ``shape``. A reader lists thousands of tensors with one attribute read.

Why packed: HDF5 costs ~0.4 ms to create a dataset with its attributes and ~0.3 ms to open and read one; at
8,000 tensors of 64 values that was most of a dump's time and of compare's reads. A packed row is written once
per sample and dtype (the small tensors of a sample are kept until the next sample starts), and a packed tensor
is one slice of a read that serves many. Format 1 (every tensor a dataset, ``tensor_index`` optional) is read
as before: :class:`DumpReader` reads both.

ONNX tensor names may contain "/" (and anything else), so dataset names escape "%" as "%25", "/" as
"%2F" and a leading "." as "%2E"; the original name is always the ``onnx_name`` attribute. Datasets are
contiguous and uncompressed unless compression is asked for (then chunked one sample per chunk).
Everything is plain HDF5: ``h5ls -r dump.h5`` and ``h5py`` read it without layerscope. Datasets and
attributes are made with h5py's low-level API: the high-level one costs ~0.25 ms per attribute in Python;
the file is the same.
"""

from __future__ import annotations

import functools
import json
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from layerscope.runner.errors import StageError

if TYPE_CHECKING:
    import numpy as np

FORMAT = "layerscope-dump"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
# Tensors of at most this many elements per sample (compare's small-tensor bound) are packed.
PACK_ELEMENTS = 1 << 16
PACKED = "packed"
INDEX_ATTR = "tensor_index"


def escape(name: str) -> str:
    out = name.replace("%", "%25").replace("/", "%2F")
    return "%2E" + out[1:] if out.startswith(".") else out


def unescape(name: str) -> str:
    return re.sub(r"%(25|2F|2E)", lambda m: {"25": "%", "2F": "/", "2E": "."}[m.group(1)], name)


@dataclass(frozen=True)
class TensorMeta:
    onnx_name: str
    node: str
    op_type: str
    index: int
    dtype_executed: str
    execution: str
    shape: tuple[int, ...]  # per sample
    stored: str
    weights: dict[str, Any] | None = None  # weights the format cannot hold, read by this layer
    quant: dict[str, Any] | None = None  # quantized runs: type, scale, zero point of the tensor's Q/DQ pair
    has_prequant: bool = False  # the value before Q/DQ is in /prequant


class DumpWriter:
    def __init__(
        self,
        path: Path,
        *,
        samples: int,
        attrs: Mapping[str, Any],
        compression: str = "none",
        gzip_level: int = 4,
        pack_elements: int = PACK_ELEMENTS,
    ) -> None:
        import h5py

        self.samples = samples
        self._path = path
        self._f = h5py.File(path, "w")
        for k, v in {"format": FORMAT, "format_version": FORMAT_VERSION, "samples": samples, **attrs}.items():
            self._f.attrs[k] = v if isinstance(v, (str, int, float)) else json.dumps(v)
        self._groups: dict[str, Any] = {
            "tensors": self._f.create_group("tensors"),
            "inputs": self._f.create_group("inputs"),
        }
        self._compression = None if compression == "none" else compression
        self._level = gzip_level if compression == "gzip" else None
        self._pack_elements = pack_elements
        self._meta: dict[str, Mapping[str, Any]] = {}
        # (group, name) -> (low-level dataset id, per-sample shape, dtype, (memory space of a sample, file space))
        self._open: dict[tuple[str, str], tuple[Any, tuple[int, ...], Any, Any]] = {}
        self._index: dict[str, dict[str, Any]] = {}  # the tensor_index attribute, by group then dataset name
        # Packed tensors: per-sample shape and dtype as first seen; the small values of the sample being written
        # (a row is written when the next sample starts); once the first row is written, each packed tensor's
        # dtype and offset, and each dtype's packed dataset.
        self._small: dict[str, tuple[tuple[int, ...], Any]] = {}
        self._row: dict[str, np.ndarray] = {}
        self._row_sample: int | None = None
        self._placed: dict[str, tuple[str, int]] | None = None
        self._packed: dict[str, Any] = {}
        self._written: set[int] = set()

    def set_attr(self, key: str, value: str | int | float) -> None:
        """A file attribute known only once the samples are written (the digest of the inputs fed)."""
        self._f.attrs[key] = value

    def describe(self, onnx_name: str, meta: Mapping[str, Any]) -> None:
        """Attributes of a tensor (written when its first sample arrives, or with its packed row)."""
        self._meta[onnx_name] = meta

    def _dataset(
        self, label: str, name: str, value: np.ndarray, attrs: Mapping[str, Any]
    ) -> tuple[Any, tuple[Any, Any]]:
        # h5py's name lookups and shape properties cost ~0.1 ms each: with thousands of small tensors they were
        # most of a dump's time, so the datasets created are kept with their per-sample shape and dtype.
        known = self._open.get((label, name))
        if known is not None:
            did, shape, dtype, spaces = known
            _same_layout(name, (shape, dtype), value)
            return did, spaces
        from h5py import h5d, h5s, h5t

        key = escape(name)
        group = self._groups.get(label) or self._groups.setdefault(label, self._f.require_group(label))
        if self._compression and value.ndim > 0:
            ds = group.create_dataset(
                key,
                shape=(self.samples, *value.shape),
                dtype=value.dtype,
                chunks=(1, *value.shape),
                compression=self._compression,
                compression_opts=self._level,
            )
            did = ds.id
        else:  # contiguous: the low-level call makes the same dataset as create_dataset, without its Python work
            space = h5s.create_simple((self.samples, *value.shape))
            did = h5d.create(group.id, key.encode(), h5t.py_create(value.dtype), space)
        full = {"onnx_name": name, **attrs}
        for k, v in full.items():
            _attr(did, k, v)
        spaces = (h5s.create_simple((1, *value.shape)), did.get_space())
        self._open[(label, name)] = (did, value.shape, value.dtype, spaces)
        if label != "inputs":
            self._index.setdefault(label, {})[key] = {
                "attrs": dict(full),
                "shape": list(value.shape),
                "dtype": str(value.dtype),
            }
        return did, spaces

    def _write(self, label: str, sample: int, name: str, value: np.ndarray, attrs: Mapping[str, Any]) -> None:
        import numpy as np

        value = np.asarray(value)  # a 0-d value may arrive as a numpy scalar
        if label == "tensors" and self._pack(sample, name, value):
            return
        did, (mspace, fspace) = self._dataset(label, name, value, attrs)
        fspace.select_hyperslab((sample, *(0 for _ in value.shape)), (1, *value.shape))
        did.write(mspace, fspace, np.ascontiguousarray(value).reshape(1, *value.shape))

    def _pack(self, sample: int, name: str, value: np.ndarray) -> bool:
        """Keep a small tensor's value for its sample's packed row; False when the tensor is not packed (large, a
        type HDF5 cannot pack, or first seen after the packed layout was fixed)."""
        if sample != self._row_sample:
            self._flush()
            self._row_sample = sample
        known = self._small.get(name)
        if known is None:
            if (
                (self._placed is not None and name not in self._placed)
                or (self._pack_elements <= 0 or not 0 < value.size <= self._pack_elements)
                or (value.dtype.kind not in "biuf" or not value.dtype.isnative)
                or (("tensors", name) in self._open)
            ):
                return False
            self._small[name] = (value.shape, value.dtype)
        else:
            _same_layout(name, known, value)
        if sample in self._written:  # a sample already written (tensors written out of sample order): its slice
            self._write_slices(sample, {name: value})
        else:
            self._row[name] = value
        return True

    def _flush(self) -> None:
        """Write the kept row of small values: at the first row, fix each packed tensor's place."""
        import numpy as np

        if self._row_sample is None or not self._row:
            return
        if self._placed is None:
            self._place()
        sample, row = self._row_sample, self._row
        self._row = {}
        self._written.add(sample)
        assert self._placed is not None
        by_dtype: dict[str, list[str]] = {}
        for name, (dtype, _offset) in self._placed.items():
            by_dtype.setdefault(dtype, []).append(name)
        for dtype, names in by_dtype.items():
            if all(n in row for n in names):  # the usual case: the whole row in one write
                did = self._packed[dtype]
                data = np.concatenate([row[n].reshape(-1) for n in names])
                fspace = did.get_space()
                fspace.select_hyperslab((sample, 0), (1, data.size))
                did.write(_space((1, data.size)), fspace, data.reshape(1, -1))
            else:
                self._write_slices(sample, {n: row[n] for n in names if n in row})

    def _place(self) -> None:
        """The packed layout, from the first row: offsets in the order the tensors were written, one dataset per
        dtype, and their index entries."""
        from h5py import h5d, h5t

        placed: dict[str, tuple[str, int]] = {}
        sizes: dict[str, int] = {}
        for name in self._row:
            shape, dtype = self._small[name]
            key = dtype.name
            placed[name] = (key, sizes.get(key, 0))
            sizes[key] = sizes.get(key, 0) + _size(shape)
            self._index.setdefault("tensors", {})[escape(name)] = {
                "attrs": {"onnx_name": name, **self._meta.get(name, {})},
                "shape": list(shape),
                "dtype": str(dtype),
                "packed": placed[name][1],
            }
        group = self._f.require_group(PACKED)
        import numpy as np

        for key, total in sizes.items():
            if self._compression:
                self._packed[key] = group.create_dataset(
                    key,
                    shape=(self.samples, total),
                    dtype=np.dtype(key),
                    chunks=(1, total),
                    compression=self._compression,
                    compression_opts=self._level,
                ).id
            else:
                self._packed[key] = h5d.create(
                    group.id, key.encode(), h5t.py_create(np.dtype(key)), _space((self.samples, total))
                )
        # names first seen after this are not packed: drop the ones never written in the first row
        self._small = {n: v for n, v in self._small.items() if n in placed}
        self._placed = placed

    def _write_slices(self, sample: int, values: Mapping[str, np.ndarray]) -> None:
        """Packed values written one slice each (tensors written out of sample order)."""
        import numpy as np

        assert self._placed is not None
        for name, value in values.items():
            dtype, offset = self._placed[name]
            did = self._packed[dtype]
            fspace = did.get_space()
            fspace.select_hyperslab((sample, offset), (1, value.size))
            did.write(_space((1, value.size)), fspace, np.ascontiguousarray(value).reshape(1, -1))

    def write(self, sample: int, name: str, value: np.ndarray) -> None:
        self._write("tensors", sample, name, value, self._meta.get(name, {}))

    def write_prequant(self, sample: int, name: str, value: np.ndarray) -> None:
        """The value before its Q/DQ pair (quantized runs), under the same original tensor name."""
        self._write("prequant", sample, name, value, {"value": "before QuantizeLinear/DequantizeLinear"})

    def write_input(self, sample: int, name: str, value: np.ndarray) -> None:
        self._write("inputs", sample, name, value, {})

    def close(self) -> None:
        """Write the last packed row and the index, and close the file. HDF5 reports a write that fails while
        it flushes or closes (a full disk, ``ulimit -f``: the packed rows are written late) as a RuntimeError
        naming the errno; it is raised as the OSError it is, so that the disk-full message reaches the user."""
        error: BaseException | None = None
        try:
            if self._f.id.valid:
                self._flush()
                if self._index:
                    index = {
                        "tensors": self._index.get("tensors", {}),
                        "prequant": sorted(self._index.get("prequant", {})),
                    }
                    self._f.attrs[INDEX_ATTR] = json.dumps(index, separators=(",", ":"))
                self._f.flush()
        except (OSError, RuntimeError) as exc:
            error = exc
        try:  # the handles go first: h5py must not meet them once the file is closed (a crash)
            self._open.clear()
            self._packed.clear()
            self._row.clear()
            self._f.close()
        except (OSError, RuntimeError) as exc:
            error = error or exc
        if error is not None:
            raise _os_error(error, self._path) from error

    def __enter__(self) -> DumpWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _os_error(exc: BaseException, path: Path) -> BaseException:
    """``exc`` as an OSError when HDF5's message names the errno of a failed write (its RuntimeErrors do)."""
    if isinstance(exc, OSError) and exc.errno is not None:
        return exc
    found = re.search(r"errno = (\d+)", str(exc))
    return OSError(int(found.group(1)), str(exc).strip(), str(path)) if found else exc


def _same_layout(name: str, known: tuple[tuple[int, ...], Any], value: np.ndarray) -> None:
    shape, dtype = known
    if shape != value.shape or dtype != value.dtype:
        raise StageError(
            f"tensor {name!r} changed from {dtype}{list(shape)} to {value.dtype}{list(value.shape)} "
            "between samples (a data-dependent shape); exclude it from layers"
        )


def _size(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _space(shape: tuple[int, ...]) -> Any:
    from h5py import h5s

    return h5s.create_simple(shape)


def _attr(did: Any, key: str, value: Any) -> None:
    """An attribute as ``h5py``'s ``attrs[key] = value`` stores it (str as a variable-length UTF-8 string, int as
    int64, float as float64), with the low-level API."""
    import numpy as np
    from h5py import h5a

    data = np.array(value, dtype=_str_dtype()) if isinstance(value, str) else np.asarray(value)
    h5a.create(did, key.encode(), _h5type(data.dtype), _scalar()).write(data)


# h5py makes a new type and space object per call (~20 µs each, with its registry of live objects); an attribute
# needs the same few, so they are made once.
@functools.cache
def _str_dtype() -> Any:
    import h5py

    return h5py.string_dtype()


@functools.cache
def _h5type(dtype: Any) -> Any:
    from h5py import h5t

    return h5t.py_create(dtype, logical=True)


@functools.cache
def _scalar() -> Any:
    from h5py import h5s

    return h5s.create(h5s.SCALAR)


def _meta(key: str, a: Mapping[str, Any], shape: tuple[int, ...], stored: str, has_prequant: bool) -> TensorMeta:
    """A tensor's description from its dataset's attributes (read from the file or from ``tensor_index``)."""
    return TensorMeta(
        onnx_name=str(a.get("onnx_name", unescape(key))),
        node=str(a.get("node", "")),
        op_type=str(a.get("op_type", "")),
        index=int(a.get("index", -1)),
        dtype_executed=str(a.get("dtype_executed", stored)),
        execution=str(a.get("execution", "")),
        shape=shape,
        stored=stored,
        weights=json.loads(a["weights"]) if "weights" in a else None,
        quant=json.loads(a["quant"]) if "quant" in a else None,
        has_prequant=has_prequant,
    )


# A packed row of at most this many bytes is read whole and kept for the reads of its sample's other tensors;
# the rows kept at once stay under ROW_CACHE_BYTES.
ROW_BYTES = 64 << 20
ROW_CACHE_BYTES = 256 << 20


class DumpReader:
    """Reads a dump of format 1 or 2 (see the module doc): every reader of dumps goes through it."""

    def __init__(self, path: Path) -> None:
        import h5py
        import numpy as np

        try:
            self._f = h5py.File(path, "r")
        except OSError as exc:
            raise StageError(f"cannot open dump {path}: {exc}") from None
        if self._f.attrs.get("format") != FORMAT:
            raise StageError(f"{path} is not a layerscope dump")
        self.attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in self._f.attrs.items()}
        version = int(self.attrs.get("format_version", 1))
        if version not in READABLE_VERSIONS:
            raise StageError(f"{path} is a dump of format {version}, written by a newer layerscope than this one")
        index = self.attrs.pop(INDEX_ATTR, None)
        self._index: dict[str, Any] | None = json.loads(index) if isinstance(index, str) else None
        if self._index is None and PACKED in self._f:
            raise StageError(f"{path}: a dump with packed tensors but no tensor_index (damaged)")
        self.samples = int(self.attrs["samples"])
        # dataset name -> (samples, *shape), dtype, offset in /packed/<dtype> (None: a dataset of its own)
        self._layout: dict[str, tuple[tuple[int, ...], Any, int | None]] = {}
        if self._index is not None:
            self._layout = {
                key: ((self.samples, *(int(d) for d in e["shape"])), np.dtype(e["dtype"]), e.get("packed"))
                for key, e in self._index["tensors"].items()
            }
        self._open: dict[tuple[str, str], Any] = {}
        self._ids: dict[tuple[str, str], Any] = {}
        self._groups: dict[str, Any] = {}
        self._rows: dict[tuple[str, int], np.ndarray] = {}  # (dtype, sample) -> a packed row read whole
        self._rows_lock = threading.Lock()

    def tensors(self) -> list[TensorMeta]:
        if self._index is not None:
            prequant = set(self._index.get("prequant", []))
            out = [
                _meta(key, e["attrs"], tuple(int(d) for d in e["shape"]), str(e["dtype"]), key in prequant)
                for key, e in self._index["tensors"].items()
            ]
        else:  # a format-1 dump without the index: its datasets' attributes, several reads per tensor
            pre = self._f.get("prequant")
            out = [
                _meta(key, ds.attrs, tuple(int(d) for d in ds.shape[1:]), str(ds.dtype), pre is not None and key in pre)
                for key, ds in self._f["tensors"].items()
            ]
        out.sort(key=lambda t: (t.index, t.onnx_name))
        return out

    def _packed(self, name: str, group: str) -> tuple[tuple[int, ...], Any, int] | None:
        """Where a packed tensor lies: (samples, *shape), dtype, offset; None for a dataset of its own."""
        if group != "tensors":
            return None
        known = self._layout.get(escape(name))
        if known is None or known[2] is None:
            return None
        return known[0], known[1], int(known[2])

    def dataset(self, name: str, group: str = "tensors") -> Any:
        """The h5py dataset of a tensor stored alone (large tensors, /prequant, /inputs); a packed tensor has
        none: read it with :meth:`read` or :meth:`read_samples`."""
        if self._packed(name, group) is not None:
            raise KeyError(f"{name!r} is packed in /{PACKED} (dump format 2): it has no dataset of its own")
        ds = self._open.get((group, name))
        if ds is None:  # h5py's name lookup costs ~0.1 ms: thousands of small tensors are read many times
            import h5py

            ds = self._open[(group, name)] = h5py.Dataset(self._id(name, group))
        return ds

    def _id(self, name: str, group: str) -> Any:
        """The low-level handle of a dataset (h5py's Dataset object costs more to make than a small read)."""
        did = self._ids.get((group, name))
        if did is None:
            from h5py import h5d

            g = self._groups.get(group)
            if g is None:
                g = self._groups[group] = self._f[group]
            try:
                did = self._ids[(group, name)] = h5d.open(
                    g.id, name.encode() if group == PACKED else escape(name).encode()
                )
            except KeyError:
                raise KeyError(f"no dataset {name!r} in /{group}") from None
        return did

    def _columns(self, dtype: Any, start: int, stop: int, samples: tuple[int, int] | None = None) -> np.ndarray:
        """Elements [start, stop) of the rows of /packed/<dtype> (every sample, or samples [a, b)), one read."""
        import numpy as np

        did = self._id(dtype.name, PACKED)
        a, b = samples if samples is not None else (0, self.samples)
        out = np.empty((b - a, stop - start), dtype)
        if out.size:
            fspace = did.get_space()
            fspace.select_hyperslab((a, start), (b - a, stop - start))
            did.read(_space(out.shape), fspace, out)
        return out

    def _row(self, dtype: Any, sample: int) -> np.ndarray | None:
        """Sample ``sample``'s whole row of /packed/<dtype>, kept for the next reads; None when it is too large."""
        with self._rows_lock:  # readers share a DumpReader between threads (compare, attribution)
            row = self._rows.get((dtype.name, sample))
            if row is None:
                did = self._id(dtype.name, PACKED)
                total = int(did.shape[1])
                if total * dtype.itemsize > ROW_BYTES:
                    return None
                kept = sum(r.nbytes for r in self._rows.values())
                while self._rows and kept + total * dtype.itemsize > ROW_CACHE_BYTES:
                    kept -= self._rows.pop(next(iter(self._rows))).nbytes  # the oldest first
                row = self._rows[(dtype.name, sample)] = self._columns(dtype, 0, total, (sample, sample + 1))[0]
            return row

    def read(self, name: str, sample: int, group: str = "tensors") -> np.ndarray:
        import numpy as np

        packed = self._packed(name, group)
        if packed is not None:
            shape, dtype, offset = packed
            size = _size(shape[1:])
            row = self._row(dtype, sample)
            if row is not None:  # a copy: the row is kept for other reads, and a caller may change its value
                return row[offset : offset + size].reshape(shape[1:]).copy()
            return self._columns(dtype, offset, offset + size, (sample, sample + 1)).reshape(shape[1:])
        ds = self.dataset(name, group)
        # A 0-d per-sample tensor reads as a numpy scalar; callers (ONNX Runtime feeds, metrics) need an array.
        return np.asarray(ds[sample])

    def read_samples(self, name: str, group: str = "tensors") -> np.ndarray:
        """Every sample of a tensor, shape (samples, *shape), in one read: for small tensors, whose per-sample
        reads through h5py's indexing cost more than the data."""
        import numpy as np
        from h5py import h5s

        packed = self._packed(name, group)
        if packed is not None:
            shape, dtype, offset = packed
            return self._columns(dtype, offset, offset + _size(shape[1:])).reshape(shape)
        did = self._id(name, group)
        # The index knows the shape and dtype: asking the dataset costs ~0.1 ms each (h5py builds type and space
        # objects), about what the read costs.
        known = self._layout.get(escape(name)) if group == "tensors" else None  # /prequant: not in the index
        shape, dtype = (known[0], known[1]) if known is not None else (did.shape, did.dtype)
        out = np.empty(shape, dtype)
        did.read(h5s.ALL, h5s.ALL, out)
        return out

    def read_many(self, names: list[str]) -> list[np.ndarray]:
        """Every sample of each tensor (as :meth:`read_samples`), the packed ones of a dtype sliced from one read of
        the columns they span (where they are close together, as consecutive tensors are)."""
        out: dict[str, np.ndarray] = {}
        spans: dict[Any, list[tuple[str, tuple[int, ...], int]]] = {}
        for name in names:
            packed = self._packed(name, "tensors")
            if packed is None:
                out[name] = self.read_samples(name)
            else:
                spans.setdefault(packed[1], []).append((name, packed[0], packed[2]))
        for dtype, members in spans.items():
            start = min(offset for _, _, offset in members)
            stop = max(offset + _size(shape[1:]) for _, shape, offset in members)
            if stop - start > 2 * sum(_size(shape[1:]) for _, shape, _ in members) + 4096:
                for name, _, _ in members:  # scattered: a read each
                    out[name] = self.read_samples(name)
                continue
            block = self._columns(dtype, start, stop)
            for name, shape, offset in members:
                out[name] = block[:, offset - start : offset - start + _size(shape[1:])].reshape(shape)
        return [out[name] for name in names]

    def input_names(self) -> list[str]:
        return [str(ds.attrs.get("onnx_name", unescape(k))) for k, ds in self._f["inputs"].items()]

    def json_attr(self, key: str) -> Any:
        value = self.attrs.get(key)
        return json.loads(value) if isinstance(value, str) and value[:1] in "{[" else value

    def close(self) -> None:
        self._open.clear()  # as in DumpWriter.close: the handles before the file
        self._ids.clear()
        self._groups.clear()
        self._rows.clear()
        self._f.close()

    def __enter__(self) -> DumpReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[TensorMeta]:
        return iter(self.tensors())
