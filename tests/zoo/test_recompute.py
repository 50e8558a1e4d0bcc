"""The independent checker: its definitions on hand-made values, its detection of wrong reports, and a real run
(the demo-style small UNet at FP16) whose report it must find correct."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from tests.zoo.recompute import (
    Disagreement,
    LayerNumbers,
    assert_run_agrees,
    check_comparison,
    check_layer,
    check_run,
    recompute,
)

INF, NAN = math.inf, math.nan


def numbers(ref: list[float], cand: list[float], rel_error: float = 0.1, abs_floor: float = 0.0) -> LayerNumbers:
    r, x = np.array(ref, np.float64), np.array(cand, np.float64)
    return recompute(
        iter([r[: len(r) // 2], r[len(r) // 2 :]]), iter([x[: len(x) // 2], x[len(x) // 2 :]]), rel_error, abs_floor
    )


def elementwise_deviating(ref: list[float], cand: list[float], t: float, floor: float) -> int:
    """The relative error rule, one element at a time."""
    count = 0
    for r, x in zip(ref, cand, strict=True):
        if math.isfinite(r) and math.isfinite(x):
            d = abs(x - r)
            denom = max(abs(r), floor) if floor > 0 else abs(r)
            rel = 0.0 if d == 0 else (INF if denom == 0 else d / denom)
        else:
            rel = 0.0 if (x == r or (math.isnan(r) and math.isnan(x))) else INF
        count += rel > t
    return count


HARD = (
    [0.0, 0.0, 1.0, -2.0, 1e-9, 3.0, INF, -INF, NAN, 5.0, 6e-8, 100.0],
    [0.0, 1e-3, 1.05, -2.5, 0.0, INF, INF, INF, NAN, NAN, 0.0, 99.0],
)


@pytest.mark.parametrize("floor", [0.0, 1e-3])
def test_counts_follow_the_documented_rules(floor: float) -> None:
    ref, cand = HARD
    n = numbers(ref, cand, 0.1, floor)
    assert n.counts["elements"] == 12
    assert n.counts["deviating"] == elementwise_deviating(ref, cand, 0.1, floor)
    assert n.counts["ref_nan"] == 1 and n.counts["ref_inf"] == 2
    assert n.counts["cand_nan"] == 2 and n.counts["cand_inf"] == 3
    assert n.counts["nonfinite_introduced"] == 2  # 3.0 -> inf, 5.0 -> nan
    assert n.infinite_errors == 3  # 3.0 vs inf, -inf vs inf, 5.0 vs nan; inf vs inf and nan vs nan match


def test_finite_layer_numbers() -> None:
    ref = [1.0, -2.0, 3.0, 0.5]
    cand = [1.05, -2.0, 2.7, 0.5]
    n = numbers(ref, cand)
    r, x = np.array(ref), np.array(cand)
    assert n.max_abs_error == pytest.approx(0.3)
    assert n.cosine == pytest.approx(float(r @ x / np.linalg.norm(r) / np.linalg.norm(x)))
    assert n.sqnr_db == pytest.approx(10 * math.log10(float(r @ r) / float((x - r) @ (x - r))))
    assert n.deviation_ratio == 0.0  # 5% and 0.3 / 3 (10%) are not above 10%
    assert numbers(ref, ref).sqnr_db == INF and numbers(ref, ref).cosine == pytest.approx(1.0)
    assert numbers([0.0, 0.0], [0.0, 0.0]).cosine == 1.0  # both all zeros
    assert numbers([0.0, 0.0], [0.0, 1.0]).cosine is None  # one side all zeros: no angle
    assert numbers([0.0, 0.0], [0.0, 1.0]).sqnr_db == -INF


def test_an_inf_that_appeared_is_an_infinite_error_and_cosine_is_undefined() -> None:
    n = numbers([1.0, 2.0, 3.0, 4.0], [INF, INF, INF, INF])
    assert n.max_abs_error == INF and n.sqnr_db == -INF and n.cosine is None
    assert n.deviation_ratio == 1.0 and n.counts["nonfinite_introduced"] == 4
    partial = numbers([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, NAN])
    assert partial.max_abs_error == INF and partial.cosine is None


def test_no_finite_pairs_without_errors_is_undefined() -> None:
    n = numbers([NAN, INF], [NAN, INF])
    assert n.deviation_ratio == 0.0 and n.max_abs_error is None and n.sqnr_db is None and n.cosine is None


def layer(tensor: str, n: LayerNumbers, **metrics: Any) -> dict[str, Any]:
    """A report layer stating exactly the recomputed numbers (as report.json spells them), then ``metrics``."""

    def spell(v: Any) -> Any:
        return v if v is None or math.isfinite(v) else ("inf" if v > 0 else "-inf")

    stated = {
        **n.counts,
        **{k: spell(getattr(n, k)) for k in ("deviation_ratio", "max_abs_error", "sqnr_db", "cosine")},
    }
    limits = {"max_deviation_ratio": 0.5, "min_cosine": None, "max_abs_error": None, "min_sqnr_db": None}
    return {
        "tensor": tensor,
        "rel_error_threshold": 0.1,
        "abs_floor": 0.0,
        "metrics": {**stated, **metrics},
        "limits": {**limits, "allow_nonfinite": False},
        "verdict": "fail" if n.counts["nonfinite_introduced"] or (n.deviation_ratio or 0) > 0.5 else "pass",
    }


def test_check_layer_accepts_exact_numbers_and_null_for_undefined() -> None:
    n = numbers([1.0, 2.0, 3.0, 4.0], [INF, INF, INF, INF])
    assert check_layer("c", layer("t", n), n) == []
    finite = numbers([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.1, 4.0])
    close = layer("t", finite, cosine=float(finite.cosine or 0) * (1 + 1e-9))
    assert check_layer("c", close, finite) == []


def test_check_layer_flags_perfect_metrics_on_an_all_inf_layer() -> None:
    """What issue 10 item 4 saw: cosine 1.0, SQNR inf and max abs error 0 where the candidate is all Inf."""
    n = numbers([1.0, 2.0, 3.0, 4.0], [INF, INF, INF, INF])
    wrong = layer("t", n, cosine=1.0, sqnr_db="inf", max_abs_error=0.0)
    found = {d.what: d for d in check_layer("c", wrong, n)}
    assert set(found) == {"cosine", "sqnr_db", "max_abs_error"}
    assert found["cosine"] == Disagreement("c", "t", "cosine", 1.0, None)
    assert check_layer("c", layer("t", n, cosine="nan"), n)  # undefined is null, not NaN


def test_check_layer_flags_counts_floats_and_verdicts() -> None:
    n = numbers([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.5, 4.0])
    assert [d.what for d in check_layer("c", layer("t", n, deviating=0), n)] == ["deviating"]
    assert [d.what for d in check_layer("c", layer("t", n, sqnr_db=float(n.sqnr_db or 0) + 1e-3), n)] == ["sqnr_db"]
    bad = layer("t", n)
    bad["limits"]["min_cosine"] = 0.99999
    assert [d.what for d in check_layer("c", bad, n)] == ["verdict"]  # cosine below the limit, verdict pass


def write_dump(path: Path, tensors: dict[str, np.ndarray]) -> Path:
    with h5py.File(path, "w") as f:
        group = f.create_group("tensors")
        for name, value in tensors.items():
            ds = group.create_dataset(name.replace("%", "%25").replace("/", "%2F"), data=value)
            ds.attrs["onnx_name"] = name
    return path


def write_packed(path: Path, tensors: dict[str, np.ndarray]) -> Path:
    """A dump of format 2 (small tensors packed), written by layerscope's writer: what the recomputation reads on
    its own."""
    from layerscope.pipelines.dumps import DumpWriter

    samples = len(next(iter(tensors.values())))
    with DumpWriter(path, samples=samples, attrs={}) as w:
        for i in range(samples):
            for name, value in tensors.items():
                w.write(i, name, value[i])
    return path


@pytest.mark.parametrize("writer", [write_dump, write_packed])
def test_check_comparison_reads_escaped_names_and_scalar_samples(tmp_path: Path, writer: Any) -> None:
    rng = np.random.default_rng(0)
    ref = {
        "/a/Conv_output_0": rng.normal(size=(2, 3, 4)).astype(np.float32),
        "/a/max": np.array([1.5, 2.5], np.float32),
    }
    cand = {k: v.astype(np.float16) for k, v in ref.items()}
    rp, cp = writer(tmp_path / "r.h5", ref), writer(tmp_path / "c.h5", cand)
    stated = []
    for name in ref:
        n = recompute(iter(ref[name]), iter(cand[name].astype(np.float64)), 0.1)
        stated.append(layer(name, n))
    comparison = {"candidate": "fp16", "reference": "fp32", "layers": stated, "not_observable": []}
    assert check_comparison(comparison, rp, cp) == []
    omitted = {**comparison, "layers": stated[:1]}
    assert [(d.tensor, d.what) for d in check_comparison(omitted, rp, cp)] == [("/a/max", "layer")]
    assert check_comparison({**omitted, "not_observable": ["/a/max"]}, rp, cp) == []
    tampered = copy.deepcopy(comparison)
    tampered["layers"][0]["metrics"]["elements"] = 1
    assert [d.what for d in check_comparison(tampered, rp, cp)] == ["elements"]


SMALL_UNET_FP16 = """\
name: small
model: {builtin: unet, options: {base_channels: 4, depth: 1}}
samples: 2
inputs:
  input: {shape: [1, 3, 16, 16], source: {random: normal, seed: 0}}
runs:
  fp32: {precision: fp32}
  fp16: {precision: fp16}
thresholds: {rel_error: 0.1, max_deviation_ratio: 0.001, min_cosine: 0.9999999}
"""


def test_demo_style_unet_fp16_report_agrees_with_its_dumps(write_config) -> None:
    from layerscope.cli import main

    code = main(["run", str(write_config(SMALL_UNET_FP16)), "--out", "o", "-q"])
    assert code == 1  # the tight limits make some layers fail: verdicts are checked too
    assert_run_agrees(Path("o"))
    report = json.loads(Path("o/report.json").read_text())
    assert len(report["comparisons"][0]["layers"]) > 10
    # and a wrong number in that report is caught
    original = Path("o/report.json").read_text()
    report["comparisons"][0]["layers"][3]["metrics"]["deviating"] += 1
    Path("o/report.json").write_text(json.dumps(report))
    assert [d.what for d in check_run(Path("o"))] == ["deviating"]
    # and so is a |reference| histogram that moved one element to another bin
    report = json.loads(original)
    ref_abs = report["comparisons"][0]["layers"][3]["metrics"]["histograms"]["ref_abs"]
    assert ref_abs["counts"][0] > 0
    ref_abs["counts"][0] -= 1
    ref_abs["zero"] = ref_abs.get("zero", 0) + 1
    Path("o/report.json").write_text(json.dumps(report))
    assert [d.what for d in check_run(Path("o"))] == ["ref_abs histogram zero", "ref_abs histogram bins"]


def test_check_layer_flags_an_empty_tensor_once() -> None:
    """A 0-element tensor (an empty Constant such as Resize's roi) has no metrics to state: comparing it is wrong."""
    n = numbers([], [])
    assert n.deviation_ratio is None and n.cosine is None and n.max_abs_error is None
    stated = {"tensor": "roi", "metrics": {"elements": 0, "deviation_ratio": 0.0, "cosine": 1.0}, "verdict": "pass"}
    assert check_layer("c", stated, n) == [
        Disagreement("c", "roi", "layer", "compared", "an empty tensor (no elements)")
    ]
