"""Precision lowering shared by every backend: (model, format, pinned layers) -> an ONNX graph to run.

* ``fp32``: the model as it is.
* ``native``: a typed graph -- FP16 (or BF16) islands with Casts at their borders, FP32 graph I/O, pinned
  layers FP32 (:mod:`.typed`, :mod:`.retype`). Ops a runtime has no kernel for are passed as ``blocked_ops``
  and emulated.
* ``emulated``: FP32 compute with every value rounded to the format (:mod:`.emulate`).
* :func:`runtime_applied`: the graph unchanged, for a runtime that applies the precision itself (TensorRT
  10's builder flags); only the record of what each layer is asked to compute in.

The result records, for every original float tensor, which lowered tensor carries its value, the dtype it
is stored in, and how its node executed (``native``, ``emulated``, ``pinned``); the run as a whole is
``native``, ``emulated`` or ``mixed``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from layerscope.pipelines.lowering.formats import FORMATS
from layerscope.pipelines.models.summary import ModelSummary, normalize_names


@dataclass(frozen=True)
class PrecisionPlan:
    format: str
    execution: str  # "native" | "emulated"
    pinned: tuple[str, ...]
    quant: tuple[tuple[str, Any], ...] = ()  # INT8/FP8: calibration method, per-channel weights

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"format": self.format, "execution": self.execution, "pinned": list(self.pinned)}
        if self.quant:
            out["quant"] = dict(self.quant)
        return out


@dataclass
class Lowering:
    model: Any | None  # the lowered ModelProto; None for fp32 (run the original)
    info: dict[str, Any]  # JSON: format, execution, nodes, tensors, notes


def lower(
    model: Any, summary: ModelSummary, plan: PrecisionPlan, blocked_ops: frozenset[str] = frozenset()
) -> Lowering:
    """Lower ``model`` (a ModelProto, modified in place) according to ``plan``."""
    if model is not None:
        normalize_names(model)
    fmt = FORMATS[plan.format]
    pinned = set(plan.pinned) | _constants_read_only_by(set(plan.pinned), summary)
    float_outputs = {n.name: summary.float_outputs(n) for n in summary.nodes}
    upgrade_notes: list[str] = []
    if model is not None and plan.format == "bf16":
        from layerscope.pipelines.lowering.opset import BF16_OPSET, ensure_opset

        model, upgrade_notes = ensure_opset(model, BF16_OPSET, "a Cast to bfloat16")
    if plan.format == "fp32":
        nodes = {n.name: ("native" if float_outputs[n.name] else "n/a") for n in summary.nodes}
        tensors = {t: t for outs in float_outputs.values() for t in outs}
        return Lowering(None, _info(plan, {"execution": nodes, "notes": [], "weights": {}}, tensors, summary, None))
    if plan.execution == "emulated":
        from layerscope.pipelines.lowering.emulate import lower_emulated

        lowered, extra = lower_emulated(model, summary, fmt, pinned)
        extra["notes"] = upgrade_notes + extra["notes"]
        values = extra.get("values", {})
        tensors = {t: values.get(t, t) for outs in float_outputs.values() for t in outs}
        return Lowering(lowered, _info(plan, extra, tensors, summary, lowered if values else None))
    import copy

    from layerscope.pipelines.lowering.typed import TYPED_FORMATS, lower_typed, value_names

    if plan.format not in TYPED_FORMATS:
        raise ValueError(f"no native lowering for {plan.format}")
    original = copy.deepcopy(model)
    lowered, extra = lower_typed(model, plan.format, pinned, set(blocked_ops))
    extra["notes"] = upgrade_notes + extra["notes"]
    mapping = value_names(original, lowered, set(blocked_ops))
    tensors = {t: mapping.get(t, t) for outs in float_outputs.values() for t in outs}
    return Lowering(lowered, _info(plan, extra, tensors, summary, lowered))


def lower_quantized(
    model_path: Path, summary: ModelSummary, plan: PrecisionPlan, ranges: Path, work_dir: Path
) -> Lowering:
    """INT8/FP8: a Q/DQ model from calibrated ``ranges`` (see :mod:`.quantize`)."""
    import shutil
    import tempfile

    from layerscope.pipelines.lowering.quantize import quantize, tensor_map

    pinned = set(plan.pinned) | _constants_read_only_by(set(plan.pinned), summary)
    quant = dict(plan.quant)
    with tempfile.TemporaryDirectory(dir=work_dir, prefix="quantize-") as scratch:
        lowered, notes = quantize(
            model_path,
            ranges,
            fmt=plan.format,
            per_channel=bool(quant.get("per_channel", False)),
            pinned=pinned,
            work_dir=Path(scratch),
            float_tensors={name for name, t in summary.tensors.items() if t.is_float},
        )
        shutil.rmtree(scratch, ignore_errors=True)
    qmap = tensor_map(lowered, plan.format)
    dq_outputs = {q["value"] for q in qmap.values()}
    mode = "native" if FORMATS[plan.format].native_on_cpu else "emulated"
    execution: dict[str, str] = {}
    by_name = {n.name: n for n in lowered.graph.node}
    for n in summary.nodes:
        low = by_name.get(n.name)
        if n.name in pinned:
            execution[n.name] = "pinned"
        elif low is not None and any(i in dq_outputs for i in low.input):
            execution[n.name] = mode
        else:
            execution[n.name] = "unquantized"
    float_outputs = [t for n in summary.nodes for t in summary.float_outputs(n)]
    tensors = {t: qmap[t]["value"] if t in qmap else t for t in float_outputs}
    info = _info(plan, {"execution": execution, "notes": notes, "weights": {}}, tensors, summary, None)
    fmt = FORMATS[plan.format]
    for t, entry in info["tensors"].items():
        if t in qmap:
            entry["prequant"] = qmap[t]["prequant"]
            entry["quant"] = qmap[t]["quant"]
            entry["dtype"] = fmt.dtype  # the value consumers read is on the quantization grid
        else:
            entry["dtype"] = "float32"
    return Lowering(lowered, info)


def runtime_applied(model: Any, summary: ModelSummary, plan: PrecisionPlan) -> Lowering:
    """The record for a runtime that applies ``plan`` itself (TensorRT 10's builder flags): the graph is run
    as it is; every layer not pinned is asked to compute in the format (``native``), pinned layers and the
    Constant weights only they read stay FP32, and the weights the format cannot hold are reported as for a
    typed graph (the runtime converts weights with the same rules)."""
    from layerscope.pipelines.lowering.weights import weight_range

    if model is not None:
        normalize_names(model)
    if plan.format == "fp32":
        return lower(None, summary, plan)
    pinned = set(plan.pinned) | _constants_read_only_by(set(plan.pinned), summary)
    execution = {n.name: "pinned" if n.name in pinned else "native" for n in summary.nodes}
    notes, weights = weight_range(model, FORMATS[plan.format], {n.name for n in summary.nodes} - pinned)
    tensors = {t: t for n in summary.nodes for t in summary.float_outputs(n)}
    extra = {"execution": execution, "notes": notes, "weights": weights}
    return Lowering(None, _info(plan, extra, tensors, summary, None))


def _constants_read_only_by(pinned: set[str], summary: ModelSummary) -> set[str]:
    """Constant nodes whose every reader is pinned: their values are the pinned layers' FP32 weights."""
    readers: dict[str, set[str]] = {}
    for n in summary.nodes:
        for t in n.inputs:
            readers.setdefault(t, set()).add(n.name)
    return {
        n.name
        for n in summary.nodes
        if n.op_type == "Constant" and n.outputs and readers.get(n.outputs[0]) and readers[n.outputs[0]] <= pinned
    }


def _info(
    plan: PrecisionPlan, extra: dict[str, Any], tensors: dict[str, str], summary: ModelSummary, typed_model: Any | None
) -> dict[str, Any]:
    """The lowering record: per node its execution (and weights out of range), per tensor where its value is."""
    execution: dict[str, str] = extra["execution"]
    weights: dict[str, Any] = extra.get("weights", {})
    fmt = FORMATS[plan.format]
    stored = _stored_dtypes(typed_model, set(tensors.values())) if typed_model is not None else {}
    producer = summary.producer_of()
    nodes_out: dict[str, dict[str, Any]] = {}
    for n in summary.nodes:
        mode = execution.get(n.name, "n/a")
        if not summary.float_outputs(n):
            mode = "n/a"
        nodes_out[n.name] = {
            "op_type": n.op_type,
            "execution": mode,
            "precision": "fp32" if mode in ("pinned", "n/a", "unquantized") else fmt.name,
        }
        if n.name in weights:
            nodes_out[n.name]["weights"] = weights[n.name]
    tensors_out: dict[str, dict[str, Any]] = {}
    for orig, low in tensors.items():
        node = producer.get(orig)
        mode = nodes_out[node.name]["execution"] if node else "n/a"
        if plan.format == "fp32" or mode in ("pinned", "unquantized"):
            executed = "float32"
        else:
            executed = fmt.dtype
        tensors_out[orig] = {
            "name": low,
            "node": node.name if node else "",
            "op_type": node.op_type if node else "",
            "index": node.index if node else -1,
            "execution": mode,
            "dtype": executed,  # the format the value was computed/rounded in
            "stored": stored.get(low, "float32"),  # the dtype the runtime hands back
        }
        if node is not None and node.name in weights:
            tensors_out[orig]["weights"] = weights[node.name]
    modes = {v["execution"] for v in nodes_out.values()} - {"n/a", "pinned"}
    overall = "native" if modes <= {"native"} else "emulated" if modes == {"emulated"} else "mixed"
    return {
        "plan": plan.to_json(),
        "execution": overall,
        "nodes": nodes_out,
        "tensors": tensors_out,
        "notes": list(extra["notes"]),
    }


def _stored_dtypes(model: Any, names: set[str]) -> dict[str, str]:
    """The element type each lowered tensor has, from type inference on the lowered graph."""
    import onnx

    from layerscope.pipelines.models.summary import ELEM_TYPES

    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:
        return {}
    out: dict[str, str] = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output) + list(inferred.graph.input):
        if vi.name in names and vi.type.HasField("tensor_type"):
            out[vi.name] = ELEM_TYPES.get(vi.type.tensor_type.elem_type, "float32")
    return out
