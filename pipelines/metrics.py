"""Streaming per-tensor comparison statistics (pure numpy, float64 accumulators, bounded memory).

``TensorStats.update(ref, cand)`` takes any number of blocks (samples, or slices of a sample); ``result()``
gives the metrics. Definitions, per element with r = reference, x = candidate:

* relative error ``|x - r| / max(|r|, abs_floor)``; 0 where x == r (0 vs 0 is no deviation, equal
  infinities too) or both are NaN; infinite where r == 0 != x (with abs_floor 0) or where exactly one
  side is non-finite (NaN vs number, inf vs finite, +inf vs -inf);
* **deviating**: relative error > ``rel_error`` (the seed's 10%); ``deviation_ratio`` = deviating / elements;
* abs error statistics (max, mean, RMSE), cosine similarity and SQNR over the elements where both sides
  are finite; SQNR = 10 log10(sum r^2 / sum (x - r)^2) dB (+inf when identical);
* relative error percentiles (p50, p99) from a log-spaced histogram with ``BINS_PER_DECADE`` bins per decade
  over [1e-12, 1e6): a reported percentile is the upper edge of its bin, i.e. within a factor
  10^(1/BINS_PER_DECADE) above the exact value (+-2.3% at 50 bins per decade); 0 and +inf are exact;
* NaN/Inf counted on each side, and ``nonfinite_introduced``: candidate NaN/Inf where the reference is finite;
* range risk of the reference against the candidate's format: values with 0 < |r| < smallest subnormal
  (they round to zero or to the smallest subnormal), in the subnormal range (< smallest normal, reduced
  precision), above the largest finite value (overflow to inf), plus exact zeros, min |r| > 0 and max |r|.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

BINS_PER_DECADE = 50
REL_LOG_MIN, REL_LOG_MAX = -12, 6
ABS_LOG_MIN, ABS_LOG_MAX = -45, 39
ABS_BINS_PER_DECADE = 4
BLOCK = 1 << 20  # elements per block: bounds temporaries to a few tens of MB


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


@dataclass
class TensorStats:
    config: MetricConfig = field(default_factory=MetricConfig)
    elements: int = 0
    deviating: int = 0
    finite_pairs: int = 0
    sum_abs: float = 0.0
    sum_sq_err: float = 0.0
    max_abs: float = 0.0
    sum_rel: float = 0.0
    finite_rel: int = 0
    max_rel: float = 0.0
    rel_zero: int = 0
    rel_inf: int = 0
    dot: float = 0.0
    ref_sq: float = 0.0
    cand_sq: float = 0.0
    ref_nan: int = 0
    ref_inf: int = 0
    cand_nan: int = 0
    cand_inf: int = 0
    nonfinite_introduced: int = 0
    zeros: int = 0
    below_subnormal: int = 0
    subnormal: int = 0
    overflow: int = 0
    min_abs_nonzero: float = math.inf
    max_abs_ref: float = 0.0
    saturated: int = 0
    zeroed: int = 0
    rel_hist: np.ndarray = field(
        default_factory=lambda: np.zeros((REL_LOG_MAX - REL_LOG_MIN) * BINS_PER_DECADE + 2, np.int64)
    )
    abs_hist: np.ndarray = field(
        default_factory=lambda: np.zeros((ABS_LOG_MAX - ABS_LOG_MIN) * ABS_BINS_PER_DECADE, np.int64)
    )

    def update(self, ref: np.ndarray, cand: np.ndarray) -> None:
        if ref.shape != cand.shape:
            raise ValueError(f"shape mismatch: reference {ref.shape} vs candidate {cand.shape}")
        r_all = ref.reshape(-1)
        x_all = cand.reshape(-1)
        for start in range(0, r_all.size, BLOCK):
            self._block(r_all[start : start + BLOCK], x_all[start : start + BLOCK])

    def _block(self, r_in: np.ndarray, x_in: np.ndarray) -> None:
        c = self.config
        r = r_in.astype(np.float64)
        x = x_in.astype(np.float64)
        n = r.size
        self.elements += n
        r_nan, x_nan = np.isnan(r), np.isnan(x)
        r_fin, x_fin = np.isfinite(r), np.isfinite(x)
        self.ref_nan += int(np.count_nonzero(r_nan))
        self.cand_nan += int(np.count_nonzero(x_nan))
        self.ref_inf += int(np.count_nonzero(~r_fin & ~r_nan))
        self.cand_inf += int(np.count_nonzero(~x_fin & ~x_nan))
        self.nonfinite_introduced += int(np.count_nonzero(r_fin & ~x_fin))
        both = r_fin & x_fin
        all_finite = bool(both.all())

        abs_r = np.abs(r)
        with np.errstate(divide="ignore", invalid="ignore"):
            diff = np.abs(x - r) if all_finite else np.where(both, np.abs(x - r), 0.0)
            rel = diff / (np.maximum(abs_r, c.abs_floor) if c.abs_floor > 0 else abs_r)
        rel[diff == 0] = 0.0  # equal values (incl. 0 vs 0); also zeroes the non-finite slots set above
        if not all_finite:
            equal = (x == r) | (r_nan & x_nan)
            rel[~both & ~equal] = np.inf
        self.deviating += int(np.count_nonzero(rel > c.rel_error))

        finite_rel = np.isfinite(rel)
        n_finite_rel = int(np.count_nonzero(finite_rel))
        self.rel_inf += n - n_finite_rel
        rel_f = rel if n_finite_rel == n else rel[finite_rel]
        if rel_f.size:
            self.sum_rel += float(rel_f.sum())
            self.max_rel = max(self.max_rel, float(rel_f.max()))
            self.finite_rel += rel_f.size
            positive = rel_f[rel_f > 0]
            self.rel_zero += rel_f.size - positive.size
            if positive.size:
                logs = np.log10(positive)
                idx = np.floor((logs - REL_LOG_MIN) * BINS_PER_DECADE).astype(np.int64) + 1
                np.clip(idx, 0, self.rel_hist.size - 1, out=idx)
                self.rel_hist += np.bincount(idx, minlength=self.rel_hist.size)

        d_f = diff if all_finite else diff[both]
        r_f = r if all_finite else r[both]
        x_f = x if all_finite else x[both]
        self.finite_pairs += d_f.size
        if d_f.size:
            self.sum_abs += float(d_f.sum())
            self.sum_sq_err += float(np.dot(d_f, d_f))
            self.max_abs = max(self.max_abs, float(d_f.max()))
            self.dot += float(np.dot(r_f, x_f))
            self.ref_sq += float(np.dot(r_f, r_f))
            self.cand_sq += float(np.dot(x_f, x_f))

        a = abs_r if all_finite else abs_r[r_fin]
        if a.size:
            nz = a[a > 0]
            self.zeros += a.size - nz.size
            self.max_abs_ref = max(self.max_abs_ref, float(a.max()))
            if nz.size:
                self.min_abs_nonzero = min(self.min_abs_nonzero, float(nz.min()))
                if c.fmt_smallest_subnormal is not None:
                    self.below_subnormal += int(np.count_nonzero(nz < c.fmt_smallest_subnormal))
                if c.fmt_smallest_normal is not None and c.fmt_smallest_subnormal is not None:
                    self.subnormal += int(
                        np.count_nonzero((nz >= c.fmt_smallest_subnormal) & (nz < c.fmt_smallest_normal))
                    )
                if c.fmt_max is not None:
                    self.overflow += int(np.count_nonzero(nz > c.fmt_max))
                idx = np.floor((np.log10(nz) - ABS_LOG_MIN) * ABS_BINS_PER_DECADE).astype(np.int64)
                np.clip(idx, 0, self.abs_hist.size - 1, out=idx)
                self.abs_hist += np.bincount(idx, minlength=self.abs_hist.size)
        if c.quant is not None:
            self._quant(r if all_finite else r[r_fin], c.quant)

    def _quant(self, r: np.ndarray, q: QuantParams) -> None:
        """Reference values the tensor's Q/DQ pair clips (saturation) or rounds to zero."""
        x = r / q.scale
        if q.type == "int8":
            levels = np.rint(x) + q.zero_point  # round half to even, as QuantizeLinear does
            self.saturated += int(np.count_nonzero((levels > q.qmax) | (levels < q.qmin)))
            self.zeroed += int(np.count_nonzero((levels == q.zero_point) & (r != 0)))
        else:  # float8_e4m3fn: saturates at qmax; below half the smallest subnormal (2^-10) rounds to zero
            ax = np.abs(x)
            self.saturated += int(np.count_nonzero(ax > q.qmax))
            self.zeroed += int(np.count_nonzero((ax <= 2.0**-10) & (r != 0)))

    # -- results ------------------------------------------------------------------------------------------
    def percentile(self, q: float) -> float:
        """Relative-error percentile over all elements (q in [0, 100]), from the histogram."""
        if self.elements == 0:
            return math.nan
        rank = math.ceil(q / 100.0 * self.elements)
        if rank <= self.rel_zero:
            return 0.0
        seen = self.rel_zero
        for i, count in enumerate(self.rel_hist):
            seen += int(count)
            if seen >= rank:
                if i == self.rel_hist.size - 1:
                    return self.max_rel  # above the histogram's top edge
                return float(10 ** (REL_LOG_MIN + i / BINS_PER_DECADE))
        return math.inf

    def result(self) -> dict[str, Any]:
        n = self.elements
        cos: float
        if self.ref_sq == 0 and self.cand_sq == 0:
            cos = 1.0
        elif self.ref_sq == 0 or self.cand_sq == 0:
            cos = 0.0
        else:
            cos = self.dot / math.sqrt(self.ref_sq * self.cand_sq)
        if self.sum_sq_err == 0:
            sqnr = math.inf
        elif self.ref_sq == 0:
            sqnr = -math.inf
        else:
            sqnr = 10.0 * math.log10(self.ref_sq / self.sum_sq_err)
        out: dict[str, Any] = {
            "elements": n,
            "deviating": self.deviating,
            "deviation_ratio": self.deviating / n if n else 0.0,
            "max_abs_error": self.max_abs,
            "mean_abs_error": self.sum_abs / self.finite_pairs if self.finite_pairs else math.nan,
            "rmse": math.sqrt(self.sum_sq_err / self.finite_pairs) if self.finite_pairs else math.nan,
            "max_rel_error": math.inf if self.rel_inf else self.max_rel,
            "mean_rel_error": self.sum_rel / self.finite_rel if self.finite_rel else math.nan,
            "p50_rel_error": self.percentile(50),
            "p99_rel_error": self.percentile(99),
            "infinite_rel_error": self.rel_inf,
            "cosine": max(-1.0, min(1.0, cos)),
            "sqnr_db": sqnr,
            "ref_nan": self.ref_nan,
            "ref_inf": self.ref_inf,
            "cand_nan": self.cand_nan,
            "cand_inf": self.cand_inf,
            "nonfinite_introduced": self.nonfinite_introduced,
            "range": {
                "zeros": self.zeros,
                "below_smallest_subnormal": self.below_subnormal,
                "subnormal": self.subnormal,
                "overflow": self.overflow,
                "min_abs_nonzero": self.min_abs_nonzero if self.min_abs_nonzero != math.inf else None,
                "max_abs": self.max_abs_ref,
            },
            "histograms": {
                "rel_error_log10": {
                    "min": REL_LOG_MIN,
                    "bins_per_decade": BINS_PER_DECADE,
                    "zero": self.rel_zero,
                    "counts": _sparse(self.rel_hist),
                    "inf": self.rel_inf,
                },
                "ref_abs_log10": {
                    "min": ABS_LOG_MIN,
                    "bins_per_decade": ABS_BINS_PER_DECADE,
                    "zero": self.zeros,
                    "counts": _sparse(self.abs_hist),
                },
            },
        }
        if self.config.quant is not None:
            q = self.config.quant
            out["quant"] = {
                "type": q.type,
                "scale": q.scale,
                "zero_point": q.zero_point,
                "saturated": self.saturated,
                "saturation_ratio": self.saturated / n if n else 0.0,
                "zeroed": self.zeroed,
                "zeroed_ratio": self.zeroed / n if n else 0.0,
            }
        return out


def _sparse(hist: np.ndarray) -> dict[str, int]:
    """Non-empty bins only: {bin index: count} (JSON keys are strings)."""
    nz = np.flatnonzero(hist)
    return {str(int(i)): int(hist[i]) for i in nz}
