"""Only the metrics a verdict reads: `fix`'s tries need pass/fail, not a report.

A try of the fix search is judged by :func:`.limits.check` on each compared tensor (deviation ratio, cosine,
max abs error, SQNR, NaN/Inf introduced) and ranked by the targets' output error (RMSE, SQNR). Computing every
metric, both histograms, the range counts and the percentiles for every variant was two thirds of a search's
time on the demo UNet; :class:`VerdictStats` accumulates only the counts and sums those metrics come from.

The values are **the same bit for bit** as the compare stage's (:class:`.stats.TensorStats`): the same element
loop (:func:`.kernel._value`, the same relative error), the same fixed chunks reduced in the same order, the
same blocks merged in the same order, and the metrics from the same :func:`.stats.error_metrics`; so a try's
verdict is the one compare would give (tests/pipelines/stages/test_trial.py checks it on FP16 and INT8).
Without numba it computes the full statistics in numpy and keeps the same keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from layerscope.pipelines.metrics.stats import BLOCK, SUMS, MetricConfig, TensorStats, _kernel, error_metrics

# counts kept: the indices into the accumulator of each (the verdict's own, not stats.COUNTS)
ELEMENTS, DEVIATING, PAIRS, INTRODUCED, INFINITE = range(5)
N_COUNTS = 5
KEYS = (
    "elements",
    "deviating",
    "deviation_ratio",
    "max_abs_error",
    "mean_abs_error",
    "rmse",
    "cosine",
    "sqnr_db",
    "infinite_errors",
    "nonfinite_introduced",
)


def _compiled() -> Any:
    """The verdict kernels (numba), or None without numba."""
    if _kernel() is None:
        return None
    from layerscope.pipelines.metrics import verdict_kernel

    return verdict_kernel


@dataclass
class VerdictStats:
    """A tensor's verdict metrics over any number of blocks (samples), as :class:`.stats.TensorStats` would
    give them (``result()`` returns its keys :data:`KEYS`, the same values)."""

    config: MetricConfig = field(default_factory=MetricConfig)
    threads: int = 1
    counts: np.ndarray = field(default_factory=lambda: np.zeros(N_COUNTS, np.int64))
    sums: np.ndarray = field(default_factory=lambda: np.zeros(len(SUMS), np.float64))
    max_abs: float = 0.0
    _full: TensorStats | None = None  # without numba: the full statistics (numpy path)

    def update(self, ref: np.ndarray, cand: np.ndarray) -> None:
        ref, cand = np.asarray(ref), np.asarray(cand)
        if ref.shape != cand.shape:
            raise ValueError(f"shape mismatch: reference {ref.shape} vs candidate {cand.shape}")
        compiled = _compiled()
        if compiled is None:
            if self._full is None:
                self._full = TensorStats(self.config, threads=self.threads)
            self._full.update(ref, cand)
            return
        r_all, x_all = ref.reshape(-1), cand.reshape(-1)
        t, floor = float(self.config.rel_error), float(self.config.abs_floor)
        for start in range(0, r_all.size, BLOCK):  # the blocks TensorStats.update merges, in its order
            counts, sums, max_abs = compiled.block(
                r_all[start : start + BLOCK], x_all[start : start + BLOCK], t, floor, self.threads
            )
            self.counts += counts
            self.sums += sums
            self.max_abs = max(self.max_abs, max_abs)

    def fails_already(self, total: int, max_deviation_ratio: float, allow_nonfinite: bool) -> bool:
        """Whether the tensor fails whatever its remaining elements (``total`` in all): more deviating elements
        than the limit allows of the total, or a NaN/Inf introduced where that is not allowed."""
        if self._full is not None:
            deviating, introduced = self._full.count("deviating"), self._full.count("nonfinite_introduced")
        else:
            deviating, introduced = int(self.counts[DEVIATING]), int(self.counts[INTRODUCED])
        return deviating > max_deviation_ratio * total or (introduced > 0 and not allow_nonfinite)

    def result(self) -> dict[str, Any]:
        if self._full is not None:
            full = self._full.result(histograms=False)
            return {k: full[k] for k in KEYS}
        c = self.counts
        n = int(c[ELEMENTS])
        err = error_metrics(
            infinite=int(c[INFINITE]),
            pairs=int(c[PAIRS]),
            max_abs=self.max_abs,
            sums={k: float(v) for k, v in zip(SUMS, self.sums, strict=True)},
        )
        return {
            "elements": n,
            "deviating": int(c[DEVIATING]),
            "deviation_ratio": int(c[DEVIATING]) / n if n else None,
            "max_abs_error": err["max_abs_error"],
            "mean_abs_error": err["mean_abs_error"],
            "rmse": err["rmse"],
            "cosine": err["cosine"],
            "sqnr_db": err["sqnr_db"],
            "infinite_errors": int(c[INFINITE]),
            "nonfinite_introduced": int(c[INTRODUCED]),
        }
