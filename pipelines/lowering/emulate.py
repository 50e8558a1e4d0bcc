"""Emulated lowering: FP32 compute with every value rounded to the target format, for formats a runtime
has no kernels for (BF16 on ORT's CPU provider) or when emulation is asked for explicitly.

What a reduced-precision engine stores in the format is rounded to it here: weights (with TensorRT's
conversion rules: clamp to the largest finite value, raise tiny non-zeros to the smallest subnormal),
graph inputs, and every node's float output, through a Cast(format)->Cast(FP32) pair inserted after the
node, so the rest of the network reads the rounded value under the original tensor name. The rounding is
the runtime's own Cast (round to nearest even, checked against ml_dtypes by the tests). Layers pinned to
FP32 compute on whatever they receive and their outputs are not rounded; inputs that are control values
rather than data (Resize's roi/scales) keep their FP32 value.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from layerscope.pipelines.lowering.formats import Format
from layerscope.pipelines.lowering.graphutil import consumers, topological_sort, unique_name
from layerscope.pipelines.lowering.weights import in_groups, weight_arrays, weight_range
from layerscope.pipelines.models.summary import ModelSummary

FLOAT = 1
# Inputs that are control values, by op type: never rounded (as in ORT's own converter).
CONTROL_INPUTS: dict[str, set[int]] = {"Resize": {1, 2}, "Upsample": {1}, "GroupNorm": {1, 2}}


def round_weights(array: Any, fmt: Format) -> Any:
    """Round FP32 weights to ``fmt`` the way TensorRT converts them; returns FP32 values on the grid."""
    import numpy as np

    from layerscope.pipelines.lowering.formats import numpy_dtype

    a = np.asarray(array, dtype=np.float32)
    assert fmt.max is not None and fmt.smallest_subnormal is not None
    finite = np.isfinite(a)
    a = np.where(finite, np.clip(a, -fmt.max, fmt.max), a)
    tiny = finite & (a != 0) & (np.abs(a) < fmt.smallest_subnormal)
    a = np.where(tiny, np.copysign(np.float32(fmt.smallest_subnormal), a), a)
    return a.astype(numpy_dtype(fmt.name)).astype(np.float32)


def _rounded(arrays: list[Any], fmt: Format) -> Iterator[Any]:
    """:func:`round_weights` of each array, computed over groups of arrays at once (the same values)."""
    import numpy as np

    for group in in_groups(arrays, lambda a: int(np.size(a))):
        as_float = [np.asarray(a, dtype=np.float32) for a in group]
        flat = round_weights(np.concatenate([g.ravel() for g in as_float]), fmt)
        offset = 0
        for g in as_float:
            yield flat[offset : offset + g.size].reshape(g.shape)
            offset += g.size


def _float_value(node: Any) -> Any:
    from onnx import numpy_helper

    for attr in node.attribute:
        if attr.name == "value" and attr.t.data_type == FLOAT:
            return numpy_helper.to_array(attr.t)
    return None


def lower_emulated(model: Any, summary: ModelSummary, fmt: Format, pinned: set[str]) -> tuple[Any, dict[str, Any]]:
    from onnx import helper, numpy_helper

    g = model.graph
    arrays = weight_arrays(model)
    weight_notes, weights = weight_range(model, fmt, {n.name for n in g.node if n.name not in pinned}, arrays)
    taken = {o for n in g.node for o in n.output} | {i.name for i in g.input} | {i.name for i in g.initializer}
    taken |= {n.name for n in g.node}
    is_float = {name for name, t in summary.tensors.items() if t.dtype == "float32"}
    uses = consumers(g)

    def data_use(node: Any, index: int) -> bool:
        return node.name not in pinned and index not in CONTROL_INPUTS.get(node.op_type, set())

    new_nodes: list[Any] = []

    # Where each rounded node output can be read in the format itself (FP16: the dump stores it as float16, half
    # the bytes of its FP32 copy; h5py has no bfloat16 or float8, so those are read after the Cast back).
    in_format: dict[str, str] = {}

    # Each pair is copied from one made by onnx.helper (the same proto, without its per-call attribute checks).
    to_format = helper.make_node("Cast", [""], [""], name="", to=fmt.onnx_type)
    to_fp32 = helper.make_node("Cast", [""], [""], name="", to=FLOAT)

    def cast(template: Any, src: str, dst: str, name: str) -> Any:
        node = type(template)()
        node.CopyFrom(template)
        node.input[0], node.output[0], node.name = src, dst, name
        return node

    def rounding_pair(src: str, dst: str, base: str) -> None:
        q = unique_name(f"{base}::{fmt.name}", taken)
        if fmt.name == "fp16":
            in_format[dst] = q
        new_nodes.append(cast(to_format, src, q, unique_name(f"{base}::to_{fmt.name}", taken)))
        new_nodes.append(cast(to_fp32, q, dst, unique_name(f"{base}::to_fp32", taken)))

    execution: dict[str, str] = {}
    unknown: list[str] = []
    constants = {n.output[0]: n for n in g.node if n.op_type == "Constant" and _float_value(n) is not None}
    # Node outputs: rename to a raw name, round back into the original name; control readers keep raw.
    layers = {n.name for n in summary.nodes}
    for node in list(g.node):
        if node.name in pinned:
            execution[node.name] = "pinned"
            continue
        if node.name not in layers and all(o not in summary.tensors for o in node.output):
            continue  # a helper an opset upgrade added (a Resize's roi Constant): control data, not a layer
        if node.op_type == "Constant" and node.output[0] in constants:
            execution[node.name] = "emulated"  # a weight: rounded below, like an initializer
            continue
        rounded_any = False
        for i, out in enumerate(node.output):
            if not out:
                continue
            if out not in is_float:
                if summary.tensors.get(out) is None or summary.tensors[out].dtype is None:
                    unknown.append(out)
                continue
            raw = unique_name(f"{out}::raw", taken)
            node.output[i] = raw
            rounding_pair(raw, out, out)
            for user, idx in uses.get(out, []):
                if idx >= 0 and idx in CONTROL_INPUTS.get(user.op_type, set()):
                    user.input[idx] = raw
            rounded_any = True
        execution[node.name] = "emulated" if rounded_any else "n/a"
    # Graph inputs: one rounded copy read by the reduced layers.
    for inp in g.input:
        if inp.name not in is_float or inp.name in {i.name for i in g.initializer}:
            continue
        readers = [(n, i) for n, i in uses.get(inp.name, []) if i >= 0 and data_use(n, i)]
        if not readers:
            continue
        rounded = unique_name(f"{inp.name}::{fmt.name}_value", taken)
        rounding_pair(inp.name, rounded, inp.name)
        for n, i in readers:
            n.input[i] = rounded
    # Weights: rounded in place when only reduced layers read them, else a rounded copy for those. Rounded all
    # at once (round_weights works per element; thousands of small weights cost a numpy call each otherwise).
    read: list[tuple[Any, list[tuple[Any, int]], list[tuple[Any, int]]]] = []
    for init in g.initializer:
        if init.data_type != FLOAT:
            continue
        readers = uses.get(init.name, [])
        data_readers = [(n, i) for n, i in readers if i >= 0 and data_use(n, i)]
        if data_readers:
            read.append((init, readers, data_readers))
    replacements = []
    for (init, readers, data_readers), value in zip(
        read, _rounded([arrays[init.name] for init, _, _ in read], fmt), strict=True
    ):
        rounded = numpy_helper.from_array(value, init.name)
        if len(data_readers) == len(readers):
            replacements.append((init, rounded))
        else:
            rounded.name = unique_name(f"{init.name}::{fmt.name}", taken)
            g.initializer.append(rounded)
            for n, i in data_readers:
                n.input[i] = rounded.name
    for old, new in replacements:
        old.CopyFrom(new)
    # Constant-node weights: the same rules, the rounded value in a new Constant for the reduced readers.
    for name, const in constants.items():
        readers = uses.get(name, [])
        data_readers = [(n, i) for n, i in readers if i >= 0 and data_use(n, i)]
        if not data_readers:
            continue
        value = round_weights(_float_value(const), fmt)
        rounded = unique_name(f"{name}::{fmt.name}", taken)
        node_name = unique_name(f"{const.name}::{fmt.name}", taken)
        tensor = numpy_helper.from_array(value, rounded)
        new_nodes.append(helper.make_node("Constant", [], [rounded], name=node_name, value=tensor))
        for n, i in data_readers:
            n.input[i] = rounded
    g.node.extend(new_nodes)
    topological_sort(g)
    notes = list(weight_notes)
    if unknown:
        notes.append(
            f"{len(unknown)} node outputs of unknown type were not rounded (shape inference could not type them)"
        )
    return model, {"execution": execution, "notes": notes, "weights": weights, "values": in_format}
