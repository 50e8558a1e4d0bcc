"""An independent recomputation of the per-layer numbers a report.json states, from the HDF5 dumps alone.

Plain numpy and h5py, written from the definitions in docs/metrics.md and the contract of DESIGN.md /
issue 10, importing nothing from layerscope: a bug in layerscope's metrics cannot hide itself here. With r the
reference and x the candidate value of an element (both read as float64):

* an element is a **finite pair** when both are finite; its abs error is |x - r| and its relative error
  |x - r| / max(|r|, abs_floor) -- 0 where x == r, +inf where the denominator is 0 and x != r;
* an element with a non-finite side is **matched** when x == r (equal infinities) or both are NaN (error 0),
  and otherwise an **infinite error** (NaN vs number, Inf vs finite, +Inf vs -Inf);
* ``deviating``: relative error > the layer's ``rel_error_threshold`` (infinite errors deviate);
  ``deviation_ratio`` = deviating / elements (undefined without elements);
* ``ref_nan``, ``ref_inf``, ``cand_nan``, ``cand_inf``: counts; ``nonfinite_introduced``: x non-finite where
  r is finite;
* ``max_abs_error``: +inf when any element has an infinite error ("a value that became Inf is an infinite
  error"), else the largest abs error over finite pairs; undefined without finite pairs;
* ``sqnr_db``: -inf when any element has an infinite error (infinite noise), else
  10 log10(sum r^2 / sum (x - r)^2) over finite pairs (+inf when the noise is 0); undefined without finite pairs;
* ``cosine``: undefined when any element has an infinite error (a vector with an infinite component has no
  direction), without finite pairs, or when exactly one side is all zeros; 1 when both are all zeros; else
  sum r x / (|r| |x|) over finite pairs.

On layers whose values are all finite these are exactly the documented definitions. The non-finite rules are
the contract ("undefined stays undefined": null in JSON; an Inf that appeared is an infinite error): where
the recomputation is undefined, the report must say null. Counts must agree exactly, other numbers to
``RTOL`` relative. :func:`check_run` also checks that every tensor both dumps hold is in the report (or
listed as not observable), that no compared tensor is empty, and that each layer's verdict follows from its
limits and the recomputed numbers (a limit on an undefined metric cannot be met).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

RTOL, ATOL = 1e-6, 1e-12
COUNTS = ("elements", "deviating", "ref_nan", "ref_inf", "cand_nan", "cand_inf", "nonfinite_introduced")
FLOATS = ("deviation_ratio", "max_abs_error", "sqnr_db", "cosine")


@dataclass
class LayerNumbers:
    """The recomputed numbers of one tensor (None: undefined)."""

    counts: dict[str, int]
    infinite_errors: int
    finite_pairs: int
    deviation_ratio: float | None
    max_abs_error: float | None
    sqnr_db: float | None
    cosine: float | None
    rel_error_histogram: dict[str, Any] | None = None  # {"zero": n, "inf": n, "bins": {index: count}}
    ref_abs_histogram: dict[str, Any] | None = None  # {"zero": n, "bins": {index: count}}

    def value(self, name: str) -> float | int | None:
        return self.counts[name] if name in self.counts else getattr(self, name)


class _Sums:
    """Float64 accumulators over blocks of elements."""

    def __init__(self, rel_error: float, abs_floor: float) -> None:
        self.rel_error, self.abs_floor = rel_error, abs_floor
        self.counts = dict.fromkeys(COUNTS, 0)
        self.infinite = self.pairs = 0
        self.max_abs = 0.0
        self.ref_sq = self.cand_sq = self.dot = self.err_sq = 0.0
        self.hist: dict[str, Any] = {"zero": 0, "inf": 0, "bins": {}}
        self.abs_hist: dict[str, Any] = {"zero": 0, "bins": {}}

    def add(self, ref: np.ndarray, cand: np.ndarray) -> None:
        r = np.asarray(ref, dtype=np.float64).reshape(-1)
        x = np.asarray(cand, dtype=np.float64).reshape(-1)
        if r.shape != x.shape:
            raise ValueError(f"reference has {r.size} elements, candidate {x.size}")
        r_fin, x_fin = np.isfinite(r), np.isfinite(x)
        r_nan, x_nan = np.isnan(r), np.isnan(x)
        c = self.counts
        c["elements"] += r.size
        c["ref_nan"] += int(r_nan.sum())
        c["ref_inf"] += int((~r_fin & ~r_nan).sum())
        c["cand_nan"] += int(x_nan.sum())
        c["cand_inf"] += int((~x_fin & ~x_nan).sum())
        c["nonfinite_introduced"] += int((r_fin & ~x_fin).sum())
        pair = r_fin & x_fin
        with np.errstate(invalid="ignore"):  # inf - inf in the masked-out elements
            matched = ~pair & ((x == r) | (r_nan & x_nan))
        infinite = ~pair & ~matched
        self.infinite += int(infinite.sum())
        rp, xp = r[pair], x[pair]
        err = np.abs(xp - rp)
        denom = np.maximum(np.abs(rp), self.abs_floor) if self.abs_floor > 0 else np.abs(rp)
        rel = np.full(err.shape, np.inf)
        np.divide(err, denom, out=rel, where=denom > 0)
        rel[err == 0] = 0.0
        c["deviating"] += int((rel > self.rel_error).sum()) + int(infinite.sum())
        self._histogram(rel, int(matched.sum()), int(infinite.sum()))
        self._abs_histogram(np.abs(r[r_fin]))
        self.pairs += rp.size
        if rp.size:
            self.max_abs = max(self.max_abs, float(err.max()))
            self.ref_sq += float(np.dot(rp, rp))
            self.cand_sq += float(np.dot(xp, xp))
            self.dot += float(np.dot(rp, xp))
            self.err_sq += float(np.dot(err, err))

    def _histogram(self, rel: np.ndarray, matched: int, infinite: int) -> None:
        """The relative error's histogram as docs/metrics.md states it: 32 bins per octave (the float64's
        exponent and top 5 mantissa bits) from 2^-40, bin 0 below it, the last 2^20 and above; exact elements
        (matched non-finite ones too) in ``zero``, infinite errors in ``inf``."""
        h = self.hist
        h["zero"] += int((rel == 0).sum()) + matched
        h["inf"] += int(np.isinf(rel).sum()) + infinite
        values = rel[(rel > 0) & np.isfinite(rel)]
        bits, low, high = 5, (-40 + 1023) << 5, (20 + 1023) << 5
        keys = (values.view(np.uint64) >> np.uint64(52 - bits)).astype(np.int64)
        index = np.clip(keys - low + 1, 0, high - low + 1)  # + 1: the underflow bin
        for i, n in zip(*np.unique(index, return_counts=True), strict=True):
            h["bins"][int(i)] = h["bins"].get(int(i), 0) + int(n)

    def _abs_histogram(self, ref_abs: np.ndarray) -> None:
        """|reference|'s histogram as docs/metrics.md states it: 4 bins per octave from 2^-150 to 2^130, both ends
        clipped into the first and last bin, zero references in ``zero``; every finite reference element counts,
        whatever the candidate holds."""
        h = self.abs_hist
        h["zero"] += int((ref_abs == 0).sum())
        values = ref_abs[ref_abs > 0]
        bits, low, high = 2, (-150 + 1023) << 2, (130 + 1023) << 2
        keys = (values.view(np.uint64) >> np.uint64(52 - bits)).astype(np.int64)
        index = np.clip(keys - low, 0, high - low - 1)
        for i, n in zip(*np.unique(index, return_counts=True), strict=True):
            h["bins"][int(i)] = h["bins"].get(int(i), 0) + int(n)

    def result(self) -> LayerNumbers:
        n, undefined = self.counts["elements"], self.pairs == 0
        if self.infinite:
            max_abs: float | None = math.inf
            sqnr: float | None = -math.inf
            cosine: float | None = None
        elif undefined:
            max_abs = sqnr = cosine = None
        else:
            max_abs = self.max_abs
            if self.err_sq == 0:
                sqnr = math.inf
            elif self.ref_sq == 0:
                sqnr = -math.inf
            else:
                sqnr = 10.0 * math.log10(self.ref_sq / self.err_sq)
            if self.ref_sq == 0 and self.cand_sq == 0:
                cosine = 1.0
            elif self.ref_sq == 0 or self.cand_sq == 0:
                cosine = None
            else:
                cosine = max(-1.0, min(1.0, self.dot / math.sqrt(self.ref_sq * self.cand_sq)))
        return LayerNumbers(
            counts=dict(self.counts),
            infinite_errors=self.infinite,
            finite_pairs=self.pairs,
            deviation_ratio=self.counts["deviating"] / n if n else None,
            max_abs_error=max_abs,
            sqnr_db=sqnr,
            cosine=cosine,
            rel_error_histogram=self.hist,
            ref_abs_histogram=self.abs_hist,
        )


def recompute(
    ref_samples: Iterator[np.ndarray], cand_samples: Iterator[np.ndarray], rel_error: float, abs_floor: float = 0.0
) -> LayerNumbers:
    """The numbers of one tensor from its samples (any number of blocks, streamed)."""
    sums = _Sums(rel_error, abs_floor)
    for r, x in zip(ref_samples, cand_samples, strict=True):
        sums.add(r, x)
    return sums.result()


class DumpTensor:
    """One tensor of a dump, read with plain h5py from either layout: a dataset (samples, *shape) of its own, or
    (dump format 2) the slice ``[offset, offset + size)`` of each row of /packed/<dtype>, where the root's
    ``tensor_index`` attribute places it."""

    def __init__(self, ds: h5py.Dataset, shape: tuple[int, ...] | None = None, offset: int | None = None) -> None:
        self.ds, self.shape, self.offset = ds, shape, offset

    def samples(self) -> Iterator[np.ndarray]:
        for i in range(self.ds.shape[0]):
            if self.shape is None or self.offset is None:
                yield np.asarray(self.ds[i])  # a 0-d per-sample tensor reads as a numpy scalar
            else:
                size = math.prod(self.shape)
                yield np.asarray(self.ds[i, self.offset : self.offset + size]).reshape(self.shape)


def dump_tensors(h5: h5py.File) -> dict[str, DumpTensor]:
    """The tensors of a dump by their ONNX name: the datasets of /tensors (the ``onnx_name`` attribute; names are
    escaped in HDF5) and the packed ones listed in ``tensor_index``."""
    out = {}
    for key, ds in h5["tensors"].items():
        name = ds.attrs.get("onnx_name", key)
        out[name.decode() if isinstance(name, bytes) else str(name)] = DumpTensor(ds)
    index = h5.attrs.get("tensor_index")
    if index is not None:
        for entry in json.loads(index)["tensors"].values():
            if "packed" in entry:
                packed = h5["packed"][entry["dtype"]]
                out[entry["attrs"]["onnx_name"]] = DumpTensor(packed, tuple(entry["shape"]), int(entry["packed"]))
    return out


@dataclass(frozen=True)
class Disagreement:
    comparison: str
    tensor: str
    what: str
    report: Any
    recomputed: Any

    def __str__(self) -> str:
        return f"{self.comparison} {self.tensor}: {self.what}: report {self.report!r}, recomputed {self.recomputed!r}"


def _reported(value: Any) -> float | None:
    """A report number: null is undefined; "inf"/"-inf"/"nan" are the JSON spellings of non-finite floats."""
    if value is None:
        return None
    return float(value)


def _same(reported: Any, mine: float | int | None, exact: bool) -> bool:
    if mine is None:
        return reported is None
    if reported is None or (isinstance(reported, str) and reported == "nan"):
        return False  # NaN is not a number the report may state where the value is defined
    r = _reported(reported)
    assert r is not None
    if exact or math.isinf(mine) or math.isinf(r):
        return r == mine
    return abs(r - mine) <= RTOL * max(abs(r), abs(mine)) + ATOL


def _expected_verdict(numbers: LayerNumbers, limits: dict[str, Any]) -> str:
    """The documented rule on the recomputed numbers; a limit on an undefined metric cannot be met."""

    def breaks(value: float | None, limit: float | None, below: bool) -> bool:
        if limit is None:
            return False
        return value is None or (value < limit if below else value > limit)

    fails = (
        breaks(numbers.deviation_ratio, limits["max_deviation_ratio"], below=False)
        or breaks(numbers.cosine, limits.get("min_cosine"), below=True)
        or breaks(numbers.max_abs_error, limits.get("max_abs_error"), below=False)
        or breaks(numbers.sqnr_db, limits.get("min_sqnr_db"), below=True)
        or (not limits.get("allow_nonfinite", False) and numbers.counts["nonfinite_introduced"] > 0)
    )
    return "fail" if fails else "pass"


def check_layer(name: str, layer: dict[str, Any], numbers: LayerNumbers) -> list[Disagreement]:
    metrics = layer["metrics"]
    if numbers.counts["elements"] == 0:  # nothing to compare: every metric and the verdict are undefined
        return [Disagreement(name, layer["tensor"], "layer", "compared", "an empty tensor (no elements)")]
    out = []
    for key in COUNTS:
        if not _same(metrics.get(key), numbers.value(key), exact=True):
            out.append(Disagreement(name, layer["tensor"], key, metrics.get(key), numbers.value(key)))
    for key in FLOATS:
        if not _same(metrics.get(key), numbers.value(key), exact=False):
            out.append(Disagreement(name, layer["tensor"], key, metrics.get(key), numbers.value(key)))
    for which, mine in (("rel_error", numbers.rel_error_histogram), ("ref_abs", numbers.ref_abs_histogram)):
        hist = metrics.get("histograms", {}).get(which)
        if hist is None or mine is None or "start" not in hist:  # runs from a start bin: version 2 and later
            continue
        stated = {"zero": hist.get("zero", 0), "inf": hist.get("inf", 0), "bins": _runs(hist)}
        for key in ("zero", "inf", "bins"):
            if key not in mine:
                continue
            a, b = stated[key], mine[key]
            if a != b and key == "bins":  # only the bins that differ
                a, b = ({i: d.get(i, 0) for i in sorted(a.keys() | b.keys()) if a.get(i) != b.get(i)} for d in (a, b))
            if a != b:
                out.append(Disagreement(name, layer["tensor"], f"{which} histogram {key}", a, b))
    if "limits" in layer and "verdict" in layer:
        expected = _expected_verdict(numbers, layer["limits"])
        if layer["verdict"] != expected:
            out.append(Disagreement(name, layer["tensor"], "verdict", layer["verdict"], expected))
    return out


def _runs(hist: dict[str, Any]) -> dict[int, int]:
    """A histogram's counts written as runs from a start bin (-k: k empty bins) as {bin: count}."""
    out, i = {}, int(hist["start"])
    for v in hist["counts"]:
        if v < 0:
            i -= v
        else:
            out[i] = v
            i += 1
    return out


def check_comparison(comparison: dict[str, Any], ref_path: Path, cand_path: Path) -> list[Disagreement]:
    """Every layer of one comparison against the two dumps, plus tensors the report silently left out."""
    name = f"{comparison['candidate']} vs {comparison['reference']}"
    out: list[Disagreement] = []
    with h5py.File(ref_path, "r") as ref_h5, h5py.File(cand_path, "r") as cand_h5:
        ref, cand = dump_tensors(ref_h5), dump_tensors(cand_h5)
        reported = {layer["tensor"] for layer in comparison["layers"]}
        for layer in comparison["layers"]:
            t = layer["tensor"]
            if t not in ref or t not in cand:
                out.append(Disagreement(name, t, "in the dumps", "reported", f"ref {t in ref}, cand {t in cand}"))
                continue
            numbers = recompute(
                ref[t].samples(), cand[t].samples(), float(layer["rel_error_threshold"]), float(layer["abs_floor"])
            )
            out += check_layer(name, layer, numbers)
        excused = set(comparison.get("not_observable", [])) | set(comparison.get("not_observable_reasons", {}))
        for t in sorted((set(ref) & set(cand)) - reported - excused):
            out.append(Disagreement(name, t, "layer", "missing from the report", "in both dumps"))
    return out


def _layers(layers: Any, histograms: dict[str, Any]) -> list[dict[str, Any]]:
    """A comparison's layers as objects, read independently of layerscope's reader: a packed table (schema
    version 3: key paths, per-layer shapes of them, one value per path stated in ``defaults`` or else in the
    row, local metrics' reference-only fields taken from the layer's metrics where left out) is unpacked
    here, and the histograms kept beside report.json are put back, so that what is checked is what the
    report states, wherever it now lives."""
    if isinstance(layers, dict):
        defaults = {i: v for i, v in layers["defaults"]}
        out = []
        for row in layers["rows"]:
            values = iter(row[1:])
            layer: dict[str, Any] = {}
            for i in layers["shapes"][row[0]]:
                *parents, key = layers["paths"][i]
                node = layer
                for p in parents:
                    node = node.setdefault(p, {})
                node[key] = defaults[i] if i in defaults else next(values)
            assert next(values, None) is None, "a packed row has more values than its shape"
            local = layer.get("attribution", {}).get("local")
            for name in layers.get("local_from_metrics", []) if local is not None else []:
                local.setdefault(name, layer["metrics"][name])
            out.append(layer)
        layers = out
    for layer in layers:
        if layer["tensor"] in histograms:
            layer["metrics"]["histograms"] = histograms[layer["tensor"]]
    return list(layers)


def check_run(run_dir: Path) -> list[Disagreement]:
    """Every comparison of ``run_dir/report.json`` against ``run_dir/dumps/<run>.h5``."""
    report = json.loads((run_dir / "report.json").read_text())
    side = report.get("histograms_file")
    moved = json.loads((run_dir / side["file"]).read_text()) if side else {"comparisons": []}
    for comparison in report["comparisons"]:
        mine = [m["histograms"] for m in moved["comparisons"] if m["candidate"] == comparison["candidate"]]
        comparison["layers"] = _layers(comparison["layers"], mine[0] if mine else {})
    out: list[Disagreement] = []
    for comparison in report["comparisons"]:
        dumps = run_dir / "dumps"
        out += check_comparison(
            comparison, dumps / f"{comparison['reference']}.h5", dumps / f"{comparison['candidate']}.h5"
        )
    return out


def assert_run_agrees(run_dir: Path, show: int = 20) -> None:
    """Raise AssertionError listing (up to ``show``) disagreements between a report and its dumps."""
    problems = check_run(run_dir)
    if problems:
        lines = [str(p) for p in problems[:show]]
        more = f"\n... and {len(problems) - show} more" if len(problems) > show else ""
        raise AssertionError(f"{len(problems)} disagreements with the dumps:\n" + "\n".join(lines) + more)
