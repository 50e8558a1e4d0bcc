"""The HDF5 dump: one file per run, one dataset per tensor, written one sample at a time.

Layout (``format = "layerscope-dump"``, ``format_version = 1``)::

    /                      attrs: format, format_version, run, backend, precision, execution, samples,
                                  model_digest, inputs (JSON: name -> digest material), tool_version,
                                  library versions (JSON), device, created
    /tensors/<escaped>     dataset (samples, *shape), dtype as the runtime returned it (float16 for a
                           FP16 layer, float32 otherwise); attrs: onnx_name, node, op_type,
                           index (network order), dtype_executed (format the value was computed or
                           rounded in), execution (native | emulated | fp32-fallback | pinned | ...), lowered_name, and
                           weights (JSON, only when the layer reads weights the format cannot hold:
                           counts clamped / raised / subnormal and the largest |w|), quant (JSON, quantized
                           runs: type, scale, zero_point, qmin, qmax of the tensor's Q/DQ pair)
    /prequant/<escaped>    quantized runs: the value before the Q/DQ pair (the /tensors dataset holds
                           the value after it, which is what the next layer reads)
    /inputs/<escaped>      dataset (samples, *shape): the inputs fed to the model; attrs: onnx_name

ONNX tensor names may contain "/" (and anything else), so dataset names escape "%" as "%25", "/" as
"%2F" and a leading "." as "%2E"; the original name is always the ``onnx_name`` attribute. Datasets are
contiguous and uncompressed unless compression is asked for (then chunked one sample per chunk).
Everything is plain HDF5: ``h5ls -r dump.h5`` and ``h5py`` read it without layerscope.

The root also carries ``tensor_index`` (JSON, written at close): every tensor's dataset name, attributes,
per-sample shape and stored dtype, and its /prequant datasets. It repeats what the datasets' attributes say so
that a reader lists thousands of tensors with one attribute read instead of several per tensor (dumps written
before it existed, or by another tool, are read through the attributes). Datasets and attributes are made
with h5py's low-level API: the high-level one costs ~0.25 ms per attribute in Python, most of an 8,000-tensor
dump's time; the file is the same.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from layerscope.runner.errors import StageError

if TYPE_CHECKING:
    import numpy as np

FORMAT = "layerscope-dump"
FORMAT_VERSION = 1
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
    ) -> None:
        import h5py

        self.samples = samples
        self._f = h5py.File(path, "w")
        for k, v in {"format": FORMAT, "format_version": FORMAT_VERSION, "samples": samples, **attrs}.items():
            self._f.attrs[k] = v if isinstance(v, (str, int, float)) else json.dumps(v)
        self._groups: dict[str, Any] = {
            "tensors": self._f.create_group("tensors"),
            "inputs": self._f.create_group("inputs"),
        }
        self._compression = None if compression == "none" else compression
        self._level = gzip_level if compression == "gzip" else None
        self._meta: dict[str, Mapping[str, Any]] = {}
        # (group, name) -> (low-level dataset id, per-sample shape, dtype, (memory space of a sample, file space))
        self._open: dict[tuple[str, str], tuple[Any, tuple[int, ...], Any, Any]] = {}
        self._index: dict[str, dict[str, Any]] = {}  # the tensor_index attribute, by group then dataset name

    def set_attr(self, key: str, value: str | int | float) -> None:
        """A file attribute known only once the samples are written (the digest of the inputs fed)."""
        self._f.attrs[key] = value

    def describe(self, onnx_name: str, meta: Mapping[str, Any]) -> None:
        """Attributes of a tensor's dataset (written when its first sample arrives)."""
        self._meta[onnx_name] = meta

    def _dataset(
        self, label: str, name: str, value: np.ndarray, attrs: Mapping[str, Any]
    ) -> tuple[Any, tuple[Any, Any]]:
        # h5py's name lookups and shape properties cost ~0.1 ms each: with thousands of small tensors they were
        # most of a dump's time, so the datasets created are kept with their per-sample shape and dtype.
        known = self._open.get((label, name))
        if known is not None:
            did, shape, dtype, spaces = known
            if shape != value.shape or dtype != value.dtype:
                raise StageError(
                    f"tensor {name!r} changed from {dtype}{list(shape)} to {value.dtype}{list(value.shape)} "
                    "between samples (a data-dependent shape); exclude it from layers"
                )
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
        did, (mspace, fspace) = self._dataset(label, name, value, attrs)
        fspace.select_hyperslab((sample, *(0 for _ in value.shape)), (1, *value.shape))
        did.write(mspace, fspace, np.ascontiguousarray(value).reshape(1, *value.shape))

    def write(self, sample: int, name: str, value: np.ndarray) -> None:
        self._write("tensors", sample, name, value, self._meta.get(name, {}))

    def write_prequant(self, sample: int, name: str, value: np.ndarray) -> None:
        """The value before its Q/DQ pair (quantized runs), under the same original tensor name."""
        self._write("prequant", sample, name, value, {"value": "before QuantizeLinear/DequantizeLinear"})

    def write_input(self, sample: int, name: str, value: np.ndarray) -> None:
        self._write("inputs", sample, name, value, {})

    def close(self) -> None:
        if self._f.id.valid and self._index:
            index = {"tensors": self._index.get("tensors", {}), "prequant": sorted(self._index.get("prequant", {}))}
            self._f.attrs[INDEX_ATTR] = json.dumps(index, separators=(",", ":"))
        self._open.clear()  # the handles go first: h5py must not meet them once the file is closed (a crash)
        self._f.close()

    def __enter__(self) -> DumpWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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


class DumpReader:
    def __init__(self, path: Path) -> None:
        import h5py

        try:
            self._f = h5py.File(path, "r")
        except OSError as exc:
            raise StageError(f"cannot open dump {path}: {exc}") from None
        if self._f.attrs.get("format") != FORMAT:
            raise StageError(f"{path} is not a layerscope dump")
        self.attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in self._f.attrs.items()}
        index = self.attrs.pop(INDEX_ATTR, None)
        self._index: dict[str, Any] | None = json.loads(index) if isinstance(index, str) else None
        self._layout: dict[str, tuple[tuple[int, ...], Any]] = {}  # dataset name -> (samples, *shape), dtype
        if self._index is not None:
            import numpy as np

            samples = int(self.attrs["samples"])
            self._layout = {
                key: ((samples, *(int(d) for d in e["shape"])), np.dtype(e["dtype"]))
                for key, e in self._index["tensors"].items()
            }
        self.samples = int(self.attrs["samples"])
        self._open: dict[tuple[str, str], Any] = {}
        self._ids: dict[tuple[str, str], Any] = {}
        self._groups: dict[str, Any] = {}

    def tensors(self) -> list[TensorMeta]:
        if self._index is not None:
            prequant = set(self._index.get("prequant", []))
            out = [
                _meta(key, e["attrs"], tuple(int(d) for d in e["shape"]), str(e["dtype"]), key in prequant)
                for key, e in self._index["tensors"].items()
            ]
        else:  # a dump without the index: its datasets' attributes, several reads per tensor
            pre = self._f.get("prequant")
            out = [
                _meta(key, ds.attrs, tuple(int(d) for d in ds.shape[1:]), str(ds.dtype), pre is not None and key in pre)
                for key, ds in self._f["tensors"].items()
            ]
        out.sort(key=lambda t: (t.index, t.onnx_name))
        return out

    def dataset(self, name: str, group: str = "tensors") -> Any:
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
                did = self._ids[(group, name)] = h5d.open(g.id, escape(name).encode())
            except KeyError:
                raise KeyError(f"no dataset {name!r} in /{group}") from None
        return did

    def read(self, name: str, sample: int, group: str = "tensors") -> np.ndarray:
        import numpy as np

        ds = self.dataset(name, group)
        # A 0-d per-sample tensor reads as a numpy scalar; callers (ONNX Runtime feeds, metrics) need an array.
        return np.asarray(ds[sample])

    def read_samples(self, name: str, group: str = "tensors") -> np.ndarray:
        """Every sample of a tensor, shape (samples, *shape), in one read: for small tensors, whose per-sample
        reads through h5py's indexing cost more than the data."""
        import numpy as np
        from h5py import h5s

        did = self._id(name, group)
        # The index knows the shape and dtype: asking the dataset costs ~0.1 ms each (h5py builds type and space
        # objects), about what the read costs.
        known = self._layout.get(escape(name)) if group == "tensors" else None  # /prequant: not in the index
        shape, dtype = known if known is not None else (did.shape, did.dtype)
        out = np.empty(shape, dtype)
        did.read(h5s.ALL, h5s.ALL, out)
        return out

    def input_names(self) -> list[str]:
        return [str(ds.attrs.get("onnx_name", unescape(k))) for k, ds in self._f["inputs"].items()]

    def json_attr(self, key: str) -> Any:
        value = self.attrs.get(key)
        return json.loads(value) if isinstance(value, str) and value[:1] in "{[" else value

    def close(self) -> None:
        self._open.clear()  # as in DumpWriter.close: the handles before the file
        self._ids.clear()
        self._groups.clear()
        self._f.close()

    def __enter__(self) -> DumpReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[TensorMeta]:
        return iter(self.tensors())
