"""What a TensorRT build is asked to do, decided without TensorRT: tensors to mark, per-layer precision
constraints for the builder-flag route, optimization-profile shapes, and the build key.

How each dump mode reads a requested tensor (the names are the lowered ONNX tensor names; the ONNX parser
keeps ONNX tensor names for network tensors):

* ``outputs``: the tensor is marked as a network output. Simple and exact, but marking can change what
  TensorRT fuses and, under weak typing, the precision the producing layer runs in (the report says so);
* ``debug``: the tensor is marked as a debug tensor (``mark_debug``) and copied to the host by a debug
  listener while the engine runs. Also prevents fusion across it, without making it an output;
* ``unfused``: ``mark_unfused_tensors_as_debug_tensors`` (TensorRT >= 10.12) makes every tensor that
  survives fusion a debug tensor without changing fusion; the engine inspector maps the internal names
  back (:mod:`.inspector`), and tensors fused away are reported as not observable.

Graph outputs are engine outputs in every mode and are read as such.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from layerscope.pipelines.backends.trt.inspector import onnx_layers

# Format (config spelling) -> TensorRT DataType member name.
DATA_TYPES = {"fp32": "FLOAT", "fp16": "HALF", "bf16": "BF16", "int8": "INT8", "fp8": "FP8"}
FLOAT_TYPES = frozenset({"FLOAT", "HALF", "BF16"})
# Builder flags that let TensorRT 10 pick kernels of a format (the weak-typing route).
FORMAT_FLAGS = {"fp16": "FP16", "bf16": "BF16", "int8": "INT8", "fp8": "FP8"}


@dataclass(frozen=True)
class MarkPlan:
    mode: str  # outputs | debug | unfused
    outputs: tuple[str, ...]  # tensors to mark as network outputs (beyond the graph outputs)
    debug: tuple[str, ...]  # tensors to mark as debug tensors
    graph_outputs: tuple[str, ...]  # read as engine outputs in every mode


def marked_key(mode: str, tensors: Sequence[str]) -> dict[str, Any]:
    """What marking contributes to the build key: the requested tensors by their original names (which
    lowered tensors carry them is fixed by the model and the precision plan, both in the key already);
    ``unfused`` marks no tensor by name, so its engine does not depend on the selection."""
    return {"mode": mode, "tensors": [] if mode == "unfused" else sorted(tensors)}


def tensors_to_mark(mode: str, requested: Sequence[str], graph_outputs: Iterable[str]) -> MarkPlan:
    """``requested`` lowered tensor names -> what to mark in the network for dump mode ``mode``.

    ``graph_outputs`` must be all of the model's outputs, selected or not: they are engine outputs in every
    mode, and the flags route keeps their type FP32, so the engine must not depend on which were selected."""
    outs = tuple(graph_outputs)
    rest = tuple(dict.fromkeys(t for t in requested if t not in set(outs)))
    if mode == "outputs":
        return MarkPlan(mode, rest, (), outs)
    if mode == "debug":
        return MarkPlan(mode, (), rest, outs)
    if mode == "unfused":
        return MarkPlan(mode, (), (), outs)
    raise ValueError(f"unknown dump mode {mode!r}")


def builder_flags(precision: str, strict: bool, constrained: bool) -> list[str]:
    """BuilderFlag member names for the weak-typing route: the format's flag, and how the per-layer
    constraints bind when there are any (OBEY or PREFER_PRECISION_CONSTRAINTS)."""
    if precision == "fp32":
        return []
    flags = [FORMAT_FLAGS[precision]]
    if constrained:
        flags.append("OBEY_PRECISION_CONSTRAINTS" if strict else "PREFER_PRECISION_CONSTRAINTS")
    return flags


@dataclass(frozen=True)
class LayerDesc:
    """A network layer as the flags route sees it (read from INetworkDefinition, in network order)."""

    index: int
    name: str
    metadata: str  # "[ONNX Layer: <node>]" from the ONNX parser; may be empty
    inputs: tuple[str, ...]  # tensor names it reads
    outputs: tuple[str, ...]  # tensor names it writes
    output_types: tuple[str, ...]  # DataType member names of its outputs
    graph_output: tuple[bool, ...]  # per output: is it one of the model's graph outputs
    layer_type: str = ""  # LayerType member name (CONSTANT, CONVOLUTION, ...)
    shape_output: tuple[bool, ...] = ()  # per output: a shape tensor, or not an execution tensor


@dataclass(frozen=True)
class LayerSetting:
    index: int
    node: str | None  # the ONNX node it came from, when known
    precision: str | None  # DataType member name for ILayer.precision; None: leave the layer alone
    output_types: tuple[str | None, ...]  # per output: DataType member name for set_output_type, or None


CONSTRAIN = ("pinned", "all")


def layer_node(layer: LayerDesc, nodes: set[str]) -> str | None:
    """The ONNX node a network layer came from: the parser's metadata, else a layer named like a node."""
    for name in onnx_layers(layer.metadata):
        if name in nodes:
            return name
    return layer.name if layer.name in nodes else None


def constrainable(layer: LayerDesc) -> bool:
    """Whether a precision constraint may be put on the layer. Not on a CONSTANT layer (weights, which
    follow the layers that read them), nor on one with a non-float output (indices, booleans) or an output
    that is a shape tensor (shape arithmetic): ``set_output_type`` rejects those, and TensorRT computes
    shapes on the host anyway. Polygraphy's ``debug precision`` skips the same layers."""
    return (
        bool(layer.output_types)
        and layer.layer_type != "CONSTANT"
        and all(t in FLOAT_TYPES for t in layer.output_types)
        and not any(layer.shape_output)
    )


def layer_settings(
    layers: Sequence[LayerDesc], *, precision: str, pinned: set[str], nodes: set[str], constrain: str = "pinned"
) -> list[LayerSetting]:
    """Per-layer precision constraints for the flags route.

    ``constrain: pinned`` (the default, how TensorRT 10 engines are deployed): the builder flag alone lets
    TensorRT choose each layer's precision; only layers of pinned ONNX nodes are constrained, to FP32
    (precision and output types). ``constrain: all`` (the seed's experiment): every layer is constrained,
    to the run's format or, when pinned, FP32 -- which makes the precision audit's "asked fp16, ran fp32"
    impossible by construction. A layer the parser made without a node of its own (a reshape it inserted)
    follows the layers that read it: FP32 when only pinned layers do. Layers that cannot be constrained
    (:func:`constrainable`) never are, and graph outputs keep their FP32 type (like the typed route's I/O).
    ``layers`` must be in network order (a layer after the layers it reads)."""
    if constrain not in CONSTRAIN:
        raise ValueError(f"unknown constrain {constrain!r}")
    target = DATA_TYPES[precision]
    readers: dict[str, list[int]] = {}
    for layer in layers:
        for t in layer.inputs:
            readers.setdefault(t, []).append(layer.index)
    chosen: dict[int, str | None] = {}
    out: dict[int, LayerSetting] = {}
    for layer in reversed(layers):  # readers are decided before the layers they read
        node = layer_node(layer, nodes)
        value: str | None = None
        if constrainable(layer):
            if node is not None:
                value = "FLOAT" if node in pinned else target
            else:
                theirs = [chosen.get(i) for t in layer.outputs for i in readers.get(t, [])]
                decided = [c for c in theirs if c is not None]
                value = "FLOAT" if decided and all(c == "FLOAT" for c in decided) else target
            chosen[layer.index] = value  # what its readers see, before the constrain mode drops it
            if constrain == "pinned" and value != "FLOAT":
                value = None
        if value is None:
            out[layer.index] = LayerSetting(layer.index, node, None, (None,) * len(layer.output_types))
            continue
        types = tuple(None if is_out else value for is_out in layer.graph_output)
        out[layer.index] = LayerSetting(layer.index, node, value, types)
    return [out[layer.index] for layer in layers]


def profile_shapes(
    network_inputs: Mapping[str, Sequence[int]], spec_shapes: Mapping[str, Sequence[int] | None]
) -> dict[str, tuple[int, ...]]:
    """One optimization profile, min = opt = max = the spec's shape of one sample, for every network input.

    ``network_inputs`` are the parsed network's input dims (-1 for a dynamic dimension). ValueError with a
    message naming the input when the spec gives no shape for a dynamic input, or one that does not fit.
    """
    out: dict[str, tuple[int, ...]] = {}
    for name, dims in network_inputs.items():
        dims = tuple(int(d) for d in dims)
        shape = spec_shapes.get(name)
        if shape is None:
            if any(d < 0 for d in dims):
                raise ValueError(f"input {name!r} has dynamic dimensions {list(dims)}; give its shape in the config")
            out[name] = dims
            continue
        shape = tuple(int(d) for d in shape)
        if len(shape) != len(dims) or any(d >= 0 and d != s for d, s in zip(dims, shape, strict=True)):
            raise ValueError(
                f"input {name!r}: the config's shape {list(shape)} does not fit the network's {list(dims)}"
            )
        out[name] = shape
    return out


@dataclass(frozen=True)
class DeviceFacts:
    gpu: str
    compute_capability: str  # "8.9"
    driver: str  # "12.4" (CUDA driver API version)


def build_key(
    *,
    version: str,
    device: DeviceFacts,
    route: str,
    options: Mapping[str, Any],
    marked: Mapping[str, Any],
    profile: Mapping[str, Sequence[int]],
) -> dict[str, Any]:
    """Everything besides the model and the precision plan that makes two engines differ.

    An engine is only valid for the TensorRT version and GPU it was built on (and its tactics depend on the
    driver), so those are part of it; so are the tensors marked in the network, because marking changes the
    engine. Options that cannot change the engine for this route are left out, so they cannot cause a
    rebuild (``strict`` and ``constrain`` mean nothing to the typed route).
    """
    opts = {
        "workspace_mib": options.get("workspace_mib"),
        "optimization_level": options.get("optimization_level"),
    }
    if route == "flags":
        opts["strict"] = bool(options.get("strict", True))
        opts["constrain"] = str(options.get("constrain", "pinned"))
    return {
        "tensorrt": version,
        "gpu": device.gpu,
        "compute_capability": device.compute_capability,
        "driver": device.driver,
        "route": route,
        "options": opts,
        "marked": dict(marked),
        "profile": {name: list(shape) for name, shape in sorted(profile.items())},
    }
