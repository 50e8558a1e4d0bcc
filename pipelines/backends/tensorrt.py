"""TensorRT backend: engines at every precision on TensorRT 10.x and 11.x, per-layer values in three dump
modes, the engine and timing cache in the artifact cache, and a per-layer precision audit.

Build: lower the model for the run's precision route (``typed``: the shared typed lowering, pinned layers
FP32 in the graph; ``flags``, TensorRT 10 only: the FP32 graph plus builder flags and per-layer precision),
mark what the dump mode needs, build with one optimization profile from the config's input shapes and
the timing cache of this TensorRT + GPU, and write into the build's cache entry: ``engine.plan``,
``timing.cache``, ``layer_info.json`` (the inspector's JSON), ``observe.json`` (which engine tensor
carries each requested value, and which have none) and ``lowering.json`` with the precision audit. A
rerun finds the entry and deserializes the engine; a rebuild (another key) starts from the timing cache
kept in the cache's shared folder. Dump: one execution context per run, values copied back per sample.

The pure parts live in :mod:`.trt` (tested without a GPU); nothing of this module has been executed
against a real TensorRT in this repository (see docs/tensorrt.md).
"""

from __future__ import annotations

import contextlib
import json
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from layerscope.pipelines.backends.trt import versions as trt_versions
from layerscope.pipelines.backends.trt.versions import Version
from layerscope.runner.files import atomic_write

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from layerscope.pipelines.backends.base import BuildRequest, OptionProblem
    from layerscope.pipelines.backends.trt.plan import DeviceFacts, MarkPlan
    from layerscope.pipelines.backends.trt.runtime import TensorRTSession
    from layerscope.pipelines.experiment import RunSpec
    from layerscope.pipelines.lowering.formats import Format
    from layerscope.pipelines.models import ResolvedModel
    from layerscope.runner.graph import StageContext


def _dist_version(*names: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    for name in names:
        try:
            return version(name)
        except PackageNotFoundError:
            continue
    return None


def _has_module(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


class TensorRTBackend:
    name = "tensorrt"
    # The code that makes its artifacts: part of the build and dump stages' code version, so editing any
    # of these modules can never serve an engine or a dump made by the old code.
    code_modules = (
        __name__,
        "layerscope.pipelines.backends.trt.versions",
        "layerscope.pipelines.backends.trt.plan",
        "layerscope.pipelines.backends.trt.inspector",
        "layerscope.pipelines.backends.trt.buffers",
        "layerscope.pipelines.backends.trt.engine",
        "layerscope.pipelines.backends.trt.runtime",
    )

    # -- what is installed (looked up once per process: validation asks for every run) -------------------
    @cached_property
    def installed_version(self) -> Version | None:
        if not _has_module("tensorrt"):
            return None
        text = _dist_version(*trt_versions.DISTRIBUTIONS)
        if text is None:  # e.g. on PYTHONPATH from a tar install: the module knows its version
            try:
                import tensorrt

                text = str(tensorrt.__version__)
            except Exception:
                return None
        try:
            return trt_versions.parse_version(text)
        except ValueError:
            return None

    @cached_property
    def _unavailable(self) -> str | None:
        installed = _has_module("tensorrt")
        version = self.installed_version
        cuda_python = _has_module("cuda.bindings")
        devices, error = 0, ""
        if installed and version is not None and version.major in trt_versions.SUPPORTED_MAJORS and cuda_python:
            from layerscope.pipelines.backends.trt.runtime import device_count

            devices, error = device_count()
        return trt_versions.unavailable_reason(
            installed=installed, version=version, cuda_python=cuda_python, devices=devices, device_error=error
        )

    def availability(self) -> tuple[bool, str]:
        why = self._unavailable
        return (why is None, why or "")

    def versions(self) -> dict[str, str]:
        v = self.installed_version
        return {"tensorrt": str(v) if v else "missing", "cuda-python": _dist_version("cuda-python") or "missing"}

    @cached_property
    def environment(self) -> DeviceFacts:
        from layerscope.pipelines.backends.trt.runtime import device_facts

        return device_facts()

    def device(self) -> str:
        if self._unavailable is not None:
            return "GPU (not available here)"
        env = self.environment
        return f"GPU: {env.gpu} (compute capability {env.compute_capability}, CUDA driver {env.driver})"

    def configure(self, fmt: Format, options: Mapping[str, Any]) -> tuple[dict[str, Any], list[OptionProblem]]:
        """The route's default depends on the installed version; a problem points at the option to blame, or
        at the precision or the backend when no option is."""
        from layerscope.pipelines.backends.base import OptionProblem

        resolved = self.resolve_options(dict(options))
        problems = []
        for key, message in self.option_problems(fmt.name, resolved):
            where = "/precision" if key == "precision" else f"/options/{key}" if key in options else "/backend"
            problems.append(OptionProblem(where, message))
        return resolved, problems

    def option_problems(self, precision: str, options: dict[str, Any]) -> list[tuple[str, str]]:
        return trt_versions.option_problems(self.installed_version, precision, options)

    def resolve_options(self, options: dict[str, Any]) -> dict[str, Any]:
        return trt_versions.resolve_options(self.installed_version, options)

    # -- keys -------------------------------------------------------------------------------------------
    def build_material(self, run: RunSpec, request: BuildRequest) -> dict[str, Any]:
        from layerscope.pipelines.backends.trt.plan import build_key, marked_key

        mode = str(run.options.get("dump_mode", "outputs"))
        return build_key(
            version=str(self.installed_version),
            device=self.environment,
            route=str(run.options.get("precision_mode")),
            options=run.options,
            marked=marked_key(mode, request.tensors),
            profile={k: v for k, v in _input_shapes(request).items() if v is not None},
        )

    def dump_material(self, run: RunSpec) -> dict[str, Any]:
        return {}  # the engine, the GPU and the driver are in the build key already

    # -- build ------------------------------------------------------------------------------------------
    def build(self, ctx: StageContext, model: ResolvedModel, run: RunSpec, request: BuildRequest) -> None:
        from layerscope.pipelines.backends.trt.engine import EngineRequest, build_engine
        from layerscope.pipelines.backends.trt.plan import tensors_to_mark

        route = str(run.options["precision_mode"])
        mode = str(run.options.get("dump_mode", "outputs"))
        ctx.progress.start(None, f"lowering to {run.precision} ({route})")
        lowering, to_parse, parsed = _lower(model, run, route)
        graph = _Graph(parsed)
        onnx_path = model.path
        if to_parse is not None:
            from layerscope.pipelines.backends.onnxruntime import _save

            onnx_path = ctx.out_dir / "lowered.onnx"
            _save(to_parse, onnx_path)
        info = lowering.info
        # Pinned: the run's layers plus what the lowering pinned with them (Constants only they read).
        pinned = frozenset(n for n, v in info["nodes"].items() if v["execution"] == "pinned")
        requested = [info["tensors"][t]["name"] for t in request.tensors]
        marks = tensors_to_mark(mode, requested, [o for o in graph.outputs if o in set(requested)])
        timing_path = self._timing_cache_path(request.shared_dir)
        ctx.progress.start(None, f"building the TensorRT engine for {run.name}")
        result = build_engine(
            EngineRequest(
                onnx_path=onnx_path,
                route=route,
                precision=run.precision,
                strict=bool(run.options.get("strict", True)),
                pinned=pinned,
                nodes=frozenset(graph.nodes),
                marks=marks,
                input_shapes=_input_shapes(request),
                workspace_mib=run.options.get("workspace_mib"),
                optimization_level=run.options.get("optimization_level"),
                timing_cache=timing_path.read_bytes() if timing_path.is_file() else b"",
            )
        )
        (ctx.out_dir / "engine.plan").write_bytes(result.engine)
        (ctx.out_dir / "timing.cache").write_bytes(result.timing_cache)
        (ctx.out_dir / "layer_info.json").write_text(result.layer_information)
        with contextlib.suppress(OSError):  # only an optimisation for the next build
            # Readers see the old file or the new one, never a part (concurrent builds share the timing cache).
            timing_path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(timing_path, result.timing_cache)
        reads, unobservable = self._observation(result, marks, requested, graph)
        (ctx.out_dir / "observe.json").write_text(
            json.dumps({"mode": mode, "reads": reads, "unobservable": unobservable}, indent=1)
        )
        info["audit"] = self._audit(result.layer_information, info, graph)
        info["notes"] += _notes(mode, route, len(marks.outputs) + len(marks.debug), unobservable, result.warnings)
        info["tensorrt"] = {"version": str(self.installed_version), "route": route, "dump_mode": mode}
        (ctx.out_dir / "lowering.json").write_text(json.dumps(info, indent=1))
        ctx.result.update({"execution": info["execution"], "route": route, "not_observable": len(unobservable)})

    def _timing_cache_path(self, shared: Path) -> Path:
        from layerscope.runner.hashing import digest

        env = self.environment
        return (
            shared
            / "timing"
            / f"{digest([str(self.installed_version), env.gpu, env.compute_capability, env.driver])[:24]}.cache"
        )

    def _observation(
        self, result: Any, marks: MarkPlan, requested: Sequence[str], graph: _Graph
    ) -> tuple[dict[str, str], dict[str, str]]:
        """(engine tensor -> lowered name it carries, lowered name -> why it has no value)."""
        from layerscope.pipelines.backends.trt.inspector import parse_engine_information, unfused_names

        reads = {t: t for t in (*marks.graph_outputs, *marks.outputs, *marks.debug) if t not in result.unobservable}
        unobservable = dict(result.unobservable)
        if marks.mode == "unfused":
            info = parse_engine_information(result.layer_information, list(graph.nodes))
            rest = [t for t in requested if t not in set(marks.graph_outputs)]
            mapping, missing = unfused_names(info, rest, graph.producers, graph.nodes)
            reads.update(mapping)
            unobservable.update(missing)
        return reads, unobservable

    def _audit(self, layer_information: str, info: dict[str, Any], graph: _Graph) -> dict[str, Any]:
        from layerscope.pipelines.backends.trt.inspector import parse_engine_information, precision_audit

        parsed = parse_engine_information(layer_information, list(graph.nodes))
        nodes = {n: {"op_type": v["op_type"], "precision": v["precision"]} for n, v in info["nodes"].items()}
        return precision_audit(parsed, nodes, source=f"TensorRT {self.installed_version} engine inspector")

    # -- dump -------------------------------------------------------------------------------------------
    def open(
        self, build_dir: Path, model: ResolvedModel, run: RunSpec, tensors: Sequence[str], threads: int
    ) -> TensorRTSession:
        from layerscope.pipelines.backends.trt.runtime import TensorRTSession

        observe = json.loads((build_dir / "observe.json").read_text())
        wanted = set(tensors)
        unobservable = {t: why for t, why in observe["unobservable"].items() if t in wanted}
        engine = (build_dir / "engine.plan").read_bytes()
        return TensorRTSession(engine, observe["reads"], observe["mode"], unobservable)


class _Graph:
    """The ONNX graph TensorRT parses, as the build needs it: node -> (index, op type, outputs), tensor ->
    the node that writes it, and the graph outputs."""

    def __init__(self, proto: Any) -> None:
        self.nodes: dict[str, tuple[int, str, tuple[str, ...]]] = {
            n.name: (i, n.op_type, tuple(n.output)) for i, n in enumerate(proto.graph.node)
        }
        self.producers = {t: n.name for n in proto.graph.node for t in n.output if t}
        self.outputs = [o.name for o in proto.graph.output]


def _lower(model: ResolvedModel, run: RunSpec, route: str) -> tuple[Any, Any, Any]:
    """(the precision lowering for the route, the ONNX graph to write for TensorRT when the model file will
    not do, the graph TensorRT parses).

    Layer names must be the ones the rest of the tool uses (unnamed and duplicate nodes get names), since
    TensorRT reports layers by them; a model whose names had to be fixed is parsed from a renamed copy.
    """
    import onnx

    from layerscope.pipelines.lowering import PrecisionPlan, lower, runtime_applied
    from layerscope.pipelines.models.summary import normalize_names

    plan = PrecisionPlan(run.precision, "native", run.pinned)
    proto = onnx.load(str(model.path))
    before = [n.name for n in proto.graph.node]
    normalize_names(proto)
    renamed = proto if before != [n.name for n in proto.graph.node] else None
    if run.precision == "fp32":
        return lower(None, model.summary, plan), renamed, proto
    if route == "typed":
        lowering = lower(proto, model.summary, plan)
        return lowering, lowering.model, lowering.model
    return runtime_applied(proto, model.summary, plan), renamed, proto


def _input_shapes(request: BuildRequest) -> dict[str, tuple[int, ...] | None]:
    """The config's shape of one sample per input; a file source without one has its shape read from the file."""
    from layerscope.pipelines.experiment.inputs import probe_file

    out: dict[str, tuple[int, ...] | None] = {}
    for spec in request.inputs:
        if spec.shape is not None:
            out[spec.name] = tuple(spec.shape)
        elif "file" in spec.source:
            out[spec.name] = probe_file(spec)[1]
        else:
            out[spec.name] = None
    return out


def _notes(mode: str, route: str, marked: int, unobservable: dict[str, str], warnings: list[str]) -> list[str]:
    notes = []
    if mode == "outputs" and marked:
        effect = " and, with builder flags (weak typing), the precision their layers run in" if route == "flags" else ""
        notes.append(
            f"dump_mode outputs: {marked} intermediate tensors are marked as engine outputs, which can change what "
            f"TensorRT fuses{effect}; dump_mode unfused reads the engine as it would be deployed (TensorRT >= 10.12)"
        )
    elif mode == "debug" and marked:
        notes.append(
            f"dump_mode debug: {marked} tensors are marked as debug tensors, which keeps TensorRT from fusing "
            "across them"
        )
    if unobservable:
        notes.append(
            f"{len(unobservable)} selected tensors have no value in this engine (fused away or removed): not compared"
        )
    if warnings:
        notes.append(f"TensorRT logged {len(warnings)} warnings while building; first: {warnings[0][:300]}")
    return notes
