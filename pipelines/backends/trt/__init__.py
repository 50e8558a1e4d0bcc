"""The TensorRT backend's parts, split so that everything that does not need a GPU is plain Python.

* :mod:`.versions` -- which TensorRT is installed, whether it can run here, the precision route and dump
  modes each version allows, and the run options with their defaults (no ``tensorrt`` import);
* :mod:`.plan` -- selection -> tensors to mark, precision plan -> per-layer settings (builder-flag route),
  optimization-profile shapes, and the build key (pure);
* :mod:`.inspector` -- the engine inspector's JSON (TensorRT 10.x and 11.x layouts) -> per-ONNX-layer
  precision audit, and the mapping of unfused debug tensor names back to ONNX names (pure);
* :mod:`.buffers` -- TensorRT data types <-> numpy / ml_dtypes, raw bytes -> arrays (pure);
* :mod:`.engine` -- building an engine with the TensorRT API (imports ``tensorrt``);
* :mod:`.runtime` -- running it through ``cuda.bindings`` (imports ``tensorrt`` and ``cuda``).

:mod:`layerscope.pipelines.backends.tensorrt` puts them together behind the Backend protocol. Every
TensorRT and CUDA name that ``engine`` and ``runtime`` use is checked against the real bindings of each
supported TensorRT major version by ``tests/pipelines/backends/test_trt_api_conformance.py``.
"""
