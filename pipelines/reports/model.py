"""The report as typed data: :class:`Report` -> :class:`Comparison` -> :class:`LayerResult` -> :class:`Metrics`.

report.json (``schemas/report.schema.json``) is the document; these frozen dataclasses are a typed view of it.
Field names are the document's keys, so the schema documents both. ``Report.from_dict(doc).raw()``
gives the document back exactly, key order included, for every report layerscope writes: numbers written
as "inf", "-inf" and "nan" are floats here and strings again in ``to_dict``, an undefined value stays None
(null), and keys this version does not model are kept in ``extra``. Parts with an open shape (run options,
input material, histograms, the TensorRT audit) stay plain dicts. :mod:`.comparison` holds a comparison's records
and :mod:`.records` a layer's metrics; :mod:`.read` loads and validates a report file; :mod:`.table` flattens a
report into a pandas DataFrame.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from layerscope.pipelines.reports.comparison import Comparison
from layerscope.pipelines.reports.records import Record, emit, unmodelled
from layerscope.runner.jsonio import dumps

SCHEMA = "layerscope-report"


@dataclass(frozen=True)
class ExperimentRecord(Record):
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
            extra=unmodelled(d, cls),
        )

    def raw(self) -> dict[str, Any]:
        pairs: list[tuple[str, Any]] = [
            ("config", self.config),
            ("name", self.name),
            ("description", self.description),
            ("config_digest", self.config_digest),
            ("overrides", list(self.overrides)),
            ("config_data", self.config_data),
            ("notes", list(self.notes) if self.notes is not None else None),
        ]
        return emit(pairs, self.extra)


@dataclass(frozen=True)
class ModelRecord(Record):
    origin: dict[str, Any]  # path, builtin (with options) or zoo, as configured
    digest: str  # the ONNX bytes and every external data file
    producer: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelRecord:
        return cls(dict(d["origin"]), d["digest"], d.get("producer"), unmodelled(d, cls))

    def raw(self) -> dict[str, Any]:
        return emit([("origin", self.origin), ("digest", self.digest), ("producer", self.producer)], self.extra)


@dataclass(frozen=True)
class RunSettings(Record):
    """A run as configured: backend, precision, resolved options and the layers pinned to FP32."""

    backend: str
    precision: str
    pinned: tuple[str, ...]
    options: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunSettings:
        options = dict(d["options"]) if "options" in d else None
        return cls(d["backend"], d["precision"], tuple(d["pinned"]), options, unmodelled(d, cls))

    def raw(self) -> dict[str, Any]:
        pairs = [("backend", self.backend), ("precision", self.precision), ("options", self.options)]
        return emit([*pairs, ("pinned", list(self.pinned))], self.extra)


@dataclass(frozen=True)
class StageRecord(Record):
    status: str  # ran | cached | failed | skipped | not-needed
    key: str
    seconds: float | None = None
    reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StageRecord:
        return cls(d["status"], d["key"], d.get("seconds"), d.get("reason"), unmodelled(d, cls))

    def raw(self) -> dict[str, Any]:
        pairs = [("status", self.status), ("seconds", self.seconds), ("key", self.key), ("reason", self.reason)]
        return emit(pairs, self.extra)


@dataclass(frozen=True)
class Execution(Record):
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
        return cls(stages, d.get("cache"), d.get("started"), d.get("finished"), d.get("seconds"), unmodelled(d, cls))

    def raw(self) -> dict[str, Any]:
        pairs: list[tuple[str, Any]] = [("stages", {sid: s.raw() for sid, s in self.stages.items()})]
        pairs += [("cache", self.cache), ("started", self.started), ("finished", self.finished)]
        return emit([*pairs, ("seconds", self.seconds)], self.extra)


@dataclass(frozen=True)
class Report(Record):
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
    schema_version: int = 3  # 2: never packed; 1: histogram counts as {bin: count} (read.READABLE)
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
            extra=unmodelled(d, cls),
            files=dict(files or {}),
        )

    def raw(self) -> dict[str, Any]:
        """The report.json document with floats as they are (``to_dict()``: as written)."""
        pairs: list[tuple[str, Any]] = [
            ("schema", SCHEMA),
            ("schema_version", self.schema_version),
            ("verdict", self.verdict),
            ("experiment", self.experiment.raw()),
            ("model", self.model.raw()),
            ("inputs", self.inputs),
            ("samples", self.samples),
            ("runs", {k: v.raw() for k, v in self.runs.items()}),
            ("reference", self.reference),
            ("candidates", list(self.candidates)),
            ("libraries", self.libraries),
            ("calibration", self.calibration),
            ("comparisons", [c.raw() for c in self.comparisons]),
            ("execution", self.execution.raw() if self.execution else None),
        ]
        return emit(pairs, self.extra)

    def to_json(self) -> str:
        """report.json's text, as layerscope writes it."""
        return dumps(self.raw())  # dumps converts non-finite numbers

    def to_pandas(self) -> Any:
        """One row per (comparison, layer) with flat numeric columns; see :func:`.table.to_pandas`."""
        from layerscope.pipelines.reports.table import to_pandas

        return to_pandas(self)
