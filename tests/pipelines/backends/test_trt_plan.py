"""Pure decisions of the TensorRT backend: versions and routes, availability messages, tensors to mark,
per-layer settings for the builder-flag route, profile shapes, key composition, buffers."""

from __future__ import annotations

import ctypes

import ml_dtypes
import numpy as np
import pytest

from layerscope.pipelines.backends.trt import buffers, versions
from layerscope.pipelines.backends.trt.plan import (
    DeviceFacts,
    LayerDesc,
    build_key,
    builder_flags,
    layer_settings,
    marked_key,
    profile_shapes,
    tensors_to_mark,
)

V10_8, V10_16, V11 = (versions.parse_version(v) for v in ("10.8.0.43", "10.16.1.11", "11.4.0.106"))


def test_versions_parse_and_compare() -> None:
    assert V10_16.parts == (10, 16, 1, 11) and V10_16.major == 10 and str(V10_16) == "10.16.1.11"
    assert versions.parse_version("10.7.0.post1").parts == (10, 7, 0)
    assert V10_16.at_least(10, 12) and not V10_8.at_least(10, 12) and V11.at_least(10, 12)
    with pytest.raises(ValueError):
        versions.parse_version("unknown")


def test_route_defaults_by_version_and_flags_are_refused_on_11() -> None:
    assert versions.resolve_options(V10_16, {}) == {"precision_mode": "flags", "dump_mode": "outputs", "strict": True}
    assert versions.resolve_options(V11, {"strict": False}) == {"precision_mode": "typed", "dump_mode": "outputs"}
    assert versions.option_problems(V10_16, "fp16", {"precision_mode": "flags"}) == []
    ((key, message),) = versions.option_problems(V11, "fp16", {"precision_mode": "flags"})
    assert key == "precision_mode"
    assert "TensorRT 11 removed weak typing" in message and "use precision_mode: typed" in message


def test_quantized_formats_are_refused_until_calibration_is_wired_up() -> None:
    ((key, message),) = versions.option_problems(V10_16, "int8", {"precision_mode": "typed"})
    assert key == "precision" and "not wired up yet" in message and "onnxruntime backend runs it" in message


def test_unfused_needs_10_12() -> None:
    assert versions.option_problems(V10_16, "fp16", {"dump_mode": "unfused"}) == []
    ((key, message),) = versions.option_problems(V10_8, "fp16", {"dump_mode": "unfused"})
    assert key == "dump_mode" and "needs TensorRT 10.12 or newer" in message


def test_availability_messages_say_what_is_missing_and_where_to_go() -> None:
    def why(**kw: object) -> str | None:
        args = {"installed": True, "version": V10_16, "cuda_python": True, "devices": 1, **kw}
        return versions.unavailable_reason(**args)  # type: ignore[arg-type]

    assert why() is None
    tail = "`layerscope backends` lists what is available; the onnxruntime backend runs anywhere without a GPU"
    missing = why(installed=False, version=None)
    assert missing is not None and missing.startswith("backend tensorrt needs TensorRT (pip package tensorrt")
    no_device = why(devices=0, device_error="cudaErrorNoDevice")
    assert no_device == (
        "backend tensorrt needs a CUDA device: TensorRT 10.16.1.11 is installed but no CUDA device is visible "
        f"(cudaErrorNoDevice); {tail}"
    )
    no_cuda_python = why(cuda_python=False)
    assert no_cuda_python is not None and "pip package cuda-python" in no_cuda_python
    old = why(version=versions.parse_version("8.6.1"))
    assert old is not None and "supports TensorRT 10.x and 11.x, and TensorRT 8.6.1 is installed" in old
    for message in (missing, no_device, no_cuda_python, old):
        assert message is not None and message.endswith(tail)


def test_tensors_to_mark_per_dump_mode() -> None:
    requested = ["a", "b", "out", "a"]
    outputs = tensors_to_mark("outputs", requested, ["out"])
    assert (outputs.outputs, outputs.debug, outputs.graph_outputs) == (("a", "b"), (), ("out",))
    debug = tensors_to_mark("debug", requested, ["out"])
    assert (debug.outputs, debug.debug) == ((), ("a", "b"))
    unfused = tensors_to_mark("unfused", requested, ["out"])
    assert (unfused.outputs, unfused.debug) == ((), ())
    with pytest.raises(ValueError):
        tensors_to_mark("all", requested, [])


def test_builder_flags() -> None:
    assert builder_flags("fp16", True) == ["FP16", "OBEY_PRECISION_CONSTRAINTS"]
    assert builder_flags("bf16", False) == ["BF16", "PREFER_PRECISION_CONSTRAINTS"]
    assert builder_flags("fp32", True) == []


def test_layer_settings_pin_fp32_skip_non_float_and_keep_graph_outputs_fp32() -> None:
    def layer(i: int, name: str, meta: str, ins: tuple, outs: tuple, types: tuple, graph_out: tuple) -> LayerDesc:
        return LayerDesc(i, name, meta, ins, outs, types, graph_out)

    layers = [
        layer(0, "conv0", "[ONNX Layer: conv0]", ("x",), ("a",), ("FLOAT",), (False,)),
        layer(1, "(Unnamed Layer* 1) [Constant]", "", (), ("w",), ("FLOAT",), (False,)),  # read by pinned only
        layer(2, "relu0", "[ONNX Layer: relu0]", ("a", "w"), ("b",), ("FLOAT",), (False,)),
        layer(3, "shape", "[ONNX Layer: shape0]", ("b",), ("s",), ("INT64",), (False,)),
        layer(4, "(Unnamed Layer* 4) [ElementWise]", "[ONNX Layer: mul0]", ("b",), ("c",), ("FLOAT",), (False,)),
        layer(5, "(Unnamed Layer* 5) [Constant]", "", (), ("v",), ("FLOAT",), (False,)),  # read by conv1
        layer(6, "conv1", "", ("c", "v"), ("y",), ("FLOAT",), (True,)),
    ]
    nodes = {"conv0", "relu0", "shape0", "mul0", "conv1"}
    got = {s.index: s for s in layer_settings(layers, precision="fp16", pinned={"relu0"}, nodes=nodes)}
    assert (got[0].node, got[0].precision, got[0].output_types) == ("conv0", "HALF", ("HALF",))
    assert (got[2].precision, got[2].output_types) == ("FLOAT", ("FLOAT",))  # pinned
    assert (got[1].node, got[1].precision) == (None, "FLOAT")  # the pinned layer's weights stay FP32
    assert (got[3].precision, got[3].output_types) == (None, (None,))  # shape arithmetic: TensorRT's choice
    assert (got[4].node, got[4].precision) == ("mul0", "HALF")  # found through the parser's metadata
    assert (got[5].node, got[5].precision) == (None, "HALF")  # weights of a reduced layer
    assert (got[6].node, got[6].precision, got[6].output_types) == ("conv1", "HALF", (None,))  # graph output
    bf16 = layer_settings(layers[:1], precision="bf16", pinned=set(), nodes=nodes)
    assert bf16[0].precision == "BF16"


def test_profile_shapes_from_the_config() -> None:
    net = {"input": (-1, 3, -1, -1), "static": (1, 4)}
    shapes = profile_shapes(net, {"input": (1, 3, 64, 64), "static": None})
    assert shapes == {"input": (1, 3, 64, 64), "static": (1, 4)}
    with pytest.raises(ValueError, match="does not fit the network's"):
        profile_shapes(net, {"input": (1, 4, 64, 64)})
    with pytest.raises(ValueError, match="give its shape in the config"):
        profile_shapes(net, {"input": None})


def test_build_key_names_version_gpu_driver_marks_and_only_relevant_options() -> None:
    device = DeviceFacts("NVIDIA H100 80GB HBM3", "9.0", "12.4")

    def key(route: str = "typed", **options: object) -> dict:
        return build_key(
            version="10.16.1.11",
            device=device,
            route=route,
            options={"dump_mode": "outputs", **options},
            marked=marked_key("outputs", ["b", "a"]),
            profile={"input": (1, 3, 8, 8)},
        )

    k = key()
    assert k["tensorrt"] == "10.16.1.11" and k["gpu"] == "NVIDIA H100 80GB HBM3"
    assert k["compute_capability"] == "9.0" and k["driver"] == "12.4"
    assert k["marked"] == {"mode": "outputs", "tensors": ["a", "b"]} and k["profile"] == {"input": [1, 3, 8, 8]}
    assert key(strict=False) == key()  # strict means nothing to the typed route
    assert key("flags", strict=False) != key("flags")
    assert key(workspace_mib=512) != key()
    assert marked_key("unfused", ["a"]) == marked_key("unfused", ["b"]) == {"mode": "unfused", "tensors": []}


def test_buffers_convert_raw_bytes_with_ml_dtypes() -> None:
    values = np.array([[1.5, -2.25], [3.0, 1e-3]], np.float32)
    for trt_name, dtype in [("BF16", ml_dtypes.bfloat16), ("FP8", ml_dtypes.float8_e4m3fn)]:
        raw = values.astype(dtype).tobytes()
        got = buffers.from_bytes(raw, trt_name, (2, 2))
        assert got.dtype == np.float32  # widened: HDF5 has no BF16/FP8, FP32 holds every value exactly
        np.testing.assert_array_equal(got, values.astype(dtype).astype(np.float32))
    half = buffers.from_bytes(values.astype(np.float16).tobytes(), "HALF", (2, 2))
    assert half.dtype == np.float16
    assert buffers.nbytes("HALF", (2, 3)) == 12 and buffers.nbytes("FLOAT", ()) == 4
    fed = buffers.to_bytes(values.T, "HALF")
    assert fed.dtype == np.float16 and fed.flags.c_contiguous
    with pytest.raises(ValueError, match="sub-byte"):
        buffers.from_bytes(b"\x00", "INT4", (2,))


def test_pointer_reads_ints_and_capsules() -> None:
    assert buffers.pointer(1234) == 1234
    new = ctypes.pythonapi.PyCapsule_New
    new.restype, new.argtypes = ctypes.py_object, [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
    target = ctypes.c_double(1.0)
    capsule = new(ctypes.addressof(target), None, None)
    assert buffers.pointer(capsule) == ctypes.addressof(target)
