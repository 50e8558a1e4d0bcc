"""Streaming per-tensor comparison statistics (float64 accumulators, bounded memory).

``TensorStats.update(ref, cand)`` takes any number of blocks (samples, or slices of a sample); ``result()``
gives the metrics. The per-element work runs in one compiled parallel pass (:mod:`.kernel`, numba)
or, without numba, in numpy; both compute the same values. Definitions, per element with r = reference,
x = candidate:

* relative error ``|x - r| / max(|r|, abs_floor)``; 0 where x == r (0 vs 0 is no deviation, equal
  infinities too) or both are NaN; infinite where r == 0 != x (with abs_floor 0) or where exactly one
  side is non-finite (NaN vs number, inf vs finite, +inf vs -inf);
* **deviating**: relative error > ``rel_error`` (the seed's 10%); ``deviation_ratio`` = deviating / elements;
* abs error statistics (max, mean, RMSE), cosine similarity and SQNR over the elements where both sides
  are finite; SQNR = 10 log10(sum r^2 / sum (x - r)^2) dB (+inf when identical);
* relative error percentiles (p50, p99) from a histogram whose bins are the float's exponent and top 5
  mantissa bits (32 bins per octave, 2^-40 to 2^20): a reported percentile is the upper edge of its bin, at
  most 3.2% above the exact value; 0 and +inf are exact;
* NaN/Inf counted on each side, and ``nonfinite_introduced``: candidate NaN/Inf where the reference is finite;
* range risk of the reference against the candidate's format: values with 0 < |r| < smallest subnormal
  (they round to zero or to the smallest subnormal), in the subnormal range (< smallest normal, reduced
  precision), above the largest finite value (overflow to inf), plus exact zeros, min |r| > 0 and max |r|;
* quantized runs: reference values the tensor's Q/DQ pair clips (saturated) or rounds to zero.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

BLOCK = 1 << 22  # elements per block: bounds temporaries (numpy path) to a few tens of MB
COUNTS = (
    "elements",
    "deviating",
    "finite_pairs",
    "finite_rel",
    "rel_zero",
    "rel_inf",
    "ref_nan",
    "ref_inf",
    "cand_nan",
    "cand_inf",
    "nonfinite_introduced",
    "zeros",
    "below_subnormal",
    "subnormal",
    "overflow",
    "saturated",
    "zeroed",
    "infinite_errors",
)
SUMS = ("sum_abs", "sum_sq_err", "sum_rel", "dot", "ref_sq", "cand_sq")
_COUNT_AT = {name: i for i, name in enumerate(COUNTS)}  # a tuple's index() per lookup: 26 of them per result
_SUM_AT = {name: i for i, name in enumerate(SUMS)}

# Histogram bins from the bits of a positive float64: key = bits >> shift is monotone in the value, and
# with `mantissa_bits` of the mantissa kept each octave has 2^mantissa_bits bins.
REL_HIST = {"scheme": "binary", "mantissa_bits": 5, "min_exponent": -40, "max_exponent": 20}
ABS_HIST = {"scheme": "binary", "mantissa_bits": 2, "min_exponent": -150, "max_exponent": 130}


def _layout(h: dict[str, Any], underflow_bin: bool) -> tuple[int, int, int]:
    """(shift, key of the first bin, number of bins) of a binary histogram."""
    shift = 52 - int(h["mantissa_bits"])
    key0 = (int(h["min_exponent"]) + 1023) << int(h["mantissa_bits"])
    size = (int(h["max_exponent"]) - int(h["min_exponent"])) << int(h["mantissa_bits"])
    return shift, key0, size + (2 if underflow_bin else 0)


REL_LAYOUT = _layout(REL_HIST, underflow_bin=True)  # bin 0: below 2^-40; last bin: 2^20 and above
ABS_LAYOUT = _layout(ABS_HIST, underflow_bin=False)  # clipped at both ends (float32 values all fit)
# Since report schema version 2 a stored histogram leaves its layout out (written on every layer, 1.5 MB of an
# 8,000-layer report.json) and has the one of its name here; schemas/report.schema.json says so. Changing a
# layout therefore needs a new report schema version that writes it again.
HISTOGRAM_LAYOUTS: dict[str, dict[str, Any]] = {
    "rel_error": {**REL_HIST, "underflow_bin": True},
    "ref_abs": {**ABS_HIST, "underflow_bin": False},
}


def with_layout(hist: Mapping[str, Any], name: str) -> dict[str, Any]:
    """A stored histogram with its layout's keys: its own (schema version 1, or the log10 scheme of reports
    before 0.1, which has "min") or, where it has none, the layout of its name."""
    if "scheme" in hist or "min" in hist or name not in HISTOGRAM_LAYOUTS:
        return dict(hist)
    return {**HISTOGRAM_LAYOUTS[name], **hist}


def bin_key(values: np.ndarray, shift: int) -> np.ndarray:
    """Monotone integer keys of positive finite float64 values: exponent and top mantissa bits."""
    return (np.ascontiguousarray(values, dtype=np.float64).view(np.uint64) >> np.uint64(shift)).astype(np.int64)


def bin_bounds(hist: dict[str, Any], index: int) -> tuple[float, float]:
    """[lower, upper) of bin ``index`` of a stored histogram (binary scheme, or the log10 scheme of older
    reports)."""
    if hist.get("scheme") != "binary":  # reports written before 0.1: log10 bins, bin 0 below 10^min
        lo, bpd = float(hist["min"]), float(hist["bins_per_decade"])
        return (0.0 if index == 0 else 10 ** (lo + (index - 1) / bpd)), 10 ** (lo + index / bpd)
    mb = int(hist["mantissa_bits"])
    key0 = (int(hist["min_exponent"]) + 1023) << mb
    first = key0 + index - (1 if hist.get("underflow_bin", False) else 0)
    if hist.get("underflow_bin", False) and index == 0:
        return 0.0, _from_key(key0, mb)
    return _from_key(first, mb), _from_key(first + 1, mb)


def _from_key(key: int, mantissa_bits: int) -> float:
    return float(np.array([key << (52 - mantissa_bits)], dtype=np.uint64).view(np.float64)[0])


@dataclass(frozen=True)
class QuantParams:
    """A tensor's Q/DQ pair: ``q = clamp(round(x / scale) + zero_point, qmin, qmax)`` (int8) or the float8
    cast of ``x / scale`` saturating at ``qmax`` (float8_e4m3fn)."""

    type: str  # "int8" | "float8_e4m3fn"
    scale: float
    zero_point: float = 0.0
    qmin: float = -128
    qmax: float = 127


@dataclass(frozen=True)
class MetricConfig:
    rel_error: float = 0.10
    abs_floor: float = 0.0
    fmt_max: float | None = 65504.0
    fmt_smallest_normal: float | None = 6.103515625e-05
    fmt_smallest_subnormal: float | None = 5.960464477539063e-08
    quant: QuantParams | None = None  # quantized runs: count reference values the Q/DQ pair clips or zeroes

    def params(self) -> np.ndarray:
        use_range = self.fmt_max is not None and self.fmt_smallest_subnormal is not None
        q = self.quant
        return np.array(
            [
                self.rel_error,
                self.abs_floor,
                1.0 if use_range else 0.0,
                self.fmt_smallest_subnormal or 0.0,
                self.fmt_smallest_normal or 0.0,
                self.fmt_max or math.inf,
                0.0 if q is None else (1.0 if q.type == "int8" else 2.0),
                q.scale if q else 1.0,
                q.zero_point if q else 0.0,
                q.qmin if q else 0.0,
                q.qmax if q else 0.0,
            ],
            dtype=np.float64,
        )


def _kernel() -> Any:
    try:
        from layerscope.pipelines.metrics import kernel
    except ImportError:  # numba is not installed: the numpy path computes the same values
        return None
    return kernel


@dataclass
class TensorStats:
    config: MetricConfig = field(default_factory=MetricConfig)
    threads: int = 1
    use_kernel: bool = True
    counts: np.ndarray = field(default_factory=lambda: np.zeros(len(COUNTS), np.int64))
    sums: np.ndarray = field(default_factory=lambda: np.zeros(len(SUMS), np.float64))
    max_abs: float = 0.0
    max_rel: float = 0.0
    max_abs_ref: float = 0.0
    min_abs_nonzero: float = math.inf
    rel_hist: np.ndarray = field(default_factory=lambda: np.zeros(REL_LAYOUT[2], np.int64))
    abs_hist: np.ndarray = field(default_factory=lambda: np.zeros(ABS_LAYOUT[2], np.int64))

    def update(self, ref: np.ndarray, cand: np.ndarray) -> None:
        ref, cand = np.asarray(ref), np.asarray(cand)  # a 0-d sample may arrive as a numpy scalar
        if ref.shape != cand.shape:
            raise ValueError(f"shape mismatch: reference {ref.shape} vs candidate {cand.shape}")
        r_all, x_all = ref.reshape(-1), cand.reshape(-1)
        kernel = _kernel() if self.use_kernel else None
        params = self.config.params()
        for start in range(0, r_all.size, BLOCK):
            r, x = r_all[start : start + BLOCK], x_all[start : start + BLOCK]
            if kernel is not None:  # float16 is read through its bits, without a converted copy
                self._merge(*kernel.block(r, x, params, (*REL_LAYOUT, *ABS_LAYOUT), self.threads))
            else:
                self._merge(*_numpy_block(r, x, self.config))

    def _merge(
        self, counts: np.ndarray, sums: np.ndarray, ext: np.ndarray, rel_h: np.ndarray, abs_h: np.ndarray
    ) -> None:
        self.counts += counts
        self.sums += sums
        self.max_abs = max(self.max_abs, float(ext[0]))
        self.max_rel = max(self.max_rel, float(ext[1]))
        self.max_abs_ref = max(self.max_abs_ref, float(ext[2]))
        self.min_abs_nonzero = min(self.min_abs_nonzero, float(ext[3]))
        self.rel_hist += rel_h
        self.abs_hist += abs_h

    # -- mergeable: a tensor's samples accumulated apart (stages, workers) combine into the same statistics --
    def merge(self, other: TensorStats) -> TensorStats:
        """Add ``other``'s accumulators (the same tensor over other samples) to these; returns self. Counts and
        histograms add exactly; sums add in another order than one pass would (float64, last bits)."""
        if other.config != self.config:
            raise ValueError("cannot merge statistics computed with different metric settings")
        ext = np.array([other.max_abs, other.max_rel, other.max_abs_ref, other.min_abs_nonzero])
        self._merge(other.counts, other.sums, ext, other.rel_hist, other.abs_hist)
        return self

    def state(self) -> dict[str, Any]:
        """The accumulators as JSON-ready data (histograms sparse, non-finite floats as strings): what
        :meth:`from_state` needs, with the same metric settings, to merge or to compute the results."""
        return {
            "counts": dict(zip(COUNTS, (int(v) for v in self.counts), strict=True)),
            "sums": {k: _json_float(float(v)) for k, v in zip(SUMS, self.sums, strict=True)},
            "extremes": {
                "max_abs": _json_float(self.max_abs),
                "max_rel": _json_float(self.max_rel),
                "max_abs_ref": _json_float(self.max_abs_ref),
                "min_abs_nonzero": _json_float(self.min_abs_nonzero),
            },
            "rel_hist": sparse_counts(self.rel_hist),
            "abs_hist": sparse_counts(self.abs_hist),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any], config: MetricConfig, *, threads: int = 1) -> TensorStats:
        out = cls(config=config, threads=threads)
        out.counts = np.array([int(state["counts"][k]) for k in COUNTS], np.int64)
        out.sums = np.array([float(state["sums"][k]) for k in SUMS], np.float64)
        ext = state["extremes"]
        out.max_abs, out.max_rel = float(ext["max_abs"]), float(ext["max_rel"])
        out.max_abs_ref, out.min_abs_nonzero = float(ext["max_abs_ref"]), float(ext["min_abs_nonzero"])
        for name, hist in (("rel_hist", out.rel_hist), ("abs_hist", out.abs_hist)):
            for index, count in bin_counts(state[name]).items():
                hist[index] = count
        return out

    def count(self, name: str) -> int:
        return int(self.counts[_COUNT_AT[name]])

    def total(self, name: str) -> float:
        return float(self.sums[_SUM_AT[name]])

    # -- results ------------------------------------------------------------------------------------------
    def percentile(self, q: float, cumulative: np.ndarray | None = None) -> float | None:
        """Relative-error percentile over all elements (q in [0, 100]), from the histogram (``cumulative``: its
        running counts, when the caller has them)."""
        n = self.count("elements")
        if n == 0:
            return None
        rank = math.ceil(q / 100.0 * n)
        seen = self.count("rel_zero")
        if rank <= seen:
            return 0.0
        # the first bin at which the running count reaches the rank (one vectorised pass: ~2,000 bins)
        cum = np.cumsum(self.rel_hist) if cumulative is None else cumulative
        i = int(np.searchsorted(cum + seen, rank))
        if i >= self.rel_hist.size:
            return math.inf
        if i == self.rel_hist.size - 1:
            return self.max_rel  # above the histogram's top edge
        return bin_bounds(HISTOGRAM_LAYOUTS["rel_error"], i)[1]

    def result(
        self, *, histograms: bool = True, sparse: tuple[dict[str, Any], dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        """The tensor's metrics (report.json's ``metrics``); ``histograms=False`` leaves out the histograms, whose
        sparse form was most of a result's cost, for callers that do not keep them (attribution). ``sparse``:
        the relative-error and |reference| histograms' :func:`sparse_counts`, when the caller computed them
        for many tensors at once (:func:`sparse_counts_rows`)."""
        c, s = self.count, self.total
        n = c("elements")
        cum = np.cumsum(self.rel_hist)
        err = error_metrics(
            infinite=c("infinite_errors"),
            pairs=c("finite_pairs"),
            max_abs=self.max_abs,
            sums={k: s(k) for k in SUMS},
        )
        out: dict[str, Any] = {
            "elements": n,
            "deviating": c("deviating"),
            "deviation_ratio": c("deviating") / n if n else None,
            "max_abs_error": err["max_abs_error"],
            "mean_abs_error": err["mean_abs_error"],
            "rmse": err["rmse"],
            "max_rel_error": (math.inf if c("rel_inf") else self.max_rel) if n else None,
            "mean_rel_error": s("sum_rel") / c("finite_rel") if c("finite_rel") else None,
            "p50_rel_error": self.percentile(50, cum),
            "p99_rel_error": self.percentile(99, cum),
            "infinite_rel_error": c("rel_inf"),
            "infinite_errors": c("infinite_errors"),
            "cosine": err["cosine"],
            "sqnr_db": err["sqnr_db"],
            "ref_nan": c("ref_nan"),
            "ref_inf": c("ref_inf"),
            "cand_nan": c("cand_nan"),
            "cand_inf": c("cand_inf"),
            "nonfinite_introduced": c("nonfinite_introduced"),
            "range": {
                "zeros": c("zeros"),
                "below_smallest_subnormal": c("below_subnormal"),
                "subnormal": c("subnormal"),
                "overflow": c("overflow"),
                "min_abs_nonzero": self.min_abs_nonzero if self.min_abs_nonzero != math.inf else None,
                "max_abs": self.max_abs_ref,
            },
        }
        if histograms:
            out["histograms"] = {
                "rel_error": {
                    "zero": c("rel_zero"),
                    **(sparse[0] if sparse else sparse_counts(self.rel_hist)),
                    "inf": c("rel_inf"),
                },
                "ref_abs": {"zero": c("zeros"), **(sparse[1] if sparse else sparse_counts(self.abs_hist))},
            }
        if self.config.quant is not None:
            q = self.config.quant
            out["quant"] = {
                "type": q.type,
                "scale": q.scale,
                "zero_point": q.zero_point,
                "saturated": c("saturated"),
                "saturation_ratio": c("saturated") / n if n else 0.0,
                "zeroed": c("zeroed"),
                "zeroed_ratio": c("zeroed") / n if n else 0.0,
            }
        return out


def error_metrics(*, infinite: int, pairs: int, max_abs: float, sums: dict[str, float]) -> dict[str, Any]:
    """The error metrics of a tensor from its accumulators, by the rule for non-finite values (docs/metrics.md).

    * An element whose candidate became NaN/Inf where the reference is finite (or the other way round, or
      opposite infinities) is an **infinite error**: when there is one, max/mean abs error and RMSE are +inf,
      SQNR is -inf (infinite noise) and cosine is undefined (a vector with an infinite component has no
      direction).
    * Otherwise the metrics are over the finite pairs; without any (an empty tensor, or one whose elements are
      all matching NaN/Inf) they are undefined.
    * SQNR is +inf when the noise is zero (the candidate equals the reference) and -inf when the reference is
      all zeros but the candidate is not; cosine is 1 when both are all zeros and undefined when exactly one is.

    Undefined is None (null in report.json, "—" in every table), never a number that looks like a result.
    """
    keys = ("max_abs_error", "mean_abs_error", "rmse", "cosine", "sqnr_db")
    if infinite:
        return dict(zip(keys, (math.inf, math.inf, math.inf, None, -math.inf), strict=True))
    if pairs == 0:
        return dict.fromkeys(keys)
    ref_sq, cand_sq, err_sq = sums["ref_sq"], sums["cand_sq"], sums["sum_sq_err"]
    cos: float | None
    if ref_sq == 0 and cand_sq == 0:
        cos = 1.0
    elif ref_sq == 0 or cand_sq == 0:
        cos = None
    else:
        cos = max(-1.0, min(1.0, sums["dot"] / math.sqrt(ref_sq * cand_sq)))
    if err_sq == 0:
        sqnr = math.inf
    elif ref_sq == 0:
        sqnr = -math.inf
    else:
        sqnr = 10.0 * math.log10(ref_sq / err_sq)
    return {
        "max_abs_error": max_abs,
        "mean_abs_error": sums["sum_abs"] / pairs,
        "rmse": math.sqrt(err_sq / pairs),
        "cosine": cos,
        "sqnr_db": sqnr,
    }


def _json_float(value: float) -> float | str:
    """A float JSON can hold: inf, -inf and nan as strings (``float()`` reads them back)."""
    return value if math.isfinite(value) else str(value)


def sparse_counts(hist: np.ndarray) -> dict[str, Any]:
    """A histogram's counts as stored: ``{"start": first non-empty bin, "counts": [...]}`` where a negative
    entry -k stands for k empty bins. An 8,000-layer report.json spent 8.9 MB on its counts written as
    {"bin": count} (report schema 1); this form takes 4.1 MB (index/count pairs 4.3 MB, dense from the first
    to the last non-empty bin 8.2 MB)."""
    nz = np.flatnonzero(hist)
    if not nz.size:
        return {"start": 0, "counts": []}
    # Python ints from tolist(): indexing numpy element by element cost ~0.3 ms a histogram (thousands of layers)
    values = hist[nz].tolist()
    counts: list[int] = [values[0]]
    for gap, value in zip((np.diff(nz) - 1).tolist(), values[1:], strict=True):
        if gap:
            counts.append(-gap)
        counts.append(value)
    return {"start": int(nz[0]), "counts": counts}


def sparse_counts_rows(hists: np.ndarray) -> list[dict[str, Any]]:
    """:func:`sparse_counts` of each row of ``hists`` (histograms of one layout), the same dicts, computed for all
    rows at once: compare's batches of thousands of small tensors spent most of their results' time in it."""
    rows, cols = np.nonzero(hists)
    out: list[dict[str, Any]] = [{"start": 0, "counts": []} for _ in range(hists.shape[0])]
    if not rows.size:
        return out
    values = hists[rows, cols]
    first = np.ones(rows.size, bool)  # the first non-empty bin of its row: no run of empty bins before it
    first[1:] = rows[1:] != rows[:-1]
    gaps = np.zeros(rows.size, np.int64)
    gaps[1:] = cols[1:] - cols[:-1] - 1
    gaps[first] = 0
    marked = gaps > 0
    where = np.arange(rows.size) + np.cumsum(marked)  # each value's place, after the gap markers so far
    runs = np.empty(rows.size + int(marked.sum()), np.int64)
    runs[where] = values
    runs[where[marked] - 1] = -gaps[marked]
    starts = np.flatnonzero(first)
    ends = np.append(where[starts[1:] - 1] + 1, runs.size)
    begins = where[starts]
    flat = runs.tolist()
    for row, col, a, b in zip(
        rows[starts].tolist(), cols[starts].tolist(), begins.tolist(), ends.tolist(), strict=True
    ):
        out[row] = {"start": col, "counts": flat[a:b]}
    return out


def bin_counts(hist: Mapping[str, Any]) -> dict[int, int]:
    """{bin index: count} of the non-empty bins of a stored histogram: the run form of
    :func:`sparse_counts`, or the {"bin": count} object of reports before schema version 2."""
    stored = hist.get("counts") or {}
    if isinstance(stored, Mapping):
        return {int(k): int(v) for k, v in stored.items() if int(v)}
    out: dict[int, int] = {}
    i = int(hist.get("start", 0))
    for v in stored:
        if v < 0:
            i -= int(v)
        else:
            out[i] = int(v)
            i += 1
    return out


def _numpy_block(r_in: np.ndarray, x_in: np.ndarray, c: MetricConfig) -> tuple[Any, ...]:
    """The same accumulators as kernel.block, with numpy (used without numba, and as its reference)."""
    r = r_in.astype(np.float64)
    x = x_in.astype(np.float64)
    counts = dict.fromkeys(COUNTS, 0)
    sums = dict.fromkeys(SUMS, 0.0)
    ext = [0.0, 0.0, 0.0, math.inf]
    counts["elements"] = r.size
    r_nan, x_nan = np.isnan(r), np.isnan(x)
    r_fin, x_fin = np.isfinite(r), np.isfinite(x)
    counts["ref_nan"], counts["cand_nan"] = int(np.count_nonzero(r_nan)), int(np.count_nonzero(x_nan))
    counts["ref_inf"] = int(np.count_nonzero(~r_fin & ~r_nan))
    counts["cand_inf"] = int(np.count_nonzero(~x_fin & ~x_nan))
    counts["nonfinite_introduced"] = int(np.count_nonzero(r_fin & ~x_fin))
    both = r_fin & x_fin
    abs_r = np.abs(r)
    with np.errstate(divide="ignore", invalid="ignore"):
        diff = np.where(both, np.abs(x - r), 0.0)
        rel = diff / (np.maximum(abs_r, c.abs_floor) if c.abs_floor > 0 else abs_r)
    rel[diff == 0] = 0.0
    infinite = ~both & ~((x == r) | (r_nan & x_nan))
    rel[infinite] = np.inf
    counts["infinite_errors"] = int(np.count_nonzero(infinite))
    counts["deviating"] = int(np.count_nonzero(rel > c.rel_error))
    finite_rel = np.isfinite(rel)
    rel_f = rel[finite_rel]
    counts["rel_inf"] = r.size - rel_f.size
    counts["finite_rel"] = rel_f.size
    rel_hist = np.zeros(REL_LAYOUT[2], np.int64)
    if rel_f.size:
        sums["sum_rel"] = float(rel_f.sum())
        ext[1] = float(rel_f.max())
        positive = rel_f[rel_f > 0]
        counts["rel_zero"] = rel_f.size - positive.size
        shift, key0, size = REL_LAYOUT
        idx = np.clip(bin_key(positive, shift) - key0 + 1, 0, size - 1)
        rel_hist = np.bincount(idx, minlength=size).astype(np.int64)
    d_f, r_f, x_f = diff[both], r[both], x[both]
    counts["finite_pairs"] = d_f.size
    if d_f.size:
        sums.update(
            sum_abs=float(d_f.sum()),
            sum_sq_err=float(np.dot(d_f, d_f)),
            dot=float(np.dot(r_f, x_f)),
            ref_sq=float(np.dot(r_f, r_f)),
            cand_sq=float(np.dot(x_f, x_f)),
        )
        ext[0] = float(d_f.max())
    abs_hist = np.zeros(ABS_LAYOUT[2], np.int64)
    a = abs_r[r_fin]
    if a.size:
        ext[2] = float(a.max())
        nz = a[a > 0]
        counts["zeros"] = a.size - nz.size
        if nz.size:
            ext[3] = float(nz.min())
            if c.fmt_max is not None and c.fmt_smallest_subnormal is not None:
                counts["below_subnormal"] = int(np.count_nonzero(nz < c.fmt_smallest_subnormal))
                counts["subnormal"] = int(
                    np.count_nonzero((nz >= c.fmt_smallest_subnormal) & (nz < (c.fmt_smallest_normal or 0)))
                )
                counts["overflow"] = int(np.count_nonzero(nz > c.fmt_max))
            shift, key0, size = ABS_LAYOUT
            abs_hist = np.bincount(np.clip(bin_key(nz, shift) - key0, 0, size - 1), minlength=size).astype(np.int64)
        if c.quant is not None:
            counts["saturated"], counts["zeroed"] = _quant(r[r_fin], c.quant)
    return (
        np.array([counts[k] for k in COUNTS], np.int64),
        np.array([sums[k] for k in SUMS], np.float64),
        np.array(ext, np.float64),
        rel_hist,
        abs_hist,
    )


def _quant(r: np.ndarray, q: QuantParams) -> tuple[int, int]:
    """Reference values the tensor's Q/DQ pair clips (saturation) or rounds to zero."""
    x = r / q.scale
    if q.type == "int8":
        levels = np.rint(x) + q.zero_point  # round half to even, as QuantizeLinear does
        saturated = int(np.count_nonzero((levels > q.qmax) | (levels < q.qmin)))
        return saturated, int(np.count_nonzero((levels == q.zero_point) & (r != 0)))
    ax = np.abs(x)  # float8_e4m3fn: saturates at qmax; at or below half the smallest subnormal (2^-10): zero
    return int(np.count_nonzero(ax > q.qmax)), int(np.count_nonzero((ax <= 2.0**-10) & (r != 0)))
