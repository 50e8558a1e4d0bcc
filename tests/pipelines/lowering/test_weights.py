"""Weights are counted and rounded many at a time (groups of arrays in one numpy pass): the results must be
those of one weight at a time, whatever the group boundaries."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from layerscope.pipelines.lowering import emulate, weights
from layerscope.pipelines.lowering.formats import FORMATS


def arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    out = {f"w{i}": rng.normal(0, 1, size).astype(np.float32) for i, size in enumerate((5, 0, 1, 9, 3, 17, 2))}
    out["w0"][1] = 1e6  # clamped in fp16
    out["w3"][[0, 4]] = [1e-9, 2e-6]  # raised, subnormal
    out["w3"][5] = np.inf  # not finite: not counted, not the largest
    out["w5"][2:5] = [-7e4, 3e-8, np.nan]
    out["w6"] = np.float32(-1e-7).reshape(())[None]
    return out


def model(ws: dict[str, np.ndarray]) -> Any:
    nodes = [helper.make_node("Add", ["x", name], [f"y{name}"], name=f"add_{name}") for name in ws]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info(f"y{name}", TensorProto.FLOAT, None) for name in ws],
        [numpy_helper.from_array(a, name) for name, a in ws.items()],
    )
    return helper.make_model(graph)


def one_at_a_time(ws: dict[str, np.ndarray], fmt: Any) -> dict[str, tuple[dict[str, int], float]]:
    out = {}
    for name, w in ws.items():
        a = np.abs(w.astype(np.float64)).ravel()
        finite = a[np.isfinite(a)]
        counts = {
            "clamped": int(np.count_nonzero(finite > fmt.max)),
            "raised": int(np.count_nonzero((finite > 0) & (finite < fmt.smallest_subnormal))),
            "subnormal": int(np.count_nonzero((finite >= fmt.smallest_subnormal) & (finite < fmt.smallest_normal))),
        }
        if any(counts.values()):
            out[name] = (counts, float(finite.max()) if finite.size else 0.0)
    return out


@pytest.mark.parametrize("group", [1, 4, 10, 1 << 22])
@pytest.mark.parametrize("fmt", ["fp16", "bf16", "fp8"])
def test_weights_counted_in_groups_equal_one_at_a_time(group: int, fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(weights, "GROUP_ELEMENTS", group)
    ws, f = arrays(), FORMATS[fmt]
    got = {name: (counts, biggest) for name, counts, biggest in weights._out_of_range(list(ws), ws, f)}
    assert got == one_at_a_time(ws, f)
    assert fmt != "fp16" or {"w0", "w3", "w5"} <= set(got)  # clamped, raised and subnormal weights were seen
    _notes, per_node = weights.weight_range(model(ws), f, {f"add_{name}" for name in ws})
    assert set(per_node) == {f"add_{name}" for name in got}
    for name, (counts, biggest) in got.items():
        assert per_node[f"add_{name}"] == {**counts, "max_abs": biggest}


@pytest.mark.parametrize("group", [1, 4, 10, 1 << 22])
def test_weights_rounded_in_groups_equal_one_at_a_time(group: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(weights, "GROUP_ELEMENTS", group)  # the grouping both share (weights.in_groups)
    ws = [a.reshape(-1, 1) if a.size % 2 else a for a in arrays().values()]
    for fmt in ("fp16", "bf16", "fp8"):
        got = list(emulate._rounded(ws, FORMATS[fmt]))
        want = [emulate.round_weights(a, FORMATS[fmt]) for a in ws]
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            assert g.shape == w.shape and g.dtype == w.dtype
            np.testing.assert_array_equal(g, w)
