"""The layer tables' columns follow the limits in force, and a shortened table keeps every failing and
root-cause layer, in network order, saying how it chose."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console

from layerscope.pipelines.reports.rows import margin, metric_columns, select_rows
from layerscope.pipelines.reports.terminal import print_summary


def _layer(i: int, ratio: float, sqnr: float, *, min_sqnr: float | None = None, limit: float = 0.01) -> dict[str, Any]:
    failures = []
    if ratio > limit:
        failures.append("deviation")
    if min_sqnr is not None and sqnr < min_sqnr:
        failures.append(f"SQNR {sqnr:.2f} dB < {min_sqnr:g} dB")
    return {
        "tensor": f"t{i}",
        "node": f"n{i}",
        "op_type": "Conv",
        "index": i,
        "execution": "native",
        "rel_error_threshold": 0.1,
        "metrics": {
            "deviation_ratio": ratio,
            "deviating": int(ratio * 1000),
            "elements": 1000,
            "cosine": 0.999,
            "max_abs_error": 0.1,
            "sqnr_db": sqnr,
        },
        "limits": {
            "rel_error": 0.1,
            "max_deviation_ratio": limit,
            "min_cosine": None,
            "max_abs_error": None,
            "min_sqnr_db": min_sqnr,
        },
        "verdict": "fail" if failures else "pass",
        "failures": failures,
    }


def _comparison(layers: list[dict[str, Any]], causes: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "candidate": "int8",
        "reference": "fp32",
        "verdict": "fail" if any(x["verdict"] == "fail" for x in layers) else "pass",
        "layers": layers,
        "failing_layers": sum(x["verdict"] == "fail" for x in layers),
        "root_causes": [{"layer": f"n{t[1:]}", "tensor": t} for t in causes],
        "first_failing_layer": None,
    }


def test_columns_follow_the_limits_in_force() -> None:
    plain = _comparison([_layer(0, 0.001, 40.0)])
    assert [c.metric for c in metric_columns(plain)] == ["sqnr_db"]  # no limit: the scale-free summary
    limited = _comparison([_layer(0, 0.001, 17.96, min_sqnr=18.0)])
    (sqnr,) = metric_columns(limited)
    assert sqnr.limit_key == "min_sqnr_db"
    limited["layers"][0]["limits"]["min_cosine"] = 0.99
    assert [c.metric for c in metric_columns(limited)] == ["cosine", "sqnr_db"]


def test_shortened_table_keeps_every_failing_and_root_cause_layer_in_network_order() -> None:
    # 60 layers; the SQNR-failing one (index 50) has the smallest deviation ratio of all
    layers = [_layer(i, 0.002 + i * 1e-5, 40.0, min_sqnr=18.0) for i in range(60)]
    layers[50] = _layer(50, 0.0, 17.96, min_sqnr=18.0)
    layers[7] = _layer(7, 0.05, 30.0, min_sqnr=18.0)
    c = _comparison(layers, causes=("t3",))
    chosen = select_rows(c, 10)
    tensors = [x["tensor"] for x in chosen.layers]
    assert len(tensors) == 10 and {"t3", "t7", "t50"} <= set(tensors)
    assert [x["index"] for x in chosen.layers] == sorted(x["index"] for x in chosen.layers)
    # the fill: the passing layers closest to their limits (the largest deviation ratios here)
    assert {"t59", "t58"} <= set(tensors)
    assert chosen.note == (
        "10 of 60 layers: 2 failing layers, 1 root-cause layer and the 7 passing layers closest to their limits, "
        "in network order"
    )
    assert select_rows(c, 0).note is None and len(select_rows(c, 0).layers) == 60


def test_margin_puts_limits_on_one_scale() -> None:
    assert margin(_layer(0, 0.005, 40.0)) == 0.5
    assert margin(_layer(0, 0.0, 17.0, min_sqnr=18.0)) > 1.0  # fails on SQNR alone
    undefined = _layer(0, 0.0, 40.0, min_sqnr=18.0)
    undefined["metrics"]["sqnr_db"] = None
    assert margin(undefined) == float("inf")


def test_terminal_shows_the_failing_metric_and_says_how_it_chose() -> None:
    layers = [_layer(i, 0.001, 40.0, min_sqnr=18.0) for i in range(50)]
    layers[45] = _layer(45, 0.0001, 17.96, min_sqnr=18.0)
    out = io.StringIO()
    print_summary({"comparisons": [_comparison(layers)]}, Console(file=out, width=200), rows=5)
    text = " ".join(out.getvalue().split())
    assert "SQNR dB ≥ 18" in text and "17.96" in text
    assert "5 of 50 layers: 1 failing layer and the 4 passing layers closest to their limits" in text
