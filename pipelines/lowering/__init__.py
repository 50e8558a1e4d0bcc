"""Precision lowering shared by every backend: (model, format, pinned layers) -> an ONNX graph to run.

:mod:`.lower` is the entry point (typed FP16/BF16 islands, emulation, the record of how each layer executes);
:mod:`.typed`, :mod:`.retype` and :mod:`.emulate` make the graphs, :mod:`.quantize` the INT8/FP8 Q/DQ models,
:mod:`.weights` reports weights a format cannot hold, :mod:`.formats` holds the formats' limits and
:mod:`.calibration_cache` reads and writes TensorRT's INT8 calibration cache.
"""

from layerscope.pipelines.lowering.lower import (
    Lowering,
    PrecisionPlan,
    lower,
    lower_quantized,
    runtime_applied,
)

__all__ = ["Lowering", "PrecisionPlan", "lower", "lower_quantized", "runtime_applied"]
