"""Load an experiment: a config validated and resolved against its model (see :mod:`.spec` for the result).

Loading goes: YAML with positions -> ``--set`` overrides -> JSON Schema (every error at once) -> the
phases (:mod:`.phases`) that build each section the schema accepted and check what a schema cannot
express against the model's summary (input names and shapes, every layer pattern matches a node, the
reference run exists, the backend and precision can run here). All problems of a config are reported
together with their file positions. A config that passed the schema once is not
validated by jsonschema again while its text, its overrides and the schema are unchanged (a memo in the
cache), which keeps a cached rerun fast.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

from layerscope.pipelines.experiment import phases
from layerscope.pipelines.experiment.agreement import task_spec
from layerscope.pipelines.experiment.sources import check_calibration_sources
from layerscope.pipelines.experiment.spec import Experiment
from layerscope.runner.cache import Cache
from layerscope.runner.codeversion import code_version
from layerscope.runner.errors import SpecError, SpecProblem, UsageError
from layerscope.runner.files import atomic_write
from layerscope.runner.hashing import digest, digest_bytes
from layerscope.runner.paths import confined, is_explicit
from layerscope.runner.spec import (
    Document,
    ProblemCollector,
    apply_overrides,
    escape_pointer_token,
    load_document,
    nonfinite_problems,
    parse_document,
    validate_schema,
)
from layerscope.schemas import schema_text

if TYPE_CHECKING:
    from layerscope.pipelines.experiment.selection import Selection
    from layerscope.pipelines.models.resolve import ResolvedModel

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
        return confined(config_dir, config_value, "cache.dir")
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


def load_experiment_data(
    data: Mapping[str, Any],
    overrides: list[str] | None = None,
    *,
    source: str = "<config>",
    config_dir: Path | None = None,
    cache_dir: str | None = None,
    deep: bool = False,
) -> Experiment:
    """An experiment from config data (a dict, as the YAML would read: mappings, lists, plain values).

    Problems are located by JSON pointer only (there is no text); relative paths resolve against
    ``config_dir`` (default: the working directory). Tuples count as lists and paths as strings.
    """
    doc = Document(source=source, path=None, text="", data=_plain(data, ""))
    return _experiment(
        doc, Path(config_dir or Path.cwd()).resolve(), overrides, cache_dir=cache_dir, deep=deep, resolve_file=None
    )


def _plain(value: Any, ptr: str) -> Any:
    """Config data as YAML's safe loader would give it, or a UsageError naming the value that is not."""
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise UsageError(f"config key {k!r} at {ptr or '/'} is not a string")
            out[k] = _plain(v, f"{ptr}/{escape_pointer_token(k)}")
        return out
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{ptr}/{i}") for i, v in enumerate(value)]
    if isinstance(value, PurePath):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise UsageError(f"config value at {ptr or '/'} is a {type(value).__name__}; expected plain data")


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
    try:
        cache = Cache(resolve_cache_dir(cache_dir, _cache_value(data), config_dir))
    except UsageError as exc:
        raise SpecError([doc.problem("/cache/dir", exc.message)], doc.source) from None

    def resolve(rel: str) -> Path:
        # Relative paths stay inside the config's folder (runner/paths.py); a resolver of its own (a config at
        # a git revision) applies the same rule.
        return resolve_file(rel, cache) if resolve_file is not None else confined(config_dir, rel, "the path")

    # Semantic checks run even when the schema found problems, so that every error is reported at once;
    # each phase reads only what the schema accepted (see phases.py).
    schema_problems = _check_schema(doc, cache)
    ld = phases.Loading(
        data=data,
        rejected=tuple(p.pointer for p in schema_problems if p.pointer),
        problems=ProblemCollector(doc),
        resolve=resolve,
        cache=cache,
        deep=deep,
    )
    model = phases.model(ld)
    runs, run_names = phases.runs(ld)
    reference, candidates = phases.compare(ld, runs, run_names)
    selection = phases.selection(ld)
    inputs, input_names = phases.inputs(ld, model)
    calibration = phases.calibration(ld, inputs, input_names, runs, model)
    runs = phases.quantization(runs, calibration)
    thresholds = phases.thresholds(ld)
    task = task_spec(ld, model)
    if task is not None and task.active and data.get("dump", {}).get("keep", "all") != "all":
        ld.problems.add("/dump/keep", "the task metrics (compare.task) need every sample's outputs: use dump.keep: all")
    tensors: tuple[str, ...] = ()
    notes: list[str] = []
    if model is not None:
        runs = phases.check_against_model(ld, model, selection, inputs, input_names, runs)
        check_calibration_sources(ld, calibration)
        tensors, notes = _tensors(ld, selection, model)
        if not tensors and not ld.problems.problems:
            ld.problems.add("/layers", "the selection contains no layer with a floating-point output to compare")
    report_dir = _report_dir(ld)
    ld.problems.problems = schema_problems + ld.problems.problems
    ld.problems.raise_if_any()
    assert model is not None and selection is not None  # else a problem was reported
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
        report_formats=tuple(dict.fromkeys(["json", *report.get("formats", ["json", "md", "html"])])),
        report_dir=report_dir,
        cache=cache,
        notes=tuple(notes),
        calibration=calibration,
        attribution=bool(data.get("attribution", True)),
        task=task,
    )


def _report_dir(ld: phases.Loading) -> str:
    """report.dir with {name} replaced; a relative one must stay inside the working directory."""
    report = ld.section("report") or {}
    name = ld.data.get("name") if isinstance(ld.data.get("name"), str) else "experiment"
    written = str(report.get("dir", "reports/{name}")).replace("{name}", str(name))
    if ld.accepted("/report/dir") and not is_explicit(written):
        try:
            confined(Path.cwd(), written, "report.dir")
        except UsageError as exc:
            ld.problems.add("/report/dir", f"{exc.message} (relative to the working directory)")
    return written


def _cache_value(data: dict[str, Any]) -> str | None:
    cache = data.get("cache")
    if isinstance(cache, dict) and isinstance(cache.get("dir"), str):
        return str(cache["dir"])
    return None


def _tensors(
    ld: phases.Loading, selection: Selection | None, model: ResolvedModel
) -> tuple[tuple[str, ...], list[str]]:
    """:func:`.phases.tensors`, remembered in the cache by what decides it: the model's digest (its summary is
    made from its bytes), the ``layers`` section as validated, and the code of the phases (whose closure holds
    the selection and the summary code). A rerun of an 8,000-layer model spent 0.35 s choosing them again."""
    if selection is None or not ld.accepted("/layers"):
        return phases.tensors(selection, model)
    key = digest(
        {
            "model": model.digest,
            "layers": ld.data.get("layers", "all"),
            "code": code_version("layerscope.pipelines.experiment.phases"),
        }
    )
    memo = ld.cache.base / "memo" / "tensors" / f"{key}.json"
    try:
        found = json.loads(memo.read_text(encoding="utf-8"))
        return tuple(found["tensors"]), list(found["notes"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    tensors, notes = phases.tensors(selection, model)
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(memo, json.dumps({"tensors": list(tensors), "notes": notes}))
    except OSError:  # a read-only cache only costs the next load the same work
        pass
    return tensors, notes


def _check_schema(doc: Document, cache: Cache) -> list[SpecProblem]:
    """Schema problems of the config; a config that passed once is remembered (by content, schema and validator
    code) and not rechecked. Non-finite numbers are looked for every time: the canonical digest of a config
    spells a NaN like the string "nan", so the memo cannot tell them apart."""
    text = schema_text("experiment")
    nonfinite = nonfinite_problems(doc)
    if nonfinite:
        return validate_schema(doc, json.loads(text))
    validator = code_version("layerscope.runner.spec")
    memo_key = digest({"config": doc.data, "schema": digest_bytes(text.encode()), "validator": validator})
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
