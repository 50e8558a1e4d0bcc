"""Retype an FP16 typed graph to another 16-bit float format (BF16), for runtimes with kernels for it.

ONNX Runtime's converter only produces FP16, and its pinned-layer handling, Casts at island borders and
tensor map are what every typed lowering needs, so BF16 reuses them: the FP16 graph is rewritten so that
every FP16 element type (value infos, Cast targets, ``dtype`` attributes, tensor attributes, weights)
becomes the target format. Weights are not converted from their FP16 values (which FP16 clamped at 65504
and rounded to 10 mantissa bits) but rounded again from the FP32 originals, with the same conversion
rules as everywhere else (:func:`.emulate.round_weights`). Graph inputs and outputs stay as they are
(FP32: the lowering keeps I/O types).

The result is typed as TensorRT's ONNX parser reads it (BF16 for Conv, MatMul, ... is in its operator
matrix for TensorRT 10); ONNX's own schemas accept BF16 for most of these ops only from opset 22, so the
ONNX checker may reject the graph at an older opset while TensorRT builds it.
"""

from __future__ import annotations

from typing import Any

from layerscope.pipelines.lowering.formats import Format

FLOAT, FLOAT16 = 1, 10
_TENSOR, _GRAPH, _GRAPHS = 4, 5, 10  # AttributeProto.AttributeType


def retype_fp16(model: Any, fmt: Format, originals: dict[str, Any]) -> None:
    """Rewrite ``model`` (FP16 typed, modified in place) to ``fmt``; ``originals`` are FP32 weights by name."""
    _retype_graph(model.graph, fmt, originals, top=True)


def _retype_graph(graph: Any, fmt: Format, originals: dict[str, Any], *, top: bool) -> None:
    for i, init in enumerate(graph.initializer):
        if init.data_type == FLOAT16:
            graph.initializer[i].CopyFrom(_weight(init, fmt, originals))
    infos = list(graph.value_info) + ([] if top else [*graph.input, *graph.output])
    for vi in infos:
        tt = vi.type.tensor_type
        if vi.type.HasField("tensor_type") and tt.elem_type == FLOAT16:
            tt.elem_type = fmt.onnx_type
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == _TENSOR and attr.t.data_type == FLOAT16:
                weight = _weight(attr.t, fmt, originals, node.output[0] if node.op_type == "Constant" else None)
                attr.t.CopyFrom(weight)
            elif attr.name in ("to", "dtype") and attr.i == FLOAT16 and attr.type == 2:  # INT
                attr.i = fmt.onnx_type
            elif attr.type == _GRAPH:
                _retype_graph(attr.g, fmt, originals, top=False)
            elif attr.type == _GRAPHS:
                for g in attr.graphs:
                    _retype_graph(g, fmt, originals, top=False)


def _weight(tensor: Any, fmt: Format, originals: dict[str, Any], name: str | None = None) -> Any:
    """The FP16 ``tensor`` as ``fmt``, rounded from its FP32 original when there is one."""
    import numpy as np
    from onnx import numpy_helper

    from layerscope.pipelines.lowering.emulate import round_weights
    from layerscope.pipelines.lowering.formats import numpy_dtype

    source = originals.get(name or tensor.name)
    if source is None:  # made by the converter: only its FP16 value exists
        source = numpy_helper.to_array(tensor).astype(np.float32)
    return numpy_helper.from_array(round_weights(source, fmt).astype(numpy_dtype(fmt.name)), tensor.name)
