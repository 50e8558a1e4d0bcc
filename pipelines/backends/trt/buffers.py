"""TensorRT data types <-> numpy, and the byte-level conversions the runtime needs (no GPU, no TensorRT).

TensorRT hands back raw device bytes; numpy has no BF16 or FP8, so those are read through ml_dtypes and
widened to FP32, which holds every BF16/FP8 value exactly (HDF5 has no BF16 type either). FP16 stays
FP16, as ONNX Runtime's typed FP16 runs return it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

# DataType member name -> (numpy / ml_dtypes name, bytes per element)
DTYPES: dict[str, tuple[str, float]] = {
    "FLOAT": ("float32", 4),
    "HALF": ("float16", 2),
    "BF16": ("bfloat16", 2),
    "FP8": ("float8_e4m3fn", 1),
    "INT8": ("int8", 1),
    "INT32": ("int32", 4),
    "INT64": ("int64", 8),
    "BOOL": ("bool", 1),
    "UINT8": ("uint8", 1),
    "INT4": ("int4", 0.5),
    "FP4": ("float4_e2m1fn", 0.5),
}
_WIDENED = {"bfloat16", "float8_e4m3fn"}  # returned as float32


def numpy_dtype(trt_name: str) -> Any:
    import numpy as np

    name = DTYPES[trt_name][0]
    if name in ("bfloat16", "float8_e4m3fn", "int4", "float4_e2m1fn"):
        import ml_dtypes

        return np.dtype(getattr(ml_dtypes, name))
    return np.dtype(name)


def nbytes(trt_name: str, shape: Sequence[int]) -> int:
    if trt_name not in DTYPES:
        raise ValueError(f"TensorRT data type {trt_name} is not supported for dumps")
    return math.ceil(DTYPES[trt_name][1] * math.prod(shape))


def from_bytes(raw: Any, trt_name: str, shape: Sequence[int]) -> np.ndarray:
    """Bytes (or a uint8 array) of a tensor of TensorRT type ``trt_name`` -> a numpy array of ``shape``."""
    import numpy as np

    if DTYPES.get(trt_name, ("", 0))[1] < 1:
        raise ValueError(f"TensorRT data type {trt_name} (packed sub-byte) is not supported for dumps")
    dtype = numpy_dtype(trt_name)
    data = np.frombuffer(bytes(raw), dtype=np.uint8)[: nbytes(trt_name, shape)]
    array = data.view(dtype).reshape(tuple(shape)).copy()
    if DTYPES[trt_name][0] in _WIDENED:
        return array.astype(np.float32)
    return array


def to_bytes(array: np.ndarray, trt_name: str) -> np.ndarray:
    """A C-contiguous array of the engine input's type (casts from what the input source produced)."""
    import numpy as np

    return np.ascontiguousarray(np.asarray(array).astype(numpy_dtype(trt_name), copy=False))
