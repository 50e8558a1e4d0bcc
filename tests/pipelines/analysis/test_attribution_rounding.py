"""Attribution rounds the reference's values into a cut layer's input format as the candidate's Cast would: on
ONNX Runtime for large FP32 to FP16 tensors, with numpy otherwise. Both must give the same bits, and the count of
values that overflowed must be exact whichever way it was reached."""

from __future__ import annotations

import numpy as np
import pytest

from layerscope.pipelines.analysis import attribution


def edge_values() -> np.ndarray:
    """Every FP16 value as FP32, the midpoints between neighbours (ties), one FP32 step either side of each,
    values around the largest finite FP16 and the subnormals, Inf, NaN, and random bit patterns."""
    every = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)
    finite = np.unique(every[np.isfinite(every)])
    mid = ((finite[:-1].astype(np.float64) + finite[1:]) / 2).astype(np.float32)
    bits = mid.view(np.uint32)
    special = np.array(
        [65504, 65519.996, 65520, 65536, 2**-25, 2**-24, 3 * 2**-26, np.inf, -np.inf, np.nan], np.float32
    )
    noise = np.random.default_rng(0).integers(0, 1 << 32, 1 << 20, dtype=np.uint64).astype(np.uint32).view(np.float32)
    return np.concatenate([every, mid, (bits + 1).view(np.float32), (bits - 1).view(np.float32), special, noise])


def numpy_rounding(value: np.ndarray, target: np.dtype) -> tuple[np.ndarray, int]:
    with np.errstate(over="ignore", invalid="ignore"):
        fed = value.astype(target)
    return fed, int(np.count_nonzero(np.isinf(fed) & np.isfinite(value)))


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    nan = np.isnan(a)
    return bool(np.array_equal(nan, np.isnan(b)) and np.array_equal(a.view(np.uint16)[~nan], b.view(np.uint16)[~nan]))


def test_onnx_runtime_rounds_fp32_to_fp16_as_numpy_does_bit_for_bit() -> None:
    value = edge_values()
    assert value.size >= attribution.ORT_CAST_ELEMENTS  # the ONNX Runtime path
    fed, overflowed = attribution.rounding(value, np.dtype(np.float16))
    expected, count = numpy_rounding(value, np.dtype(np.float16))
    assert fed.dtype == np.float16 and fed.shape == value.shape
    assert same_bits(fed, expected)
    assert overflowed == count > 0


@pytest.mark.parametrize("size", [6, 3 << 15])  # the numpy path and the ONNX Runtime path
@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([1.0, -65504.0, 65519.0], 0),  # at the limit: rounds to the largest finite value, no overflow counted
        ([1.0, 65520.0, -70000.0], 2),
        ([np.inf, 1.0, 0.0], 0),  # an Inf that was already there did not overflow
        ([np.nan, 1e6, 0.0], 1),  # a NaN does not hide an overflow
    ],
)
def test_overflow_is_counted_exactly(values: list[float], expected: int, size: int) -> None:
    value = np.resize(np.array(values, np.float32), size)
    fed, overflowed = attribution.rounding(value, np.dtype(np.float16))
    reference, count = numpy_rounding(value, np.dtype(np.float16))
    assert overflowed == count == expected * (size // 3)
    assert same_bits(fed, reference)


def test_other_conversions_are_numpy_s() -> None:
    value = np.array([1.5, 70000.0, -2.25], np.float64)
    fed, overflowed = attribution.rounding(value, np.dtype(np.float32))
    assert fed.dtype == np.float32 and overflowed == 0 and fed.tolist() == [1.5, 70000.0, -2.25]
    ints = np.array([1, 2, 3], np.int64)
    fed, overflowed = attribution.rounding(ints, np.dtype(np.int32))
    assert fed.dtype == np.int32 and overflowed == 0
