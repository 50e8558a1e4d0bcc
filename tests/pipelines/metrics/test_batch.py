"""Batched statistics of many small tensors equal one TensorStats.update per tensor and sample, bit for bit."""

from __future__ import annotations

import json

import numpy as np
import pytest

from layerscope.pipelines.metrics import stats as metrics
from layerscope.pipelines.metrics.batch import SMALL, many
from layerscope.pipelines.metrics.stats import MetricConfig, QuantParams, TensorStats


def one_by_one(r: np.ndarray, x: np.ndarray, config: MetricConfig) -> TensorStats:
    s = TensorStats(config, threads=2)
    for k in range(len(r)):
        s.update(r[k], x[k])
    return s


def same(a: TensorStats, b: TensorStats) -> None:
    # JSON of the results and of the accumulators: equal floats print equal, NaN/Inf included.
    assert json.dumps(a.result(), sort_keys=True) == json.dumps(b.result(), sort_keys=True)
    assert json.dumps(a.state(), sort_keys=True) == json.dumps(b.state(), sort_keys=True)
    assert a.sums.tobytes() == b.sums.tobytes() and a.min_abs_nonzero == b.min_abs_nonzero


def cases() -> list[tuple[np.ndarray, np.ndarray, MetricConfig]]:
    rng = np.random.default_rng(7)
    out = []
    for i in range(60):
        shape = [(3, 64), (1,), (5, 7, 3), (), (2, 2)][i % 5]
        r = rng.standard_normal((2, *shape)) * 10.0 ** rng.integers(-6, 4)
        x = r * (1 + rng.standard_normal(r.shape) * 0.05)
        if i % 7 == 0 and r.size > 2:  # zeros, NaN, Inf on either side
            r.flat[0], x.flat[1], x.flat[-1] = 0.0, np.nan, np.inf
        rdt, xdt = [(np.float32, np.float16), (np.float32, np.float32), (np.float16, np.float16)][i % 3]
        quant = QuantParams("int8", 0.05) if i % 11 == 0 else None
        config = MetricConfig(rel_error=0.05 + 0.01 * (i % 4), abs_floor=1e-3 * (i % 2), quant=quant)
        out.append((r.astype(rdt), x.astype(xdt), config))
    big = rng.standard_normal((2, SMALL + 5)).astype(np.float32)  # more than one chunk: not batched
    out.append((big, (big * 1.01).astype(np.float16), MetricConfig()))
    out.append((np.zeros((2, 0, 3), np.float32), np.zeros((2, 0, 3), np.float32), MetricConfig()))
    return out


@pytest.mark.parametrize("implementation", ["kernel", "numpy"])
def test_many_equals_one_tensor_at_a_time(implementation: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if implementation == "numpy":
        monkeypatch.setattr(metrics, "_kernel", lambda: None)
    elif metrics._kernel() is None:
        pytest.skip("numba is not installed")
    items = cases()
    for got, (r, x, config) in zip(many(items, threads=2), items, strict=True):
        same(got, one_by_one(r, x, config))
