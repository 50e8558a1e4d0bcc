"""The report as typed data: :class:`Report` -> :class:`Comparison` -> :class:`LayerResult` -> :class:`Metrics`.

report.json (``schemas/report.schema.json``) is the document; these frozen dataclasses are a typed view of it.
Field names are the document's keys, so the schema documents both. ``Report.from_dict(doc).to_dict()``
gives the document back exactly, key order included, for every report layerscope writes: numbers written
as "inf", "-inf" and "nan" are floats here and strings again in ``to_dict``, an undefined value stays None
(null), and keys this version does not model are kept in ``extra``. Parts with an open shape (run options,
input material, histograms, the TensorRT audit) stay plain dicts. :mod:`.read` loads and validates a report
file; :mod:`.table` flattens a report into a pandas DataFrame.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from layerscope.pipelines.experiment.spec import Limits
from layerscope.runner.jsonio import dumps, finite_json

SCHEMA = "layerscope-report"


def _num(value: Any) -> Any:
    """A number as written ("inf", "-inf", "nan" -> float; None and real numbers as they are)."""
    return float(value) if isinstance(value, str) else value


def _rest(d: Mapping[str, Any], cls: type) -> dict[str, Any]:
    """The keys of ``d`` that ``cls`` does not model (kept, so that to_dict loses nothing)."""
    known = ({f.name for f in fields(cls)} - {"extra", "files"}) | getattr(cls, "_ALIASES", set())
    return {k: v for k, v in d.items() if k not in known}


def _emit(pairs: list[tuple[str, Any]], extra: Mapping[str, Any], always: tuple[str, ...] = ()) -> dict[str, Any]:
    """A JSON object from (key, value) pairs in order: None values left out unless the key is in ``always``."""
    out = {k: finite_json(v) for k, v in pairs if v is not None or k in always}
    out.update(extra)
    return out


@dataclass(frozen=True)
class RangeRisk:
    """The reference's values against the candidate format's limits (counts, and the extremes)."""

    zeros: int
    below_smallest_subnormal: int
    subnormal: int
    overflow: int
    min_abs_nonzero: float | None  # None: no non-zero value
    max_abs: float
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RangeRisk:
        return cls(
            d["zeros"],
            d["below_smallest_subnormal"],
            d["subnormal"],
            d["overflow"],
            _num(d["min_abs_nonzero"]),
            _num(d["max_abs"]),
            _rest(d, cls),
        )

    def to_dict(self) -> dict[str, Any]:
        pairs = [(f.name, getattr(self, f.name)) for f in fields(self) if f.name != "extra"]
        return _emit(pairs, self.extra, always=("min_abs_nonzero",))


@dataclass(frozen=True)
class QuantStats:
    """A quantized run's Q/DQ parameters of the tensor and the reference values they clip or round to zero."""

    type: str
    scale: float
    zero_point: float
    saturated: int
    saturation_ratio: float
    zeroed: int
    zeroed_ratio: float
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> QuantStats:
        return cls(
            d["type"],
            _num(d["scale"]),
            _num(d["zero_point"]),
            d["saturated"],
            _num(d["saturation_ratio"]),
            d["zeroed"],
            _num(d["zeroed_ratio"]),
            _rest(d, cls),
        )

    def to_dict(self) -> dict[str, Any]:
        return _emit([(f.name, getattr(self, f.name)) for f in fields(self) if f.name != "extra"], self.extra)


# The scalar metrics, in the document's order (also the DataFrame's metric columns).
METRIC_FIELDS = (
    "elements",
    "deviating",
    "deviation_ratio",
    "max_abs_error",
    "mean_abs_error",
    "rmse",
    "max_rel_error",
    "mean_rel_error",
    "p50_rel_error",
    "p99_rel_error",
    "infinite_rel_error",
    "cosine",
    "sqnr_db",
    "ref_nan",
    "ref_inf",
    "cand_nan",
    "cand_inf",
    "nonfinite_introduced",
)


@dataclass(frozen=True)
class Metrics:
    """A tensor's comparison metrics (definitions: docs/metrics.md). Undefined values are NaN."""

    elements: int
    deviating: int
    deviation_ratio: float
    max_abs_error: float
    mean_abs_error: float
    rmse: float
    max_rel_error: float
    mean_rel_error: float
    p50_rel_error: float
    p99_rel_error: float
    infinite_rel_error: int | None
    cosine: float
    sqnr_db: float
    ref_nan: int
    ref_inf: int
    cand_nan: int
    cand_inf: int
    nonfinite_introduced: int
    range: RangeRisk
    histograms: dict[str, Any] | None = None  # relative error and |reference| histograms (not in local metrics)
    quant: QuantStats | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Metrics:
        scalars = {name: _num(d.get(name)) for name in METRIC_FIELDS}
        return cls(
            **scalars,
            range=RangeRisk.from_dict(d["range"]),
            histograms=d.get("histograms"),
            quant=QuantStats.from_dict(d["quant"]) if "quant" in d else None,
            extra=_rest(d, cls),
        )

    def to_dict(self) -> dict[str, Any]:
        pairs: list[tuple[str, Any]] = [(name, getattr(self, name)) for name in METRIC_FIELDS]
        pairs.append(("range", self.range.to_dict()))
        pairs.append(("histograms", self.histograms))
        pairs.append(("quant", self.quant.to_dict() if self.quant else None))
        return _emit(pairs, self.extra)


@dataclass(frozen=True)
class Attribution:
    """A layer's error split into local (the layer alone on the reference's inputs) and inherited."""

    status: str  # ok | pinned | fp32 | not attributable
    why: str | None = None
    local: Metrics | None = None  # status ok: the layer's own error
    local_verdict: str | None = None
    inherited_share: float | None = None  # share of the error power that came from upstream (None: undefined)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Attribution:
        local = Metrics.from_dict(d["local"]) if "local" in d else None
        share = _num(d.get("inherited_share"))
        return cls(d["status"], d.get("why"), local, d.get("local_verdict"), share, _rest(d, cls))

    def to_dict(self) -> dict[str, Any]:
        pairs: list[tuple[str, Any]] = [("status", self.status), ("why", self.why)]
        always: tuple[str, ...] = ()
        if self.local is not None:  # a local result always states its share, null when undefined
            pairs += [
                ("local", self.local.to_dict()),
                ("local_verdict", self.local_verdict),
                ("inherited_share", self.inherited_share),
            ]
            always = ("inherited_share",)
        return _emit(pairs, self.extra, always)


@dataclass(frozen=True)
class LayerResult:
    """One compared tensor: the layer (ONNX node) that produced it, its metrics, limits and verdict."""

    tensor: str  # the ONNX tensor name (the original model's)
    node: str
    op_type: str
    index: int  # position of the node in network order
    shape: tuple[int, ...]
    dtype_reference: str
    dtype_candidate: str
    stored_candidate: str | None
    execution: str  # native | emulated | pinned | unquantized | n/a
    rel_error_threshold: float
    abs_floor: float | None
    metrics: Metrics
    weights: dict[str, Any] | None
    prequant_metrics: Metrics | None  # quantized runs: the value before the tensor's Q/DQ pair
    limits: Limits
    verdict: str  # pass | fail
    failures: tuple[str, ...]  # the limits it breaks, in words
    weight_note: str | None = None
    attribution: Attribution | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The layer: its node's name (the tensor's when no node produced it)."""
        return self.node or self.tensor

    @property
    def op(self) -> str:
        return self.op_type

    @property
    def reasons(self) -> tuple[str, ...]:
        """Why the layer fails, one sentence per broken limit (empty when it passes)."""
        return self.failures

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LayerResult:
        return cls(
            tensor=d["tensor"],
            node=d["node"],
            op_type=d["op_type"],
            index=d["index"],
            shape=tuple(d["shape"]),
            dtype_reference=d["dtype_reference"],
            dtype_candidate=d["dtype_candidate"],
            stored_candidate=d.get("stored_candidate"),
            execution=d["execution"],
            rel_error_threshold=_num(d["rel_error_threshold"]),
            abs_floor=_num(d.get("abs_floor")),
            metrics=Metrics.from_dict(d["metrics"]),
            weights=d.get("weights"),
            prequant_metrics=Metrics.from_dict(d["prequant_metrics"]) if "prequant_metrics" in d else None,
            limits=Limits(**{k: _num(v) for k, v in d["limits"].items()}),
            verdict=d["verdict"],
            failures=tuple(d["failures"]),
            weight_note=d.get("weight_note"),
            attribution=Attribution.from_dict(d["attribution"]) if "attribution" in d else None,
            extra=_rest(d, cls),
        )

    def to_dict(self) -> dict[str, Any]:
        pairs: list[tuple[str, Any]] = [
            (name, getattr(self, name))
            for name in (
                "tensor",
                "node",
                "op_type",
                "index",
                "shape",
                "dtype_reference",
                "dtype_candidate",
                "stored_candidate",
                "execution",
                "rel_error_threshold",
                "abs_floor",
            )
        ]
        pairs += [
            ("metrics", self.metrics.to_dict()),
            ("weights", self.weights),
            ("prequant_metrics", self.prequant_metrics.to_dict() if self.prequant_metrics else None),
            ("limits", self.limits.to_json()),
            ("verdict", self.verdict),
            ("failures", list(self.failures)),
            ("weight_note", self.weight_note),
            ("attribution", self.attribution.to_dict() if self.attribution else None),
        ]
        return _emit(pairs, self.extra)


@dataclass(frozen=True)
class RunRecord:
    """How a run executed, as its dump recorded it (backend, precision, native/emulated, device, versions)."""

    backend: str
    precision: str
    execution: str  # native | emulated | mixed
    versions: dict[str, str] | None = None
    device: str | None = None
    notes: tuple[str, ...] | None = None
    tool_version: str | None = None
    model_digest: str | None = None
    audit: dict[str, Any] | None = None  # the backend's precision audit (TensorRT's engine inspector)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunRecord:
        notes = tuple(d["notes"]) if "notes" in d else None
        return cls(
            d["backend"],
            d["precision"],
            d["execution"],
            d.get("versions"),
            d.get("device"),
            notes,
            d.get("tool_version"),
            d.get("model_digest"),
            d.get("audit"),
            _rest(d, cls),
        )

    def to_dict(self) -> dict[str, Any]:
        pairs = [(f.name, getattr(self, f.name)) for f in fields(self) if f.name != "extra"]
        return _emit([(k, list(v) if k == "notes" and v is not None else v) for k, v in pairs], self.extra)


@dataclass(frozen=True)
class Comparison:
    """One candidate run against the reference: its verdict, first failing layer and every compared layer."""

    reference: str
    candidate: str
    reference_run: RunRecord
    candidate_run: RunRecord
    samples: int
    format: str
    format_limits: dict[str, Any]
    verdict: str
    first_failing_layer: str | None
    first_failing_tensor: str | None
    failing_layers: int
    worst_layer: str | None
    worst_deviation_ratio: float | None
    layers: tuple[LayerResult, ...]
    not_observable: tuple[str, ...]  # tensors with no value in one of the runs, not compared
    attribution_note: str | None = None
    not_observable_reasons: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    def layer(self, name: str) -> LayerResult:
        """The result for a tensor, or for the (first output of the) node of that name."""
        for layer in self.layers:
            if layer.tensor == name:
                return layer
        for layer in self.layers:
            if layer.node == name:
                return layer
        raise KeyError(f"{name!r} is not a compared tensor or layer of {self.candidate}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Comparison:
        return cls(
            reference=d["reference"],
            candidate=d["candidate"],
            reference_run=RunRecord.from_dict(d["reference_run"]),
            candidate_run=RunRecord.from_dict(d["candidate_run"]),
            samples=d["samples"],
            format=d["format"],
            format_limits=dict(d["format_limits"]),
            verdict=d["verdict"],
            first_failing_layer=d["first_failing_layer"],
            first_failing_tensor=d.get("first_failing_tensor"),
            failing_layers=d.get("failing_layers", sum(x["verdict"] == "fail" for x in d["layers"])),
            worst_layer=d.get("worst_layer"),
            worst_deviation_ratio=_num(d.get("worst_deviation_ratio")),
            layers=tuple(LayerResult.from_dict(x) for x in d["layers"]),
            not_observable=tuple(d["not_observable"]),
            attribution_note=d.get("attribution_note"),
            not_observable_reasons=dict(d.get("not_observable_reasons", {})),
            extra=_rest(d, cls),
        )

    def to_dict(self) -> dict[str, Any]:
        pairs: list[tuple[str, Any]] = [
            ("reference", self.reference),
            ("candidate", self.candidate),
            ("reference_run", self.reference_run.to_dict()),
            ("candidate_run", self.candidate_run.to_dict()),
            ("samples", self.samples),
            ("format", self.format),
            ("format_limits", self.format_limits),
            ("verdict", self.verdict),
            ("first_failing_layer", self.first_failing_layer),
            ("first_failing_tensor", self.first_failing_tensor),
            ("failing_layers", self.failing_layers),
            ("worst_layer", self.worst_layer),
            ("worst_deviation_ratio", self.worst_deviation_ratio),
            ("layers", [x.to_dict() for x in self.layers]),
            ("not_observable", list(self.not_observable)),
            ("attribution_note", self.attribution_note),
            ("not_observable_reasons", self.not_observable_reasons),
        ]
        nullable = ("first_failing_layer", "first_failing_tensor", "worst_layer", "worst_deviation_ratio")
        return _emit(pairs, self.extra, always=nullable)


@dataclass(frozen=True)
class ExperimentRecord:
    name: str
    config_digest: str
    overrides: tuple[str, ...]  # the --set expressions applied before validation
    config: str | None = None  # the config path as given (absent from the report stage's cached output)
    description: str | None = None
    config_data: dict[str, Any] | None = None  # the config as validated (what `layerscope diff` compares)
    notes: tuple[str, ...] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ExperimentRecord:
        return cls(
            name=d["name"],
            config_digest=d["config_digest"],
            overrides=tuple(d["overrides"]),
            config=d.get("config"),
            description=d.get("description"),
            config_data=d.get("config_data"),
            notes=tuple(d["notes"]) if "notes" in d else None,
            extra=_rest(d, cls),
        )

    def to_dict(self) -> dict[str, Any]:
        pairs: list[tuple[str, Any]] = [
            ("config", self.config),
            ("name", self.name),
            ("description", self.description),
            ("config_digest", self.config_digest),
            ("overrides", list(self.overrides)),
            ("config_data", self.config_data),
            ("notes", list(self.notes) if self.notes is not None else None),
        ]
        return _emit(pairs, self.extra)


@dataclass(frozen=True)
class ModelRecord:
    origin: dict[str, Any]  # path, builtin (with options) or zoo, as configured
    digest: str  # the ONNX bytes and every external data file
    producer: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelRecord:
        return cls(dict(d["origin"]), d["digest"], d.get("producer"), _rest(d, cls))

    def to_dict(self) -> dict[str, Any]:
        return _emit([("origin", self.origin), ("digest", self.digest), ("producer", self.producer)], self.extra)


@dataclass(frozen=True)
class RunSettings:
    """A run as configured: backend, precision, resolved options and the layers pinned to FP32."""

    backend: str
    precision: str
    pinned: tuple[str, ...]
    options: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunSettings:
        options = dict(d["options"]) if "options" in d else None
        return cls(d["backend"], d["precision"], tuple(d["pinned"]), options, _rest(d, cls))

    def to_dict(self) -> dict[str, Any]:
        pairs = [("backend", self.backend), ("precision", self.precision), ("options", self.options)]
        return _emit([*pairs, ("pinned", list(self.pinned))], self.extra)


@dataclass(frozen=True)
class StageRecord:
    status: str  # ran | cached | failed | skipped | not-needed
    key: str
    seconds: float | None = None
    reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StageRecord:
        return cls(d["status"], d["key"], d.get("seconds"), d.get("reason"), _rest(d, cls))

    def to_dict(self) -> dict[str, Any]:
        pairs = [("status", self.status), ("seconds", self.seconds), ("key", self.key), ("reason", self.reason)]
        return _emit(pairs, self.extra)


@dataclass(frozen=True)
class Execution:
    """How the invocation that wrote the report ran: per stage whether it ran or came from the cache."""

    stages: dict[str, StageRecord]
    cache: str | None = None
    started: str | None = None
    finished: str | None = None
    seconds: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Execution:
        stages = {sid: StageRecord.from_dict(s) for sid, s in d["stages"].items()}
        return cls(stages, d.get("cache"), d.get("started"), d.get("finished"), d.get("seconds"), _rest(d, cls))

    def to_dict(self) -> dict[str, Any]:
        pairs: list[tuple[str, Any]] = [("stages", {sid: s.to_dict() for sid, s in self.stages.items()})]
        pairs += [("cache", self.cache), ("started", self.started), ("finished", self.finished)]
        return _emit([*pairs, ("seconds", self.seconds)], self.extra)


@dataclass(frozen=True)
class Report:
    """One experiment's result: the overall verdict, provenance, and a :class:`Comparison` per candidate."""

    verdict: str  # pass | fail
    experiment: ExperimentRecord
    model: ModelRecord
    inputs: dict[str, dict[str, Any]]  # per input, what its digest is made of
    samples: int
    runs: dict[str, RunSettings]
    reference: str
    candidates: tuple[str, ...]
    libraries: dict[str, str]
    comparisons: tuple[Comparison, ...]
    calibration: dict[str, Any] | None = None
    execution: Execution | None = None
    schema_version: int = 1
    extra: dict[str, Any] = field(default_factory=dict)
    # Where the report's files are (json, md, html), when it was written or read; not part of the document.
    files: dict[str, Path] = field(default_factory=dict, compare=False, repr=False)

    _ALIASES: ClassVar[set[str]] = {"schema"}  # a key of the document that is no field: it is constant

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    def comparison(self, candidate: str) -> Comparison:
        for c in self.comparisons:
            if c.candidate == candidate:
                return c
        raise KeyError(f"no comparison of {candidate!r}; candidates: {', '.join(self.candidates)}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, files: Mapping[str, Path] | None = None) -> Report:
        """The typed report of a report.json document (validate it first: see :func:`.read.load_report`)."""
        return cls(
            verdict=d["verdict"],
            experiment=ExperimentRecord.from_dict(d["experiment"]),
            model=ModelRecord.from_dict(d["model"]),
            inputs={k: dict(v) for k, v in d["inputs"].items()},
            samples=d["samples"],
            runs={k: RunSettings.from_dict(v) for k, v in d["runs"].items()},
            reference=d["reference"],
            candidates=tuple(d["candidates"]),
            libraries=dict(d["libraries"]),
            comparisons=tuple(Comparison.from_dict(c) for c in d["comparisons"]),
            calibration=d.get("calibration"),
            execution=Execution.from_dict(d["execution"]) if "execution" in d else None,
            schema_version=d["schema_version"],
            extra=_rest(d, cls),
            files=dict(files or {}),
        )

    def to_dict(self) -> dict[str, Any]:
        """The report.json document."""
        pairs: list[tuple[str, Any]] = [
            ("schema", SCHEMA),
            ("schema_version", self.schema_version),
            ("verdict", self.verdict),
            ("experiment", self.experiment.to_dict()),
            ("model", self.model.to_dict()),
            ("inputs", self.inputs),
            ("samples", self.samples),
            ("runs", {k: v.to_dict() for k, v in self.runs.items()}),
            ("reference", self.reference),
            ("candidates", list(self.candidates)),
            ("libraries", self.libraries),
            ("calibration", self.calibration),
            ("comparisons", [c.to_dict() for c in self.comparisons]),
            ("execution", self.execution.to_dict() if self.execution else None),
        ]
        return _emit(pairs, self.extra)

    def to_json(self) -> str:
        """report.json's text, as layerscope writes it."""
        return dumps(self.to_dict())

    def to_pandas(self) -> Any:
        """One row per (comparison, layer) with flat numeric columns; see :func:`.table.to_pandas`."""
        from layerscope.pipelines.reports.table import to_pandas

        return to_pandas(self)
