"""The verdict's per-element work (numba): :mod:`.kernel`'s element loop without the histograms, the range and
quantization counts and the relative-error sums, which no verdict reads.

The element loop computes each kept accumulator exactly as :func:`.kernel._chunk` does (the same expressions,
the same order), over the same fixed chunks, reduced over chunks the same way (numpy sums over axis 0), so the
sums are the compare stage's bit for bit.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit, prange, set_num_threads

from layerscope.pipelines.metrics.kernel import _F16, _LOCK, CHUNK, N_SUMS, _readable, _value

N_COUNTS = 5  # elements, deviating, finite pairs, NaN/Inf introduced, infinite errors (verdict.py's order)


@njit(cache=True, inline="always")
def _chunk(r, x, table, t, floor, lo, hi, cnt, sm, ext):  # type: ignore[no-untyped-def]
    max_abs = 0.0
    for i in range(lo, hi):
        rv = _value(r, table, i)
        xv = _value(x, table, i)
        r_nan = rv != rv
        x_nan = xv != xv
        r_fin = (not r_nan) and abs(rv) != np.inf
        x_fin = (not x_nan) and abs(xv) != np.inf
        if r_fin and not x_fin:
            cnt[3] += 1
        if r_fin and x_fin:
            d = abs(xv - rv)
            cnt[2] += 1
            sm[0] += d
            sm[1] += d * d
            sm[3] += rv * xv
            sm[4] += rv * rv
            sm[5] += xv * xv
            if d > max_abs:
                max_abs = d
            ar = abs(rv)
            denom = max(ar, floor) if floor > 0 else ar
            if d == 0.0:
                rel = 0.0
            elif denom == 0.0:
                rel = np.inf
            else:
                rel = d / denom
        elif xv == rv or (r_nan and x_nan):
            rel = 0.0
        else:
            rel = np.inf
            cnt[4] += 1
        if rel > t:
            cnt[1] += 1
    cnt[0] += hi - lo
    ext[0] = max_abs


@njit(parallel=True, cache=True, nogil=True)
def _kernel(r, x, table, t, floor):  # type: ignore[no-untyped-def]
    n = r.size
    nchunks = (n + CHUNK - 1) // CHUNK
    counts = np.zeros((nchunks, N_COUNTS), np.int64)
    sums = np.zeros((nchunks, N_SUMS), np.float64)
    ext = np.zeros((nchunks, 1), np.float64)
    for c in prange(nchunks):
        lo = c * CHUNK
        _chunk(r, x, table, t, floor, lo, min(n, lo + CHUNK), counts[c], sums[c], ext[c])
    return counts, sums, ext


_serial_kernel = njit(cache=True, nogil=True)(_kernel.py_func)  # one chunk: no threads (as kernel.block)


def block(r: np.ndarray, x: np.ndarray, t: float, floor: float, threads: int) -> tuple[Any, Any, float]:
    """Counts, sums (stats.SUMS' order; sum_rel left 0) and max |x - r| of one block, reduced over chunks."""
    r, x = _readable(r), _readable(x)
    if r.size <= CHUNK:
        counts, sums, ext = _serial_kernel(r, x, _F16, t, floor)
    else:
        with _LOCK:
            set_num_threads(max(1, threads))
            counts, sums, ext = _kernel(r, x, _F16, t, floor)
    return counts.sum(axis=0), sums.sum(axis=0), float(ext[:, 0].max()) if ext.size else 0.0
