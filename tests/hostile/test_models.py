"""Hostile models and input files: external data that points elsewhere on the machine, operators no runtime
knows, files that are not what their name says, names that would break a Markdown table."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.hostile.conftest import CHAIN
from tests.models import chain_model


def external_model(folder: Path, location: str) -> Path:
    """The chain model with its weight w0 stored as external data at ``location`` (written as given)."""
    path = chain_model(folder / "model.onnx")
    model = onnx.load(str(path))
    for init in model.graph.initializer:
        if init.name == "w0":
            init.ClearField("raw_data")
            init.ClearField("float_data")
            init.data_location = TensorProto.EXTERNAL
            entry = init.external_data.add()
            entry.key, entry.value = "location", location
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("location", ["../../../../../../etc/passwd", "/etc/passwd", "sub/../../secret.bin"])
def test_external_data_outside_the_model_folder_is_never_opened(cli, chain, isolated_cache, location: str) -> None:
    config = chain()
    (config.parent.parent / "secret.bin").write_bytes(b"\0" * 144)
    external_model(config.parent, location)
    r = cli("validate", str(config)).expect(2, "/model: model model.onnx: external data location")
    assert "outside the model's folder" in r.err or "not a path relative to the model's folder" in r.err
    # Nothing was hashed: no memo of layerscope's names the file (they used to record its path and SHA-256).
    memo = "".join(p.read_text() for p in (isolated_cache / "v1" / "memo").rglob("*.json"))
    assert "passwd" not in memo and "secret" not in memo


def test_external_data_through_a_link_out_of_the_folder(cli, chain, tmp_path: Path) -> None:
    config = chain()
    (tmp_path / "weights.bin").write_bytes(np.zeros(144, np.float32).tobytes())
    os.symlink(tmp_path / "weights.bin", config.parent / "weights.bin")
    external_model(config.parent, "weights.bin")
    cli("validate", str(config)).expect(2, "weights.bin' resolves to", "outside the model's folder")


def test_external_data_inside_the_folder_is_part_of_the_model(cli, chain) -> None:
    config = chain()
    model = onnx.load(str(chain_model(config.parent / "model.onnx")))
    onnx.save(model, str(config.parent / "model.onnx"), save_as_external_data=True, location="w.bin", size_threshold=0)
    cli("run", str(config), "-q", "--out", "o").expect(0, "PASS")


def test_an_operator_the_runtime_does_not_know_is_a_config_error(cli, chain) -> None:
    config = chain()
    model = onnx.load(str(config.parent / "model.onnx"))
    model.graph.node[1].op_type = "Frobnicate"  # relu0
    onnx.save(model, str(config.parent / "model.onnx"))
    cli("validate", str(config)).expect(2, "exp.yaml:2:8: /model: onnxruntime does not know the operator Frobnicate")
    cli("run", str(config)).expect(2, "(node relu0)")  # at validation, not as a failed build (exit 3)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty (0 bytes)"),
        (b"name: not a model\n", "cannot read ONNX model"),
        (b"\x08\x07", "is not an ONNX model (it has no graph)"),  # parses as a ModelProto with only ir_version
    ],
)
def test_model_files_that_are_not_models(cli, chain, content: bytes, message: str) -> None:
    config = chain()
    (config.parent / "model.onnx").write_bytes(content)
    cli("validate", str(config)).expect(2, message)


def test_scalar_npy_input(cli, chain) -> None:
    config = chain(CHAIN.replace("source: {random: normal, seed: 0}", "source: {file: x.npy}"))
    np.save(config.parent / "x.npy", np.array(1.0, np.float32))
    cli("validate", str(config)).expect(2, "x.npy holds a scalar; expected samples along the first axis")
    # run does not open input files while validating: the dump stage says the same, as a failed stage
    cli("run", str(config), "-q").expect(
        3, "dump[fp32] failed: x.npy holds a scalar; expected samples along the first axis"
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            np.zeros((2, 1, 4, 4, 4), np.float32),
            "x.npy has shape [2, 1, 4, 4, 4], which holds neither samples of shape [1, 4, 8, 8]",
        ),
        (np.zeros((1, 1, 4, 8, 8), np.float32), "x.npy holds 1 samples (shape [1, 1, 4, 8, 8]); the config asks for 2"),
        (b"\x93NUMPY garbage", "cannot read input file"),
    ],
)
def test_input_files_that_do_not_fit(cli, chain, data: object, message: str) -> None:
    config = chain(CHAIN.replace("source: {random: normal, seed: 0}", "source: {file: x.npy}"))
    if isinstance(data, bytes):
        (config.parent / "x.npy").write_bytes(data)
    else:
        np.save(config.parent / "x.npy", data)
    cli("validate", str(config)).expect(2, message)


def named_model(path: Path, names: list[str]) -> Path:
    """input -> Relu -> Relu -> output, nodes and their output tensors named ``names`` (as hostile as wanted)."""
    nodes = [
        helper.make_node("Relu", ["input"], [names[0]], name=names[0]),
        helper.make_node("Relu", [names[0]], ["output"], name=names[1]),
    ]
    graph = helper.make_graph(
        nodes,
        "names",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4])],
        [numpy_helper.from_array(np.zeros(1, np.float32), "unused")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_names_cannot_inject_markdown(cli, chain) -> None:
    config = chain(CHAIN.replace("shape: [1, 4, 8, 8]", "shape: [1, 4]"))
    hostile = ["a|b <script>alert(1)</script>", "`tick` *bold* [link](http://x)"]
    named_model(config.parent / "model.onnx", hostile)
    cli("run", str(config), "-q", "--out", "o", "--set", "report.formats=[md, html]").expect(0, "PASS")
    assert "<script>alert" not in Path("o/report.html").read_text()
    md = Path("o/report.md").read_text()
    assert "<script>" not in md and "[link](http" not in md
    lines = md.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| Layer | Op |"))
    columns = lines[header].count("|")
    rows = lines[header + 2 : header + 4]  # the two layers
    assert [row.replace("\\|", "").count("|") for row in rows] == [columns, columns], rows
    cli("report", "o", "--format", "md").expect(0, "a\\|b \\<script\\>")


def test_external_data_in_a_constant_or_a_subgraph_is_checked_too(cli, chain) -> None:
    """onnx.load reads external data of every tensor (node attributes, If/Loop bodies), not only initializers."""
    config = chain()
    path = config.parent / "model.onnx"
    model = onnx.load(str(path))
    value = numpy_helper.from_array(np.ones((1,), np.float32), "s_value")
    value.ClearField("raw_data")
    value.data_location = TensorProto.EXTERNAL
    entry = value.external_data.add()
    entry.key, entry.value = "location", "../../../../../etc/passwd"
    model.graph.node.insert(0, helper.make_node("Constant", [], ["unused_constant"], name="k", value=value))
    onnx.save(model, str(path))
    cli("validate", str(config)).expect(2, "external data location '../../../../../etc/passwd' resolves to /etc/passwd")
