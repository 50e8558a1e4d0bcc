"""Run a TensorRT engine through ``cuda.bindings`` (cuda-python): the device's facts, device and pinned
host buffers, ``set_tensor_address`` + ``execute_async_v3``, and a debug listener that copies the
requested debug tensors to the host while TensorRT calls it back (:class:`EngineRunner`); and the session
around it that turns engine tensors into the requested ONNX tensors (:class:`TensorRTSession`, plain
Python like :class:`DebugSink`, tested with a stand-in runner).

Imports ``tensorrt`` and ``cuda`` inside functions. Written against the documented APIs (NVIDIA's
``samples/python/common_runtime.py`` shows the same cuda.bindings calls); nothing here has run on a GPU in
this repository's CI. TensorRT objects are annotated with their class for the API conformance test.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from layerscope.pipelines.backends.trt.buffers import from_bytes, nbytes, to_bytes
from layerscope.pipelines.backends.trt.logs import ROUTER
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


class DebugSink:
    """What the debug listener keeps of the tensors TensorRT calls it back with: the requested ones only.
    With unfused tensors marked, TensorRT calls back for every tensor that survives fusion, every sample;
    copying those nobody asked for costs a synchronous copy each, and one of a type the dump cannot read
    would fail the run. ``seen`` records every name TensorRT emitted (for diagnostics and the GPU smoke)."""

    def __init__(self, wanted: frozenset[str]) -> None:
        self.wanted = wanted
        self.values: dict[str, np.ndarray] = {}
        self.seen: set[str] = set()
        self.error = ""

    def receive(self, name: str, dtype: str, shape: Sequence[int], copy: Callable[[int], bytes]) -> None:
        """``copy(nbytes)`` reads the tensor's bytes; called only for a requested tensor. Never raises:
        nothing may propagate into TensorRT's C++ caller, so a failure is kept for the session to report."""
        self.seen.add(name)
        if name not in self.wanted:
            return
        try:
            dims = tuple(int(d) for d in shape)
            self.values[name] = from_bytes(copy(nbytes(dtype, dims)), dtype, dims)
        except Exception as exc:
            self.error = self.error or f"debug tensor {name!r}: {exc}"

    def clear(self) -> None:
        self.values.clear()
        self.error = ""


def make_listener(sink: DebugSink) -> Any:
    """An IDebugListener that hands each debug tensor to ``sink``, copying it to host memory during the
    callback (TensorRT guarantees the address only for the duration of the call). The bindings pass the
    address and the stream as integers (``pyCore.cpp``: ``reinterpret_cast<size_t>``)."""
    import numpy as np
    import tensorrt as trt
    from cuda.bindings import runtime as cudart

    class HostCopyListener(trt.IDebugListener):
        def __init__(self) -> None:
            trt.IDebugListener.__init__(self)

        def process_debug_tensor(
            self, addr: Any, location: Any, dtype: Any, shape: Any, name: str, stream: Any
        ) -> bool:
            def copy(size: int) -> bytes:
                host = np.empty(size, np.uint8)
                if location == trt.TensorLocation.HOST:
                    ctypes.memmove(host.ctypes.data, int(addr), size)
                else:
                    kind = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
                    _check(cudart.cudaMemcpyAsync(host.ctypes.data, int(addr), size, kind, stream), "copy")
                    _check(cudart.cudaStreamSynchronize(stream), "cudaStreamSynchronize")
                return host.tobytes()

            try:
                sink.receive(str(name), dtype.name, tuple(shape), copy)
            except Exception as exc:  # nothing may propagate into TensorRT's C++ caller
                sink.error = sink.error or f"debug tensor {name!r}: {exc}"
            return True

    return HostCopyListener()


class EngineRunner:
    """The GPU half of a session: one engine, one execution context, one stream, buffers sized by the
    first sample and reused. ``execute`` returns, by engine tensor name, the engine's outputs and the
    debug tensors in ``wanted`` that TensorRT emitted."""

    def __init__(self, engine_bytes: bytes, mode: str, wanted: frozenset[str]) -> None:
        import tensorrt as trt
        from cuda.bindings import runtime as cudart

        from layerscope.pipelines.backends.trt.engine import process_logger

        self._runtime: trt.Runtime = trt.Runtime(process_logger())
        with ROUTER.capture() as log:
            self._engine: trt.ICudaEngine = self._runtime.deserialize_cuda_engine(engine_bytes)
        if self._engine is None:
            raise StageError(f"TensorRT cannot load the engine: {log.reason()}")
        self._context: trt.IExecutionContext = self._engine.create_execution_context()
        self._stream: cudart.cudaStream_t = _check(cudart.cudaStreamCreate(), "cudaStreamCreate")
        self._buffers: dict[str, _Buffer] = {}
        self._io: list[tuple[str, bool, str]] = []
        for i in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(i)
            is_input = self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            self._io.append((name, is_input, self._engine.get_tensor_dtype(name).name))
        self.sink = DebugSink(wanted)
        self._listener = None
        if mode in ("debug", "unfused"):
            self._listener = make_listener(self.sink)
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

    def execute(self, feeds: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
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
        self.sink.clear()
        with ROUTER.capture() as log:
            ok = self._context.execute_async_v3(int(self._stream))
        if not ok:
            raise StageError(f"TensorRT failed on a sample: {log.reason()}")
        for _, dtype, shape, buf in outputs:
            _check(cudart.cudaMemcpyAsync(buf.host, buf.device, nbytes(dtype, shape), to_host, self._stream), "copy")
        _check(cudart.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
        if self.sink.error:
            raise StageError(f"copying a debug tensor failed: {self.sink.error}")
        values: dict[str, np.ndarray] = {}
        for name, dtype, shape, buf in outputs:
            raw = (ctypes.c_ubyte * nbytes(dtype, shape)).from_address(buf.host)
            values[name] = from_bytes(raw, dtype, shape)
        return values, dict(self.sink.values)

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


class Runner(Protocol):
    def execute(self, feeds: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]: ...
    def close(self) -> None: ...


class TensorRTSession:
    """The Session the dump stage reads: the requested lowered tensors' values from an engine runner.

    ``sources`` maps each observable requested tensor to the engine tensor carrying it (an engine output or
    a debug tensor). TensorRT does not promise to emit every unfused tensor (``NvInfer.h``, on
    markUnfusedTensorsAsDebugTensors: "There is no guarantee that all unfused tensors are marked"), and
    which it emits is only known once the engine has run: after the first sample, a requested tensor it
    did not emit moves to ``unobservable`` with the reason (the dump reads ``unobservable`` again after
    the first sample). One that goes missing later -- emitted for the first sample, not for another --
    fails the dump with a message, never a KeyError."""

    def __init__(self, runner: Runner, sources: Mapping[str, str], mode: str, unobservable: Mapping[str, str]):
        self.unobservable = dict(unobservable)
        self._runner = runner
        self._sources = dict(sources)  # lowered ONNX name -> engine tensor name
        self._mode = mode
        self._samples = 0

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs, debug = self._runner.execute(feeds)
        received = {**debug, **outputs}  # an engine output is read from its own buffer
        values = {t: received[e] for t, e in self._sources.items() if e in received}
        missing = [t for t in self._sources if t not in values]
        if missing and self._samples == 0:
            for t in missing:
                self.unobservable[t] = self._why_absent(self._sources.pop(t))
        elif missing:
            t = missing[0]
            raise StageError(
                f"TensorRT emitted no value for engine tensor {self._sources[t]!r} (tensor {t!r}) in sample "
                f"{self._samples}, though it did in the first sample (a tensor computed only in some samples, "
                "e.g. inside a conditional, cannot be dumped); exclude it from layers"
            )
        self._samples += 1
        return values

    def _why_absent(self, engine_name: str) -> str:
        if self._mode == "unfused":
            return (
                f"not observable in this engine: TensorRT emitted no unfused debug tensor {engine_name!r} "
                "(it does not promise to emit every unfused tensor)"
            )
        return f"not observable in this engine: TensorRT emitted no value for {engine_name!r}"

    def close(self) -> None:
        self._runner.close()
