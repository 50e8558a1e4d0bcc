"""Build a TensorRT engine from an ONNX file: parse, mark the tensors to read, set precision, add the
optimization profile, build with the timing cache, and read the engine inspector's layer information.

``tensorrt`` is imported inside the functions, so importing this module costs nothing. Written against
the documented Python API of TensorRT 10.x and 11.x (NVIDIA's samples, the bindings' docstrings and the
10.x -> 11.x migration guide); no line of it has run against a real TensorRT here. So that the API
conformance test can read every TensorRT name used, TensorRT objects are annotated with their class
(``config: trt.IBuilderConfig``), and code that only some versions have carries a ``# tensorrt<11`` or
``# tensorrt>=10.12`` comment on its ``def`` line.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from layerscope.pipelines.backends.trt.logs import ROUTER, Capture
from layerscope.pipelines.backends.trt.plan import LayerDesc, MarkPlan, builder_flags, layer_settings, profile_shapes
from layerscope.runner.errors import StageError

if TYPE_CHECKING:
    import tensorrt as trt


@dataclass(frozen=True)
class EngineRequest:
    onnx_path: Path
    route: str  # typed | flags
    precision: str  # fp32 | fp16 | bf16 (int8 / fp8 with the INT8/FP8 issue)
    strict: bool  # flags route: OBEY (True) or PREFER precision constraints
    constrain: str  # flags route: pinned (only pinned layers constrained, to FP32) | all (every layer)
    pinned: frozenset[str]  # ONNX nodes kept FP32 (flags route; the typed graph has them FP32 already)
    nodes: frozenset[str]  # ONNX node names of the graph being parsed
    marks: MarkPlan
    input_shapes: dict[str, tuple[int, ...] | None]  # the config's shape of one sample, per input
    workspace_mib: int | None
    optimization_level: int | None
    timing_cache: bytes  # a previous build's serialized timing cache for this TensorRT + GPU, or b""


@dataclass(frozen=True)
class EngineResult:
    engine: bytes
    timing_cache: bytes
    layer_information: str  # inspector JSON, with the profile's shapes set
    shapes: dict[str, tuple[int, ...]]  # the optimization profile (min = opt = max)
    unobservable: dict[str, str]  # marked tensors the parsed network has no tensor for, with the reason
    warnings: list[str]  # what TensorRT warned about while building
    notes: list[str]  # what the build did besides what it was asked (e.g. an unusable timing cache replaced)


_LOGGER: Any = None
_LOGGER_LOCK = threading.Lock()


def process_logger() -> Any:
    """The process's one TensorRT logger (:mod:`.logs` says why one): made on first use and never freed,
    so it outlives every builder, runtime and engine made with it. Messages go to :data:`.logs.ROUTER`."""
    global _LOGGER
    with _LOGGER_LOCK:
        if _LOGGER is None:
            import tensorrt as trt

            levels = {
                trt.ILogger.Severity.INTERNAL_ERROR: "error",
                trt.ILogger.Severity.ERROR: "error",
                trt.ILogger.Severity.WARNING: "warning",
            }

            class RoutingLogger(trt.ILogger):
                def __init__(self) -> None:
                    trt.ILogger.__init__(self)

                def log(self, severity: Any, msg: str) -> None:
                    ROUTER.log(levels.get(severity, "info"), msg)

            _LOGGER = RoutingLogger()
        return _LOGGER


def build_engine(req: EngineRequest) -> EngineResult:
    """Build one engine. Builds run one at a time in a process (:meth:`.logs.LogRouter.build`), so what
    TensorRT logs while this one runs is this build's."""
    with ROUTER.build() as log:
        return _build(req, log)


def _build(req: EngineRequest, log: Capture) -> EngineResult:
    import tensorrt as trt

    builder: trt.Builder = trt.Builder(process_logger())
    # Typed: a strongly typed network takes the lowered graph's types as they are (TensorRT 11 accepts and
    # ignores the flag: every network is strongly typed there). Flags: TensorRT 10's weakly typed network.
    flags = 0 if req.route == "flags" else 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network: trt.INetworkDefinition = builder.create_network(flags)
    parser: trt.OnnxParser = trt.OnnxParser(network, process_logger())
    if not parser.parse_from_file(str(req.onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)] or log.errors
        raise StageError(f"TensorRT's ONNX parser rejected the model: {'; '.join(errors[:3]) or 'no reason given'}")
    unobservable = _mark(network, req.marks)
    config: trt.IBuilderConfig = builder.create_builder_config()
    if req.route == "flags":
        _apply_flags(config, network, req)
    shapes = _configure(builder, config, network, req)
    notes = _use_timing_cache(config, req.timing_cache, log)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        hint = (
            " (precision_mode flags with strict: true needs a kernel in the asked precision for every constrained "
            "layer; strict: false lets TensorRT fall back)"
            if req.route == "flags" and req.strict
            else ""
        )
        raise StageError(f"TensorRT could not build the engine: {log.reason()}{hint}")
    timing: trt.ITimingCache = config.get_timing_cache()
    engine = bytes(serialized)
    info = layer_information(engine, shapes, log)
    return EngineResult(engine, bytes(timing.serialize()), info, shapes, unobservable, list(log.warnings), notes)


def _use_timing_cache(config: trt.IBuilderConfig, data: bytes, log: Capture) -> list[str]:
    """Start from a previous build's timing cache; one TensorRT cannot use (another device, a damaged file)
    is replaced by an empty cache, and the error TensorRT logged about it is a note of this build, not the
    reason a later failure of the build is given."""
    errors_before = len(log.errors)
    try:
        cache: trt.ITimingCache = config.create_timing_cache(data)
        if cache is not None and config.set_timing_cache(cache, False):
            return []
    except (RuntimeError, TypeError, ValueError) as exc:  # how the bindings report a file they cannot read
        log.errors.append(str(exc))
    refused = log.errors[errors_before:]
    del log.errors[errors_before:]
    config.set_timing_cache(config.create_timing_cache(b""), False)
    return [f"the shared timing cache was not usable and was replaced: {'; '.join(refused[:2]) or 'no reason given'}"]


def combine_timing_caches(ours: bytes, theirs: bytes) -> bytes:
    """Two serialized timing caches of the same TensorRT and GPU -> one with the entries of both
    (``ITimingCache.combine``; where both timed a layer, ours is kept). StageError when TensorRT refuses."""
    import tensorrt as trt

    with ROUTER.build() as log:
        builder: trt.Builder = trt.Builder(process_logger())
        config: trt.IBuilderConfig = builder.create_builder_config()
        mine: trt.ITimingCache = config.create_timing_cache(ours)
        other: trt.ITimingCache = config.create_timing_cache(theirs)
        if not mine.combine(other, True):
            raise StageError(f"TensorRT could not combine two timing caches: {log.reason()}")
        return bytes(mine.serialize())


def _tensors(network: trt.INetworkDefinition) -> dict[str, Any]:
    """Every tensor of the parsed network by name (the ONNX parser keeps ONNX tensor names)."""
    out: dict[str, Any] = {}
    for i in range(network.num_inputs):
        tensor: trt.ITensor = network.get_input(i)
        out[tensor.name] = tensor
    for i in range(network.num_layers):
        layer: trt.ILayer = network.get_layer(i)
        for j in range(layer.num_outputs):
            tensor = layer.get_output(j)
            out[tensor.name] = tensor
    return out


def _mark(network: trt.INetworkDefinition, marks: MarkPlan) -> dict[str, str]:
    tensors = _tensors(network)
    missing: dict[str, str] = {}
    why = "not observable in this engine: the ONNX parser made no tensor of that name (folded or removed)"
    for name in marks.outputs:
        if name in tensors:
            network.mark_output(tensors[name])
        else:
            missing[name] = why
    for name in marks.debug:
        if name in tensors:
            network.mark_debug(tensors[name])
        else:
            missing[name] = why
    if marks.mode == "unfused":
        _mark_unfused(network)
    return missing


def _mark_unfused(network: trt.INetworkDefinition) -> None:  # tensorrt>=10.12
    if not network.mark_unfused_tensors_as_debug_tensors():
        raise StageError("TensorRT refused to mark the unfused tensors as debug tensors")


def _data_types() -> dict[str, Any]:
    import tensorrt as trt

    return {
        "FLOAT": trt.DataType.FLOAT,
        "HALF": trt.DataType.HALF,
        "BF16": trt.DataType.BF16,
        "INT8": trt.DataType.INT8,
        "FP8": trt.DataType.FP8,
    }


def _apply_flags(
    config: trt.IBuilderConfig, network: trt.INetworkDefinition, req: EngineRequest
) -> None:  # tensorrt<11
    """TensorRT 10's weak typing: the format's builder flag, and precision constraints (OBEY or PREFER) on
    the layers :func:`.plan.layer_settings` picks -- pinned layers to FP32, or with ``constrain: all``
    every layer that can be constrained."""
    import tensorrt as trt

    flag_values = {
        "FP16": trt.BuilderFlag.FP16,
        "BF16": trt.BuilderFlag.BF16,
        "INT8": trt.BuilderFlag.INT8,
        "FP8": trt.BuilderFlag.FP8,
        "OBEY_PRECISION_CONSTRAINTS": trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS,
        "PREFER_PRECISION_CONSTRAINTS": trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS,
    }
    if req.precision == "fp32":
        return
    graph_outputs = set(req.marks.graph_outputs)
    descs = []
    for i in range(network.num_layers):
        layer: trt.ILayer = network.get_layer(i)
        inputs = []
        for k in range(layer.num_inputs):
            tensor: trt.ITensor = layer.get_input(k)
            if tensor is not None:  # an optional input left empty
                inputs.append(tensor.name)
        names, types, is_out, shape = [], [], [], []
        for j in range(layer.num_outputs):
            tensor = layer.get_output(j)
            names.append(tensor.name)
            types.append(tensor.dtype.name)
            is_out.append(tensor.name in graph_outputs)
            shape.append(bool(tensor.is_shape_tensor or not tensor.is_execution_tensor))
        descs.append(
            LayerDesc(
                i,
                layer.name,
                layer.metadata,
                tuple(inputs),
                tuple(names),
                tuple(types),
                tuple(is_out),
                layer.type.name,
                tuple(shape),
            )
        )
    settings = layer_settings(
        descs, precision=req.precision, pinned=set(req.pinned), nodes=set(req.nodes), constrain=req.constrain
    )
    constrained = [s for s in settings if s.precision is not None]
    for name in builder_flags(req.precision, req.strict, bool(constrained)):
        config.set_flag(flag_values[name])
    data_types = _data_types()
    marked = set(req.marks.outputs)
    for setting in constrained:
        layer = network.get_layer(setting.index)
        layer.precision = data_types[str(setting.precision)]
        for j, type_name in enumerate(setting.output_types):
            if type_name is None:
                continue
            layer.set_output_type(j, data_types[type_name])
            tensor = layer.get_output(j)
            if tensor.name in marked:  # a marked intermediate comes back in the type it is computed in
                tensor.dtype = data_types[type_name]


def _configure(
    builder: trt.Builder, config: trt.IBuilderConfig, network: trt.INetworkDefinition, req: EngineRequest
) -> dict[str, tuple[int, ...]]:
    import tensorrt as trt

    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # the precision audit needs layer details
    # TensorRT enables TF32 for FP32 math by default (Ampere and newer): an fp32 run -- the usual reference --
    # and layers pinned to FP32 would silently lose 13 mantissa bits.
    config.clear_flag(trt.BuilderFlag.TF32)
    if req.workspace_mib:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(req.workspace_mib) << 20)
    if req.optimization_level is not None:
        config.builder_optimization_level = int(req.optimization_level)
    dims = {}
    for i in range(network.num_inputs):
        tensor: trt.ITensor = network.get_input(i)
        dims[tensor.name] = tuple(tensor.shape)
    try:
        shapes = profile_shapes(dims, req.input_shapes)
    except ValueError as exc:
        raise StageError(str(exc)) from None
    profile: trt.IOptimizationProfile = builder.create_optimization_profile()
    for name, shape in shapes.items():
        profile.set_shape(name, shape, shape, shape)
    config.add_optimization_profile(profile)
    return shapes


def layer_information(engine_bytes: bytes, shapes: dict[str, tuple[int, ...]], log: Capture) -> str:
    """The inspector's JSON for the engine, through a context with the input shapes set (without them the
    formats of dynamically shaped tensors read "N/A due to dynamic shapes")."""
    import tensorrt as trt

    runtime: trt.Runtime = trt.Runtime(process_logger())
    engine: trt.ICudaEngine = runtime.deserialize_cuda_engine(engine_bytes)
    if engine is None:
        raise StageError(f"TensorRT cannot load the engine it built: {log.reason()}")
    context: trt.IExecutionContext = engine.create_execution_context()
    for name, shape in shapes.items():
        context.set_input_shape(name, shape)
    inspector: trt.EngineInspector = engine.create_engine_inspector()
    inspector.execution_context = context
    return str(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
