"""Which weights a format cannot hold, by the layer that reads them.

Weights are initializers and the outputs of Constant nodes (exporters such as paddle2onnx use the latter).
A weight beyond the format's largest finite value is clamped to it, one below the smallest subnormal is
raised to it, and subnormals keep fewer significant bits. A BatchNormalization whose running variance is
1e8 is a real case (PP-OCRv4's detection head): clamped to 65504, the layer's output is wrong everywhere.
The result names the layers, so the report can say which layer to pin.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from layerscope.pipelines.lowering.formats import Format

FLOAT = 1


def weight_arrays(model: Any) -> dict[str, Any]:
    """Float32 weight tensors by name: initializers and Constant node values."""
    from onnx import numpy_helper

    out: dict[str, Any] = {}
    for init in model.graph.initializer:
        if init.data_type == FLOAT:
            out[init.name] = numpy_helper.to_array(init)
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output:
            for attr in node.attribute:
                if attr.name == "value" and attr.t.data_type == FLOAT:
                    out[node.output[0]] = numpy_helper.to_array(attr.t)
    return out


def weight_range(
    model: Any, fmt: Format, lowered: set[str], arrays: dict[str, Any] | None = None
) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """(notes, per node) for the weights read by the ``lowered`` nodes, against ``fmt``'s limits. ``arrays``:
    the model's :func:`weight_arrays` when the caller has them already."""

    assert fmt.max is not None and fmt.smallest_subnormal is not None and fmt.smallest_normal is not None
    if arrays is None:
        arrays = weight_arrays(model)
    readers: dict[str, list[str]] = defaultdict(list)
    for node in model.graph.node:
        if node.name in lowered and node.op_type != "Constant":
            for name in node.input:
                if name in arrays:
                    readers[name].append(node.name)
    per_node: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"clamped": 0, "raised": 0, "subnormal": 0, "max_abs": 0.0}
    )
    totals = {"clamped": 0, "raised": 0, "subnormal": 0}
    examples: list[tuple[float, str, str, int]] = []
    for name, counts, biggest in _out_of_range(readers, arrays, fmt):
        nodes = readers[name]
        for k, v in counts.items():
            totals[k] += v
        for node in nodes:
            entry = per_node[node]
            for k, v in counts.items():
                entry[k] += v
            entry["max_abs"] = max(entry["max_abs"], biggest)
        if counts["clamped"]:
            examples.append((biggest, name, ", ".join(nodes), counts["clamped"]))
    notes = []
    if totals["clamped"]:
        notes.append(f"{totals['clamped']} weights exceed the {fmt.name} maximum ({fmt.max:g}) and were clamped to it")
        for biggest, name, readers_text, n in sorted(examples, reverse=True)[:10]:
            notes.append(f"  {name} (read by {readers_text}): {n} values clamped, largest |w| = {biggest:.3g}")
    if totals["raised"]:
        notes.append(
            f"{totals['raised']} weights are below the smallest {fmt.name} subnormal ({fmt.smallest_subnormal:.3g}) "
            "and were raised to it"
        )
    if totals["subnormal"]:
        notes.append(f"{totals['subnormal']} weights are {fmt.name} subnormals (fewer significant bits)")
    return notes, dict(per_node)


# Weights are counted and rounded in groups of about this many elements: one vectorised pass per group (a model
# of 8,000 small weights spent a second in per-weight numpy calls) with temporaries bounded for large ones.
GROUP_ELEMENTS = 1 << 22

T = TypeVar("T")


def in_groups(items: Iterable[T], size: Callable[[T], int]) -> Iterator[list[T]]:
    """Consecutive ``items`` in groups of at least :data:`GROUP_ELEMENTS` elements by ``size`` (the last group,
    or one large item alone, may differ)."""
    group: list[T] = []
    total = 0
    for item in items:
        group.append(item)
        total += size(item)
        if total >= GROUP_ELEMENTS:
            yield group
            group, total = [], 0
    if group:
        yield group


def _out_of_range(
    names: Iterable[str], arrays: dict[str, Any], fmt: Format
) -> Iterator[tuple[str, dict[str, int], float]]:
    """(name, counts clamped / raised / subnormal, largest finite |w|) of each weight the format cannot hold
    exactly (any count above zero), in the order of ``names``."""
    import numpy as np

    assert fmt.max is not None and fmt.smallest_subnormal is not None and fmt.smallest_normal is not None
    for group in in_groups(names, lambda n: int(np.asarray(arrays[n]).size)):
        flat = [np.asarray(arrays[n]).ravel() for n in group]
        a = np.abs(np.concatenate(flat).astype(np.float64, copy=False))
        ends = np.cumsum([f.size for f in flat], dtype=np.int64)
        starts = ends - np.array([f.size for f in flat], dtype=np.int64)
        finite = np.isfinite(a)
        masks = {
            "clamped": finite & (a > fmt.max),
            "raised": finite & (a > 0) & (a < fmt.smallest_subnormal),
            "subnormal": finite & (a >= fmt.smallest_subnormal) & (a < fmt.smallest_normal),
        }
        per_weight = {}
        for k, mask in masks.items():
            running = np.concatenate([[0], np.cumsum(mask, dtype=np.int64)])
            per_weight[k] = running[ends] - running[starts]
        for j, n in enumerate(group):
            counts = {k: int(v[j]) for k, v in per_weight.items()}
            if any(counts.values()):
                values = a[starts[j] : ends[j]][finite[starts[j] : ends[j]]]
                yield n, counts, float(values.max()) if values.size else 0.0
