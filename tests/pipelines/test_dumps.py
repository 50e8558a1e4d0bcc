"""HDF5 dumps: round trip, escaped names with the original as an attribute, readable with plain h5py; format 2
(small tensors packed) and format 1 (a dataset per tensor) read alike."""

from __future__ import annotations

import json
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
    # plain h5py, no layerscope: the layout documented in dumps.py (both tensors are small: packed)
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == "layerscope-dump" and f.attrs["format_version"] == 2
        entry = json.loads(f.attrs["tensor_index"])["tensors"]["%2Fenc%2Fconv0%2FConv_output_0"]
        assert entry["attrs"]["onnx_name"] == "/enc/conv0/Conv_output_0" and entry["attrs"]["op_type"] == "Conv"
        assert entry["shape"] == [1, 4, 3, 3] and entry["dtype"] == "float32"
        row = f["packed/float32"][2]
        np.testing.assert_array_equal(
            row[entry["packed"] : entry["packed"] + 36].reshape(1, 4, 3, 3), values["/enc/conv0/Conv_output_0"][2]
        )
    # a tensor larger than the packing bound is a dataset of its own, with its attributes
    with DumpWriter(path, samples=3, attrs={}, pack_elements=8) as w:
        w.describe("/enc/conv0/Conv_output_0", {"op_type": "Conv", "index": 0})
        for i in range(3):
            for name, vs in values.items():
                w.write(i, name, vs[i])
    with h5py.File(path, "r") as f:
        ds = f["tensors"]["%2Fenc%2Fconv0%2FConv_output_0"]
        assert ds.shape == (3, 1, 4, 3, 3) and ds.attrs["onnx_name"] == "/enc/conv0/Conv_output_0"
        assert ds.attrs["op_type"] == "Conv" and list(f["packed"]) == ["float16"]
    with DumpReader(path) as r:
        for name, vs in values.items():
            np.testing.assert_array_equal(r.read_samples(name), np.stack(vs))


def test_shape_change_between_samples_is_a_clear_error(tmp_path: Path) -> None:
    with DumpWriter(tmp_path / "d.h5", samples=2, attrs={}) as w:
        w.write(0, "t", np.zeros((2, 2), np.float32))
        with pytest.raises(StageError, match="changed from float32\\[2, 2\\] to float32\\[3\\]"):
            w.write(1, "t", np.zeros((3,), np.float32))


def test_compression_option(tmp_path: Path) -> None:
    with DumpWriter(tmp_path / "d.h5", samples=2, attrs={}, compression="gzip", gzip_level=1, pack_elements=16) as w:
        for i in range(2):
            w.write(i, "t", np.zeros((64, 64), np.float32))
            w.write(i, "small", np.full((4,), i, np.float32))
    with h5py.File(tmp_path / "d.h5") as f:
        assert f["tensors/t"].compression == "gzip" and f["tensors/t"].chunks == (1, 64, 64)
        assert f["packed/float32"].compression == "gzip" and f["packed/float32"].chunks == (1, 4)
    with DumpReader(tmp_path / "d.h5") as r:
        np.testing.assert_array_equal(r.read("small", 1), np.ones(4, np.float32))


def test_not_a_dump(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = 1
    with pytest.raises(StageError, match="not a layerscope dump"):
        DumpReader(tmp_path / "other.h5")


def test_tensor_index_lists_what_the_attributes_say(tmp_path: Path) -> None:
    """tensors() reads the tensor_index attribute; a dump without it (older, or another writer) is listed through
    its datasets' attributes, with the same result."""
    path = tmp_path / "d.h5"
    with DumpWriter(path, samples=2, attrs={"run": "int8"}, pack_elements=0) as w:  # the format-1 layout
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
        f.attrs["format_version"] = 1
        assert isinstance(f["tensors/a%2Fb"].attrs["op_type"], str) and f["tensors/a%2Fb"].attrs["index"] == 1
    with DumpReader(path) as r:
        assert r.tensors() == indexed
    assert [(t.onnx_name, t.has_prequant, t.shape, t.stored) for t in indexed] == [
        ("s", False, (), "float16"),
        ("a/b", True, (2, 3), "float32"),
    ]
    assert indexed[0].quant == {"type": "int8", "scale": 0.5} and indexed[1].dtype_executed == "int8"


def write_v1(path: Path, samples: int, tensors: dict[str, tuple[dict[str, object], np.ndarray]]) -> None:
    """A format-1 dump as layerscope 0.x wrote it, with plain h5py: a dataset per tensor with its attributes, no
    tensor_index, no /packed."""
    with h5py.File(path, "w") as f:
        f.attrs.update({"format": "layerscope-dump", "format_version": 1, "samples": samples, "run": "fp16"})
        f.create_group("inputs")
        group = f.create_group("tensors")
        for name, (attrs, value) in tensors.items():
            ds = group.create_dataset(escape(name), data=value)
            ds.attrs["onnx_name"] = name
            for k, v in attrs.items():
                ds.attrs[k] = v


def _values(samples: int) -> dict[str, tuple[dict[str, object], np.ndarray]]:
    rng = np.random.default_rng(1)
    return {
        f"/l{i}/out": (
            {"node": f"l{i}", "op_type": "Add", "index": i, "dtype_executed": "float16", "execution": "native"},
            rng.standard_normal((samples, *shape)).astype(dtype),
        )
        for i, (shape, dtype) in enumerate(
            [((1, 8), np.float32), ((), np.float16), ((3, 5), np.int64), ((2, 2), np.bool_), ((40, 40), np.float32)]
        )
    }


def test_format_1_and_2_read_alike(tmp_path: Path) -> None:
    """The same tensors written as format 1 (plain h5py, the released layout) and by today's writer (small ones
    packed, the 1,600-element one alone with pack_elements=1000) read back equal through every reader call."""
    values = _values(3)
    write_v1(tmp_path / "v1.h5", 3, values)
    with DumpWriter(tmp_path / "v2.h5", samples=3, attrs={"run": "fp16"}, pack_elements=1000) as w:
        for name, (attrs, _) in values.items():
            w.describe(name, attrs)
        for i in range(3):
            for name, (_, value) in values.items():
                w.write(i, name, value[i])
    with DumpReader(tmp_path / "v1.h5") as v1, DumpReader(tmp_path / "v2.h5") as v2:
        assert v1.tensors() == v2.tensors() and len(v2.tensors()) == 5
        names = list(values)
        for name, (_, value) in values.items():
            for r in (v1, v2):
                np.testing.assert_array_equal(r.read_samples(name), value)
                assert r.read_samples(name).dtype == value.dtype
                for i in range(3):
                    got = r.read(name, i)
                    assert isinstance(got, np.ndarray) and got.shape == value.shape[1:]
                    np.testing.assert_array_equal(got, value[i])
        for r in (v1, v2):
            for got, name in zip(r.read_many(names[::-1]), names[::-1], strict=True):
                np.testing.assert_array_equal(got, values[name][1])
        assert v2.dataset("/l4/out").shape == (3, 40, 40)  # stored alone
        changed = v2.read("/l0/out", 1)
        changed += 1  # a caller's change to a value it read never reaches another read
        np.testing.assert_array_equal(v2.read("/l0/out", 1), values["/l0/out"][1][1])
        with pytest.raises(KeyError, match="packed"):
            v2.dataset("/l0/out")
    with h5py.File(tmp_path / "v2.h5") as f:
        assert sorted(f["packed"]) == ["bool", "float16", "float32", "int64"] and list(f["tensors"]) == ["%2Fl4%2Fout"]


def test_tensors_written_out_of_sample_order(tmp_path: Path) -> None:
    """Written tensor by tensor (every sample of one, then the next), and a small tensor first seen after the
    packed layout was fixed: each value still reads back where it was written."""
    values = _values(2)
    with DumpWriter(tmp_path / "d.h5", samples=2, attrs={}) as w:
        for name, (_, value) in values.items():
            for i in range(2):
                w.write(i, name, value[i])
    with DumpReader(tmp_path / "d.h5") as r:
        for name, (_, value) in values.items():
            np.testing.assert_array_equal(r.read_samples(name), value)
            np.testing.assert_array_equal(r.read(name, 1), value[1])
        assert len(r.tensors()) == 5


def test_a_newer_format_is_refused_clearly(tmp_path: Path) -> None:
    write_v1(tmp_path / "d.h5", 1, {})
    with h5py.File(tmp_path / "d.h5", "a") as f:
        f.attrs["format_version"] = 3
    with pytest.raises(StageError, match="format 3, written by a newer layerscope"):
        DumpReader(tmp_path / "d.h5")
