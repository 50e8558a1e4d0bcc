"""Statistics of many small tensors from one kernel call: the same values as one ``TensorStats.update`` per tensor
and sample, without the per-call cost that dominated models of thousands of small tensors (8,000 tensors of 64
values: ~4,000 kernel calls and result merges per second of compare time)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from layerscope.pipelines.metrics import stats
from layerscope.pipelines.metrics.stats import ABS_LAYOUT, REL_LAYOUT, MetricConfig, TensorStats

SMALL = 1 << 16  # elements per sample at most for a batched tensor: one kernel chunk (kernel.CHUNK)


def batchable(per_sample: int) -> bool:
    """Whether a tensor of ``per_sample`` elements per sample is computed in a batch (else one call per sample)."""
    return 0 < per_sample <= SMALL


def many(items: Sequence[tuple[np.ndarray, np.ndarray, MetricConfig]], *, threads: int = 1) -> list[TensorStats]:
    """The statistics of each (reference, candidate, settings): every sample of a tensor, shape (samples, ...).
    Tensors with samples of more than ``SMALL`` elements, or without numba, take ``TensorStats.update`` per
    sample; the others are grouped by their pair of dtypes, one kernel call per group."""
    out: list[TensorStats | None] = [None] * len(items)
    kernel = stats._kernel()  # looked up at call time: tests run without it too
    groups: dict[tuple[np.dtype, np.dtype], list[int]] = {}
    for i, (r, x, config) in enumerate(items):
        if kernel is None or r.shape != x.shape or r.ndim == 0 or not batchable(r[0].size if len(r) else 0):
            one = out[i] = TensorStats(config, threads=threads)
            for k in range(r.shape[0] if r.ndim else 0):
                one.update(r[k], x[k])
        else:
            groups.setdefault((r.dtype, x.dtype), []).append(i)
    for idx in groups.values():
        refs = [s for i in idx for s in items[i][0]]
        cands = [s for i in idx for s in items[i][1]]
        owner = np.repeat(np.arange(len(idx), dtype=np.int64), [len(items[i][0]) for i in idx])
        params = np.stack([items[i][2].params() for i in idx])
        counts, sums, ext, rel_hist, abs_hist = kernel.batch(
            refs, cands, owner, params, len(idx), (*REL_LAYOUT, *ABS_LAYOUT)
        )
        for j, i in enumerate(idx):  # the accumulators given: the defaults' zero arrays cost ~10 µs a tensor
            out[i] = TensorStats(
                items[i][2],
                threads=threads,
                counts=counts[j],
                sums=sums[j],
                max_abs=float(ext[j, 0]),
                max_rel=float(ext[j, 1]),
                max_abs_ref=float(ext[j, 2]),
                min_abs_nonzero=float(ext[j, 3]),
                rel_hist=rel_hist[j],
                abs_hist=abs_hist[j],
            )
    done = [s for s in out if s is not None]
    assert len(done) == len(items)  # every item is computed in one of the two ways
    return done
