"""layerscope: per-layer accuracy analysis of reduced-precision inference against an FP32 reference.

The generic engine lives in :mod:`layerscope.runner` (repository folder ``runner/``); the domain (ONNX
lowering, backends, dumps, metrics, reports) in :mod:`layerscope.pipelines` (``pipelines/``). Importing
this package is cheap on purpose: nothing heavy (numpy, onnx, onnxruntime, h5py) is imported here.
"""

from __future__ import annotations

from layerscope._version import __version__

__all__ = ["__version__"]
