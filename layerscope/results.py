"""The typed results of the Python API (:mod:`layerscope.api`) besides the report: :class:`Plan`, :class:`Diff`,
:class:`FixResult`, :class:`Exported`, :class:`SweepResult` and :class:`SweepDiff`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from layerscope.runner.errors import UsageError

if TYPE_CHECKING:
    from layerscope.pipelines.reports.model import Report


@dataclass(frozen=True)
class PlannedStage:
    id: str  # e.g. build[fp16]
    kind: str  # build, calibrate, dump, compare, attribute, report
    status: str  # cached | run | not-needed
    reason: str  # why it must run (what changed), or why it is not needed
    key: str  # the cache key: a digest of everything that can change the stage's output


@dataclass(frozen=True)
class Plan:
    """What ``run`` would do: every stage, whether it is cached or must run, and why."""

    experiment: str
    cache_dir: Path
    stages: tuple[PlannedStage, ...]

    @property
    def to_run(self) -> tuple[str, ...]:
        return tuple(s.id for s in self.stages if s.status == "run")

    @property
    def cached(self) -> bool:
        """Everything is in the cache: a run recomputes nothing."""
        return not self.to_run


@dataclass(frozen=True)
class DiffSide:
    label: str  # as given: a run directory, a report.json, a config or REV:config
    name: str  # the experiment's name
    verdict: str


@dataclass(frozen=True)
class Diff:
    """What changed between two results: config, verdicts, per-layer metrics worst first, provenance.

    The nested parts are the JSON of ``layerscope diff --format json`` (see docs/diff-and-html.md).
    """

    old: DiffSide
    new: DiffSide
    config_changes: tuple[dict[str, Any], ...]
    notes: tuple[str, ...]
    comparisons: tuple[dict[str, Any], ...]  # per candidate: verdicts, flips, changed layers worst first
    comparisons_removed: tuple[str, ...]
    comparisons_added: tuple[str, ...]
    provenance_changes: tuple[dict[str, Any], ...]
    tolerance: dict[str, float]  # per metric, how much worse counts as a regression (relative)
    regressions: tuple[str, ...]  # why the regression gate fails, one line per reason

    @property
    def regressed(self) -> bool:
        return bool(self.regressions)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Diff:
        return cls(
            old=DiffSide(**doc["old"]),
            new=DiffSide(**doc["new"]),
            config_changes=tuple(doc["config_changes"]),
            notes=tuple(doc["notes"]),
            comparisons=tuple(doc["comparisons"]),
            comparisons_removed=tuple(doc["comparisons_removed"]),
            comparisons_added=tuple(doc["comparisons_added"]),
            provenance_changes=tuple(doc["provenance_changes"]),
            tolerance=dict(doc["tolerance"]),
            regressions=tuple(doc["regressions"]),
        )

    def to_dict(self) -> dict[str, Any]:
        """The diff as JSON-ready data (non-finite numbers as floats; ``render("json")`` writes them as strings)."""
        return {
            "schema": "layerscope-diff",
            "old": vars(self.old).copy(),
            "new": vars(self.new).copy(),
            "config_changes": list(self.config_changes),
            "notes": list(self.notes),
            "comparisons": list(self.comparisons),
            "comparisons_removed": list(self.comparisons_removed),
            "comparisons_added": list(self.comparisons_added),
            "provenance_changes": list(self.provenance_changes),
            "tolerance": dict(self.tolerance),
            "regressions": list(self.regressions),
        }

    def render(self, fmt: str = "text", *, limit: int = 20) -> str:
        """``text`` (terminal), ``md`` (ready to paste in a PR) or ``json``; ``limit`` layers per comparison."""
        from layerscope.pipelines.reports import diff_render

        doc = self.to_dict()
        if fmt == "json":
            return diff_render.as_json(doc)
        if fmt == "md":
            return diff_render.markdown(doc, limit=limit)
        if fmt == "text":
            return diff_render.text(doc, limit=limit)
        raise UsageError(f"unknown diff format {fmt!r}; formats: text, md, json")


@dataclass(frozen=True)
class FixCost:
    ran: int  # stages that ran
    cached: int  # stages that came from the cache
    inference_runs: int  # dump stages that ran (each: every sample through one model)


@dataclass(frozen=True)
class FixResult:
    """A minimal set of layers to keep in FP32 so that every threshold passes, and how it was found."""

    run: str
    found: tuple[str, ...] | None  # the layers to pin; None: no set of the ranked layers passes
    minimal: bool  # removing any one layer of ``found`` fails a threshold
    base_pinned: tuple[str, ...]  # what the run pins already
    targets: tuple[str, ...]  # the tensors whose error ranked the layers
    candidates: tuple[str, ...]  # the layers ranked
    sensitivity: tuple[dict[str, Any], ...]  # per layer: error with it pinned, with only it reduced, gain
    steps: tuple[dict[str, Any], ...]  # each configuration tried, in order
    cost: FixCost
    notes: tuple[str, ...]
    snippet: str | None  # the ``overrides`` YAML to paste under the run (None when nothing passes)
    files: dict[str, Path] = field(default_factory=dict)  # md, json and (when found) yaml
    ranked_by: str = "attribution"  # or "sensitivity" when attribution is off or unavailable

    @property
    def passed(self) -> bool:
        return self.found is not None


@dataclass(frozen=True)
class Exported:
    """What :func:`layerscope.export` wrote: the files by role (``table``, ``metrics``, ``layers``) and, for
    MLflow, the id of the run it logged to."""

    format: str
    files: dict[str, Path]
    mlflow_run_id: str | None = None


@dataclass(frozen=True)
class SweepExperiment:
    """One experiment of a sweep: a config with one combination of the matrix's overrides."""

    id: str  # the config's name and the overrides' values, e.g. "unet precision=fp16"
    config: Path
    overrides: tuple[str, ...]
    status: str  # pass | fail (a threshold) | error (a stage failed: no report)
    out_dir: Path  # its report.json (and the formats its config asks for)
    report: Report | None
    error: str | None
    seconds: float  # the time of the stages it ran (a stage shared with an earlier experiment counts there)
    cached: int  # its stages that came from the cache
    shared: int  # its stages that an earlier experiment of the sweep has too (run once)


@dataclass(frozen=True)
class SweepResult:
    """``layerscope sweep``: every experiment's outcome and the summary written into ``out_dir``."""

    name: str
    verdict: str  # pass | fail | error
    out_dir: Path
    experiments: tuple[SweepExperiment, ...]
    summary: Mapping[str, Any]  # sweep.json's document
    files: Mapping[str, Path]  # the summary's files by format

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    @property
    def exit_code(self) -> int:
        """As the command line exits: 0 every threshold met, 1 one failed, 3 a stage failed."""
        return {"pass": 0, "fail": 1}.get(self.verdict, 3)


@dataclass(frozen=True)
class SweepDiff:
    """What changed between two sweep summaries, per (experiment, candidate)."""

    document: Mapping[str, Any]

    @property
    def regressed(self) -> bool:
        return bool(self.document["regressed"])

    def render(self, fmt: str = "text") -> str:
        from layerscope.sweep_summary import render_diff

        return render_diff(self.document, fmt)
