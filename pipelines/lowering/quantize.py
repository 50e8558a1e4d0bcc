"""INT8 and FP8 lowering: a Q/DQ model made by ONNX Runtime's quantization tools (``onnxruntime.quantization``).

Two steps, each a cached stage of its own:

* :func:`calibrate` runs the recommended pre-processing (shape inference only: graph optimisation would
  fuse Conv+BatchNormalization and lose layer names) and ORT's calibrator over the calibration samples,
  one sample per ``collect_data`` call so memory stays bounded, and saves the tensor ranges as ORT's JSON
  calibration cache (``ranges.json``).
* :func:`quantize` feeds those ranges to ``quantize_static``: QDQ format, symmetric activations and weights
  (what TensorRT's explicit quantization expects), per-channel weights optionally, INT8 or
  FLOAT8E4M3FN, pinned layers in ``nodes_to_exclude``. Removable activations (Relu, Clip) are kept so every
  layer of the original model still exists.

ORT's quantizer puts a shared Q/DQ pair on a tensor that any quantized layer reads; a pinned layer reading
the same tensor is rewired to the un-quantized value, so pinned layers carry no Q/DQ at all. The tensor map
records, for every original tensor, the value its consumers see (the DequantizeLinear output), the value
before quantization, and the scale and zero point used. What the tools log (pre-processing warnings,
calibration progress) is collected into notes for the report instead of the terminal.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from layerscope.runner.errors import StageError

QUANT_TYPES = {"int8": ("QInt8", "int8", -128, 127), "fp8": ("QFLOAT8E4M3FN", "float8_e4m3fn", -448, 448)}
METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}


_TOOLS = threading.Lock()


class _Notes(logging.Handler):
    """Collects the warnings logged by the calling thread only (stages run in parallel threads)."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.lines: list[str] = []
        self.thread = threading.get_ident()

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread != self.thread:
            return
        text = record.getMessage().strip()
        if text and text not in self.lines:
            self.lines.append(text)


@contextlib.contextmanager
def collected_notes() -> Iterator[list[str]]:
    """Collect what ORT's quantization tools log, warn and print, instead of letting it reach the terminal."""
    import onnxruntime.quantization.calibrate as calibrate_module

    _TOOLS.acquire()  # warnings filters and module patches are process-wide: one quantization at a time
    handler = _Notes()
    root = logging.getLogger()
    root.addHandler(handler)
    notes: list[str] = handler.lines
    had_print = "print" in calibrate_module.__dict__
    calibrate_module.print = lambda *a, **k: None  # progress chatter only
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield notes
        for w in caught:
            text = str(w.message).strip()
            if text and text not in notes:
                notes.append(text)
    finally:
        root.removeHandler(handler)
        if not had_print:
            del calibrate_module.print
        _TOOLS.release()


@contextlib.contextmanager
def _chdir(path: Path) -> Iterator[None]:
    """contextlib.chdir for Python 3.10."""
    import os

    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def working_copy(model: Path, work_dir: Path, notes: list[str] | None = None, per_channel: bool = False) -> Path:
    """The model with layerscope's node names, saved in ``work_dir``: ORT's tools write files next to the model
    they are given, which must never be a cache entry, and they must see the node names the config uses.

    Float Constant nodes become initializers (exporters such as Paddle's store weights as Constants, and ORT's
    quantizer treats a Constant's output as an activation: per-tensor with a calibrated scale, never per-channel),
    and with per-channel weights a model below opset 13 is upgraded (DequantizeLinear's axis). Both go into
    ``notes`` when given."""
    import onnx

    from layerscope.pipelines.lowering.opset import PER_CHANNEL_OPSET, ensure_opset
    from layerscope.pipelines.models.summary import normalize_names

    proto = onnx.load(str(model))
    normalize_names(proto)
    moved = constants_to_initializers(proto)
    if moved and notes is not None:
        notes.append(f"{moved} weights stored as Constant nodes are quantized as weights (moved to initializers)")
    if per_channel:
        proto, upgraded = ensure_opset(proto, PER_CHANNEL_OPSET, "per-channel weight quantization")
        if notes is not None:
            notes += upgraded
    out = work_dir / "model.onnx"
    big = proto.ByteSize() > 1_800_000_000
    onnx.save(proto, str(out), save_as_external_data=big, location="model.onnx.data" if big else None)
    return out


def constants_to_initializers(model: Any) -> int:
    """Turn float Constant nodes with a tensor value (weights) into initializers of the same name; returns how
    many. The Constant node is removed: its output name is now the initializer's, so every reader is unchanged."""
    from onnx import TensorProto

    g = model.graph
    keep, moved = [], 0
    for node in g.node:
        tensor = next((a.t for a in node.attribute if a.name == "value" and a.HasField("t")), None)
        if node.op_type == "Constant" and tensor is not None and tensor.data_type == TensorProto.FLOAT and tensor.dims:
            init = g.initializer.add()
            init.CopyFrom(tensor)
            init.name = node.output[0]
            moved += 1
        else:
            keep.append(node)
    if moved:
        del g.node[:]
        g.node.extend(keep)
    return moved


def preprocess(model: Path, out: Path, notes: list[str]) -> Path:
    """ORT's recommended pre-processing without graph optimisation (it would rename and fuse layers).

    Symbolic shape inference gives up on some graphs with symbolic dimensions (the built-in UNet's
    ConvTranspose); ORT's ``auto_merge`` then reconciles the dimensions, and as a last resort only ONNX shape
    inference runs. Which one was needed goes into the notes.
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    attempts: list[tuple[str, dict[str, Any]]] = [
        ("", {}),
        ("with auto_merge of symbolic dimensions", {"auto_merge": True}),
        ("without symbolic shape inference", {"skip_symbolic_shape": True}),
    ]
    errors = []
    for how, kwargs in attempts:
        try:
            # ORT's symbolic shape inference saves "sym_shape_infer_temp.onnx" (+ external data) into the current
            # directory when it gives up: run it inside the scratch folder. The caller holds _TOOLS, and every
            # path layerscope uses is absolute, so the other threads are not affected.
            with contextlib.chdir(out.parent) if hasattr(contextlib, "chdir") else _chdir(out.parent):
                quant_pre_process(str(model), str(out), skip_optimization=True, **kwargs)
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            continue
        if how:
            notes.append(f"pre-processing (shape inference) succeeded {how} after: {errors[0]}")
        return out
    notes.append(f"pre-processing (shape inference) failed, quantizing the model as it is: {'; '.join(errors)}")
    return model


def calibrate(
    model: Path,
    samples: Iterable[dict[str, Any]],
    *,
    method: str,
    percentile: float,
    work_dir: Path,
    out: Path,
    per_channel: bool = False,
    progress: Callable[[], None] = lambda: None,
    phase: Callable[[str], None] = lambda what: None,
) -> list[str]:
    """Calibrate every float tensor of ``model`` on ``samples``; write ORT's range cache to ``out``. Returns notes.
    ``progress`` is called once per sample fed; ``phase`` names the parts that cannot be counted (preparing the
    model, ONNX Runtime computing the ranges: most of the time for entropy calibration)."""
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    class _One(CalibrationDataReader):
        def __init__(self, feed: dict[str, Any]) -> None:
            self.feed: dict[str, Any] | None = feed

        def get_next(self) -> dict[str, Any] | None:
            feed, self.feed = self.feed, None
            return feed

    options: dict[str, Any] = {"symmetric": True}
    if method == "percentile":
        options["percentile"] = percentile
    if method == "entropy":  # TensorRT's entropy calibration: 2048 histogram bins, 128 quantized levels
        options.update(num_bins=2048, num_quantized_bins=128)
    with collected_notes() as notes:
        # The graph the quantizer will see (with per-channel weights, upgraded to opset 13 where needed): every
        # tensor it asks a range for must have been calibrated.
        copy = working_copy(model, work_dir, notes, per_channel=per_channel)
        pre = preprocess(copy, work_dir / "preprocessed.onnx", notes)
        try:
            calibrator = create_calibrator(
                str(pre),
                None,
                augmented_model_path=str(work_dir / "augmented.onnx"),
                calibrate_method=getattr(CalibrationMethod, METHODS[method]),
                extra_options=options,
            )
            count = 0
            started = False
            for feed in samples:
                if not started:  # the first sample is read: the model is ready, feeding starts
                    phase("")
                    started = True  # one sample per call: ORT merges ranges/histograms between calls
                calibrator.collect_data(_One(feed))
                count += 1
                progress()
            if count == 0:
                raise StageError("calibration needs at least one sample")
            phase(f"computing the ranges of {method} calibration (ONNX Runtime; not countable)")
            save_tensors_data(calibrator.compute_data(), str(out))
        except StageError:
            raise
        except Exception as exc:
            raise StageError(f"calibration failed: {type(exc).__name__}: {exc}") from None
    return notes


def quantize(
    model: Path,
    ranges: Path,
    *,
    fmt: str,
    per_channel: bool,
    pinned: set[str],
    work_dir: Path,
    float_tensors: set[str] | None = None,
) -> tuple[Any, list[str]]:
    """The Q/DQ model (ModelProto) for ``fmt`` from calibrated ``ranges``, and notes. ``work_dir`` is scratch.

    A layer reading or writing a float tensor that has no range (scales imported from a TensorRT cache that
    does not cover it) stays FP32, as TensorRT falls back to a non-INT8 implementation for it.

    INT8 scales come from ORT (symmetric: amax / 127). FP8 scales are per-tensor amax / 448 for activations
    (amax from the calibration) and weights (max |w|), TensorRT's FP8 recipe, given to ORT as explicit
    overrides: ORT's own float8 scaling derives the scale from the standard deviation, which saturates
    weights with a large mean (a BatchNormalization's scale near 1 with a small spread).
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import load_tensors_data

    qtype = getattr(QuantType, QUANT_TYPES[fmt][0])
    out = work_dir / "quantized.onnx"
    options: dict[str, Any] = {
        "ActivationSymmetric": True,
        "WeightSymmetric": True,
        "QDQKeepRemovableActivations": True,
    }
    method = load_tensors_data(str(ranges)).calibration_method
    with collected_notes() as notes:
        copy = working_copy(model, work_dir, notes, per_channel=per_channel and fmt == "int8")
        unranged = _layers_without_ranges(copy, set(read_ranges(ranges)), float_tensors)
        if unranged:
            notes.append(
                f"{len(unranged)} layers stay FP32: no calibrated range for some of their tensors "
                f"({', '.join(sorted(unranged)[:6])}{' ...' if len(unranged) > 6 else ''})"
            )
        if fmt == "fp8":
            options["TensorQuantOverrides"] = _fp8_scales(copy, read_ranges(ranges))
            ranges = _as_distribution(ranges, work_dir / "ranges-fp8.json")
            method = CalibrationMethod.Distribution  # what ORT's float8 path insists on; scales are overridden
        else:
            options["QDQOpTypePerChannelSupportToAxis"] = {"BatchNormalization": 0}  # its weights are 1-D
        pre = preprocess(copy, work_dir / "preprocessed.onnx", notes)
        try:
            quantize_static(
                str(pre),
                str(out),
                None,
                calibration_cache_path=str(ranges),
                quant_format=QuantFormat.QDQ,
                per_channel=per_channel and fmt == "int8",
                activation_type=qtype,
                weight_type=qtype,
                nodes_to_exclude=sorted(pinned | unranged),
                calibrate_method=method,
                extra_options=options,
            )
        except Exception as exc:
            raise StageError(f"quantization failed: {type(exc).__name__}: {exc}") from None
    quantized = onnx.load(str(out))
    unquantize_pinned_inputs(quantized, pinned)
    return quantized, notes


def _layers_without_ranges(model: Path, ranged: set[str], float_tensors: set[str] | None) -> set[str]:
    import onnx

    graph = onnx.load(str(model), load_external_data=False).graph
    constant = {i.name for i in graph.initializer} | {n.output[0] for n in graph.node if n.op_type == "Constant"}
    out = set()
    for node in graph.node:
        if node.op_type == "Constant":
            continue
        activations = [t for t in [*node.input, *node.output] if t and t not in constant]
        if float_tensors is not None:
            activations = [t for t in activations if t in float_tensors]
        if any(t not in ranged for t in activations):
            out.add(node.name)
    return out


def _fp8_scales(model: Path, ranges: dict[str, tuple[float, float]]) -> dict[str, list[dict[str, Any]]]:
    import numpy as np
    import onnx
    from onnx import numpy_helper

    zero = np.array(0, dtype=_float8())
    limit = 448.0
    graph = onnx.load(str(model)).graph
    present = {t for n in graph.node for t in [*n.input, *n.output]} | {i.name for i in graph.input}
    overrides: dict[str, list[dict[str, Any]]] = {}
    for name, (lo, hi) in ranges.items():
        if name not in present:  # ORT refuses overrides for tensors the model does not have
            continue
        amax = max(abs(lo), abs(hi)) or 1.0
        overrides[name] = [{"scale": np.array(amax / limit, dtype=np.float32), "zero_point": zero}]
    for init in graph.initializer:
        if init.data_type == onnx.TensorProto.FLOAT and len(init.dims) >= 1:
            amax = float(np.abs(numpy_helper.to_array(init)).max()) or 1.0
            overrides[init.name] = [{"scale": np.array(amax / limit, dtype=np.float32), "zero_point": zero}]
    return overrides


def _float8() -> Any:
    import ml_dtypes

    return ml_dtypes.float8_e4m3fn


def _as_distribution(ranges: Path, out: Path) -> Path:
    """The same ranges labelled as ORT's distribution calibration (its float8 path checks the label)."""
    import numpy as np
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import TensorData, TensorsData, save_tensors_data

    data = {
        name: TensorData(
            lowest=np.array(lo, np.float32),
            highest=np.array(hi, np.float32),
            avg=np.array(0.0, np.float32),
            std=np.array(max(abs(lo), abs(hi)), np.float32),
        )
        for name, (lo, hi) in read_ranges(ranges).items()
    }
    save_tensors_data(TensorsData(CalibrationMethod.Distribution, data), str(out))
    return out


def _dq_of(graph: Any) -> dict[str, tuple[Any, Any]]:
    """Activation tensor X -> (its QuantizeLinear, its DequantizeLinear) for every Q(X) -> DQ pair."""
    readers: dict[str, list[Any]] = {}
    for n in graph.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    pairs: dict[str, tuple[Any, Any]] = {}
    for q in graph.node:
        if q.op_type != "QuantizeLinear":
            continue
        dqs = [n for n in readers.get(q.output[0], []) if n.op_type == "DequantizeLinear"]
        if dqs:
            pairs[q.input[0]] = (q, dqs[0])
    return pairs


def unquantize_pinned_inputs(model: Any, pinned: set[str]) -> None:
    """A pinned layer reads FP32 values: rewire its inputs from DequantizeLinear outputs to the originals."""
    back = {dq.output[0]: x for x, (_q, dq) in _dq_of(model.graph).items()}
    for node in model.graph.node:
        if node.name in pinned:
            for i, name in enumerate(node.input):
                if name in back:
                    node.input[i] = back[name]
    from layerscope.pipelines.lowering.graphutil import remove_dead_nodes

    remove_dead_nodes(model.graph, ("QuantizeLinear", "DequantizeLinear"))


def tensor_map(model: Any, fmt: str) -> dict[str, dict[str, Any]]:
    """Original tensor -> {value, prequant, quant params} for every tensor that has a Q/DQ pair."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    _, dtype, qmin, qmax = QUANT_TYPES[fmt]
    out: dict[str, dict[str, Any]] = {}
    for x, (q, dq) in _dq_of(model.graph).items():
        if x in inits:  # a weight quantized with an explicit Q (AddQDQPairToWeight); not an activation
            continue
        scale = numpy_helper.to_array(inits[q.input[1]]) if q.input[1] in inits else None
        zp = numpy_helper.to_array(inits[q.input[2]]) if len(q.input) > 2 and q.input[2] in inits else None
        if scale is None or scale.size != 1:
            continue
        out[x] = {
            "value": dq.output[0],
            "prequant": x,
            "quant": {
                "type": dtype,
                "scale": float(scale.reshape(-1)[0]),
                "zero_point": float(zp.astype("float64").reshape(-1)[0]) if zp is not None else 0.0,
                "qmin": qmin,
                "qmax": qmax,
            },
        }
    return out


def read_ranges(path: Path) -> dict[str, tuple[float, float]]:
    """ORT's range cache as {tensor: (lowest, highest)}."""
    from onnxruntime.quantization.calibrate import load_tensors_data

    data = load_tensors_data(str(path))
    ranges = {}
    for name, td in data.data.items():
        d = td.to_dict()
        if "lowest" in d and "highest" in d:
            ranges[name] = (float(d["lowest"].reshape(-1)[0]), float(d["highest"].reshape(-1)[0]))
    return ranges


def write_ranges(ranges: dict[str, tuple[float, float]], path: Path, method: str = "minmax") -> None:
    """Write {tensor: (lowest, highest)} as ORT's range cache (e.g. scales imported from TensorRT)."""
    import numpy as np
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import TensorData, TensorsData, save_tensors_data

    data = {
        name: TensorData(lowest=np.array(lo, dtype=np.float32), highest=np.array(hi, dtype=np.float32))
        for name, (lo, hi) in ranges.items()
    }
    save_tensors_data(TensorsData(getattr(CalibrationMethod, METHODS[method]), data), str(path))
