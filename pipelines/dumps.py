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
"""

from __future__ import annotations

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
        self._tensors = self._f.create_group("tensors")
        self._inputs = self._f.create_group("inputs")
        self._compression = None if compression == "none" else compression
        self._level = gzip_level if compression == "gzip" else None
        self._meta: dict[str, Mapping[str, Any]] = {}
        self._open: dict[tuple[str, str], tuple[Any, tuple[int, ...], Any]] = {}

    def set_attr(self, key: str, value: str | int | float) -> None:
        """A file attribute known only once the samples are written (the digest of the inputs fed)."""
        self._f.attrs[key] = value

    def describe(self, onnx_name: str, meta: Mapping[str, Any]) -> None:
        """Attributes of a tensor's dataset (written when its first sample arrives)."""
        self._meta[onnx_name] = meta

    def _dataset(self, label: str, group: Any, name: str, value: np.ndarray, attrs: Mapping[str, Any]) -> Any:
        # h5py's name lookups and shape properties cost ~0.1 ms each: with thousands of small tensors they were
        # most of a dump's time, so the datasets created are kept with their per-sample shape and dtype.
        known = self._open.get((label, name))
        if known is not None:
            ds, shape, dtype = known
            if shape != value.shape or dtype != value.dtype:
                raise StageError(
                    f"tensor {name!r} changed from {dtype}{list(shape)} to {value.dtype}{list(value.shape)} "
                    "between samples (a data-dependent shape); exclude it from layers"
                )
            return ds
        key = escape(name)
        chunks = (1, *value.shape) if self._compression and value.ndim > 0 else None
        ds = group.create_dataset(
            key,
            shape=(self.samples, *value.shape),
            dtype=value.dtype,
            chunks=chunks,
            compression=self._compression,
            compression_opts=self._level,
        )
        ds.attrs["onnx_name"] = name
        for k, v in attrs.items():
            ds.attrs[k] = v
        self._open[(label, name)] = (ds, value.shape, value.dtype)
        return ds

    def write(self, sample: int, name: str, value: np.ndarray) -> None:
        self._dataset("tensors", self._tensors, name, value, self._meta.get(name, {}))[sample] = value

    def write_prequant(self, sample: int, name: str, value: np.ndarray) -> None:
        """The value before its Q/DQ pair (quantized runs), under the same original tensor name."""
        group = self._f.require_group("prequant")
        attrs = {"value": "before QuantizeLinear/DequantizeLinear"}
        self._dataset("prequant", group, name, value, attrs)[sample] = value

    def write_input(self, sample: int, name: str, value: np.ndarray) -> None:
        self._dataset("inputs", self._inputs, name, value, {})[sample] = value

    def close(self) -> None:
        self._open.clear()  # the handles go first: h5py must not meet them once the file is closed (a crash)
        self._f.close()

    def __enter__(self) -> DumpWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
        self.samples = int(self.attrs["samples"])
        self._open: dict[tuple[str, str], Any] = {}

    def tensors(self) -> list[TensorMeta]:
        out = []
        for key, ds in self._f["tensors"].items():
            a = ds.attrs
            out.append(
                TensorMeta(
                    onnx_name=str(a.get("onnx_name", unescape(key))),
                    node=str(a.get("node", "")),
                    op_type=str(a.get("op_type", "")),
                    index=int(a.get("index", -1)),
                    dtype_executed=str(a.get("dtype_executed", ds.dtype)),
                    execution=str(a.get("execution", "")),
                    shape=tuple(int(d) for d in ds.shape[1:]),
                    stored=str(ds.dtype),
                    weights=json.loads(a["weights"]) if "weights" in a else None,
                    quant=json.loads(a["quant"]) if "quant" in a else None,
                    has_prequant="prequant" in self._f and key in self._f["prequant"],
                )
            )
        out.sort(key=lambda t: (t.index, t.onnx_name))
        return out

    def dataset(self, name: str, group: str = "tensors") -> Any:
        ds = self._open.get((group, name))
        if ds is None:  # h5py's name lookup costs ~0.1 ms: thousands of small tensors are read many times
            ds = self._open[(group, name)] = self._f[group][escape(name)]
        return ds

    def read(self, name: str, sample: int, group: str = "tensors") -> np.ndarray:
        import numpy as np

        ds = self.dataset(name, group)
        # A 0-d per-sample tensor reads as a numpy scalar; callers (ONNX Runtime feeds, metrics) need an array.
        return np.asarray(ds[sample])

    def input_names(self) -> list[str]:
        return [str(ds.attrs.get("onnx_name", unescape(k))) for k, ds in self._f["inputs"].items()]

    def json_attr(self, key: str) -> Any:
        value = self.attrs.get(key)
        return json.loads(value) if isinstance(value, str) and value[:1] in "{[" else value

    def close(self) -> None:
        self._open.clear()  # as in DumpWriter.close: the handles before the file
        self._f.close()

    def __enter__(self) -> DumpReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[TensorMeta]:
        return iter(self.tensors())
