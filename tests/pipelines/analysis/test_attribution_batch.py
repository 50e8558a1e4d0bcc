"""Attribution runs its cut layers in batches (one ONNX Runtime session per batch): every local metric must be
exactly what the layer gives when run alone, at every precision, and a layer that cannot run costs only itself."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

import layerscope
from layerscope.pipelines.analysis import attribution
from tests.zoo.models import CASES


def locals_of(report: layerscope.Report) -> dict[tuple[str, str], Any]:
    return {
        (c.candidate, x.tensor): (x.attribution.status, x.attribution.raw().get("local"))
        for c in report.comparisons
        for x in c.layers
        if x.attribution is not None
    }


def run(name: str, folder: Path, cache: Path) -> layerscope.Report:
    case = CASES[name]
    model = case.build(folder / f"{name}.onnx")
    cfg = {
        "name": name,
        "model": str(model),
        "samples": 2,
        "inputs": case.inputs,
        "runs": {"fp32": {"precision": "fp32"}, "fp16": {"precision": "fp16"}, "int8": {"precision": "int8"}},
        "report": {"formats": ["json"]},
    }
    return layerscope.run(cfg, out=folder / "out", cache_dir=cache, jobs=1)


@pytest.mark.parametrize("name", ["cnn_opset11", "layernorm_primitive", "overflow_cnn", "weight_subgraphs"])
def test_batched_attribution_equals_one_layer_at_a_time(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    real, sizes = attribution._run, []

    def spy(session: Any, members: list[Any], *a: Any, **k: Any) -> Any:
        out = real(session, members, *a, **k)
        sizes.append(len(members))  # only a batch that ran to the end
        return out

    made_in: list[str] = []
    real_session = attribution._merged_session

    def session_spy(*a: Any, **k: Any) -> Any:
        made_in.append(threading.current_thread().name)
        return real_session(*a, **k)

    monkeypatch.setattr(attribution, "_run", spy)
    monkeypatch.setattr(attribution, "_merged_session", session_spy)
    batched = locals_of(run(name, tmp_path / "a", tmp_path / "cache-a"))
    assert max(sizes) > 1  # the layers really ran together
    assert made_in and all(t.startswith("attribution-session") for t in made_in)  # beside the batch running
    monkeypatch.setattr(attribution, "BATCH_LAYERS", 1)
    alone = locals_of(run(name, tmp_path / "b", tmp_path / "cache-b"))
    assert batched == alone
    assert sum(1 for status, _ in batched.values() if status == "ok") >= 4


def test_a_layer_that_breaks_its_batch_is_attributed_alone_and_only_it_is_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = attribution._run

    def fails_for_cnn_relu(session: Any, members: list[Any], *a: Any, **k: Any) -> Any:
        if any(cut.node == "/conv1/Relu" for cut, _ in members):
            raise RuntimeError("this layer does not run")
        return real(session, members, *a, **k)

    monkeypatch.setattr(attribution, "_run", fails_for_cnn_relu)
    report = run("overflow_cnn", tmp_path, tmp_path / "cache")
    layers = {x.node: x.attribution for x in report.comparison("fp16").layers}
    relu = layers["/conv1/Relu"]
    assert relu is not None and relu.status == "not attributable" and "this layer does not run" in (relu.why or "")
    others = [a for node, a in layers.items() if node != "/conv1/Relu" and a is not None]
    assert others and all(a.status == "ok" for a in others)
