"""Models below opset 13 are upgraded where the format needs it, and keep every layer's name (issue 10, items 2-3);
Constant weights are quantized as weights (N3); ORT's pre-processing leaves nothing in the working directory (7)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from layerscope.pipelines.lowering.opset import ensure_opset
from layerscope.pipelines.lowering.quantize import constants_to_initializers, preprocess
from tests.models import chain_model
from tests.zoo.models import cnn_opset9


def run(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})


def test_upgrade_keeps_node_and_tensor_names_and_values(tmp_path: Path) -> None:
    original = onnx.load(str(cnn_opset9(tmp_path / "m.onnx")))
    names = {(n.name, tuple(n.output)) for n in original.graph.node}
    upgraded, notes = ensure_opset(onnx.load(str(tmp_path / "m.onnx")), 13, "a Cast to bfloat16")
    assert {o.version for o in upgraded.opset_import if o.domain in ("", "ai.onnx")} == {13}
    after = {(n.name, tuple(n.output)) for n in upgraded.graph.node}
    assert names <= after  # Upsample became Resize under its own name and output
    resize = next(n for n in upgraded.graph.node if n.name == "/up/Upsample")
    assert resize.op_type == "Resize"
    assert all(n.name for n in upgraded.graph.node)  # the converter's helper Constant is named too
    assert notes and "opset 9 was upgraded to 13" in notes[0] and "/up/Upsample (Upsample → Resize)" in notes[0]
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    np.testing.assert_array_equal(run(original, x)[0], run(upgraded, x)[0])


def test_a_model_at_the_opset_already_is_left_alone(tmp_path: Path) -> None:
    model = onnx.load(str(chain_model(tmp_path / "m.onnx", opset=17)))
    same, notes = ensure_opset(model, 13, "anything")
    assert same is model and notes == []


def test_constant_weights_become_initializers_under_their_names(tmp_path: Path) -> None:
    model = onnx.load(str(chain_model(tmp_path / "m.onnx", constant=True, scale=3.0)))
    w = onnx.numpy_helper.from_array(np.linspace(0.5, 2.0, 4).reshape(4, 1, 1).astype(np.float32), "w")
    helper = onnx.helper
    model.graph.node.insert(0, helper.make_node("Constant", [], ["k"], value=w, name="k"))
    model.graph.node.insert(len(model.graph.node) - 1, helper.make_node("Mul", ["t/mul0", "k"], ["t/k"], name="k_mul"))
    model.graph.node[-1].input[0] = "t/k"
    x = np.random.default_rng(0).standard_normal((1, 4, 8, 8)).astype(np.float32)
    before = run(model, x)[0]
    assert constants_to_initializers(model) == 1  # the (4,1,1) weight; the 0-d scale is no weight tensor
    assert "k" in {i.name for i in model.graph.initializer}
    assert not any(n.op_type == "Constant" and n.output[0] == "k" for n in model.graph.node)
    np.testing.assert_array_equal(run(model, x)[0], before)


def test_pre_processing_writes_its_scratch_files_in_the_scratch_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ORT's symbolic shape inference saves sym_shape_infer_temp.onnx into the current directory when it gives up."""
    import onnxruntime.quantization.shape_inference as si

    def leaky(model_in: str, model_out: str, **kw: object) -> None:
        Path("sym_shape_infer_temp.onnx").write_bytes(b"x")  # relative: wherever the CWD is
        Path(model_out).write_bytes(Path(model_in).read_bytes())

    monkeypatch.setattr(si, "quant_pre_process", leaky)
    work = tmp_path / "scratch"
    work.mkdir()
    cwd = Path.cwd()
    model = chain_model(work / "m.onnx")
    preprocess(model, work / "pre.onnx", [])
    assert Path.cwd() == cwd and not (cwd / "sym_shape_infer_temp.onnx").exists()
    assert (work / "sym_shape_infer_temp.onnx").exists()
    assert os.listdir(cwd) == [] or "sym_shape_infer_temp.onnx" not in os.listdir(cwd)
