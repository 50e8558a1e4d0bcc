"""Opset upgrade before lowering, for formats an old opset cannot express.

A Cast to bfloat16 exists only from opset 13, and so does a per-channel (``axis``) DequantizeLinear: a model
exported at opset 9 or 11 cannot be lowered to BF16 or quantized with per-channel weights as it is. Such a model
is upgraded with ``onnx.version_converter`` first. The converter rewrites some nodes (Upsample becomes Resize
plus a Constant for its ``roi``) and drops their names and output tensor names; every layer must keep its name
(the config, the dumps and the report use it), so the rewritten nodes get their original node and tensor names
back, and the helper nodes the converter added are named after the layer they serve. The upgrade is recorded in
the lowering's notes.
"""

from __future__ import annotations

from typing import Any

from layerscope.runner.errors import StageError

BF16_OPSET = 13  # Cast to/from bfloat16
PER_CHANNEL_OPSET = 13  # DequantizeLinear's axis attribute


def default_opset(model: Any) -> int:
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return int(o.version)
    return 0


def ensure_opset(model: Any, minimum: int, why: str) -> tuple[Any, list[str]]:
    """``model`` at opset ``minimum`` or above (converted when below), and notes saying what was done."""
    from onnx import version_converter

    before = default_opset(model)
    if before >= minimum:
        return model, []
    original = [(n.name, n.op_type, list(n.input), list(n.output)) for n in model.graph.node]
    try:
        converted = version_converter.convert_version(model, minimum)
    except Exception as exc:
        raise StageError(
            f"{why} needs opset {minimum}; the model has opset {before} and onnx's version converter cannot "
            f"upgrade it: {type(exc).__name__}: {str(exc).strip()[:300]}",
            hint="export the model at opset 13 or later",
        ) from None
    renamed = _restore_names(converted, original)
    note = f"the model's opset {before} was upgraded to {minimum} (onnx.version_converter): {why} needs it"
    if renamed:
        shown = ", ".join(renamed[:6]) + (" …" if len(renamed) > 6 else "")
        note += f"; rewritten layers keep their names: {shown}"
    return converted, [note]


def _restore_names(model: Any, original: list[tuple[str, str, list[str], list[str]]]) -> list[str]:
    """Give nodes the converter rewrote their original node and output names back. Returns "name (old → new op)"."""
    g = model.graph
    present = {n.name for n in g.node if n.name}
    lost = [o for o in original if o[0] and o[0] not in present]
    renamed: list[str] = []
    used: set[int] = set()
    for name, op, inputs, outputs in lost:
        data = inputs[0] if inputs else None
        match = next(
            (
                i
                for i, n in enumerate(g.node)
                if not n.name and i not in used and n.op_type != "Constant" and n.input and n.input[0] == data
            ),
            None,
        )
        if match is None:
            continue
        used.add(match)
        node = g.node[match]
        node.name = name
        for k, new in enumerate(list(node.output)):
            if k < len(outputs) and new != outputs[k]:
                _rename_tensor(g, new, outputs[k])
        renamed.append(f"{name} ({op} → {node.op_type})" if node.op_type != op else name)
        # The helpers feeding it (a Resize's roi Constant) are named after the layer they serve.
        for i, inp in enumerate(node.input):
            for helper in g.node:
                if not helper.name and inp in helper.output:
                    helper.name = f"{name}::{helper.op_type.lower()}{i}"
    return renamed


def _rename_tensor(g: Any, old: str, new: str) -> None:
    for n in g.node:
        for i, t in enumerate(n.input):
            if t == old:
                n.input[i] = new
        for i, t in enumerate(n.output):
            if t == old:
                n.output[i] = new
    for vi in [*g.output, *g.value_info]:
        if vi.name == old:
            vi.name = new
