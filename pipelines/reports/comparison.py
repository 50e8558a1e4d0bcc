"""One candidate run against the reference in a report: :class:`Comparison`, its :class:`LayerResult` per compared
tensor, and the :class:`RunRecord` of how each run executed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from layerscope.pipelines.experiment.spec import Limits
from layerscope.pipelines.reports.records import Attribution, Metrics, Record, emit, number, unmodelled


@dataclass(frozen=True)
class LayerResult(Record):
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
            rel_error_threshold=number(d["rel_error_threshold"]),
            abs_floor=number(d.get("abs_floor")),
            metrics=Metrics.from_dict(d["metrics"]),
            weights=d.get("weights"),
            prequant_metrics=Metrics.from_dict(d["prequant_metrics"]) if "prequant_metrics" in d else None,
            limits=Limits(**{k: number(v) for k, v in d["limits"].items()}),
            verdict=d["verdict"],
            failures=tuple(d["failures"]),
            weight_note=d.get("weight_note"),
            attribution=Attribution.from_dict(d["attribution"]) if "attribution" in d else None,
            extra=unmodelled(d, cls),
        )

    def raw(self) -> dict[str, Any]:
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
            ("metrics", self.metrics.raw()),
            ("weights", self.weights),
            ("prequant_metrics", self.prequant_metrics.raw() if self.prequant_metrics else None),
            ("limits", self.limits.to_json()),
            ("verdict", self.verdict),
            ("failures", list(self.failures)),
            ("weight_note", self.weight_note),
            ("attribution", self.attribution.raw() if self.attribution else None),
        ]
        return emit(pairs, self.extra)


@dataclass(frozen=True)
class RunRecord(Record):
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
            unmodelled(d, cls),
        )

    def raw(self) -> dict[str, Any]:
        pairs = [(f.name, getattr(self, f.name)) for f in fields(self) if f.name != "extra"]
        return emit([(k, list(v) if k == "notes" and v is not None else v) for k, v in pairs], self.extra)


@dataclass(frozen=True)
class Comparison(Record):
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
    # Task-level agreement (compare.classification / compare.func): per output top-1 agreement and top-k
    # overlap, the user scores, the task limits, verdict and failures; the report schema documents its keys.
    task: dict[str, Any] | None = None
    # The headline's root cause: layers failing locally, worst local SQNR first (None: a report before 0.2).
    root_causes: tuple[dict[str, Any], ...] | None = None
    root_cause_note: str | None = None  # why the root cause is unknown, or that more layers fail locally
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    @property
    def top1_agreement(self) -> dict[str, float | None]:
        """Per classifier output, the share of rows whose top-1 class is the reference's (empty without
        ``compare.classification``)."""
        found = (self.task or {}).get("classification", {})
        return {name: number(a["top1_agreement"]) for name, a in found.items()}

    @property
    def task_scores(self) -> dict[str, float | None]:
        """Per score of the user compare function, its mean over samples (empty without ``compare.func`` or when
        it failed: ``task["scores_error"]`` says why)."""
        return {name: number(s["mean"]) for name, s in (self.task or {}).get("scores", {}).items()}

    @property
    def root_cause(self) -> str | None:
        """The layer with the worst local error among those that fail on their own (None: unknown or none)."""
        return self.root_causes[0]["layer"] if self.root_causes else None

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
            worst_deviation_ratio=number(d.get("worst_deviation_ratio")),
            layers=tuple(LayerResult.from_dict(x) for x in d["layers"]),
            not_observable=tuple(d["not_observable"]),
            attribution_note=d.get("attribution_note"),
            not_observable_reasons=dict(d.get("not_observable_reasons", {})),
            task=d.get("task"),
            root_causes=tuple(dict(x) for x in d["root_causes"]) if "root_causes" in d else None,
            root_cause_note=d.get("root_cause_note"),
            extra=unmodelled(d, cls),
        )

    def raw(self) -> dict[str, Any]:
        pairs: list[tuple[str, Any]] = [
            ("reference", self.reference),
            ("candidate", self.candidate),
            ("reference_run", self.reference_run.raw()),
            ("candidate_run", self.candidate_run.raw()),
            ("samples", self.samples),
            ("format", self.format),
            ("format_limits", self.format_limits),
            ("verdict", self.verdict),
            ("root_causes", list(self.root_causes) if self.root_causes is not None else None),
            ("root_cause_note", self.root_cause_note),
            ("first_failing_layer", self.first_failing_layer),
            ("first_failing_tensor", self.first_failing_tensor),
            ("failing_layers", self.failing_layers),
            ("worst_layer", self.worst_layer),
            ("worst_deviation_ratio", self.worst_deviation_ratio),
            ("layers", [x.raw() for x in self.layers]),
            ("not_observable", list(self.not_observable)),
            ("attribution_note", self.attribution_note),
            ("not_observable_reasons", self.not_observable_reasons),
            ("task", self.task),
        ]
        nullable = ("first_failing_layer", "first_failing_tensor", "worst_layer", "worst_deviation_ratio")
        return emit(pairs, self.extra, always=nullable)
