"""Backends: the interface every runtime provides (:mod:`.base`), the registry (:mod:`.registry`), ONNX Runtime
(:mod:`.onnxruntime`) and TensorRT (:mod:`.tensorrt`, its parts in :mod:`.trt`). Backend modules import their
runtime only when used."""

from layerscope.pipelines.backends.registry import availability, get, names, table

__all__ = ["availability", "get", "names", "table"]
