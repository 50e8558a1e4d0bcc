"""The verdict-only statistics give compare's values bit for bit (the keys a verdict reads), with and without
numba, on float32 and float16 candidates, NaN/Inf, zeros, tensors of one chunk and of many."""

from __future__ import annotations

import numpy as np
import pytest

from layerscope.pipelines.metrics import stats
from layerscope.pipelines.metrics.stats import MetricConfig, TensorStats
from layerscope.pipelines.metrics.verdict import KEYS, VerdictStats


def _samples(size: int, dtype: type, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(2):
        r = rng.normal(size=size).astype(np.float32)
        x = (r + rng.normal(scale=0.05, size=size)).astype(dtype)
        r[:7] = [0.0, np.nan, np.inf, 1.0, 0.0, -np.inf, 2.0]
        x[:7] = [0.0, np.nan, 1.0, np.inf, 0.5, -np.inf, np.nan]
        out.append((r, x))
    return out


@pytest.mark.parametrize("numba", [True, False], ids=["numba", "numpy"])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("size", [100, 3 * (1 << 16) + 17])
@pytest.mark.parametrize("floor", [0.0, 1e-3])
def test_the_verdict_metrics_are_compares(monkeypatch, numba: bool, dtype: type, size: int, floor: float) -> None:
    if not numba:
        monkeypatch.setattr(stats, "_kernel", lambda: None)
        monkeypatch.setattr("layerscope.pipelines.metrics.verdict._kernel", lambda: None)
    config = MetricConfig(rel_error=0.1, abs_floor=floor)
    full, lean = TensorStats(config, threads=2), VerdictStats(config, threads=2)
    for r, x in _samples(size, dtype, seed=size):
        full.update(r, x)
        lean.update(r, x)
    expected = full.result()
    got = lean.result()
    assert list(got) == list(KEYS)
    assert got == {k: expected[k] for k in KEYS}  # the same floats, not close ones


def test_a_tensor_fails_already_once_too_many_elements_deviate() -> None:
    r = np.ones(100, np.float32)
    lean = VerdictStats(MetricConfig(rel_error=0.1))
    lean.update(r, r * np.where(np.arange(100) < 10, 2.0, 1.0).astype(np.float32))  # 10 of 100 deviate
    assert lean.fails_already(200, 0.04, allow_nonfinite=False)  # 10 > 4% of 200: whatever comes next
    assert not lean.fails_already(200, 0.05, allow_nonfinite=False)  # 10 of 200 could still pass
    nan = r.copy()
    nan[0] = np.nan
    broken = VerdictStats(MetricConfig(rel_error=0.1))
    broken.update(r, nan)
    assert broken.fails_already(1000, 0.5, allow_nonfinite=False)
    assert not broken.fails_already(1000, 0.5, allow_nonfinite=True)
