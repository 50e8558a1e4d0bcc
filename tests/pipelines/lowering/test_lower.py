"""Precision lowering: typed FP16 islands with FP32 I/O and pinned layers, emulation, the tensor map."""

from __future__ import annotations

from pathlib import Path

import ml_dtypes
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from layerscope.pipelines.lowering import PrecisionPlan, lower
from layerscope.pipelines.lowering.emulate import round_weights
from layerscope.pipelines.lowering.formats import FORMATS
from layerscope.pipelines.models.summary import summarize
from tests.models import chain_model


def elem_types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    out = {vi.name: vi.type.tensor_type.elem_type for vi in [*g.value_info, *g.input, *g.output]}
    out.update({i.name: i.data_type for i in g.initializer})
    return out


def run(model: onnx.ModelProto, outputs: list[str], x: np.ndarray) -> dict[str, np.ndarray]:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for name in outputs:
        if name not in {o.name for o in m.graph.output}:
            m.graph.output.append(onnx.ValueInfoProto(name=name))
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip(outputs, sess.run(outputs, {"input": x}), strict=True))


def lowered(path: Path, fmt: str, pinned: tuple[str, ...] = (), execution: str = "native"):
    summary = summarize(path)
    result = lower(onnx.load(str(path)), summary, PrecisionPlan(fmt, execution, pinned))
    return result, summary


def test_fp16_typed_graph_keeps_fp32_io_and_computes_fp16(tmp_path: Path) -> None:
    result, _ = lowered(chain_model(tmp_path / "m.onnx"), "fp16")
    m = result.model
    assert m.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert m.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    types = elem_types(m)
    tmap = result.info["tensors"]
    for t in ("t/conv0", "t/relu0", "t/mul0"):
        assert types[tmap[t]["name"]] == TensorProto.FLOAT16
        assert tmap[t]["dtype"] == "float16" and tmap[t]["stored"] == "float16" and tmap[t]["execution"] == "native"
    assert types["w0"] == TensorProto.FLOAT16
    assert result.info["execution"] == "native"
    onnx.checker.check_model(m)  # topologically sorted and well typed


def test_pinned_layers_really_see_fp32(tmp_path: Path) -> None:
    path = chain_model(tmp_path / "m.onnx")
    result, _ = lowered(path, "fp16", pinned=("conv0", "relu0"))
    m = result.model
    nodes = {n.name: n for n in m.graph.node}
    types = elem_types(m)
    # conv0 reads the FP32 graph input directly: no Cast(FP16)->Cast(FP32) round trip in front of it
    assert nodes["conv0"].input[0] == "input"
    assert types[nodes["conv0"].input[1]] == TensorProto.FLOAT  # its weights stay FP32
    # relu0 reads conv0's FP32 output directly (pinned -> pinned stays FP32)
    assert nodes["relu0"].input[0] == nodes["conv0"].output[0]
    assert types[nodes["relu0"].output[0]] == TensorProto.FLOAT
    assert types[nodes["mul0"].output[0]] == TensorProto.FLOAT16
    info = result.info
    assert info["nodes"]["conv0"]["execution"] == "pinned" and info["nodes"]["mul0"]["execution"] == "native"
    assert info["tensors"]["t/conv0"]["dtype"] == "float32"
    # numerically: the pinned prefix equals the FP32 model exactly
    x = np.random.default_rng(0).standard_normal((1, 4, 8, 8)).astype(np.float32)
    ref = run(onnx.load(str(path)), ["t/relu0"], x)["t/relu0"]
    got = run(m, [info["tensors"]["t/relu0"]["name"]], x)
    np.testing.assert_array_equal(next(iter(got.values())), ref)


def test_weights_out_of_fp16_range_are_clamped_and_reported(tmp_path: Path) -> None:
    result, _ = lowered(chain_model(tmp_path / "m.onnx", scale=1e5), "fp16")
    assert result.info["notes"][:2] == [
        "1 weights exceed the fp16 maximum (65504) and were clamped to it",
        "  s (read by mul0): 1 values clamped, largest |w| = 1e+05",
    ]
    assert result.info["nodes"]["mul0"]["weights"] == {"clamped": 1, "raised": 0, "subnormal": 0, "max_abs": 1e5}
    assert result.info["tensors"]["t/mul0"]["weights"]["clamped"] == 1
    # pinning the layer keeps its weight in FP32
    pinned, _ = lowered(chain_model(tmp_path / "m.onnx", scale=1e5), "fp16", pinned=("mul0",))
    assert not any("clamped" in n for n in pinned.info["notes"])
    s_init = next(i for i in pinned.model.graph.initializer if i.name == "s")
    assert s_init.data_type == TensorProto.FLOAT and numpy_helper.to_array(s_init) == np.float32(1e5)


def test_emulated_bf16_rounds_every_value_and_weight(tmp_path: Path) -> None:
    path = chain_model(tmp_path / "m.onnx")
    result, _ = lowered(path, "bf16", execution="emulated")
    m = result.model
    assert result.info["execution"] == "emulated"
    w0 = numpy_helper.to_array(next(i for i in m.graph.initializer if i.name == "w0"))
    np.testing.assert_array_equal(w0, w0.astype(ml_dtypes.bfloat16).astype(np.float32))
    x = np.random.default_rng(0).standard_normal((1, 4, 8, 8)).astype(np.float32)
    names = ["t/conv0", "t/relu0", "t/mul0", "output"]
    got = run(m, names, x)
    ref = run(onnx.load(str(path)), names, x)
    for name in names:
        v = got[name]
        assert v.dtype == np.float32
        np.testing.assert_array_equal(v, v.astype(ml_dtypes.bfloat16).astype(np.float32))  # on the bf16 grid
        np.testing.assert_allclose(v, ref[name], rtol=0.05, atol=0.05)


def test_ort_cast_rounding_matches_ml_dtypes() -> None:
    """Emulation relies on the runtime's Cast being round-to-nearest-even, like ml_dtypes."""
    f32, bf16, f16 = TensorProto.FLOAT, TensorProto.BFLOAT16, TensorProto.FLOAT16
    nodes = [
        helper.make_node("Cast", ["input"], ["b"], to=bf16),
        helper.make_node("Cast", ["b"], ["y"], to=f32),
        helper.make_node("Cast", ["input"], ["h"], to=f16),
        helper.make_node("Cast", ["h"], ["z"], to=f32),
    ]
    io = [helper.make_tensor_value_info(n, f32, [None]) for n in ("input", "y", "z")]
    g = helper.make_graph(nodes, "g", io[:1], io[1:])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(200_000) * 10.0 ** rng.uniform(-30, 30, 200_000)).astype(np.float32)
    x[:6] = [np.nan, np.inf, -np.inf, 0.0, 65519.0, 65520.0]
    out = run(m, ["y", "z"], x)
    with np.errstate(over="ignore"):  # values beyond the format's range become inf, as they should
        np.testing.assert_array_equal(out["y"], x.astype(ml_dtypes.bfloat16).astype(np.float32))
        np.testing.assert_array_equal(out["z"], x.astype(np.float16).astype(np.float32))


def test_round_weights_follows_tensorrt_conversion() -> None:
    w = np.array([1e5, -1e5, 1e-9, -1e-9, 0.0, 1.0 + 2**-12], np.float32)
    got = round_weights(w, FORMATS["fp16"])
    np.testing.assert_array_equal(got, np.array([65504, -65504, 5.9604645e-08, -5.9604645e-08, 0, 1.0], np.float32))


@pytest.mark.parametrize("name", ["fp16", "bf16", "fp8"])
def test_format_limits_match_ml_dtypes(name: str) -> None:
    from layerscope.pipelines.lowering.formats import numpy_dtype

    fmt = FORMATS[name]
    fi = ml_dtypes.finfo(numpy_dtype(name))
    assert fmt.max == float(fi.max)
    assert fmt.smallest_normal == float(fi.smallest_normal)
    assert fmt.smallest_subnormal == float(fi.smallest_subnormal)


def test_ops_without_kernels_are_emulated_and_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ORT build re-lowers ops the runtime has no FP16 kernel for, and maps their rounded value."""
    from layerscope.pipelines.backends import onnxruntime as backend_mod
    from layerscope.pipelines.experiment import RunSpec
    from layerscope.pipelines.models import ResolvedModel
    from layerscope.runner.graph import StageContext

    path = chain_model(tmp_path / "m.onnx")
    backend = backend_mod.OnnxRuntimeBackend()
    real_probe = backend._probe
    calls: list[int] = []

    def fake_probe(model, run):  # the first probe pretends Relu has no FP16 kernel
        calls.append(1)
        return ("Relu", "relu0", "no kernel") if len(calls) == 1 else real_probe(model, run)

    monkeypatch.setattr(backend, "_probe", fake_probe)

    class Quiet:
        def start(self, *a: object, **k: object) -> None: ...
        def advance(self, *a: object) -> None: ...
        def log(self, message: str) -> None: ...

    out = tmp_path / "build"
    out.mkdir()
    ctx = StageContext(out_dir=out, inputs={}, progress=Quiet())
    run_spec = RunSpec("fp16", "onnxruntime", "fp16", {"execution": "native", "graph_optimization": "all"}, ())
    from layerscope.pipelines.backends.base import BuildRequest

    request = BuildRequest(("t/relu0",), (), tmp_path / "shared")
    backend.build(ctx, ResolvedModel(path, "d" * 64, summarize(path), {"path": str(path)}), run_spec, request)
    import json

    info = json.loads((out / "lowering.json").read_text())
    assert info["execution"] == "mixed"
    assert info["nodes"]["relu0"]["execution"] == "emulated"
    assert info["tensors"]["t/relu0"]["dtype"] == "float16" and info["tensors"]["t/relu0"]["stored"] == "float16"
    assert any("no fp16 CPU kernel for Relu" in n for n in info["notes"])
    assert ctx.result["blocked_ops"] == ["Relu"]


@pytest.mark.parametrize("execution", ["native", "emulated"])
def test_constant_node_weights_are_lowered_reported_and_kept_fp32_when_pinned(tmp_path: Path, execution: str) -> None:
    path = chain_model(tmp_path / "m.onnx", scale=1e5, constant=True)
    result, _ = lowered(path, "fp16", execution=execution)
    assert result.info["nodes"]["mul0"]["weights"]["clamped"] == 1
    x = np.full((1, 4, 8, 8), 1e-3, np.float32)  # small enough that x 65504 stays finite in FP16
    ref = run(onnx.load(str(path)), ["t/mul0"], x)["t/mul0"]
    low = run(result.model, [result.info["tensors"]["t/mul0"]["name"]], x)
    clamped = next(iter(low.values())).astype(np.float32)
    assert np.isfinite(clamped).all()  # clamped to 65504 like TensorRT, not rounded to inf
    np.testing.assert_allclose(clamped, ref * (65504 / 1e5), rtol=0.05, atol=0.5)
    pinned, _ = lowered(path, "fp16", pinned=("mul0",), execution=execution)
    assert pinned.info["nodes"]["s"]["execution"] == "pinned"  # the Constant read only by mul0 is pinned too
    got = run(pinned.model, [pinned.info["tensors"]["t/mul0"]["name"]], x)
    np.testing.assert_allclose(next(iter(got.values())), ref, rtol=0.05, atol=0.5)  # the 1e5 weight survived


def test_bf16_typed_graph_retypes_every_fp16_value_and_rounds_weights_from_fp32(tmp_path: Path) -> None:
    """The TensorRT typed route's BF16 graph: FP32 I/O, pinned layers FP32, everything else BF16."""
    path = chain_model(tmp_path / "m.onnx", scale=1e5, constant=True)
    result, _ = lowered(path, "bf16", pinned=("conv0",))
    m = result.model
    g = m.graph
    assert g.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert g.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert all(vi.type.tensor_type.elem_type != TensorProto.FLOAT16 for vi in g.value_info)
    assert all(i.data_type != TensorProto.FLOAT16 for i in g.initializer)
    casts = [a.i for n in g.node if n.op_type == "Cast" for a in n.attribute if a.name == "to"]
    assert TensorProto.BFLOAT16 in casts and TensorProto.FLOAT16 not in casts
    inits = {i.name: i for i in g.initializer}
    assert inits["w0"].data_type == TensorProto.FLOAT  # read only by the pinned conv0
    original = onnx.load(str(path))
    w1 = numpy_helper.to_array(next(i for i in original.graph.initializer if i.name == "w1"))
    assert inits["w1"].data_type == TensorProto.BFLOAT16
    np.testing.assert_array_equal(numpy_helper.to_array(inits["w1"]), w1.astype(ml_dtypes.bfloat16))
    # the 1e5 Constant is rounded from FP32 (BF16 holds it), not carried over from FP16's clamp at 65504
    const = next(n for n in g.node if n.op_type == "Constant")
    assert numpy_helper.to_array(const.attribute[0].t).astype(np.float32) == np.float32(99840.0)
    info = result.info
    assert info["execution"] == "native" and not any("clamped" in n for n in info["notes"])
    assert info["tensors"]["t/mul0"]["dtype"] == "bfloat16" and info["tensors"]["t/conv0"]["dtype"] == "float32"


def test_bf16_typed_graph_computes_like_the_fp32_model_within_bf16_precision(tmp_path: Path) -> None:
    """ORT's CPU provider has no BF16 Conv, so the graph is checked with ONNX's reference evaluator."""
    from onnx.reference import ReferenceEvaluator

    path = chain_model(tmp_path / "m.onnx")
    result, _ = lowered(path, "bf16")
    x = np.random.default_rng(0).standard_normal((1, 4, 8, 8)).astype(np.float32)
    ref = ReferenceEvaluator(onnx.load(str(path))).run(None, {"input": x})[0]
    got = ReferenceEvaluator(result.model).run(None, {"input": x})[0]
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, ref, rtol=0, atol=0.02 * np.abs(ref).max())
    assert not np.array_equal(got, ref)  # it did compute in BF16


def test_runtime_applied_records_the_plan_without_changing_the_graph(tmp_path: Path) -> None:
    from layerscope.pipelines.lowering import runtime_applied

    path = chain_model(tmp_path / "m.onnx", scale=1e5)
    summary = summarize(path)
    result = runtime_applied(onnx.load(str(path)), summary, PrecisionPlan("fp16", "native", ("conv0",)))
    assert result.model is None
    nodes = result.info["nodes"]
    assert nodes["conv0"] == {"op_type": "Conv", "execution": "pinned", "precision": "fp32"}
    assert nodes["mul0"]["execution"] == "native" and nodes["mul0"]["weights"]["clamped"] == 1
    assert result.info["tensors"]["t/relu0"] == {
        "name": "t/relu0",
        "node": "relu0",
        "op_type": "Relu",
        "index": 1,
        "execution": "native",
        "dtype": "float16",
        "stored": "float32",
    }
