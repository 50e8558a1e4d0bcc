"""HDF5 dumps: round trip, escaped names with the original as an attribute, readable with plain h5py."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from layerscope.pipelines.dumps import DumpReader, DumpWriter, escape, unescape
from layerscope.runner.errors import StageError


@pytest.mark.parametrize("name", ["conv0", "/encoder/conv0/Conv_output_0", "a%2Fb", ".hidden", "..", "x/y%z", "%2E"])
def test_escape_round_trips_and_is_a_valid_hdf5_name(name: str) -> None:
    escaped = escape(name)
    assert "/" not in escaped and not escaped.startswith(".")
    assert unescape(escaped) == name


def test_round_trip_with_attributes(tmp_path: Path) -> None:
    path = tmp_path / "dump.h5"
    rng = np.random.default_rng(0)
    values = {
        "/enc/conv0/Conv_output_0": [rng.standard_normal((1, 4, 3, 3)).astype(np.float32) for _ in range(3)],
        "logits": [rng.standard_normal((2,)).astype(np.float16) for _ in range(3)],
    }
    with DumpWriter(path, samples=3, attrs={"run": "fp16", "inputs": {"x": {"seed": 0}}}) as w:
        w.describe(
            "/enc/conv0/Conv_output_0",
            {
                "node": "/enc/conv0/Conv",
                "op_type": "Conv",
                "index": 0,
                "dtype_executed": "float16",
                "execution": "native",
            },
        )
        w.describe(
            "logits",
            {"node": "head", "op_type": "Gemm", "index": 1, "dtype_executed": "float16", "execution": "native"},
        )
        for i in range(3):
            for name, vs in values.items():
                w.write(i, name, vs[i])
            w.write_input(i, "x", np.full((1, 4, 3, 3), i, np.float32))
    with DumpReader(path) as r:
        assert r.samples == 3 and r.attrs["run"] == "fp16" and r.json_attr("inputs") == {"x": {"seed": 0}}
        metas = r.tensors()
        assert [m.onnx_name for m in metas] == ["/enc/conv0/Conv_output_0", "logits"]
        assert metas[0].node == "/enc/conv0/Conv" and metas[0].shape == (1, 4, 3, 3) and metas[0].stored == "float32"
        assert metas[1].stored == "float16" and metas[1].dtype_executed == "float16"
        for name, vs in values.items():
            for i in range(3):
                np.testing.assert_array_equal(r.read(name, i), vs[i])
        assert r.input_names() == ["x"]
    # plain h5py, no layerscope: the layout documented in dumps.py
    with h5py.File(path, "r") as f:
        ds = f["tensors"]["%2Fenc%2Fconv0%2FConv_output_0"]
        assert ds.shape == (3, 1, 4, 3, 3) and ds.attrs["onnx_name"] == "/enc/conv0/Conv_output_0"
        assert ds.attrs["op_type"] == "Conv" and f.attrs["format"] == "layerscope-dump"


def test_shape_change_between_samples_is_a_clear_error(tmp_path: Path) -> None:
    with DumpWriter(tmp_path / "d.h5", samples=2, attrs={}) as w:
        w.write(0, "t", np.zeros((2, 2), np.float32))
        with pytest.raises(StageError, match="changed from float32\\[2, 2\\] to float32\\[3\\]"):
            w.write(1, "t", np.zeros((3,), np.float32))


def test_compression_option(tmp_path: Path) -> None:
    with DumpWriter(tmp_path / "d.h5", samples=2, attrs={}, compression="gzip", gzip_level=1) as w:
        for i in range(2):
            w.write(i, "t", np.zeros((64, 64), np.float32))
    with h5py.File(tmp_path / "d.h5") as f:
        assert f["tensors/t"].compression == "gzip" and f["tensors/t"].chunks == (1, 64, 64)


def test_not_a_dump(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = 1
    with pytest.raises(StageError, match="not a layerscope dump"):
        DumpReader(tmp_path / "other.h5")


def test_tensor_index_lists_what_the_attributes_say(tmp_path: Path) -> None:
    """tensors() reads the tensor_index attribute; a dump without it (older, or another writer) is listed through
    its datasets' attributes, with the same result."""
    path = tmp_path / "d.h5"
    with DumpWriter(path, samples=2, attrs={"run": "int8"}) as w:
        w.describe("a/b", {"node": "n0", "op_type": "Conv", "index": 1, "dtype_executed": "int8", "execution": "x"})
        w.describe("s", {"node": "n1", "op_type": "Add", "index": 0, "quant": '{"type": "int8", "scale": 0.5}'})
        for i in range(2):
            w.write(i, "a/b", np.full((2, 3), i, np.float32))
            w.write_prequant(i, "a/b", np.full((2, 3), i + 0.25, np.float32))
            w.write(i, "s", np.float16(i))  # 0-d per sample, as a numpy scalar
    with DumpReader(path) as r:
        indexed = r.tensors()
        assert "tensor_index" not in r.attrs
        np.testing.assert_array_equal(r.read_samples("a/b", group="prequant")[1], np.full((2, 3), 1.25))
        np.testing.assert_array_equal(r.read_samples("s"), np.array([0, 1], np.float16))
        assert r.read("s", 1).shape == ()
    with h5py.File(path, "a") as f:
        del f.attrs["tensor_index"]
        assert isinstance(f["tensors/a%2Fb"].attrs["op_type"], str) and f["tensors/a%2Fb"].attrs["index"] == 1
    with DumpReader(path) as r:
        assert r.tensors() == indexed
    assert [(t.onnx_name, t.has_prequant, t.shape, t.stored) for t in indexed] == [
        ("s", False, (), "float16"),
        ("a/b", True, (2, 3), "float32"),
    ]
    assert indexed[0].quant == {"type": "int8", "scale": 0.5} and indexed[1].dtype_executed == "int8"
