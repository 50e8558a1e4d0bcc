"""Every zoo generator writes a valid model that runs at FP32, deterministically, and has the hard case it claims."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from tests.zoo.models import CASES, ZooCase


def feeds(case: ZooCase, sample: int = 0) -> dict[str, np.ndarray]:
    """Input values from the case's sources (same distributions and rounding as a config would give)."""
    out = {}
    for name, spec in case.inputs.items():
        src = spec["source"]
        rng = np.random.default_rng([src["seed"], sample])
        if src["random"] == "normal":
            values = rng.standard_normal(spec["shape"])
        else:
            values = rng.uniform(src["low"], src["high"], spec["shape"])
        dtype = np.dtype(spec.get("dtype", "float32"))
        out[name] = np.asarray(np.rint(values) if dtype.kind in "iu" else values).astype(dtype)
    return out


def run_all_tensors(path: Path, case: ZooCase) -> dict[str, np.ndarray]:
    """Every main-graph tensor's FP32 value (intermediates exposed as outputs)."""
    model = onnx.load(str(path))
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    known = {o.name for o in model.graph.output}
    for vi in inferred.graph.value_info:
        if vi.name not in known:
            model.graph.output.append(vi)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds(case)), strict=True))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("zoo")
    return {name: case.build(folder / f"{name}.onnx") for name, case in CASES.items()}


@pytest.mark.parametrize("name", sorted(CASES))
def test_model_is_valid_and_runs_at_fp32(name: str, built: dict[str, Path]) -> None:
    case, path = CASES[name], built[name]
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)  # every op's schema exists at the declared opset
    assert [(o.domain, o.version) for o in model.opset_import] == [("", case.opset)]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert {i.name for i in session.get_inputs()} == set(case.inputs)
    for sample in (0, 1):
        for out in session.run(None, feeds(case, sample)):
            assert np.isfinite(out).all()


@pytest.mark.parametrize("name", sorted(CASES))
def test_model_bytes_are_deterministic(name: str, built: dict[str, Path], tmp_path: Path) -> None:
    again = CASES[name].build(tmp_path / "again.onnx")
    assert again.read_bytes() == built[name].read_bytes()


def ops(path: Path) -> set[str]:
    return {n.op_type for n in onnx.load(str(path)).graph.node}


def test_old_opset_cnns_use_the_ops_of_their_time(built: dict[str, Path]) -> None:
    assert {"Upsample", "BatchNormalization", "Concat", "Gemm"} <= ops(built["cnn_opset9"])
    assert "Resize" not in ops(built["cnn_opset9"])
    assert "Resize" in ops(built["cnn_opset11"]) and "Upsample" not in ops(built["cnn_opset11"])
    for name in ("cnn_opset9", "cnn_opset11"):
        assert onnx.load(str(built[name])).opset_import[0].version < 13  # Cast to bfloat16 needs 13


def test_detection_head_has_per_sample_scalar_intermediates(built: dict[str, Path]) -> None:
    values = run_all_tensors(built["detection_scalars"], CASES["detection_scalars"])
    for name in ("/post/max_score", "/post/score_sum", "/post/peak_ratio", "/post/exp_sum"):
        assert values[name].shape == ()
    assert 0 < float(values["/post/peak_ratio"]) < 1


def test_primitive_layernorm_squares_overflow_fp16_but_not_fp32(built: dict[str, Path]) -> None:
    values = run_all_tensors(built["layernorm_primitive"], CASES["layernorm_primitive"])
    fp16_max = float(np.finfo(np.float16).max)
    squares = values["/ln/Pow_output_0"]
    assert np.isfinite(squares).all() and squares.max() > fp16_max
    assert (squares > fp16_max).mean() > 0.1  # a large share becomes Inf in FP16
    assert values["/ln/ReduceMean_1_output_0"].min() > fp16_max  # every token's variance overflows
    assert np.abs(values["/proj_in/MatMul_output_0"]).max() < fp16_max  # the activations themselves fit


def test_layernorm_op_variant_has_the_same_activations(built: dict[str, Path]) -> None:
    assert "LayerNormalization" in ops(built["layernorm_op"])
    assert onnx.load(str(built["layernorm_op"])).opset_import[0].version == 17
    a = run_all_tensors(built["layernorm_primitive"], CASES["layernorm_primitive"])
    b = run_all_tensors(built["layernorm_op"], CASES["layernorm_op"])
    np.testing.assert_allclose(a["output"], b["output"], rtol=1e-3, atol=1e-3)


def _subgraph_ops(path: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for n in onnx.load(str(path)).graph.node:
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                out[a.name] = [m.op_type for m in a.g.node]
    return out


def test_control_flow_models_have_float_ops_in_subgraphs(built: dict[str, Path]) -> None:
    branches = _subgraph_ops(built["if_branches"])
    assert branches == {"then_branch": ["Mul", "Add"], "else_branch": ["Sub", "Mul"]}
    assert _subgraph_ops(built["loop_accumulate"]) == {"body": ["Identity", "Mul", "Add"]}
    # the condition depends on the input: both branches are taken for some input
    case = CASES["if_branches"]
    conds = set()
    for sample in range(8):
        x = feeds(case, sample)["x"]
        conds.add(bool((x * 1.5).sum() > 0))
    assert conds == {True, False}


def _input_types(path: Path) -> dict[str, tuple[int, list[Any]]]:
    g = onnx.load(str(path)).graph
    return {
        i.name: (i.type.tensor_type.elem_type, [d.dim_value for d in i.type.tensor_type.shape.dim]) for i in g.input
    }


def test_integer_inputs(built: dict[str, Path]) -> None:
    assert _input_types(built["int_image"]) == {"image": (onnx.TensorProto.INT32, [1, 3, 16, 16])}
    assert _input_types(built["token_embedding"]) == {
        "input_ids": (onnx.TensorProto.INT64, [1, 12]),
        "position": (onnx.TensorProto.INT64, []),  # a 0-d scalar input
    }
    image = feeds(CASES["int_image"])["image"]
    assert image.min() >= 0 and image.max() <= 255 and image.max() > 200


def test_weight_only_subgraphs_are_there(built: dict[str, Path]) -> None:
    model = onnx.load(str(built["weight_subgraphs"]))
    by_name = {n.name: n for n in model.graph.node}
    inits = {i.name for i in model.graph.initializer}
    assert by_name["/conv/Constant"].op_type == "Constant"
    assert by_name["/offset/ConstantOfShape"].op_type == "ConstantOfShape"
    assert set(by_name["/bn/Mul"].input) <= inits  # initializer-only arithmetic
    assert set(by_name["/gate/Unsqueeze"].input) <= inits
    flat = [by_name[n].op_type for n in ("/flat/Shape", "/flat/Gather", "/flat/Unsqueeze", "/flat/Concat")]
    assert flat == ["Shape", "Gather", "Unsqueeze", "Concat"]
    values = run_all_tensors(built["weight_subgraphs"], CASES["weight_subgraphs"])
    assert values["/flat/Concat_output_0"].dtype == np.int64 and values["/flat/Concat_output_0"].tolist() == [1, -1]


def test_overflow_cnn_overflows_fp16_from_the_first_conv(built: dict[str, Path]) -> None:
    values = run_all_tensors(built["overflow_cnn"], CASES["overflow_cnn"])
    fp16_max = float(np.finfo(np.float16).max)
    assert values["/conv0/Conv_output_0"].min() > fp16_max  # every element is Inf in FP16
    assert all(np.isfinite(v).all() for v in values.values())  # FP32 is fine
