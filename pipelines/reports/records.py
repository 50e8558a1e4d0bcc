"""The records a compared tensor carries in a report: its :class:`Metrics` (with range risk and Q/DQ statistics)
and its :class:`Attribution`, plus the helpers every report record uses to read and write its JSON.

Field names are report.json's keys; numbers written as "inf", "-inf" and "nan" are floats here and strings
again in ``to_dict``; an undefined value stays None (null); keys this version does not model are kept in
``extra`` so that ``to_dict`` loses nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from layerscope.runner.jsonio import finite_json


def number(value: Any) -> Any:
    """A number as written ("inf", "-inf", "nan" -> float; None and real numbers as they are)."""
    return float(value) if isinstance(value, str) else value


def unmodelled(d: Mapping[str, Any], cls: type) -> dict[str, Any]:
    """The keys of ``d`` that ``cls`` does not model (kept, so that to_dict loses nothing)."""
    known = ({f.name for f in fields(cls)} - {"extra", "files"}) | getattr(cls, "_ALIASES", set())
    return {k: v for k, v in d.items() if k not in known}


def emit(pairs: list[tuple[str, Any]], extra: Mapping[str, Any], always: tuple[str, ...] = ()) -> dict[str, Any]:
    """A JSON object from (key, value) pairs in order: None values left out unless the key is in ``always``."""
    out = {k: v for k, v in pairs if v is not None or k in always}
    out.update(extra)
    return out


class Record:
    """Base of the report's records. ``raw()`` is the record's JSON object with floats as they are (each record
    builds it from its parts' ``raw()``); ``to_dict()`` converts non-finite numbers once, for the whole tree."""

    def raw(self) -> dict[str, Any]:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """This record as report.json has it (non-finite numbers as "inf", "-inf", "nan")."""
        converted: dict[str, Any] = finite_json(self.raw())
        return converted


@dataclass(frozen=True)
class RangeRisk(Record):
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
            number(d["min_abs_nonzero"]),
            number(d["max_abs"]),
            unmodelled(d, cls),
        )

    def raw(self) -> dict[str, Any]:
        pairs = [(f.name, getattr(self, f.name)) for f in fields(self) if f.name != "extra"]
        return emit(pairs, self.extra, always=("min_abs_nonzero",))


@dataclass(frozen=True)
class QuantStats(Record):
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
            number(d["scale"]),
            number(d["zero_point"]),
            d["saturated"],
            number(d["saturation_ratio"]),
            d["zeroed"],
            number(d["zeroed_ratio"]),
            unmodelled(d, cls),
        )

    def raw(self) -> dict[str, Any]:
        return emit([(f.name, getattr(self, f.name)) for f in fields(self) if f.name != "extra"], self.extra)


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
    "infinite_errors",
    "cosine",
    "sqnr_db",
    "ref_nan",
    "ref_inf",
    "cand_nan",
    "cand_inf",
    "nonfinite_introduced",
)


@dataclass(frozen=True)
class Metrics(Record):
    """A tensor's comparison metrics (definitions: docs/metrics.md). Undefined values are None (null); reports
    written before 0.2 state some of them as NaN."""

    elements: int
    deviating: int
    deviation_ratio: float | None
    max_abs_error: float | None
    mean_abs_error: float | None
    rmse: float | None
    max_rel_error: float | None
    mean_rel_error: float | None
    p50_rel_error: float | None
    p99_rel_error: float | None
    infinite_rel_error: int | None
    infinite_errors: int | None  # elements whose candidate became NaN/Inf (absent from older reports)
    cosine: float | None
    sqnr_db: float | None
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
        scalars = {name: number(d.get(name)) for name in METRIC_FIELDS}
        return cls(
            **scalars,
            range=RangeRisk.from_dict(d["range"]),
            histograms=d.get("histograms"),
            quant=QuantStats.from_dict(d["quant"]) if "quant" in d else None,
            extra=unmodelled(d, cls),
        )

    def raw(self) -> dict[str, Any]:
        pairs: list[tuple[str, Any]] = [(name, getattr(self, name)) for name in METRIC_FIELDS]
        pairs.append(("range", self.range.raw()))
        pairs.append(("histograms", self.histograms))
        pairs.append(("quant", self.quant.raw() if self.quant else None))
        # An undefined metric is stated as null; only the counts older reports lack are left out when absent.
        always = tuple(name for name in METRIC_FIELDS if name not in ("infinite_rel_error", "infinite_errors"))
        return emit(pairs, self.extra, always)


@dataclass(frozen=True)
class Attribution(Record):
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
        share = number(d.get("inherited_share"))
        return cls(d["status"], d.get("why"), local, d.get("local_verdict"), share, unmodelled(d, cls))

    def raw(self) -> dict[str, Any]:
        pairs: list[tuple[str, Any]] = [("status", self.status), ("why", self.why)]
        always: tuple[str, ...] = ()
        if self.local is not None:  # a local result always states its share, null when undefined
            pairs += [
                ("local", self.local.raw()),
                ("local_verdict", self.local_verdict),
                ("inherited_share", self.inherited_share),
            ]
            always = ("inherited_share",)
        return emit(pairs, self.extra, always)
