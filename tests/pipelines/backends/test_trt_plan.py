"""Pure decisions of the TensorRT backend: versions and routes, availability messages, tensors to mark,
per-layer settings for the builder-flag route, profile shapes, key composition, buffers."""

from __future__ import annotations

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


def test_typed_is_the_default_route_and_flags_are_refused_on_11() -> None:
    assert versions.resolve_options({}) == {"precision_mode": "typed", "dump_mode": "outputs"}
    assert versions.resolve_options({"strict": False}) == {"precision_mode": "typed", "dump_mode": "outputs"}
    assert versions.resolve_options({"precision_mode": "flags"}) == {
        "precision_mode": "flags",
        "dump_mode": "outputs",
        "strict": True,
        "constrain": "pinned",
    }
    assert versions.option_problems(V10_16, "fp16", {"precision_mode": "flags"}) == []
    ((key, message),) = versions.option_problems(V11, "fp16", {"precision_mode": "flags"})
    assert key == "precision_mode"
    assert "TensorRT 11 removed weak typing" in message and "use precision_mode: typed" in message


def test_constrain_is_refused_on_the_typed_route_rather_than_ignored() -> None:
    """A user forcing every layer (the seed's experiment) must not get the typed route's graph silently."""
    options = versions.resolve_options({"constrain": "all"})
    ((key, message),) = versions.option_problems(V10_16, "fp16", options)
    assert key == "constrain" and "applies to precision_mode: flags" in message
    flags = versions.resolve_options({"precision_mode": "flags", "constrain": "all"})
    assert versions.option_problems(V10_16, "fp16", flags) == []


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
    assert missing is not None
    assert missing.startswith("backend tensorrt needs TensorRT (pip install 'layerscope[tensorrt-cu12]'")
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
    assert builder_flags("fp16", True, True) == ["FP16", "OBEY_PRECISION_CONSTRAINTS"]
    assert builder_flags("bf16", False, True) == ["BF16", "PREFER_PRECISION_CONSTRAINTS"]
    assert builder_flags("fp16", True, False) == ["FP16"]  # nothing constrained: the flag alone, as deployed
    assert builder_flags("fp32", True, True) == []


def _layer(i: int, name: str, meta: str, ins: tuple, outs: tuple, types: tuple, graph_out: tuple, **kw) -> LayerDesc:
    shape = kw.get("shape", (False,) * len(outs))
    return LayerDesc(i, name, meta, ins, outs, types, graph_out, kw.get("kind", "CONVOLUTION"), shape)


# A network as the ONNX parser makes it: relu0 pinned, a Constant read only by it and one read by conv1,
# shape arithmetic (INT64 output), a float shape tensor (Resize scales), a graph output.
NETWORK = [
    _layer(0, "conv0", "[ONNX Layer: conv0]", ("x",), ("a",), ("FLOAT",), (False,)),
    _layer(1, "(Unnamed Layer* 1) [Constant]", "", (), ("w",), ("FLOAT",), (False,), kind="CONSTANT"),
    _layer(2, "relu0", "[ONNX Layer: relu0]", ("a", "w"), ("b",), ("FLOAT",), (False,)),
    _layer(3, "shape", "[ONNX Layer: shape0]", ("b",), ("s",), ("INT64",), (False,), kind="SHAPE"),
    _layer(4, "(Unnamed Layer* 4) [ElementWise]", "[ONNX Layer: mul0]", ("b",), ("c",), ("FLOAT",), (False,)),
    _layer(5, "(Unnamed Layer* 5) [Constant]", "", (), ("v",), ("FLOAT",), (False,), kind="CONSTANT"),
    _layer(6, "scales", "[ONNX Layer: scales0]", ("s",), ("f",), ("FLOAT",), (False,), shape=(True,)),
    _layer(7, "(Unnamed Layer* 7) [Shuffle]", "", ("c",), ("d",), ("FLOAT",), (False,), kind="SHUFFLE"),
    _layer(8, "conv1", "", ("d", "v", "f"), ("y",), ("FLOAT",), (True,)),
]
NODES = {"conv0", "relu0", "shape0", "mul0", "scales0", "conv1"}


def test_flags_route_constrains_only_pinned_layers_by_default() -> None:
    """The FP16 flag alone lets TensorRT choose (how TensorRT 10 engines are deployed), so the audit's
    "asked fp16, ran fp32" can happen; only the pinned layer is constrained, to FP32."""
    got = {s.index: s for s in layer_settings(NETWORK, precision="fp16", pinned={"relu0"}, nodes=NODES)}
    assert (got[2].node, got[2].precision, got[2].output_types) == ("relu0", "FLOAT", ("FLOAT",))
    assert all(got[i].precision is None for i in got if i != 2)
    assert all(t is None for i in got if i != 2 for t in got[i].output_types)
    nothing = layer_settings(NETWORK, precision="fp16", pinned=set(), nodes=NODES)
    assert all(s.precision is None for s in nothing)


def test_flags_route_can_force_every_layer_as_the_seed_did_but_never_constants_or_shapes() -> None:
    got = {
        s.index: s for s in layer_settings(NETWORK, precision="fp16", pinned={"relu0"}, nodes=NODES, constrain="all")
    }
    assert (got[0].node, got[0].precision, got[0].output_types) == ("conv0", "HALF", ("HALF",))
    assert (got[2].precision, got[2].output_types) == ("FLOAT", ("FLOAT",))  # pinned
    assert got[1].precision is None and got[5].precision is None  # Constants: weights follow their readers
    assert (got[3].precision, got[3].output_types) == (None, (None,))  # INT64 shape arithmetic
    assert got[6].precision is None  # a float shape tensor: set_output_type would be rejected
    assert (got[4].node, got[4].precision) == ("mul0", "HALF")  # found through the parser's metadata
    assert (got[7].node, got[7].precision) == (None, "HALF")  # a layer the parser inserted follows its reader
    assert (got[8].node, got[8].precision, got[8].output_types) == ("conv1", "HALF", (None,))  # graph output
    bf16 = layer_settings(NETWORK[:1], precision="bf16", pinned=set(), nodes=NODES, constrain="all")
    assert bf16[0].precision == "BF16"
    with pytest.raises(ValueError):
        layer_settings(NETWORK, precision="fp16", pinned=set(), nodes=NODES, constrain="some")


def test_a_layer_the_parser_inserted_for_a_pinned_layer_is_pinned_with_it() -> None:
    net = [
        _layer(0, "(Unnamed Layer* 0) [Shuffle]", "", ("x",), ("a",), ("FLOAT",), (False,), kind="SHUFFLE"),
        _layer(1, "gemm0", "[ONNX Layer: gemm0]", ("a",), ("y",), ("FLOAT",), (False,)),
    ]
    got = layer_settings(net, precision="fp16", pinned={"gemm0"}, nodes={"gemm0"})
    assert [s.precision for s in got] == ["FLOAT", "FLOAT"]


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
    assert key(strict=False) == key() == key(constrain="all")  # strict and constrain mean nothing to typed
    assert key("flags", strict=False) != key("flags")
    assert key("flags", constrain="all") != key("flags") == key("flags", constrain="pinned")
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
