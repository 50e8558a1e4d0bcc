"""Run a TensorRT engine through ``cuda.bindings`` (cuda-python): the device's facts, device and pinned
host buffers, ``set_tensor_address`` + ``execute_async_v3``, and a debug listener that copies debug
tensors to the host while TensorRT calls it back.

Imports ``tensorrt`` and ``cuda`` inside functions. Written against the documented APIs (NVIDIA's
``samples/python/common_runtime.py`` shows the same cuda.bindings calls); nothing here has run on a GPU in
this repository's CI. TensorRT objects are annotated with their class for the API conformance test.
"""

from __future__ import annotations

import ctypes
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from layerscope.pipelines.backends.trt.buffers import from_bytes, nbytes, pointer, to_bytes
from layerscope.pipelines.backends.trt.plan import DeviceFacts
from layerscope.runner.errors import StageError

if TYPE_CHECKING:
    import numpy as np
    import tensorrt as trt
    from cuda.bindings import runtime as cudart


def _check(result: Any, what: str) -> Any:
    """cuda.bindings returns (error, *values): raise on an error, return the value(s)."""
    from cuda.bindings import runtime as cudart

    err, *values = result
    if err != cudart.cudaError_t.cudaSuccess:
        raise StageError(f"CUDA error in {what}: {_error_name(err)}")
    return values[0] if len(values) == 1 else (values or None)


def _error_name(err: Any) -> str:
    from cuda.bindings import runtime as cudart

    _, name = cudart.cudaGetErrorName(err)
    return name.decode() if isinstance(name, bytes) else str(name)


def device_count() -> tuple[int, str]:
    """(number of visible CUDA devices, the CUDA error's name when there are none because of one)."""
    from cuda.bindings import runtime as cudart

    err, count = cudart.cudaGetDeviceCount()
    if err != cudart.cudaError_t.cudaSuccess:
        return 0, _error_name(err)
    return int(count), ""


def device_facts() -> DeviceFacts:
    """Name, compute capability and driver version of the device CUDA uses (device 0 of the visible ones)."""
    from cuda.bindings import runtime as cudart

    prop: cudart.cudaDeviceProp = _check(cudart.cudaGetDeviceProperties(0), "cudaGetDeviceProperties")
    driver = int(_check(cudart.cudaDriverGetVersion(), "cudaDriverGetVersion"))
    name = prop.name.decode(errors="replace") if isinstance(prop.name, bytes) else str(prop.name)
    return DeviceFacts(
        name.rstrip("\x00").strip(), f"{prop.major}.{prop.minor}", f"{driver // 1000}.{driver % 1000 // 10}"
    )


@dataclass
class _Buffer:
    device: int
    host: int  # pinned
    size: int


def make_listener() -> Any:
    """An IDebugListener that copies every debug tensor to host memory during the callback (TensorRT
    guarantees the address only for the duration of the call)."""
    import numpy as np
    import tensorrt as trt
    from cuda.bindings import runtime as cudart

    class HostCopyListener(trt.IDebugListener):
        def __init__(self) -> None:
            trt.IDebugListener.__init__(self)
            self.values: dict[str, tuple[str, tuple[int, ...], bytes]] = {}
            self.error = ""

        def process_debug_tensor(
            self, addr: Any, location: Any, dtype: Any, shape: Any, name: str, stream: Any
        ) -> bool:
            try:
                dims = tuple(int(d) for d in shape)
                size = nbytes(dtype.name, dims)
                host = np.empty(size, np.uint8)
                if location == trt.TensorLocation.HOST:
                    ctypes.memmove(host.ctypes.data, pointer(addr), size)
                else:
                    kind = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
                    _check(cudart.cudaMemcpyAsync(host.ctypes.data, pointer(addr), size, kind, stream), "copy")
                    _check(cudart.cudaStreamSynchronize(stream), "cudaStreamSynchronize")
                self.values[name] = (dtype.name, dims, host.tobytes())
            except Exception as exc:  # nothing may propagate into TensorRT's C++ caller
                self.error = self.error or f"debug tensor {name!r}: {exc}"
            return True

    return HostCopyListener()


class TensorRTSession:
    """One engine, one execution context, one stream; buffers sized by the first sample and reused."""

    def __init__(self, engine_bytes: bytes, reads: Mapping[str, str], mode: str, unobservable: Mapping[str, str]):
        import tensorrt as trt
        from cuda.bindings import runtime as cudart

        from layerscope.pipelines.backends.trt.engine import make_logger

        self.unobservable = dict(unobservable)
        self._reads = dict(reads)  # engine tensor name (output or debug tensor) -> lowered ONNX name
        self._logger = make_logger()
        self._runtime: trt.Runtime = trt.Runtime(self._logger)
        self._engine: trt.ICudaEngine = self._runtime.deserialize_cuda_engine(engine_bytes)
        if self._engine is None:
            raise StageError(f"TensorRT cannot load the engine: {'; '.join(self._logger.errors[:3])}")
        self._context: trt.IExecutionContext = self._engine.create_execution_context()
        self._stream: cudart.cudaStream_t = _check(cudart.cudaStreamCreate(), "cudaStreamCreate")
        self._buffers: dict[str, _Buffer] = {}
        self._io: list[tuple[str, bool, str]] = []
        for i in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(i)
            is_input = self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            self._io.append((name, is_input, self._engine.get_tensor_dtype(name).name))
        self._listener = None
        if mode in ("debug", "unfused"):
            self._listener = make_listener()
            self._context.set_debug_listener(self._listener)
            self._context.set_all_tensors_debug_state(True)
            if mode == "unfused":
                self._enable_unfused()

    def _enable_unfused(self) -> None:  # tensorrt>=10.12
        self._context.unfused_tensors_debug_state = True

    def _buffer(self, name: str, size: int) -> _Buffer:
        from cuda.bindings import runtime as cudart

        buf = self._buffers.get(name)
        if buf is None or buf.size < size:
            if buf is not None:
                self._free(buf)
            size = max(size, 1)
            device = int(_check(cudart.cudaMalloc(size), "cudaMalloc"))
            host = int(_check(cudart.cudaMallocHost(size), "cudaMallocHost"))
            buf = self._buffers[name] = _Buffer(device, host, size)
        return buf

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        from cuda.bindings import runtime as cudart

        to_device = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        to_host = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        for name, is_input, _ in self._io:
            if is_input and not self._context.set_input_shape(name, tuple(feeds[name].shape)):
                raise StageError(f"input {name!r} of shape {list(feeds[name].shape)} does not fit the engine's profile")
        outputs = []
        for name, is_input, dtype in self._io:
            shape = tuple(int(d) for d in self._context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise StageError(
                    f"engine tensor {name!r} has a data-dependent shape {list(shape)}, which is not supported"
                )
            buf = self._buffer(name, nbytes(dtype, shape))
            self._context.set_tensor_address(name, buf.device)
            if is_input:
                data = to_bytes(feeds[name], dtype)
                ctypes.memmove(buf.host, data.ctypes.data, data.nbytes)
                _check(cudart.cudaMemcpyAsync(buf.device, buf.host, data.nbytes, to_device, self._stream), "copy")
            else:
                outputs.append((name, dtype, shape, buf))
        if self._listener is not None:
            self._listener.values.clear()
        if not self._context.execute_async_v3(int(self._stream)):
            raise StageError(f"TensorRT failed on a sample: {'; '.join(self._logger.errors[-3:]) or 'no reason given'}")
        for _, dtype, shape, buf in outputs:
            _check(cudart.cudaMemcpyAsync(buf.host, buf.device, nbytes(dtype, shape), to_host, self._stream), "copy")
        _check(cudart.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
        values: dict[str, np.ndarray] = {}
        for name, dtype, shape, buf in outputs:
            raw = (ctypes.c_ubyte * nbytes(dtype, shape)).from_address(buf.host)
            values[self._reads.get(name, name)] = from_bytes(raw, dtype, shape)
        if self._listener is not None:
            if self._listener.error:
                raise StageError(f"copying a debug tensor failed: {self._listener.error}")
            for name, (dtype, shape, raw) in self._listener.values.items():
                if name in self._reads:
                    values[self._reads[name]] = from_bytes(raw, dtype, shape)
        return values

    def _free(self, buf: _Buffer) -> None:
        from cuda.bindings import runtime as cudart

        cudart.cudaFree(buf.device)
        cudart.cudaFreeHost(buf.host)

    def close(self) -> None:
        from cuda.bindings import runtime as cudart

        for buf in self._buffers.values():
            self._free(buf)
        self._buffers.clear()
        cudart.cudaStreamDestroy(self._stream)
        del self._context, self._engine, self._runtime
