"""Load an experiment: a config validated and resolved against its model (see :mod:`.spec` for the result).

Loading goes: YAML with positions -> ``--set`` overrides -> JSON Schema (every error at once) -> the
checks a schema cannot express, against the model's summary (input names and shapes, every layer pattern
matches a node, the reference run exists, the backend and precision can run here). All problems of a
config are reported together with their file positions. A config that passed the schema once is not
validated by jsonschema again while its text, its overrides and the schema are unchanged (a memo in the
cache), which keeps a cached rerun fast.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from layerscope.pipelines.experiment.selection import (
    Selection,
    check_selection,
    glob_matches_any,
    parse_selection,
    suggest_names,
)
from layerscope.pipelines.experiment.spec import (
    CalibrationSpec,
    Experiment,
    InputSpec,
    Limits,
    RunSpec,
    Thresholds,
)
from layerscope.pipelines.lowering.formats import FORMATS
from layerscope.pipelines.models.resolve import ResolvedModel, resolve_model
from layerscope.runner.cache import Cache
from layerscope.runner.errors import SpecError, SpecProblem, UsageError
from layerscope.runner.hashing import digest, digest_bytes
from layerscope.runner.spec import (
    Document,
    ProblemCollector,
    apply_overrides,
    load_document,
    parse_document,
    validate_schema,
)
from layerscope.runner.suggest import suggest
from layerscope.schemas import schema_text

ENV_CACHE = "LAYERSCOPE_CACHE_DIR"

# Where a relative model or input path of a config points: (path as written, the experiment's cache) -> file.
FileResolver = Callable[[str, Cache], Path]


def resolve_cache_dir(flag: str | None, config_value: str | None, config_dir: Path) -> Path:
    """--cache-dir, then $LAYERSCOPE_CACHE_DIR, then the config's cache.dir, then the user cache dir."""
    if flag:
        return Path(flag).expanduser()
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE]).expanduser()
    if config_value:
        return (config_dir / Path(config_value).expanduser()).resolve()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("layerscope", appauthor=False))


def load_experiment(
    path: Path | str,
    overrides: list[str] | None = None,
    *,
    cache_dir: str | None = None,
    deep: bool = False,
) -> Experiment:
    """Load, validate and resolve. ``deep`` also opens input files to check their shapes (``validate``)."""
    path = Path(path)
    doc = load_document(path)
    config_dir = (path.parent if path.parent != Path() else Path()).resolve()
    return _experiment(doc, config_dir, overrides, cache_dir=cache_dir, deep=deep, resolve_file=None)


def load_experiment_text(
    text: str,
    source: str,
    config_dir: Path,
    overrides: list[str] | None = None,
    *,
    cache_dir: str | None = None,
    deep: bool = False,
    resolve_file: FileResolver | None = None,
) -> Experiment:
    """An experiment from config text that is no file of its own (a config at a git revision, read with git).

    ``source`` names it in messages and in the report; relative model and input paths go through
    ``resolve_file`` (default: relative to ``config_dir``), as does the config's ``cache.dir``'s base.
    """
    doc = parse_document(text, source=source)
    return _experiment(
        doc, Path(config_dir).resolve(), overrides, cache_dir=cache_dir, deep=deep, resolve_file=resolve_file
    )


def _experiment(
    doc: Document,
    config_dir: Path,
    overrides: list[str] | None,
    *,
    cache_dir: str | None,
    deep: bool,
    resolve_file: FileResolver | None,
) -> Experiment:
    apply_overrides(doc, overrides or [])
    data = doc.data
    if not isinstance(data, dict):
        raise SpecError([doc.problem("", "the config must be a mapping of keys to values")], doc.source)
    cache = Cache(resolve_cache_dir(cache_dir, _cache_value(data), config_dir))

    def resolve(rel: str) -> Path:
        return resolve_file(rel, cache) if resolve_file is not None else (config_dir / rel).resolve()

    schema_problems = _check_schema(doc, cache)
    # Semantic checks run even when the schema found problems, so that every error is reported at once;
    # parts the schema already rejected may then be malformed, and checks that trip over them are skipped.
    lenient = bool(schema_problems)
    problems = ProblemCollector(doc)
    model: ResolvedModel | None = None
    with _lenient(lenient):
        try:
            model = resolve_model(data["model"], resolve, cache)
        except UsageError as exc:
            problems.add("/model", exc.message + (f"; {exc.hint}" if exc.hint else ""))
    runs = _runs(data, problems, lenient)
    reference: str = ""
    candidates: tuple[str, ...] = ()
    with _lenient(lenient):
        reference, candidates = _compare(data, runs, problems)
    selection = Selection(None)
    with _lenient(lenient):
        selection = parse_selection(data.get("layers", "all"), "/layers", problems)
    inputs = _inputs(data, resolve, problems, lenient)
    calibration: CalibrationSpec | None = None
    with _lenient(lenient):
        calibration = _calibration(data, inputs, runs, resolve, problems, lenient)
    if calibration is not None:
        for name, run in list(runs.items()):
            if FORMATS[run.precision].quantized:
                quant = {"per_channel": calibration.per_channel and run.precision == "int8"}
                runs[name] = replace(run, options={**run.options, **quant})
    thresholds = Thresholds()
    with _lenient(lenient):
        thresholds = _thresholds(data)
    tensors: tuple[str, ...] = ()
    notes: list[str] = []
    if model is not None:
        with _lenient(lenient):
            check_selection(selection, model.summary, problems)
        with _lenient(lenient):
            _check_inputs(inputs, model, problems, deep=deep, samples=int(data.get("samples", 1)))
        for name, run in list(runs.items()):
            with _lenient(lenient):
                runs[name] = _pin(run, data, model, problems)
        for i, (pattern, _) in enumerate(thresholds.layers):
            if not glob_matches_any(pattern, model.summary):
                problems.add(
                    f"/thresholds/layers/{i}/match",
                    f"{pattern!r} matches no node{suggest_names(pattern, model.summary)}",
                )
        tensors, notes = _tensors(selection, model)
        if not tensors and not problems.problems:
            problems.add("/layers", "the selection contains no layer with a floating-point output to compare")
    if schema_problems:
        rejected = [p.pointer for p in schema_problems if p.pointer]
        semantic = [p for p in problems.problems if not any(p.pointer.startswith(r) for r in rejected)]
        problems.problems = schema_problems + semantic
    problems.raise_if_any()
    assert model is not None
    report = data.get("report", {})
    return Experiment(
        name=data["name"],
        description=data.get("description", ""),
        source=doc.source,
        config_dir=config_dir,
        document=doc,
        config_digest=digest(data),
        model=model,
        samples=int(data.get("samples", 1)),
        inputs=inputs,
        selection=selection,
        tensors=tensors,
        runs=runs,
        reference=reference,
        candidates=candidates,
        thresholds=thresholds,
        dump={"compression": "none", "gzip_level": 4, **data.get("dump", {})},
        report_formats=tuple(dict.fromkeys(["json", *report.get("formats", ["json", "md"])])),
        report_dir=report.get("dir", "reports/{name}").replace("{name}", data["name"]),
        cache=cache,
        notes=tuple(notes),
        calibration=calibration,
        attribution=bool(data.get("attribution", True)),
    )


def _cache_value(data: dict[str, Any]) -> str | None:
    cache = data.get("cache")
    if isinstance(cache, dict) and isinstance(cache.get("dir"), str):
        return str(cache["dir"])
    return None


def _check_schema(doc: Document, cache: Cache) -> list[SpecProblem]:
    """Schema problems of the config; a config that passed once is remembered (by content) and not rechecked."""
    text = schema_text("experiment")
    memo_key = digest({"config": doc.data, "schema": digest_bytes(text.encode())})
    memo = cache.base / "memo" / "valid" / memo_key
    if memo.exists():
        return []
    problems = validate_schema(doc, json.loads(text))
    if not problems:
        try:
            memo.parent.mkdir(parents=True, exist_ok=True)
            memo.touch()
        except OSError:
            pass
    return problems


_MALFORMED = (KeyError, TypeError, AttributeError, ValueError, IndexError)


@contextlib.contextmanager
def _lenient(active: bool) -> Iterator[None]:
    """Skip a check that trips over data the schema already reported as malformed (only when it did)."""
    try:
        yield
    except _MALFORMED:
        if not active:
            raise


def _runs(data: dict[str, Any], problems: ProblemCollector, lenient: bool) -> dict[str, RunSpec]:
    runs: dict[str, RunSpec] = {}
    unavailable: dict[str, str] = {}  # backend -> where its reason was reported
    with _lenient(lenient):
        for name, r in data["runs"].items():
            with _lenient(lenient):
                runs[name] = _run(name, r, problems, unavailable)
    return runs


def _run(name: str, r: dict[str, Any], problems: ProblemCollector, unavailable: dict[str, str]) -> RunSpec:
    from layerscope.pipelines import backends

    ptr = f"/runs/{name}"
    backend = r.get("backend", "onnxruntime")
    fmt = FORMATS[r["precision"]]
    if not fmt.available:
        problems.add(f"{ptr}/precision", f"precision {fmt.name} is not available yet: {fmt.unavailable_reason}")
    ok, why = backends.availability(backend) if backend in backends.names() else (True, "")
    if not ok and backend in unavailable:  # said once in full; the other runs point at it
        problems.add(
            f"{ptr}/backend", f"backend {backend} cannot run here (the reason is given at {unavailable[backend]})"
        )
    elif not ok:
        problems.add(f"{ptr}/backend", why)
        unavailable[backend] = f"{ptr}/backend"
    options = dict(r.get("options", {}))
    if backend == "onnxruntime":
        if options.get("execution") == "native" and not fmt.native_on_cpu:
            problems.add(
                f"{ptr}/options/execution",
                f"ONNX Runtime's CPU provider has no {fmt.name} kernels; use execution: emulated "
                "(FP32 compute, every value rounded to the format)",
            )
        options.setdefault("execution", "native" if fmt.native_on_cpu else "emulated")
        # ONNX Runtime's extended graph optimizations drop a Relu sitting between float8 DequantizeLinear and
        # QuantizeLinear (seen in 1.32: relu0's output went negative); FP8 runs are emulated anyway.
        options.setdefault("graph_optimization", "basic" if fmt.name == "fp8" else "all")
    elif backend == "tensorrt" and ok:
        from layerscope.pipelines.backends.tensorrt import TensorRTBackend

        trt = backends.get("tensorrt")
        assert isinstance(trt, TensorRTBackend)
        options = trt.resolve_options(options)  # the route's default depends on the installed version
        for key, message in trt.option_problems(fmt.name, options):
            where = (
                "precision" if key == "precision" else f"options/{key}" if key in r.get("options", {}) else "backend"
            )
            problems.add(f"{ptr}/{where}", message)
    return RunSpec(name, backend, fmt.name, options, (), r.get("overrides"))


def _compare(data: dict[str, Any], runs: dict[str, RunSpec], problems: ProblemCollector) -> tuple[str, tuple[str, ...]]:
    compare = data.get("compare", {})
    names = list(runs)

    def known(name: str, ptr: str) -> bool:
        if name in runs:
            return True
        hint = suggest(name, names) or f"; runs are: {', '.join(names)}"
        problems.add(ptr, f"no run named {name!r}{hint}")
        return False

    reference = compare.get("reference")
    if reference is None:
        fp32 = [n for n, r in runs.items() if r.precision == "fp32"]
        if len(fp32) != 1:
            problems.add(
                "/compare",
                "compare.reference is required: name the run to compare against "
                f"({'no' if not fp32 else 'more than one'} fp32 run to choose by default)",
            )
            return "", ()
        reference = fp32[0]
    elif not known(reference, "/compare/reference"):
        return reference, ()
    cands = compare.get("candidates")
    if cands is None:
        cands = [n for n in names if n != reference]
        if not cands:
            problems.add("/runs", "at least two runs are needed: a reference and a candidate")
    for i, c in enumerate(cands):
        if known(c, f"/compare/candidates/{i}") and c == reference:
            problems.add(f"/compare/candidates/{i}", f"{c!r} is the reference; compare it with another run")
    return reference, tuple(cands)


def _inputs(
    data: dict[str, Any], resolve: Callable[[str], Path], problems: ProblemCollector, lenient: bool
) -> tuple[InputSpec, ...]:
    out: list[InputSpec] = []
    with _lenient(lenient):
        for name, spec in data["inputs"].items():
            with _lenient(lenient):
                out.append(_input(name, spec, resolve, problems))
    return tuple(out)


def _input(name: str, spec: dict[str, Any], resolve: Callable[[str], Path], problems: ProblemCollector) -> InputSpec:
    ptr = f"/inputs/{name}"
    source = dict(spec["source"])
    if "random" in source:
        relevant = {"normal": ("mean", "std"), "uniform": ("low", "high")}[source["random"]]
        defaults = {"mean": 0.0, "std": 1.0, "low": 0.0, "high": 1.0}
        source = {"seed": 0, **{k: defaults[k] for k in relevant}, **source}
        for k in set(defaults) - set(relevant):
            if k in source:
                problems.add(f"{ptr}/source/{k}", f"{k} does not apply to a {source['random']} distribution", key=True)
        if "shape" not in spec:
            problems.add(ptr, "shape is required for a random source")
        if source["random"] == "uniform" and source["high"] <= source["low"]:
            problems.add(f"{ptr}/source/high", "high must be greater than low")
    else:
        try:
            file = resolve(source["file"])
        except UsageError as exc:
            problems.add(f"{ptr}/source/file", exc.message)
            return InputSpec(name, None, spec.get("dtype", "float32"), source)
        if not file.is_file():
            problems.add(f"{ptr}/source/file", f"input file not found: {file}")
        if file.suffix == ".npz" and "key" not in source:
            problems.add(f"{ptr}/source", "key is required for an .npz file (the array name inside it)")
        if file.suffix in (".h5", ".hdf5") and "dataset" not in source:
            problems.add(f"{ptr}/source", "dataset is required for an HDF5 file")
        source["file"] = str(file)
    shape = tuple(spec["shape"]) if "shape" in spec else None
    return InputSpec(name, shape, spec.get("dtype", "float32"), source)


def _check_inputs(
    inputs: tuple[InputSpec, ...], model: ResolvedModel, problems: ProblemCollector, *, deep: bool, samples: int
) -> None:
    declared = {t.name: t for t in model.summary.inputs}
    given = set(problems.doc.data.get("inputs") or {})  # as written: an entry the schema rejected still exists
    for spec in inputs:
        ptr = f"/inputs/{spec.name}"
        t = declared.get(spec.name)
        if t is None:
            hint = suggest(spec.name, declared)
            problems.add(
                ptr, f"the model has no input {spec.name!r}{hint} (its inputs: {', '.join(declared)})", key=True
            )
            continue
        if t.dtype is not None and t.dtype != spec.dtype:
            problems.add(f"{ptr}/dtype", f"the model's input {spec.name!r} is {t.dtype}, not {spec.dtype}")
        shape = spec.shape
        if deep and shape is None and "file" in spec.source:
            from layerscope.pipelines.experiment.inputs import probe_file

            try:
                n, shape = probe_file(spec)
                if n < samples:
                    problems.add(f"{ptr}/source", f"the file holds {n} samples; the config asks for {samples}")
            except UsageError as exc:
                problems.add(f"{ptr}/source", exc.message)
        if shape is not None and t.shape is not None:
            if len(shape) != len(t.shape):
                problems.add(
                    f"{ptr}/shape",
                    f"the model's input {spec.name!r} has rank {len(t.shape)} ({_dims(t.shape)}), not {len(shape)}",
                )
            else:
                for axis, (want, got) in enumerate(zip(t.shape, shape, strict=True)):
                    if isinstance(want, int) and want > 0 and want != got:
                        message = f"dimension {axis} of {spec.name!r} must be {want} (model shape {_dims(t.shape)})"
                        problems.add(f"{ptr}/shape/{axis}", message)
    for name in declared:
        if name not in given:
            problems.add("/inputs", f"the model input {name!r} has no entry (shape, dtype and source)")


def _dims(shape: tuple[Any, ...]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _pin(run: RunSpec, data: dict[str, Any], model: ResolvedModel, problems: ProblemCollector) -> RunSpec:
    raw = data["runs"][run.name].get("overrides") or []
    pinned: set[str] = set()
    for i, o in enumerate(raw):
        sel = parse_selection(o["layers"], f"/runs/{run.name}/overrides/{i}/layers", problems)
        check_selection(sel, model.summary, problems)
        pinned.update(n.name for n in sel.apply(model.summary.nodes))
    if run.precision == "fp32":
        pinned = set()  # pinning to FP32 in an FP32 run changes nothing (and must not change keys)
    order = [n.name for n in model.summary.nodes if n.name in pinned]
    return replace(run, pinned=tuple(order))


def _thresholds(data: dict[str, Any]) -> Thresholds:
    raw = dict(data.get("thresholds", {}))
    layers = tuple(
        (entry["match"], {k: v for k, v in entry.items() if k != "match"}) for entry in raw.pop("layers", [])
    )
    return Thresholds(Limits(**raw), layers)


def _tensors(selection: Selection, model: ResolvedModel) -> tuple[tuple[str, ...], list[str]]:
    summary = model.summary
    chosen: list[str] = []
    skipped = 0
    for node in selection.apply(summary.nodes):
        outs = summary.float_outputs(node)
        if not outs:
            skipped += 1
        chosen.extend(outs)
    graph_outputs = [t.name for t in summary.outputs if t.is_float]
    producers = summary.producer_of()
    index = {t: producers[t].index if t in producers else -1 for t in set(chosen) | set(graph_outputs)}
    ordered = sorted(dict.fromkeys(chosen + graph_outputs), key=lambda t: index[t])
    notes = []
    if skipped:
        notes.append(f"{skipped} selected nodes have no floating-point output and are not compared")
    return tuple(ordered), notes


def _calibration(
    data: dict[str, Any],
    inputs: tuple[InputSpec, ...],
    runs: dict[str, RunSpec],
    resolve: Callable[[str], Path],
    problems: ProblemCollector,
    lenient: bool,
) -> CalibrationSpec | None:
    """The calibration of quantized runs; defaults when the config has no calibration section."""
    raw = dict(data.get("calibration") or {})
    quantized = sorted({r.precision for r in runs.values() if FORMATS[r.precision].quantized})
    if not quantized and not raw:
        return None
    notes: list[str] = []
    given = raw.get("inputs") or {}
    for name in given:
        if name not in {i.name for i in inputs}:
            problems.add(f"/calibration/inputs/{name}", f"no input named {name!r} in inputs", key=True)
    specs: list[InputSpec] = []
    for spec in inputs:
        if spec.name in given:
            entry = {"shape": list(spec.shape) if spec.shape else None, "dtype": spec.dtype, **given[spec.name]}
            if entry["shape"] is None:
                entry.pop("shape")
            with _lenient(lenient):
                specs.append(_input(spec.name, entry, resolve, problems))
        elif "random" in spec.source:
            specs.append(replace(spec, source={**spec.source, "seed": int(spec.source["seed"]) + 1}))
        else:
            specs.append(spec)
            notes.append(f"input {spec.name!r} is calibrated on the same file samples it is evaluated on")
    cache: Path | None = None
    if "cache" in raw:
        from layerscope.pipelines.lowering.calibration_cache import read_trt_cache

        try:
            cache = resolve(raw["cache"])
        except UsageError as exc:
            problems.add("/calibration/cache", exc.message)
            cache = None
        if cache is None:
            pass
        elif not cache.is_file():
            problems.add("/calibration/cache", f"TensorRT calibration cache not found: {cache}")
            cache = None
        else:
            try:
                read_trt_cache(cache)
            except UsageError as exc:
                problems.add("/calibration/cache", exc.message)
    method = raw.get("method", "minmax")
    return CalibrationSpec(
        samples=int(raw.get("samples", 16)),
        inputs=tuple(specs),
        method=method,
        percentile=float(raw.get("percentile", 99.999)),
        per_channel=bool(raw.get("per_channel", True)),
        cache=cache,
        trt_version=str(raw.get("trt_version", "10.13.0")),
        notes=tuple(notes),
    )
