"""The validated experiment as frozen dataclasses: inputs, runs, thresholds, calibration, the experiment.

What :mod:`.load` builds from a config once every check passed; the stages read nothing else. Nothing here
imports a runtime, so these types are cheap to import (the report model reuses :class:`Limits`).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from layerscope.runner.hashing import digest

if TYPE_CHECKING:
    from layerscope.pipelines.experiment.selection import Selection
    from layerscope.pipelines.models.resolve import ResolvedModel
    from layerscope.runner.cache import Cache
    from layerscope.runner.spec import Document


@dataclass(frozen=True)
class InputSpec:
    name: str
    shape: tuple[int, ...] | None
    dtype: str
    source: Mapping[str, Any]  # defaults filled in; a file source's path is absolute


@dataclass(frozen=True)
class RunSpec:
    name: str
    backend: str
    precision: str
    options: Mapping[str, Any]
    pinned: tuple[str, ...]  # node names pinned to FP32, network order
    overrides: Any = None  # as written, for the report


@dataclass(frozen=True)
class Limits:
    rel_error: float = 0.10
    abs_floor: float = 0.0
    max_deviation_ratio: float = 0.01
    min_cosine: float | None = None
    max_abs_error: float | None = None
    min_sqnr_db: float | None = None
    allow_nonfinite: bool = False

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class Thresholds:
    base: Limits = field(default_factory=Limits)
    layers: tuple[tuple[str, Mapping[str, Any]], ...] = ()

    def for_layer(self, node: str) -> Limits:
        """Each limit comes from the first per-layer entry that matches and sets it, else the default."""
        chosen: dict[str, Any] = {}
        for pattern, limits in self.layers:
            if fnmatch.fnmatchcase(node, pattern):
                for k, v in limits.items():
                    chosen.setdefault(k, v)
        return replace(self.base, **chosen) if chosen else self.base


@dataclass(frozen=True)
class CalibrationSpec:
    """How quantized (INT8/FP8) runs get their scales."""

    samples: int
    inputs: tuple[InputSpec, ...]
    method: str  # minmax | entropy | percentile
    percentile: float
    per_channel: bool
    cache: Path | None  # a TensorRT calibration cache to take INT8 scales from
    trt_version: str
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Experiment:
    name: str
    description: str
    source: str
    config_dir: Path
    document: Document
    config_digest: str
    model: ResolvedModel
    samples: int
    inputs: tuple[InputSpec, ...]
    selection: Selection
    tensors: tuple[str, ...]  # float tensors to dump and compare, network order
    runs: dict[str, RunSpec]
    reference: str
    candidates: tuple[str, ...]
    thresholds: Thresholds
    dump: Mapping[str, Any]
    report_formats: tuple[str, ...]
    report_dir: str
    cache: Cache
    notes: tuple[str, ...] = ()
    calibration: CalibrationSpec | None = None
    attribution: bool = True  # run each layer alone on the reference's inputs (local vs inherited error)

    def describe(self) -> str:
        """One line: the config is valid, and what it will run (``layerscope validate``)."""
        runs = ", ".join(
            f"{r.name} ({r.backend} {r.precision}{', ' + str(len(r.pinned)) + ' pinned' if r.pinned else ''})"
            for r in self.runs.values()
        )
        return (
            f"{self.source}: valid — model {self.model.display} ({len(self.model.summary.nodes)} nodes), "
            f"{len(self.tensors)} tensors selected, {self.samples} sample{'s' if self.samples != 1 else ''}, "
            f"runs: {runs}; compare {', '.join(self.candidates)} against {self.reference}"
        )

    @property
    def scope(self) -> str:
        """Identity of this experiment for remembering stage state (config location + name)."""
        return digest(
            {"config": str(self.document.path.resolve()) if self.document.path else self.source, "name": self.name}
        )[:24]
