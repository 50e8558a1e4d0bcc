"""The per-element work of :mod:`.stats` in one compiled, parallel pass (numba).

Every accumulator of a block is computed in a single pass over the reference and candidate values, split
into fixed chunks that run on all cores; each chunk accumulates in float64 and the chunks are reduced in a
fixed order, so results do not depend on the number of threads. Histogram bins come from the float's bit
pattern (exponent and top mantissa bits: see :func:`.metrics.bin_key`), no logarithm per element. The pure
numpy implementation in :mod:`.stats` computes the same values and is used when numba is unavailable;
the tests check that both agree.

numba's default threading layer must not be entered from two Python threads at once, and stages run in
parallel threads, so calls are serialised by a lock: each call uses every core anyway.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
from numba import njit, prange, set_num_threads, types
from numba.extending import overload

CHUNK = 1 << 16
N_COUNTS, N_SUMS, N_EXT = 18, 6, 4
_LOCK = threading.Lock()


# All float16 values as float64, indexed by their bit pattern: a float16 array is read through its uint16 view
# (numba has no float16 type), without converting the whole block first.
_F16 = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float64)


@njit(cache=True, inline="always")
def _key(bits: np.uint64, shift: int) -> np.int64:
    return np.int64(bits >> np.uint64(shift))


def _value(a, table, i):  # type: ignore[no-untyped-def]
    """Element i of a float32/float64 array, or of a float16 array passed as its uint16 bits."""


@overload(_value, inline="always")
def _value_impl(a, table, i):  # type: ignore[no-untyped-def]
    if isinstance(a.dtype, types.Integer):
        return lambda a, table, i: table[a[i]]
    return lambda a, table, i: np.float64(a[i])


@njit(cache=True, inline="always")
def _chunk(  # type: ignore[no-untyped-def]
    r, x, table, p, lo, hi, cnt, sm, ext, rel_hist, abs_hist, rel_shift, rel_key0, rel_size, abs_shift, abs_key0
):
    """Accumulate elements [lo, hi) into cnt, sm, the histograms, and ext (max |x-r|, max rel, max |r|, min |r| > 0:
    the chunk's own values, not merged). ``_kernel`` and ``_batch_kernel`` share it, so both compute alike."""
    t, floor, use_range, sub, normal, fmax = p[0], p[1], p[2], p[3], p[4], p[5]
    qkind, qscale, qzp, qmin, qmax = p[6], p[7], p[8], p[9], p[10]
    abs_size = abs_hist.size
    buf = np.empty(1, np.float64)
    bits = buf.view(np.uint64)
    max_abs = 0.0
    max_rel = 0.0
    max_abs_ref = 0.0
    min_abs_nz = np.inf
    for i in range(lo, hi):
        rv = _value(r, table, i)
        xv = _value(x, table, i)
        r_nan = rv != rv
        x_nan = xv != xv
        r_fin = (not r_nan) and abs(rv) != np.inf
        x_fin = (not x_nan) and abs(xv) != np.inf
        if r_nan:
            cnt[6] += 1
        elif not r_fin:
            cnt[7] += 1
        if x_nan:
            cnt[8] += 1
        elif not x_fin:
            cnt[9] += 1
        if r_fin and not x_fin:
            cnt[10] += 1
        ar = abs(rv)
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
            cnt[17] += 1  # an infinite error: NaN vs number, Inf vs finite, +Inf vs -Inf
        if rel > t:
            cnt[1] += 1
        if rel == np.inf:
            cnt[5] += 1
        else:
            cnt[3] += 1
            sm[2] += rel
            if rel > max_rel:
                max_rel = rel
            if rel == 0.0:
                cnt[4] += 1
            else:
                buf[0] = rel
                k = _key(bits[0], rel_shift) - rel_key0 + 1
                k = 0 if k < 0 else (rel_size - 1 if k >= rel_size else k)
                rel_hist[k] += 1
        if r_fin:
            if ar > max_abs_ref:
                max_abs_ref = ar
            if ar == 0.0:
                cnt[11] += 1
            else:
                if ar < min_abs_nz:
                    min_abs_nz = ar
                if use_range > 0:
                    if ar < sub:
                        cnt[12] += 1
                    elif ar < normal:
                        cnt[13] += 1
                    if ar > fmax:
                        cnt[14] += 1
                buf[0] = ar
                k = _key(bits[0], abs_shift) - abs_key0
                k = 0 if k < 0 else (abs_size - 1 if k >= abs_size else k)
                abs_hist[k] += 1
            if qkind == 1.0:
                level = np.rint(rv / qscale) + qzp
                if level > qmax or level < qmin:
                    cnt[15] += 1
                if level == qzp and rv != 0.0:
                    cnt[16] += 1
            elif qkind == 2.0:
                ax = abs(rv / qscale)
                if ax > qmax:
                    cnt[15] += 1
                if ax <= 0.0009765625 and rv != 0.0:  # 2^-10: half the smallest float8 subnormal
                    cnt[16] += 1
    cnt[0] += hi - lo
    ext[0] = max_abs
    ext[1] = max_rel
    ext[2] = max_abs_ref
    ext[3] = min_abs_nz


@njit(parallel=True, cache=True, nogil=True)
def _kernel(r, x, table, p, rel_shift, rel_key0, rel_size, abs_shift, abs_key0, abs_size):  # type: ignore[no-untyped-def]
    n = r.size
    nchunks = (n + CHUNK - 1) // CHUNK
    counts = np.zeros((nchunks, N_COUNTS), np.int64)
    sums = np.zeros((nchunks, N_SUMS), np.float64)
    ext = np.zeros((nchunks, N_EXT), np.float64)
    rel_hist = np.zeros((nchunks, rel_size), np.int64)
    abs_hist = np.zeros((nchunks, abs_size), np.int64)
    for c in prange(nchunks):
        lo = c * CHUNK
        hi = min(n, lo + CHUNK)
        _chunk(
            r, x, table, p, lo, hi, counts[c], sums[c], ext[c], rel_hist[c], abs_hist[c],
            rel_shift, rel_key0, rel_size, abs_shift, abs_key0,
        )  # fmt: skip
    return counts, sums, ext, rel_hist, abs_hist


# The same kernel compiled without threads, for blocks of one chunk: launching the parallel version costs more
# than a tensor of a few thousand elements takes, which on models of thousands of small tensors was a quarter
# of the run. One chunk is computed the same way by both, so the results are identical; the serial version
# never enters numba's threading layer, so it needs no lock and runs beside other stages' calls.
_serial_kernel = njit(cache=True, nogil=True)(_kernel.py_func)


@njit(cache=True, nogil=True)
def _batch_kernel(  # type: ignore[no-untyped-def]
    r, x, table, params, starts, ends, owner, ntensors, rel_shift, rel_key0, rel_size, abs_shift, abs_key0, abs_size
):
    """Segments [starts[s], ends[s]) of r and x, each of at most one chunk, accumulated into tensor owner[s] with
    its params row, in the order given: per segment exactly what ``block`` then ``TensorStats._merge`` do with it."""
    counts = np.zeros((ntensors, N_COUNTS), np.int64)
    sums = np.zeros((ntensors, N_SUMS), np.float64)
    ext = np.zeros((ntensors, N_EXT), np.float64)
    ext[:, 3] = np.inf
    rel_hist = np.zeros((ntensors, rel_size), np.int64)
    abs_hist = np.zeros((ntensors, abs_size), np.int64)
    sm = np.zeros(N_SUMS, np.float64)
    e = np.zeros(N_EXT, np.float64)
    for s in range(starts.size):
        t = owner[s]
        sm[:] = 0.0
        _chunk(
            r, x, table, params[t], starts[s], ends[s], counts[t], sm, e, rel_hist[t], abs_hist[t],
            rel_shift, rel_key0, rel_size, abs_shift, abs_key0,
        )  # fmt: skip
        for k in range(N_SUMS):
            sums[t, k] += sm[k]
        for k in range(3):  # as Python's max(current, new) and min(current, new) in TensorStats._merge
            if e[k] > ext[t, k]:
                ext[t, k] = e[k]
        if e[3] < ext[t, 3]:
            ext[t, 3] = e[3]
    return counts, sums, ext, rel_hist, abs_hist


def _readable(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.float16:
        return np.ascontiguousarray(a).view(np.uint16)
    if a.dtype in (np.float32, np.float64):
        return np.ascontiguousarray(a)
    return np.ascontiguousarray(a, dtype=np.float32)  # bfloat16 and others: exact in float32


def block(r: np.ndarray, x: np.ndarray, params: np.ndarray, layout: tuple[int, ...], threads: int) -> tuple[Any, ...]:
    """Accumulators of one block, reduced over chunks in a fixed order."""
    r, x = _readable(r), _readable(x)
    if r.size <= CHUNK:
        counts, sums, ext, rel_hist, abs_hist = _serial_kernel(r, x, _F16, params, *layout)
    else:
        with _LOCK:
            set_num_threads(max(1, threads))
            counts, sums, ext, rel_hist, abs_hist = _kernel(r, x, _F16, params, *layout)
    return (
        counts.sum(axis=0),
        sums.sum(axis=0),
        np.array([ext[:, 0].max(), ext[:, 1].max(), ext[:, 2].max(), ext[:, 3].min()]),
        rel_hist.sum(axis=0),
        abs_hist.sum(axis=0),
    )


def batch(
    refs: list[np.ndarray],
    cands: list[np.ndarray],
    owner: np.ndarray,
    params: np.ndarray,
    ntensors: int,
    layout: tuple[int, ...],
) -> tuple[Any, ...]:
    """Accumulators of many tensors at once (arrays indexed by tensor). ``refs[s]`` and ``cands[s]`` are one block of
    at most ``CHUNK`` elements of tensor ``owner[s]`` (every block of a side has one dtype), whose settings are
    ``params[owner[s]]``; a tensor's blocks come in the order ``TensorStats.update`` would get them. One call
    instead of one per tensor and sample: with thousands of small tensors the calls and the merging of their
    results cost more than the elements. Serial, like ``block`` for one chunk, so it needs no lock."""
    sizes = np.fromiter((a.size for a in refs), np.int64, len(refs))
    ends = np.cumsum(sizes)
    starts = ends - sizes
    r = np.concatenate([_readable(a).reshape(-1) for a in refs])
    x = np.concatenate([_readable(a).reshape(-1) for a in cands])
    return _batch_kernel(r, x, _F16, params, starts, ends, owner, ntensors, *layout)
