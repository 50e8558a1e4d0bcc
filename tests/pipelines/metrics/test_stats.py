"""Metrics against a direct numpy computation on hand-made arrays (zeros, NaN, Inf, subnormals, overflow)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from layerscope.pipelines.metrics import stats as metrics
from layerscope.pipelines.metrics.stats import MetricConfig, TensorStats


def rel_of(a: float, b: float) -> bool:
    """True when a non-finite pair is a mismatch (not equal infinities, not both NaN)."""
    return not (a == b or (math.isnan(a) and math.isnan(b)))


def direct(ref: np.ndarray, cand: np.ndarray, t: float = 0.1, floor: float = 0.0) -> dict[str, float]:
    """The definitions of metrics.py written elementwise, the slow obvious way."""
    r = ref.astype(np.float64).ravel()
    x = cand.astype(np.float64).ravel()
    rel = np.empty_like(r)
    for i, (a, b) in enumerate(zip(r, x, strict=True)):
        if a == b or (math.isnan(a) and math.isnan(b)):
            rel[i] = 0.0
        elif not (math.isfinite(a) and math.isfinite(b)):
            rel[i] = math.inf
        else:
            denom = max(abs(a), floor)
            rel[i] = abs(b - a) / denom if denom > 0 else math.inf
    both = np.isfinite(r) & np.isfinite(x)
    d = np.abs(x[both] - r[both])
    rr, xx = r[both], x[both]
    # A value that became NaN/Inf on one side only is an infinite error (docs/metrics.md).
    infinite = sum(1 for a, b in zip(r, x, strict=True) if not (math.isfinite(a) and math.isfinite(b)) and rel_of(a, b))
    errors: dict[str, float | None]
    if infinite:
        errors = {"max_abs_error": math.inf, "mean_abs_error": math.inf, "rmse": math.inf, "cosine": None}
        errors["sqnr_db"] = -math.inf
    else:
        errors = {
            "max_abs_error": float(d.max()),
            "mean_abs_error": float(d.mean()),
            "rmse": float(np.sqrt(np.mean(d**2))),
            "cosine": float(rr @ xx / (np.linalg.norm(rr) * np.linalg.norm(xx))),
            "sqnr_db": float(10 * np.log10(np.sum(rr**2) / np.sum(d**2))),
        }
    return {
        "deviating": int(np.sum(rel > t)),
        "infinite_errors": infinite,
        **errors,
        "mean_rel_error": float(rel[np.isfinite(rel)].mean()),
        "max_finite_rel": float(rel[np.isfinite(rel)].max()),
        "infinite_rel_error": int(np.sum(np.isinf(rel))),
    }


@pytest.fixture(params=["kernel", "numpy"], autouse=True)
def implementation(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs against the compiled kernel and against the numpy implementation."""
    if request.param == "numpy":
        monkeypatch.setattr(metrics, "_kernel", lambda: None)
    elif metrics._kernel() is None:
        pytest.skip("numba is not installed")
    return str(request.param)


def compute(ref: np.ndarray, cand: np.ndarray, **kw: float) -> dict:
    s = TensorStats(MetricConfig(**kw), threads=2)
    s.update(ref, cand)
    return s.result()


def test_special_values_match_direct_computation() -> None:
    ref = np.array([0.0, 0.0, 1.0, -2.0, np.nan, np.nan, np.inf, np.inf, -np.inf, 3.0, 1e-9, 100.0, 5.0], np.float32)
    cand = np.array([0.0, 1e-3, 1.05, -2.5, np.nan, 1.0, np.inf, -np.inf, 7.0, np.nan, 0.0, 100.0, np.inf], np.float32)
    got = compute(ref, cand)
    want = direct(ref, cand)
    # deviating: 0 vs 1e-3 (inf), -2 vs -2.5 (25%), nan vs 1, inf vs -inf, -inf vs 7, 3 vs nan,
    # 1e-9 vs 0 (100%), 5 vs inf
    assert got["deviating"] == want["deviating"] == 8
    assert got["infinite_rel_error"] == want["infinite_rel_error"] == 6
    assert got["ref_nan"] == 2 and got["cand_nan"] == 2
    assert got["ref_inf"] == 3 and got["cand_inf"] == 3
    assert got["nonfinite_introduced"] == 2  # 3 -> nan, 5 -> inf
    # nan vs 1, inf vs -inf, -inf vs 7, 3 vs nan, 5 vs inf: infinite errors
    assert got["infinite_errors"] == want["infinite_errors"] == 5
    assert got["max_abs_error"] == got["mean_abs_error"] == got["rmse"] == math.inf
    assert got["sqnr_db"] == -math.inf and got["cosine"] is None
    assert got["mean_rel_error"] == pytest.approx(want["mean_rel_error"], rel=1e-12)
    assert got["max_rel_error"] == math.inf


def test_finite_values_match_direct_computation() -> None:
    ref = np.array([0.0, 0.0, 1.0, -2.0, np.nan, np.inf, -np.inf, 1e-9, 100.0, 5.0], np.float32)
    cand = np.array([0.0, 1e-3, 1.05, -2.5, np.nan, np.inf, -np.inf, 0.0, 100.0, 4.0], np.float32)
    got, want = compute(ref, cand), direct(ref, cand)
    assert got["infinite_errors"] == want["infinite_errors"] == 0  # matched NaN and equal infinities
    for k in ("max_abs_error", "mean_abs_error", "rmse", "cosine", "sqnr_db", "mean_rel_error"):
        assert got[k] == pytest.approx(want[k], rel=1e-12), k


def test_a_tensor_that_became_inf_is_an_infinite_error_not_a_perfect_match() -> None:
    ref = np.linspace(-3, 3, 64, dtype=np.float32)
    got = compute(ref, np.full_like(ref, np.inf))
    assert got["cosine"] is None and got["sqnr_db"] == -math.inf and got["max_abs_error"] == math.inf
    assert got["infinite_errors"] == got["nonfinite_introduced"] == 64 and got["deviation_ratio"] == 1.0
    part = ref.copy()
    part[:10] = np.inf  # partly Inf: the finite rest must not make it look good
    got = compute(ref, part)
    assert got["cosine"] is None and got["sqnr_db"] == -math.inf and got["max_abs_error"] == math.inf


def test_undefined_metrics_are_none() -> None:
    empty = np.zeros(0, np.float32)
    got = compute(empty, empty)
    for k in ("deviation_ratio", "max_abs_error", "cosine", "sqnr_db", "p50_rel_error", "mean_rel_error"):
        assert got[k] is None, k
    nan = np.full(4, np.nan, np.float32)
    got = compute(nan, nan)  # matching NaN: no error, but no finite pair to measure either
    assert got["deviating"] == 0 and got["cosine"] is None and got["sqnr_db"] is None
    got = compute(np.zeros(4, np.float32), np.ones(4, np.float32))  # a zero-norm reference
    assert got["cosine"] is None and got["sqnr_db"] == -math.inf


def test_zero_vs_zero_is_no_deviation_and_identical_is_perfect() -> None:
    a = np.zeros(10, np.float32)
    got = compute(a, a)
    assert got["deviating"] == 0 and got["cosine"] == 1.0 and got["sqnr_db"] == math.inf
    assert got["max_rel_error"] == 0.0 and got["p99_rel_error"] == 0.0


def test_abs_floor_makes_zero_references_finite() -> None:
    ref = np.array([0.0, 1.0], np.float32)
    cand = np.array([1e-4, 1.0], np.float32)
    assert compute(ref, cand)["deviating"] == 1
    floored = compute(ref, cand, abs_floor=1e-2)
    assert floored["deviating"] == 0 and floored["max_rel_error"] == pytest.approx(1e-2, rel=1e-4)


def test_fp16_range_risk_counts() -> None:
    ref = np.array([0.0, 1e-9, -3e-8, 5.96e-8, 1e-6, -6e-5, 6.2e-5, 1.0, 65504.0, 7e4, -1e5], np.float32)
    got = compute(ref, ref)["range"]
    assert got["zeros"] == 1
    assert got["below_smallest_subnormal"] == 3  # 1e-9, -3e-8, 5.96e-8 (just under 5.9604645e-8)
    assert got["subnormal"] == 2  # 1e-6, -6e-5
    assert got["overflow"] == 2  # 7e4, -1e5
    assert got["min_abs_nonzero"] == pytest.approx(1e-9)
    assert got["max_abs"] == pytest.approx(1e5)


def test_streaming_blocks_equal_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    ref = rng.standard_normal((3, 1000)).astype(np.float32)
    cand = (ref + rng.normal(0, 0.01, ref.shape)).astype(np.float16)
    whole = compute(ref, cand)
    monkeypatch.setattr(metrics, "BLOCK", 37)
    s = TensorStats(MetricConfig(), threads=2)
    for i in range(3):
        s.update(ref[i], cand[i])
    parts = s.result()
    for k in ("deviating", "elements", "infinite_rel_error"):
        assert parts[k] == whole[k]
    for k in ("max_abs_error", "rmse", "cosine", "sqnr_db", "mean_rel_error", "p50_rel_error", "p99_rel_error"):
        assert parts[k] == pytest.approx(whole[k], rel=1e-9), k


def test_percentiles_are_within_one_histogram_bin() -> None:
    rng = np.random.default_rng(2)
    ref = rng.uniform(1, 2, 100_000)
    rel_true = 10 ** rng.uniform(-6, 0, ref.size)
    cand = ref * (1 + rel_true)
    got = compute(ref, cand)
    for q, key in ((50, "p50_rel_error"), (99, "p99_rel_error")):
        exact = float(np.percentile(np.abs(cand - ref) / ref, q))
        one_bin = 1 + 2.0 ** -metrics.REL_HIST["mantissa_bits"]  # bins are 1/32 of an octave
        assert exact <= got[key] * (1 + 1e-9) <= exact * one_bin * (1 + 1e-9)


def test_fp16_candidate_against_numpy_seed_count() -> None:
    """The seed's measure on a realistic pair: count of |r - x| / |r| > 10% equals the plain numpy count."""
    rng = np.random.default_rng(3)
    ref = rng.standard_normal(200_000).astype(np.float32)
    cand = (ref.astype(np.float16) + np.float16(1e-3) * rng.standard_normal(ref.size).astype(np.float16)).astype(
        np.float16
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.abs(ref.astype(np.float64) - cand) / np.abs(ref.astype(np.float64))
    expected = int(np.sum(rel > 0.1))
    got = compute(ref, cand)
    assert got["deviating"] == expected
    assert got["deviation_ratio"] == pytest.approx(expected / ref.size)


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="shape mismatch"):
        TensorStats().update(np.zeros(3), np.zeros(4))


def test_kernel_and_numpy_agree_on_everything(implementation: str) -> None:
    if implementation == "numpy":
        pytest.skip("compares the kernel with numpy: runs once, in the kernel parametrization")
    rng = np.random.default_rng(7)
    ref = (rng.standard_normal(300_001) * 10.0 ** rng.uniform(-9, 6, 300_001)).astype(np.float32)
    ref[::97] = 0.0
    ref[5:9] = [np.nan, np.inf, -np.inf, 7e4]
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf and beyond-65504 values are part of the test
        cand = (ref + rng.normal(0, 1e-3, ref.size) * np.abs(ref)).astype(np.float16)
    from layerscope.pipelines.metrics.stats import QuantParams

    config = MetricConfig(abs_floor=1e-6, quant=QuantParams("int8", 0.05))
    fast = TensorStats(config, threads=2)
    fast.update(ref, cand)
    slow = TensorStats(config, use_kernel=False)
    slow.update(ref, cand)
    a, b = fast.result(), slow.result()
    assert a["histograms"] == b["histograms"]
    np.testing.assert_array_equal(fast.counts, slow.counts)
    np.testing.assert_allclose(fast.sums, slow.sums, rtol=1e-12)  # the finite pairs' sums, whatever the Inf rule
    for k in ("max_abs_error", "mean_abs_error", "rmse", "cosine", "sqnr_db", "mean_rel_error", "p50_rel_error"):
        assert a[k] == b[k] or a[k] == pytest.approx(b[k], rel=1e-12), k
    assert a["range"] == b["range"] and a["quant"] == b["quant"]


def test_results_do_not_depend_on_the_number_of_threads(implementation: str) -> None:
    if implementation == "numpy":
        pytest.skip("threads only apply to the kernel")
    rng = np.random.default_rng(8)
    ref = rng.standard_normal(500_000).astype(np.float32)
    cand = (ref + rng.normal(0, 1e-3, ref.size)).astype(np.float32)
    results = []
    for threads in (1, 2):
        s = TensorStats(MetricConfig(), threads=threads)
        s.update(ref, cand)
        results.append(s.result())
    assert results[0] == results[1]


def test_old_log10_histograms_still_read() -> None:
    from layerscope.pipelines.metrics.stats import bin_bounds

    old = {"min": -12, "bins_per_decade": 50}
    assert bin_bounds(old, 0) == (0.0, 1e-12)
    assert bin_bounds(old, 51) == pytest.approx((10**-11.02, 1e-11))


def test_statistics_accumulated_apart_merge_into_those_of_one_pass() -> None:
    """Samples split across stages or workers: merged accumulators give one pass's results (sums to rounding),
    through a JSON round trip of their state, non-finite values included."""
    import json

    rng = np.random.default_rng(3)
    ref = rng.normal(size=(6, 4000)).astype(np.float32)
    ref[1, :10] = 0.0
    cand = (ref + rng.normal(scale=1e-3, size=ref.shape)).astype(np.float16)
    cand[4, 5] = np.inf
    config = MetricConfig(rel_error=0.01)
    whole = TensorStats(config)
    for r, c in zip(ref, cand, strict=True):
        whole.update(r, c)
    parts = [TensorStats(config), TensorStats(config)]
    for i, (r, c) in enumerate(zip(ref, cand, strict=True)):
        parts[i % 2].update(r, c)
    states = [json.loads(json.dumps(p.state(), allow_nan=False)) for p in parts]
    merged = TensorStats.from_state(states[0], config).merge(TensorStats.from_state(states[1], config))
    a, b = whole.result(), merged.result()
    assert np.array_equal(whole.counts, merged.counts) and np.array_equal(whole.rel_hist, merged.rel_hist)
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], float):
            assert a[key] == pytest.approx(b[key], rel=1e-12, nan_ok=True), key
        else:
            assert a[key] == b[key], key
    assert b["infinite_errors"] == 1 and b["max_abs_error"] == math.inf
    with pytest.raises(ValueError, match="different metric settings"):
        merged.merge(TensorStats(MetricConfig(rel_error=0.1)))


def test_histogram_counts_are_stored_as_runs_and_read_in_either_form() -> None:
    from layerscope.pipelines.metrics.stats import bin_counts, sparse_counts

    rng = np.random.default_rng(3)
    for hist in (
        np.zeros(10, np.int64),
        np.array([0, 0, 5, 0], np.int64),
        np.array([1, 2, 0, 0, 0, 3, 0, 4], np.int64),
        rng.integers(0, 3, 500) * (rng.random(500) < 0.1),
    ):
        stored = sparse_counts(hist)
        expected = {int(i): int(hist[i]) for i in np.flatnonzero(hist)}
        assert bin_counts(stored) == expected
        assert bin_counts({"counts": {str(k): v for k, v in expected.items()}}) == expected  # schema version 1
    assert sparse_counts(np.array([0, 0, 1, 2, 0, 0, 0, 7], np.int64)) == {"start": 2, "counts": [1, 2, -3, 7]}
    assert sparse_counts(np.zeros(4, np.int64)) == {"start": 0, "counts": []}


def test_a_result_without_histograms_is_the_result_less_its_histograms() -> None:
    rng = np.random.default_rng(3)
    ref = rng.normal(size=500).astype(np.float32)
    ref[:3] = [0.0, np.inf, np.nan]
    cand = (ref + rng.normal(scale=1e-3, size=500)).astype(np.float16)
    for quant in (None, metrics.QuantParams("int8", 0.01)):
        s = TensorStats(MetricConfig(quant=quant))
        s.update(ref, cand)
        full = s.result()
        assert full.pop("histograms")["rel_error"]["zero"] >= 0
        assert list(s.result(histograms=False).items()) == list(full.items())  # the same keys, in the same order


def test_sparse_counts_rows_equal_one_row_at_a_time() -> None:
    """compare's batched form gives, row for row, the dicts sparse_counts gives (same Python ints, same order):
    empty rows, a bin at either edge, adjacent bins and gaps of every length."""
    from layerscope.pipelines.metrics.stats import sparse_counts, sparse_counts_rows

    rng = np.random.default_rng(3)
    hists = rng.integers(0, 4, size=(200, 64)) * (rng.random((200, 64)) < rng.random((200, 1)))
    hists[0] = 0
    hists[1] = 0
    hists[1, 0] = 5
    hists[2] = 0
    hists[2, -1] = 9
    hists[-1] = 0
    hists = hists.astype(np.int64)
    rows = sparse_counts_rows(hists)
    assert rows == [sparse_counts(h) for h in hists]
    assert all(type(v) is int for r in rows for v in r["counts"]) and all(type(r["start"]) is int for r in rows)
    assert sparse_counts_rows(np.zeros((3, 8), np.int64)) == [{"start": 0, "counts": []}] * 3
