"""The size estimate of a run, from the model's shapes at the config's input sizes."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from layerscope.pipelines.experiment import load_experiment
from layerscope.pipelines.experiment.budget import check, estimate
from layerscope.runner.errors import UsageError
from tests.conftest import SMALL_UNET
from tests.models import chain_model

CHAIN = """\
name: chain
model: model.onnx
samples: 3
inputs:
  input: {shape: [1, 4, 8, 8], source: {random: normal}}
runs: {fp32: {precision: fp32}, fp16: {precision: fp16}}
"""


def test_a_static_model_is_counted_exactly(tmp_path: Path) -> None:
    chain_model(tmp_path / "model.onnx")
    (tmp_path / "exp.yaml").write_text(CHAIN)
    exp = load_experiment(tmp_path / "exp.yaml")
    est = estimate(exp)
    # conv0, relu0, mul0: 1x4x8x8 float32 (1 KiB each); output 1x2x8x8 (512 B)
    assert (est.input_bytes, est.tensor_bytes, est.unknown) == (1024, 3 * 1024 + 512, 0)
    assert est.dump_bytes == 3 * est.tensor_bytes and est.runs == 2
    assert est.disk() == 2 * (est.dump_bytes + est.weight_bytes)
    assert est.memory == 2 * est.weight_bytes + 3 * 1024 + 2 * est.tensor_bytes


def test_symbolic_dims_take_the_configs_shape(write_config) -> None:
    small = estimate(load_experiment(write_config()))
    big_config = write_config(SMALL_UNET.replace("shape: [1, 3, 16, 16]", "shape: [1, 3, 64, 64]"), "big.yaml")
    big = estimate(load_experiment(big_config))
    assert small.unknown == big.unknown == 0
    assert big.tensor_bytes == 16 * small.tensor_bytes and big.input_bytes == 16 * small.input_bytes


def test_the_estimate_is_memoised_in_the_cache(write_config, isolated_cache: Path) -> None:
    exp = load_experiment(write_config())
    first = estimate(exp)
    assert list((isolated_cache / "v1" / "memo" / "estimate").glob("*.json"))
    assert estimate(exp) == first


def test_check_refuses_what_does_not_fit(write_config, monkeypatch: pytest.MonkeyPatch) -> None:
    from layerscope.pipelines.experiment import budget

    exp = load_experiment(write_config())
    est = estimate(exp)
    check(exp, est)
    monkeypatch.setattr(budget, "available_memory", lambda: est.memory - 1)
    with pytest.raises(UsageError, match=r"needs ~.* of memory per stage"):
        check(exp, est)
    monkeypatch.setattr(budget, "available_memory", lambda: None)  # unknown: not a reason to refuse
    monkeypatch.setattr(budget, "free_disk", lambda path: est.disk() - 1)
    with pytest.raises(UsageError, match=r"the dumps of this experiment need ~.*is free there"):
        check(exp, est)
    check(exp, est, dumping=1)  # only one run's dumps to make: fits


def test_unknown_sizes_make_a_floor(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    # NonZero's output size depends on the data: shape inference cannot tell it.
    graph = helper.make_graph(
        [
            helper.make_node("NonZero", ["input"], ["nz"], name="nz"),
            helper.make_node("Cast", ["nz"], ["nzf"], to=TensorProto.FLOAT, name="cast"),
            helper.make_node("Relu", ["input"], ["output"], name="relu"),
        ],
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "model.onnx"))
    (tmp_path / "exp.yaml").write_text(textwrap.dedent(CHAIN).replace("[1, 4, 8, 8]", "[1, 4]"))
    est = estimate(load_experiment(tmp_path / "exp.yaml"))
    assert est.unknown == 1 and est.tensor_bytes == 16
    assert "(at least: 1 tensors of unknown size)" in est.describe()
