"""The numeric formats a run can ask for, with their limits.

Limits are written out (and checked against ``ml_dtypes.finfo`` by the tests) so that reading them costs
no import. ``native_on_cpu`` says whether ONNX Runtime's CPU provider has kernels for the format; where it
does not, runs are emulated: FP32 compute with every node's output rounded to the format.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Format:
    name: str  # as written in configs: fp16
    dtype: str  # numpy / ml_dtypes name: float16
    onnx_type: int  # TensorProto.DataType
    max: float | None
    smallest_normal: float | None
    smallest_subnormal: float | None
    native_on_cpu: bool
    available: bool
    unavailable_reason: str = ""

    @property
    def is_float(self) -> bool:
        return self.max is not None

    @property
    def quantized(self) -> bool:
        """Runs in this format are Q/DQ models made from calibrated scales."""
        return self.name in ("int8", "fp8")

    def limits(self) -> dict[str, float | None]:
        return {
            "max": self.max,
            "smallest_normal": self.smallest_normal,
            "smallest_subnormal": self.smallest_subnormal,
        }


# fmt: off
FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("fp32", "float32", 1, 3.4028234663852886e38, 1.1754943508222875e-38, 1.401298464324817e-45, True, True),
        Format("fp16", "float16", 10, 65504.0, 6.103515625e-05, 5.960464477539063e-08, True, True),
        Format("bf16", "bfloat16", 16, 3.3895313892515355e38, 1.1754943508222875e-38, 9.183549615799121e-41,
               False, True),
        Format("int8", "int8", 3, None, None, None, True, True),
        Format("fp8", "float8_e4m3fn", 17, 448.0, 0.015625, 0.001953125, False, True),
    )
}
# fmt: on


def numpy_dtype(name: str) -> Any:
    """The numpy dtype for a format or dtype name, ml_dtypes for the ones numpy lacks."""
    import numpy as np

    dtype = FORMATS[name].dtype if name in FORMATS else name
    if dtype in ("bfloat16", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz"):
        import ml_dtypes

        return np.dtype(getattr(ml_dtypes, dtype))
    return np.dtype(dtype)
