"""The phases of loading an experiment: each section of a config the schema accepted becomes its dataclasses,
then what a schema cannot express is checked against the model.

A phase reads only what the schema accepted, so it never meets malformed data and needs no exception
handling: a section with a schema problem at, above or below it is skipped (its problem is already
reported), while checks that need only a section's keys (is every model input given? does the compare
section name a run that exists?) still see the keys of entries the schema rejected. Every problem goes
to the collector, so all of a config's problems are reported together.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from layerscope.pipelines.experiment.selection import (
    Selection,
    check_selection,
    glob_matches_any,
    parse_selection,
    suggest_names,
)
from layerscope.pipelines.experiment.sources import build_input
from layerscope.pipelines.experiment.spec import (
    CalibrationSpec,
    InputSpec,
    Limits,
    RunSpec,
    TaskLimits,
    Thresholds,
)
from layerscope.pipelines.lowering.formats import FORMATS
from layerscope.pipelines.models.resolve import ResolvedModel, resolve_model
from layerscope.runner.cache import Cache
from layerscope.runner.errors import UsageError
from layerscope.runner.spec import ProblemCollector, pointer
from layerscope.runner.suggest import suggest

TASK_LIMITS = ("min_top1_agreement", "min_topk_overlap", "min_task_score")


@dataclass
class Loading:
    """What the phases share: the config's data, which parts the schema rejected, where files are, the problems."""

    data: dict[str, Any]
    rejected: tuple[str, ...]  # pointers of the schema's problems (not the root's: a missing key is reported there)
    problems: ProblemCollector
    resolve: Callable[[str], Path]
    cache: Cache
    deep: bool  # also open input files to check their shapes (``validate``)

    def accepted(self, ptr: str) -> bool:
        """Whether the schema accepted the value at ``ptr`` and everything in it."""
        return not any(r == ptr or r.startswith(ptr + "/") or ptr.startswith(r + "/") for r in self.rejected)

    def usable(self, ptr: str) -> bool:
        """Whether the value at ``ptr`` itself has the accepted type: nothing at or above it was rejected (its
        entries may have been: use them only where they are accepted)."""
        return not any(r == ptr or ptr.startswith(r + "/") for r in self.rejected)

    def section(self, key: str) -> dict[str, Any] | None:
        """A top-level mapping the schema let through as a mapping, or None (absent or rejected)."""
        value = self.data.get(key)
        return value if isinstance(value, dict) and self.usable(f"/{key}") else None


# -- sections on their own ----------------------------------------------------------------------------------
def model(ld: Loading) -> ResolvedModel | None:
    if "model" not in ld.data or not ld.accepted("/model"):
        return None
    try:
        return resolve_model(ld.data["model"], ld.resolve, ld.cache)
    except UsageError as exc:
        ld.problems.add("/model", exc.message + (f"; {exc.hint}" if exc.hint else ""))
        return None


def runs(ld: Loading) -> tuple[dict[str, RunSpec], list[str]]:
    """(the runs the schema accepted, the names of every run written)."""
    raw = ld.section("runs") or {}
    out: dict[str, RunSpec] = {}
    unavailable: dict[str, str] = {}  # backend -> where its reason was reported
    for name, entry in raw.items():
        if ld.accepted(pointer("runs", name)):
            out[name] = _run(ld, name, entry, unavailable)
    return out, list(raw)


def _run(ld: Loading, name: str, r: dict[str, Any], unavailable: dict[str, str]) -> RunSpec:
    from layerscope.pipelines import backends

    ptr = pointer("runs", name)
    backend_name = r.get("backend", "onnxruntime")
    fmt = FORMATS[r["precision"]]
    if not fmt.available:
        ld.problems.add(f"{ptr}/precision", f"precision {fmt.name} is not available yet: {fmt.unavailable_reason}")
    backend = backends.get(backend_name)
    ok, why = backend.availability()
    if not ok and backend_name in unavailable:  # said once in full; the other runs point at it
        ld.problems.add(
            f"{ptr}/backend",
            f"backend {backend_name} cannot run here (the reason is given at {unavailable[backend_name]})",
        )
    elif not ok:
        ld.problems.add(f"{ptr}/backend", why)
        unavailable[backend_name] = f"{ptr}/backend"
    options = dict(r.get("options", {}))
    if ok:  # the backend's own policy: defaults and what it cannot do with this format
        options, option_problems = backend.configure(fmt, options)
        for problem in option_problems:
            ld.problems.add(ptr + problem.pointer, problem.message)
    return RunSpec(name, backend_name, fmt.name, options, (), r.get("overrides"))


def compare(ld: Loading, runs: Mapping[str, RunSpec], names: list[str]) -> tuple[str, tuple[str, ...]]:
    """(reference, candidates); run names are checked against every run written, accepted or not."""
    if not ld.accepted("/compare") or "runs" not in ld.data or not ld.usable("/runs"):
        return "", ()  # what compare names cannot be checked against runs that are not there
    section = ld.data.get("compare") or {}

    def known(name: str, ptr: str) -> bool:
        if name in names:
            return True
        hint = suggest(name, names) or f"; runs are: {', '.join(names)}"
        ld.problems.add(ptr, f"no run named {name!r}{hint}")
        return False

    reference = section.get("reference")
    if reference is None:
        fp32 = [n for n, r in runs.items() if r.precision == "fp32"]
        if len(fp32) != 1 and len(runs) < len(names):  # a rejected run may be the fp32 one: decide once it is fixed
            return "", ()
        if len(fp32) != 1:
            ld.problems.add(
                "/compare",
                "compare.reference is required: name the run to compare against "
                f"({'no' if not fp32 else 'more than one'} fp32 run to choose by default)",
            )
            return "", ()
        reference = fp32[0]
    elif not known(reference, "/compare/reference"):
        return reference, ()
    cands = section.get("candidates")
    if cands is None:
        cands = [n for n in names if n != reference]
        if not cands:
            ld.problems.add("/runs", "at least two runs are needed: a reference and a candidate")
    for i, c in enumerate(cands):
        if known(c, f"/compare/candidates/{i}") and c == reference:
            ld.problems.add(f"/compare/candidates/{i}", f"{c!r} is the reference; compare it with another run")
    return reference, tuple(cands)


def selection(ld: Loading) -> Selection | None:
    """The layer selection; None when the schema rejected it (nothing is checked against the model then)."""
    if not ld.accepted("/layers"):
        return None
    return parse_selection(ld.data.get("layers", "all"), "/layers", ld.problems)


def inputs(ld: Loading, model: ResolvedModel | None) -> tuple[tuple[InputSpec, ...], list[str]]:
    """(the inputs the schema accepted, the names of every input written)."""
    raw = ld.section("inputs") or {}
    samples = _samples(ld)
    specs = [
        input_spec(ld, name, entry, pointer("inputs", name), model=model, samples=samples)
        for name, entry in raw.items()
        if ld.accepted(pointer("inputs", name))
    ]
    return tuple(specs), list(raw)


def _samples(ld: Loading) -> int:
    return int(ld.data.get("samples", 1)) if ld.accepted("/samples") else 1


def input_spec(
    ld: Loading, name: str, spec: dict[str, Any], ptr: str, *, model: ResolvedModel | None, samples: int
) -> InputSpec:
    """An input (or a calibration input) with the source's defaults filled in and its paths resolved; the shape
    defaults to the model's when that is static (see :mod:`.sources`)."""
    return build_input(ld, name, spec, ptr, model_shape=static_shape(model, name), samples=samples)


def static_shape(model: ResolvedModel | None, name: str) -> tuple[int, ...] | None:
    """The model's declared shape of an input when every dimension is a fixed number."""
    for t in model.summary.inputs if model is not None else ():
        if t.name == name and t.shape is not None and all(isinstance(d, int) and d > 0 for d in t.shape):
            return tuple(d for d in t.shape if isinstance(d, int))
    return None


def calibration(
    ld: Loading,
    inputs: tuple[InputSpec, ...],
    input_names: list[str],
    runs: Mapping[str, RunSpec],
    model: ResolvedModel | None = None,
) -> CalibrationSpec | None:
    """The calibration of quantized runs; defaults when the config has no calibration section."""
    if not ld.accepted("/calibration"):
        return None
    raw = dict(ld.data.get("calibration") or {})
    quantized = sorted({r.precision for r in runs.values() if FORMATS[r.precision].quantized})
    if not quantized and not raw:
        return None
    notes: list[str] = []
    given = raw.get("inputs") or {}
    for name in given:
        if name not in input_names:
            ld.problems.add(pointer("calibration", "inputs", name), f"no input named {name!r} in inputs", key=True)
    samples = int(raw.get("samples", 16))
    specs: list[InputSpec] = []
    for spec in inputs:
        if spec.name in given:
            entry = {"shape": list(spec.shape) if spec.shape else None, "dtype": spec.dtype, **given[spec.name]}
            if entry["shape"] is None:
                entry.pop("shape")
            ptr = pointer("calibration", "inputs", spec.name)
            specs.append(input_spec(ld, spec.name, entry, ptr, model=model, samples=samples))
        elif "random" in spec.source:
            specs.append(replace(spec, source={**spec.source, "seed": int(spec.source["seed"]) + 1}))
        else:
            if "images" in spec.source:  # the same folder, listed again for the calibration's sample count
                entry = dict(ld.data["inputs"][spec.name])
                ptr = pointer("inputs", spec.name)
                # its other problems were reported with the input: only the count is said again, here
                quiet = replace(ld, problems=ProblemCollector(ld.problems.doc), deep=False)
                spec = build_input(quiet, spec.name, entry, ptr, model_shape=spec.shape, samples=samples)
                if len(spec.source["files"]) < samples:
                    ld.problems.add(
                        "/calibration/samples",
                        f"{samples} calibration samples asked, but input {spec.name!r} has "
                        f"{len(spec.source['files'])} images; set calibration.samples or calibration.inputs",
                    )
            specs.append(spec)
            notes.append(f"input {spec.name!r} is calibrated on the same samples it is evaluated on")
    method = raw.get("method", "minmax")
    return CalibrationSpec(
        samples=samples,
        inputs=tuple(specs),
        method=method,
        percentile=float(raw.get("percentile", 99.999)),
        per_channel=bool(raw.get("per_channel", True)),
        cache=_trt_cache(ld, raw["cache"]) if "cache" in raw else None,
        trt_version=str(raw.get("trt_version", "10.13.0")),
        notes=tuple(notes),
    )


def _trt_cache(ld: Loading, written: str) -> Path | None:
    """A TensorRT calibration cache to import, read once here so that a broken one is a config problem."""
    from layerscope.pipelines.lowering.calibration_cache import read_trt_cache

    try:
        cache = ld.resolve(written)
    except UsageError as exc:
        ld.problems.add("/calibration/cache", exc.message)
        return None
    if not cache.is_file():
        ld.problems.add("/calibration/cache", f"TensorRT calibration cache not found: {cache}")
        return None
    try:
        read_trt_cache(cache)
    except UsageError as exc:
        ld.problems.add("/calibration/cache", exc.message)
    return cache


def quantization(runs: dict[str, RunSpec], calibration: CalibrationSpec | None) -> dict[str, RunSpec]:
    """Quantized runs carry their weight granularity (per-channel INT8 weights) as a build option."""
    if calibration is None:
        return runs
    out = dict(runs)
    for name, run in runs.items():
        if FORMATS[run.precision].quantized:
            quant = {"per_channel": calibration.per_channel and run.precision == "int8"}
            out[name] = replace(run, options={**run.options, **quant})
    return out


def thresholds(ld: Loading) -> Thresholds:
    if not ld.accepted("/thresholds"):
        return Thresholds()
    raw = dict(ld.data.get("thresholds", {}))
    layers = tuple(
        (entry["match"], {k: v for k, v in entry.items() if k != "match"}) for entry in raw.pop("layers", [])
    )
    task = TaskLimits(**{k: raw.pop(k) for k in TASK_LIMITS if k in raw})
    return Thresholds(Limits(**raw), layers, task)


# -- against the model ------------------------------------------------------------------------------------
def check_against_model(
    ld: Loading,
    model: ResolvedModel,
    selection: Selection | None,
    inputs: tuple[InputSpec, ...],
    input_names: list[str],
    runs: dict[str, RunSpec],
) -> dict[str, RunSpec]:
    """The checks that need the model's summary; returns the runs with their pinned layers resolved."""
    if selection is not None:
        check_selection(selection, model.summary, ld.problems)
    samples = _samples(ld)
    _check_inputs(ld, inputs, input_names, model, samples=samples)
    pinned = {name: _pin(ld, run, model) for name, run in runs.items()}
    _check_ops(ld, model, runs)
    raw_layers = (ld.section("thresholds") or {}).get("layers")
    for i, entry in enumerate(raw_layers if isinstance(raw_layers, list) else []):
        ptr = f"/thresholds/layers/{i}/match"
        if ld.accepted(ptr) and not glob_matches_any(entry["match"], model.summary):
            ld.problems.add(ptr, f"{entry['match']!r} matches no node{suggest_names(entry['match'], model.summary)}")
    return pinned


def _check_ops(ld: Loading, model: ResolvedModel, runs: Mapping[str, RunSpec]) -> None:
    """An operator a run's backend does not know is a config problem now, not a failed build later."""
    from layerscope.pipelines.models.ops import unknown_ops

    for backend in sorted({r.backend for r in runs.values()}):
        memo = ld.cache.base / "memo" / "ops"
        for op, nodes in unknown_ops(model.summary, backend, memo_dir=memo, model_digest=model.digest).items():
            shown = ", ".join(nodes[:3]) + (f" and {len(nodes) - 3} more" if len(nodes) > 3 else "")
            ld.problems.add("/model", f"{backend} does not know the operator {op} (node {shown})")


def _check_inputs(
    ld: Loading, inputs: tuple[InputSpec, ...], names: Iterable[str], model: ResolvedModel, *, samples: int
) -> None:
    declared = {t.name: t for t in model.summary.inputs}
    given = list(names)  # as written: an entry the schema rejected still exists
    for name in given:
        if name not in declared:
            hint = suggest(name, declared)
            ld.problems.add(
                pointer("inputs", name),
                f"the model has no input {name!r}{hint} (its inputs: {', '.join(declared)})",
                key=True,
            )
    for spec in inputs:
        t = declared.get(spec.name)
        if t is not None:
            _check_input(ld, spec, t, samples=samples)
    for name in declared:
        if name not in given and ld.usable("/inputs"):
            ld.problems.add("/inputs", f"the model input {name!r} has no entry (shape, dtype and source)")


def _check_input(ld: Loading, spec: InputSpec, t: Any, *, samples: int) -> None:
    """One input against the model's declaration of it (``t``: a TensorInfo)."""
    ptr = pointer("inputs", spec.name)
    if t.dtype is not None and t.dtype != spec.dtype:
        ld.problems.add(f"{ptr}/dtype", f"the model's input {spec.name!r} is {t.dtype}, not {spec.dtype}")
    shape = spec.shape
    if ld.deep and "file" in spec.source:
        from layerscope.pipelines.experiment.inputs import check_source

        try:
            shape = check_source(spec, samples)
        except UsageError as exc:
            ld.problems.add(f"{ptr}/source", exc.message)
    if shape is None or t.shape is None:
        return
    if len(shape) != len(t.shape):
        ld.problems.add(
            f"{ptr}/shape",
            f"the model's input {spec.name!r} has rank {len(t.shape)} ({_dims(t.shape)}), not {len(shape)}",
        )
        return
    for axis, (want, got) in enumerate(zip(t.shape, shape, strict=True)):
        if isinstance(want, int) and want > 0 and want != got:
            message = f"dimension {axis} of {spec.name!r} must be {want} (model shape {_dims(t.shape)})"
            ld.problems.add(f"{ptr}/shape/{axis}", message)


def _dims(shape: tuple[Any, ...]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _pin(ld: Loading, run: RunSpec, model: ResolvedModel) -> RunSpec:
    raw = ld.data["runs"][run.name].get("overrides") or []
    pinned: set[str] = set()
    for i, o in enumerate(raw):
        sel = parse_selection(o["layers"], f"{pointer('runs', run.name)}/overrides/{i}/layers", ld.problems)
        check_selection(sel, model.summary, ld.problems)
        pinned.update(n.name for n in sel.apply(model.summary.nodes))
    if run.precision == "fp32":
        pinned = set()  # pinning to FP32 in an FP32 run changes nothing (and must not change keys)
    order = [n.name for n in model.summary.nodes if n.name in pinned]
    return replace(run, pinned=tuple(order))


def tensors(selection: Selection | None, model: ResolvedModel) -> tuple[tuple[str, ...], list[str]]:
    """The float tensors to dump and compare, in network order (graph outputs always), and notes."""
    summary = model.summary
    selection = selection or Selection(None)
    chosen: list[str] = []
    skipped = constant = empty = 0
    static = set() if selection.constants else summary.static_nodes()
    exact = selection.exact_names()
    for node in selection.apply(summary.nodes):
        outs = summary.float_outputs(node)
        if not outs:
            skipped += 1
            continue
        named = node.name in exact or any(t in exact for t in node.outputs)
        if node.name in static and not named:
            constant += 1
            continue
        kept = [t for t in outs if named or selection.constants or not summary.empty(t)]
        empty += len(outs) - len(kept)
        chosen.extend(kept)
    graph_outputs = [t.name for t in summary.outputs if t.is_float]
    producers = summary.producer_of()
    index = {t: producers[t].index if t in producers else -1 for t in set(chosen) | set(graph_outputs)}
    ordered = sorted(dict.fromkeys(chosen + graph_outputs), key=lambda t: index[t])
    notes = []
    if skipped:
        notes.append(f"{skipped} selected nodes have no floating-point output and are not compared")
    if constant:
        notes.append(
            f"{constant} selected nodes compute only from weights, constants or shapes and are not compared "
            "(layers: {include: all, constants: true} compares them; weight problems show at the layers reading them)"
        )
    if empty:
        notes.append(f"{empty} selected tensors have no elements and are not compared")
    return tuple(ordered), notes
