"""TensorRT backend: engines at every precision on TensorRT 10.x and 11.x, per-layer values in three dump
modes, the engine and timing cache in the artifact cache, and a per-layer precision audit.

Build: lower the model for the run's precision route (``typed``, the default: the shared typed lowering,
pinned layers FP32 in the graph; ``flags``, TensorRT 10 only: the FP32 graph, the builder's precision flag
and constraints on pinned layers), mark what the dump mode needs, build with one optimization profile from
the config's input shapes and the timing cache of this TensorRT + GPU, and write into the build's cache
entry: ``engine.plan``, ``timing.cache``, ``layer_info.json`` (the inspector's JSON), ``observe.json``
(what was marked, the graph outputs, and in ``unfused`` mode the graph's structure) and ``lowering.json``
with the precision audit. A rerun finds the entry and deserializes the engine; a rebuild (another key)
starts from the timing cache kept in the cache's shared folder, and adds to it. Dump: the session maps
the selected tensors to engine tensors when it opens (:func:`engine_sources`), runs one execution context,
and copies values back per sample.

The pure parts live in :mod:`.trt` (tested without a GPU); nothing of this module has been executed
against a real TensorRT in this repository (see docs/tensorrt.md).
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from layerscope.pipelines.backends.trt import versions as trt_versions
from layerscope.pipelines.backends.trt.versions import Version

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from layerscope.pipelines.backends.base import BuildRequest, OptionProblem
    from layerscope.pipelines.backends.trt.plan import DeviceFacts
    from layerscope.pipelines.backends.trt.runtime import TensorRTSession
    from layerscope.pipelines.backends.trt.timing import SharedTimingCache
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
        return trt_versions.resolve_options(options)

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
        from layerscope.pipelines.backends.trt.engine import EngineRequest, build_engine, combine_timing_caches
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
        # Every graph output, selected or not: the engine must not depend on which were (unfused mode keeps
        # the selection out of the key).
        marks = tensors_to_mark(mode, requested, graph.outputs)
        shared = self._timing_cache(request.shared_dir)
        started_from = shared.read()
        ctx.progress.start(None, f"building the TensorRT engine for {run.name}")
        result = build_engine(
            EngineRequest(
                onnx_path=onnx_path,
                route=route,
                precision=run.precision,
                strict=bool(run.options.get("strict", True)),
                constrain=str(run.options.get("constrain", "pinned")),
                pinned=pinned,
                nodes=frozenset(graph.nodes),
                marks=marks,
                input_shapes=_input_shapes(request),
                workspace_mib=run.options.get("workspace_mib"),
                optimization_level=run.options.get("optimization_level"),
                timing_cache=started_from,
            )
        )
        (ctx.out_dir / "engine.plan").write_bytes(result.engine)
        (ctx.out_dir / "timing.cache").write_bytes(result.timing_cache)
        (ctx.out_dir / "layer_info.json").write_text(result.layer_information)
        notes = list(result.notes)
        try:  # what other builds timed meanwhile is kept (the cache only speeds up later builds)
            problem = shared.publish(result.timing_cache, started_from, combine_timing_caches)
        except OSError as exc:
            problem = f"the shared timing cache could not be written: {exc}"
        notes += [problem] if problem else []
        # What the dump needs to find each tensor's value, whatever the selection: only outputs/debug mode
        # mark tensors by name, and there the selection is in the build key.
        observe: dict[str, Any] = {
            "mode": mode,
            "graph_outputs": list(marks.graph_outputs),
            "marked": [t for t in (*marks.outputs, *marks.debug) if t not in result.unobservable],
            "unobservable": dict(result.unobservable),
        }
        if mode == "unfused":
            observe["graph"] = {n: [i, op, list(outs)] for n, (i, op, outs) in graph.nodes.items()}
        (ctx.out_dir / "observe.json").write_text(json.dumps(observe, indent=1))
        info["audit"] = self._audit(result.layer_information, info, graph)
        marked = len(marks.outputs) + len(marks.debug)
        info["notes"] += _notes(mode, route, marked, result.unobservable, result.warnings) + notes
        info["tensorrt"] = {"version": str(self.installed_version), "route": route, "dump_mode": mode}
        (ctx.out_dir / "lowering.json").write_text(json.dumps(info, indent=1))
        ctx.result.update({"execution": info["execution"], "route": route})

    def _timing_cache(self, shared: Path) -> SharedTimingCache:
        from layerscope.pipelines.backends.trt.timing import SharedTimingCache
        from layerscope.runner.hashing import digest

        env = self.environment
        key = digest([str(self.installed_version), env.gpu, env.compute_capability, env.driver])[:24]
        return SharedTimingCache(shared / "timing" / f"{key}.cache")

    def _audit(self, layer_information: str, info: dict[str, Any], graph: _Graph) -> dict[str, Any]:
        from layerscope.pipelines.backends.trt.inspector import parse_engine_information, precision_audit

        parsed = parse_engine_information(layer_information, list(graph.nodes))
        nodes = {n: {"op_type": v["op_type"], "precision": v["precision"]} for n, v in info["nodes"].items()}
        return precision_audit(
            parsed, nodes, source=f"TensorRT {self.installed_version} engine inspector", casts=graph.casts
        )

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
    ) -> TensorRTSession:
        from layerscope.pipelines.backends.trt.runtime import EngineRunner, TensorRTSession

        observe = json.loads((build_dir / "observe.json").read_text())
        sources, unobservable = engine_sources(build_dir, observe, tensors)
        runner = EngineRunner((build_dir / "engine.plan").read_bytes(), observe["mode"], frozenset(sources.values()))
        return TensorRTSession(runner, sources, observe["mode"], unobservable)


def engine_sources(
    build_dir: Path, observe: dict[str, Any], tensors: Sequence[str]
) -> tuple[dict[str, str], dict[str, str]]:
    """For the requested lowered tensors: ({tensor: the engine tensor that carries it}, {tensor: why it has
    no value}). Made when the session opens, for this selection: in ``unfused`` mode the engine serves
    every selection (it is not in the build key), and its unfused tensors are mapped from the engine
    inspector's layer information (``layer_info.json``) and the graph recorded at build time."""
    from layerscope.pipelines.backends.trt.inspector import parse_engine_information, unfused_sources

    wanted = list(dict.fromkeys(tensors))
    unobservable = {t: why for t, why in observe["unobservable"].items() if t in set(wanted)}
    sources = {t: t for t in wanted if t in set(observe["graph_outputs"]) or t in set(observe["marked"])}
    if observe["mode"] == "unfused":
        nodes = {n: (int(i), str(op), tuple(outs)) for n, (i, op, outs) in observe["graph"].items()}
        producers = {t: n for n, (_, _, outs) in nodes.items() for t in outs if t}
        info = parse_engine_information((build_dir / "layer_info.json").read_text(), list(nodes))
        rest = [t for t in wanted if t not in sources and t not in unobservable]
        found, missing = unfused_sources(info, rest, producers, nodes)
        sources.update(found)
        unobservable.update(missing)
    for t in wanted:  # outputs/debug: the build marked exactly this selection (it is in the key)
        if t not in sources and t not in unobservable:
            unobservable[t] = "not observable in this engine: the build did not mark it"
    return sources, unobservable


class _Graph:
    """The ONNX graph TensorRT parses, as the build needs it: node -> (index, op type, outputs), tensor ->
    the node that writes it, the graph outputs and the Casts."""

    def __init__(self, proto: Any) -> None:
        self.nodes: dict[str, tuple[int, str, tuple[str, ...]]] = {
            n.name: (i, n.op_type, tuple(n.output)) for i, n in enumerate(proto.graph.node)
        }
        self.producers = {t: n.name for n in proto.graph.node for t in n.output if t}
        self.outputs = [o.name for o in proto.graph.output]
        # Cast node -> the float type it converts to (the conversions the audit expects to find)
        floats = {1: "fp32", 10: "fp16", 16: "bf16"}  # onnx.TensorProto FLOAT, FLOAT16, BFLOAT16
        self.casts = {
            n.name: floats[a.i]
            for n in proto.graph.node
            if n.op_type == "Cast"
            for a in n.attribute
            if a.name == "to" and a.i in floats
        }


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
    if unobservable:  # marked tensors the parser had no tensor for (the selection is in the key in this mode)
        notes.append(
            f"{len(unobservable)} selected tensors have no value in this engine (fused away or removed): not compared"
        )
    if warnings:
        notes.append(f"TensorRT logged {len(warnings)} warnings while building; first: {warnings[0][:300]}")
    return notes
