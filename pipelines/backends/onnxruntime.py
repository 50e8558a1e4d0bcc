"""ONNX Runtime backend (CPU execution provider): runs anywhere, no GPU needed.

Build: lower the model (shared lowering); for a native lowering, create a session once to find ops without
a kernel for the format; those are re-lowered as emulated (FP32 compute, output rounded) and recorded, so a
model always runs and the report says exactly which layers were native. FP32 and emulated graphs are not
opened at build time (nothing to choose): a graph ONNX Runtime refuses fails the dump with its message.
Dump: the requested intermediate tensors are added as graph outputs of the lowered model (ONNX Runtime does
not fuse a node whose output is a graph output, so every requested value is observable), and each sample is
one ``run``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from layerscope.runner.errors import StageError
from layerscope.runner.jsonio import write_json

if TYPE_CHECKING:
    import numpy as np

    from layerscope.pipelines.backends.base import BuildRequest, OptionProblem
    from layerscope.pipelines.experiment import RunSpec
    from layerscope.pipelines.lowering.formats import Format
    from layerscope.pipelines.models import ResolvedModel
    from layerscope.runner.graph import StageContext

_MAX_PROTO = 1_800_000_000  # below protobuf's 2 GiB limit
_OPT_LEVELS = {
    "disabled": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}
_NO_KERNEL = re.compile(r"Could not find an implementation for (\w+)\(\d+\) node with name '([^']*)'")
_BAD_TYPE = re.compile(r"of operator \((\w+)\) in node \(([^)]*)\) is invalid")


def _version(dist: str) -> str | None:
    from layerscope.runner.versions import installed_version

    return installed_version(dist)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def availability(self) -> tuple[bool, str]:
        if self._dist() is None:
            return False, "onnxruntime is not installed: pip install onnxruntime"
        return True, ""

    @staticmethod
    def _dist() -> str | None:
        for dist in ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml"):
            v = _version(dist)
            if v is not None:  # the plain package by its version; a variant (onnxruntime-gpu) by name too
                return v if dist == "onnxruntime" else f"{dist} {v}"
        return None

    def versions(self) -> dict[str, str]:
        return {"onnxruntime": self._dist() or "missing", "onnx": _version("onnx") or "missing"}

    def configure(self, fmt: Format, options: Mapping[str, Any]) -> tuple[dict[str, Any], list[OptionProblem]]:
        from layerscope.pipelines.backends.base import OptionProblem

        out = dict(options)
        problems = []
        if out.get("execution") == "native" and not fmt.native_on_cpu:
            problems.append(
                OptionProblem(
                    "/options/execution",
                    f"ONNX Runtime's CPU provider has no {fmt.name} kernels; use execution: emulated "
                    "(FP32 compute, every value rounded to the format)",
                )
            )
        # FP16 defaults to emulation too: ONNX Runtime's CPU provider has FP16 kernels for data movement and a few
        # fused ops only, runs everything else in FP32 between inserted Casts and drops the rounding between
        # consecutive such nodes -- not FP16 arithmetic. Emulation (FP32 compute, every output rounded to FP16)
        # is what a GPU's FP16 with FP32 accumulation computes. `native` stays available, labelled per layer.
        out.setdefault("execution", "native" if fmt.native_on_cpu and fmt.name != "fp16" else "emulated")
        # ONNX Runtime's extended graph optimizations drop a Relu sitting between float8 DequantizeLinear and
        # QuantizeLinear (seen in 1.32: relu0's output went negative); FP8 runs are emulated anyway.
        out.setdefault("graph_optimization", "basic" if fmt.name == "fp8" else "all")
        return out, problems

    def device(self) -> str:
        return f"CPU: {cpu_name()}"

    def build_material(self, run: RunSpec, request: BuildRequest) -> dict[str, Any]:
        # The lowering uses onnx and ORT's converter; kernel probing depends on the ORT build. The selected
        # tensors are not part of it: they become graph outputs only when the session is opened.
        quant = {k: run.options[k] for k in ("per_channel",) if k in run.options}
        return {"versions": self.versions(), "execution": run.options.get("execution"), **quant}

    def dump_material(self, run: RunSpec) -> dict[str, Any]:
        # CPU kernels differ by instruction set (summation order), so the device is part of the key.
        return {"graph_optimization": run.options.get("graph_optimization", "all"), "device": self.device()}

    # -- build ------------------------------------------------------------------------------------------
    def build(self, ctx: StageContext, model: ResolvedModel, run: RunSpec, request: BuildRequest) -> None:
        from layerscope.pipelines.lowering import lower, lower_quantized

        plan = precision_plan(run)
        if plan.quant:
            ctx.progress.start(None, f"quantizing to {run.precision}")
            ranges = ctx.inputs["calibration"].file("ranges.json")
            lowering = lower_quantized(model.path, model.summary, plan, ranges, ctx.out_dir)
            assert lowering.model is not None
            _save(lowering.model, ctx.out_dir / "lowered.onnx")
            ctx.progress.start(None, f"checking that ONNX Runtime runs the {run.precision} Q/DQ model")
            refused = self._probe(ctx.out_dir / "lowered.onnx", run)
            if refused is not None:
                raise StageError(
                    f"ONNX Runtime cannot run the {run.precision} Q/DQ model: {refused[2]}",
                    hint="pin the layer to fp32 (overrides), or set per_channel: false in calibration",
                )
            write_json(ctx.out_dir / "lowering.json", lowering.info)
            ctx.result.update({"execution": lowering.info["execution"]})
            return
        blocked: set[str] = set()
        for attempt in range(64):
            # each try is a phase of its own (a spinner and its clock): ops without kernels found so far emulated
            retry = f" (try {attempt + 1}: emulating {len(blocked)} ops without kernels)" if attempt else ""
            ctx.progress.start(None, f"lowering to {run.precision}{retry}")
            proto = _load(model.path) if run.precision != "fp32" else None
            lowering = lower(proto, model.summary, plan, frozenset(blocked))
            # Only a native lowering has a choice to make (emulate an op that has no kernel for the format); an
            # FP32 or emulated graph has none, and the dump's own session says why ONNX Runtime refuses it. A
            # session over a large graph costs seconds (4 s for 24,000 nodes), so it is not created twice.
            if run.precision == "fp32" or plan.execution == "emulated":
                break
            target: bytes | Path = model.path
            if lowering.model is not None:
                if lowering.model.ByteSize() > _MAX_PROTO:  # too big for memory: probe the saved file
                    _save(lowering.model, ctx.out_dir / "lowered.onnx")
                    target = ctx.out_dir / "lowered.onnx"
                else:
                    target = lowering.model.SerializeToString()
            missing = self._probe(target, run)
            if missing is None:
                break
            op, node, why = missing
            if op in blocked:
                raise StageError(f"ONNX Runtime cannot run node {node!r} ({op}) of the {run.precision} model: {why}")
            blocked.add(op)
            ctx.progress.log(f"no {run.precision} kernel for {op}: emulating it")
        else:
            raise StageError("too many ops without kernels; use execution: emulated")
        if lowering.model is not None and not (ctx.out_dir / "lowered.onnx").exists():
            _save(lowering.model, ctx.out_dir / "lowered.onnx")
        if run.precision == "fp16" and plan.execution == "native":
            _label_fp32_fallbacks(lowering.info, model.summary)
        if blocked:
            lowering.info["notes"].append(
                f"ONNX Runtime has no {run.precision} CPU kernel for {', '.join(sorted(blocked))}: "
                "those layers compute in FP32 and their outputs are rounded (emulated)"
            )
        write_json(ctx.out_dir / "lowering.json", lowering.info)
        ctx.result.update({"execution": lowering.info["execution"], "blocked_ops": sorted(blocked)})

    def _probe(self, model: bytes | Path, run: RunSpec) -> tuple[str, str, str] | None:
        """None if ONNX Runtime accepts the model; (op type, node, ONNX Runtime's message) of the first node it
        has no kernel for."""
        import onnxruntime as ort

        so = session_options(run, threads=1)
        try:
            ort.InferenceSession(
                model if isinstance(model, bytes) else str(model), so, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            text = str(exc)
            m = _NO_KERNEL.search(text) or _BAD_TYPE.search(text)
            if m:
                return m.group(1), m.group(2), _runtime_message(text)
            if "Unrecognized attribute" in text or "axis" in text:
                node = re.search(r"[Nn]ode \(?'?([^)':]+)", text)
                return "", node.group(1) if node else "", _runtime_message(text)
            raise StageError(f"ONNX Runtime cannot load the {run.precision} model: {text.strip()[:500]}") from None
        return None

    # -- dump -------------------------------------------------------------------------------------------
    def open(
        self,
        build_dir: Path,
        model: ResolvedModel,
        run: RunSpec,
        tensors: Sequence[str],
        threads: int,
        *,
        spin: bool = True,
    ) -> _OrtSession:
        import onnx

        lowered = build_dir / "lowered.onnx"
        proto = _load(lowered if lowered.exists() else model.path)
        present = {o.name for o in proto.graph.output}
        for name in tensors:
            if name not in present:
                proto.graph.output.append(onnx.ValueInfoProto(name=name))
                present.add(name)
        return _OrtSession(proto, run, list(tensors), threads, spin)


class _OrtSession:
    unobservable: Mapping[str, str] = {}  # ORT does not fuse a node whose output is a graph output

    def __init__(self, proto: Any, run: RunSpec, outputs: list[str], threads: int, spin: bool = True) -> None:
        import tempfile

        import onnxruntime as ort

        so = session_options(run, threads)
        if not spin:  # (a scheduling choice: the same kernels and summation order, so the same values)
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if proto.ByteSize() > _MAX_PROTO:
            self._tmp = tempfile.TemporaryDirectory(prefix="layerscope-ort-")
            path = Path(self._tmp.name) / "model.onnx"
            _save(proto, path)
            source: Any = str(path)
        else:
            source = proto.SerializeToString()
        try:
            self._session = ort.InferenceSession(source, so, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise StageError(f"ONNX Runtime cannot load the {run.precision} model: {str(exc).strip()[:500]}") from None
        self._outputs = outputs

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            values = self._session.run(self._outputs, dict(feeds))
        except Exception as exc:
            raise StageError(f"ONNX Runtime failed on a sample: {str(exc).strip()[:500]}") from None
        return dict(zip(self._outputs, values, strict=True))

    def close(self) -> None:
        del self._session
        if self._tmp is not None:
            self._tmp.cleanup()


@functools.cache
def fp16_kernel_ops(domain: str, opset: int) -> frozenset[str]:
    """Op types of ``domain`` at ``opset`` that ONNX Runtime's CPU provider has a float16 kernel for (from its
    registered kernel definitions)."""
    from onnxruntime.capi import _pybind_state

    ops = set()
    for d in _pybind_state.get_all_opkernel_def():
        if d.provider != "CPUExecutionProvider" or (d.domain or "ai.onnx") != (domain or "ai.onnx"):
            continue
        lo, hi = d.version_range
        if lo <= opset <= hi and any("tensor(float16)" in types for types in d.type_constraints.values()):
            ops.add(d.op_name)
    return frozenset(ops)


def _label_fp32_fallbacks(info: dict[str, Any], summary: Any) -> None:
    """Mark the layers of a native FP16 run that ONNX Runtime computes in FP32 (no FP16 CPU kernel) as
    ``fp32-fallback``: their outputs are FP32 values (rounded to FP16 only where a Cast follows), and the next
    layer may read them unrounded. Says so in the notes."""
    fallback = []
    native = 0
    for node in summary.nodes:
        entry = info["nodes"].get(node.name)
        if entry is None or entry["execution"] != "native":
            continue
        domain = node.domain or "ai.onnx"
        if node.op_type in fp16_kernel_ops(domain, summary.opsets.get(domain, 0)):
            native += 1
            continue
        entry["execution"], entry["precision"] = "fp32-fallback", "fp32"
        fallback.append(node)
    if not fallback:
        return
    names = {n.name for n in fallback}
    for tensor in info["tensors"].values():
        if tensor["node"] in names:
            tensor["execution"], tensor["dtype"] = "fp32-fallback", "float32"
    info["execution"] = "mixed"
    ops = sorted({n.op_type for n in fallback})
    info["notes"].append(
        f"ONNX Runtime's CPU provider has no FP16 kernel for {', '.join(ops[:12])}{' …' if len(ops) > 12 else ''}: "
        f"{len(fallback)} layers compute in FP32 between inserted Casts (execution fp32-fallback), {native} in FP16; "
        "values passed between fallback layers are not rounded to FP16. execution: emulated (the default) rounds "
        "every layer's output to FP16, as a GPU does"
    )


def _runtime_message(text: str) -> str:
    """ONNX Runtime's own reason, without its file/line prefix, short enough for one line."""
    text = " ".join(text.split())
    text = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", text)
    return text[:400]


def precision_plan(run: RunSpec) -> Any:
    """The run's precision plan (quantized runs carry their calibration method and weight granularity)."""
    from layerscope.pipelines.lowering import PrecisionPlan

    execution = str(run.options.get("execution", "native"))
    quant: tuple[tuple[str, Any], ...] = ()
    if "per_channel" in run.options:  # set on quantized runs by the experiment
        quant = (("per_channel", bool(run.options["per_channel"])),)
    return PrecisionPlan(run.precision, execution, run.pinned, quant)


def session_options(run: RunSpec, threads: int) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = max(1, threads)
    so.inter_op_num_threads = 1
    so.log_severity_level = 3  # errors only: ORT's warnings about unused initializers are noise here
    level = _OPT_LEVELS[str(run.options.get("graph_optimization", "all"))]
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    return so


def _load(path: Path) -> Any:
    import onnx

    return onnx.load(str(path))


def _save(proto: Any, path: Path) -> None:
    import onnx

    if proto.ByteSize() > _MAX_PROTO:
        onnx.save(proto, str(path), save_as_external_data=True, location=path.name + ".data")
    else:
        onnx.save(proto, str(path))
