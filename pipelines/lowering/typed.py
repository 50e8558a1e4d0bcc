"""Typed lowering: an FP16 or BF16 graph with FP32 inputs/outputs, pinned layers left FP32, Casts at the borders.

The conversion itself is ONNX Runtime's maintained converter (``onnxruntime.transformers.float16``).
Its weight handling matches TensorRT's: weights beyond 65504 are clamped to +-65504 and weights below
the smallest subnormal are raised to it (TensorRT warns "Converting to FP16 minimum subnormalized
value"); the layers reading such weights are reported (:mod:`.weights`). Three things are added around it:

* a Cast(FP16)->Cast(FP32) round trip on a value that is FP32 anyway (a graph input or a pinned layer's
  output read by another pinned layer) is removed, so pinned layers really see FP32 values;
* nodes are put back in topological order (the converter appends its Casts at the end; TensorRT's parser
  needs the order);
* a tensor map from every original float tensor to the lowered tensor that carries its value, found by
  node identity (node names survive the conversion), with the dtype it is actually computed in.

``blocked_ops`` are op types a runtime has no FP16 kernel for: they compute in FP32 and their outputs are
rounded to FP16 by a Cast, i.e. they are emulated, and recorded as such.

BF16 (for runtimes with BF16 kernels: TensorRT) is the FP16 typed graph retyped (:mod:`.retype`): every
FP16 tensor, Cast and weight becomes BF16, and weights are rounded again from their FP32 originals, so the
BF16 graph never carries FP16's clamping or rounding.
"""

from __future__ import annotations

import logging
from typing import Any

from layerscope.pipelines.lowering.formats import FORMATS
from layerscope.pipelines.lowering.graphutil import consumers, remove_dead_casts, topological_sort
from layerscope.pipelines.lowering.weights import weight_arrays, weight_range

FLOAT, FLOAT16 = 1, 10
TYPED_FORMATS = ("fp16", "bf16")


def lower_typed(model: Any, fmt: str, pinned: set[str], blocked_ops: set[str]) -> tuple[Any, dict[str, Any]]:
    """Return (lowered model, info) for ``fmt`` in TYPED_FORMATS; info has per-node execution and weight notes."""
    if fmt not in TYPED_FORMATS:
        raise ValueError(f"no typed lowering for {fmt}")
    fp32_nodes = {n.name for n in model.graph.node if n.name in pinned or n.op_type in blocked_ops}
    notes, weights = weight_range(model, FORMATS[fmt], {n.name for n in model.graph.node} - fp32_nodes)
    originals = weight_arrays(model) if fmt != "fp16" else {}  # FP32 weights, before the converter rounds them
    lowered, execution = _lower_fp16_graph(model, pinned, blocked_ops, fp32_nodes)
    if fmt != "fp16":
        from layerscope.pipelines.lowering.retype import retype_fp16

        retype_fp16(lowered, FORMATS[fmt], originals)
    return lowered, {"execution": execution, "notes": notes, "weights": weights}


def _lower_fp16_graph(
    model: Any, pinned: set[str], blocked_ops: set[str], fp32_nodes: set[str]
) -> tuple[Any, dict[str, str]]:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    log = logging.getLogger("onnxruntime.transformers.float16")
    previous = log.level
    log.setLevel(logging.ERROR)  # its per-initializer chatter is summarised in weight_notes instead
    try:
        lowered = convert_float_to_float16(
            model,
            min_positive_val=5.96e-08,
            max_finite_val=65504.0,
            keep_io_types=True,
            op_block_list=sorted(blocked_ops),
            node_block_list=sorted(pinned),
        )
    finally:
        log.setLevel(previous)
    _collapse_round_trips(lowered.graph, fp32_nodes)
    remove_dead_casts(lowered.graph)
    topological_sort(lowered.graph)
    execution = {}
    for n in model.graph.node:
        if n.name in pinned:
            execution[n.name] = "pinned"
        elif n.op_type in blocked_ops:
            execution[n.name] = "emulated"
        else:
            execution[n.name] = "native"
    return lowered, execution


def value_names(original: Any, lowered: Any, blocked_ops: set[str]) -> dict[str, str]:
    """Original float tensor -> lowered tensor carrying the value the rest of the network sees."""
    by_name = {n.name: n for n in lowered.graph.node}
    uses = consumers(lowered.graph)
    mapping: dict[str, str] = {}
    for node in original.graph.node:
        low = by_name.get(node.name)
        if low is None or len(low.output) != len(node.output):
            continue
        for orig, new in zip(node.output, low.output, strict=True):
            if not orig:
                continue
            if node.op_type in blocked_ops:  # emulated: the FP16 Cast after it is what consumers see
                for user, _ in uses.get(new, []):
                    if user.op_type == "Cast" and _cast_to(user) == FLOAT16:
                        new = user.output[0]
                        break
            mapping[orig] = new
    return mapping


def _cast_to(node: Any) -> int | None:
    for a in node.attribute:
        if a.name == "to":
            return int(a.i)
    return None


def _collapse_round_trips(graph: Any, fp32_nodes: set[str]) -> None:
    """Rewire readers of Cast32(Cast16(x)) to x when x is FP32 already (graph input or FP32 node output)."""
    fp32_values = {i.name for i in graph.input if i.type.tensor_type.elem_type == FLOAT}
    for n in graph.node:
        if n.name in fp32_nodes:
            fp32_values.update(o for o in n.output if o)
    producer = {o: n for n in graph.node for o in n.output if o}
    rename: dict[str, str] = {}
    for n in graph.node:
        if n.op_type != "Cast" or _cast_to(n) != FLOAT:
            continue
        first = producer.get(n.input[0])
        if first is None or first.op_type != "Cast" or _cast_to(first) != FLOAT16:
            continue
        if first.input[0] in fp32_values:
            rename[n.output[0]] = first.input[0]
    if not rename:
        return
    for n in graph.node:
        for i, name in enumerate(n.input):
            if name in rename:
                n.input[i] = rename[name]
