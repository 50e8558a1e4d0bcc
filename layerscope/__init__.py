"""layerscope: per-layer accuracy analysis of reduced-precision inference against an FP32 reference.

The Python API (:mod:`layerscope.api`), re-exported here::

    import layerscope

    report = layerscope.run("configs/unet-fp16.yaml", overrides=["samples=2"])
    df = report.to_pandas()  # one row per (comparison, layer)

``run``, ``plan``, ``diff``, ``fix``, ``load_report``, ``export``, ``sweep`` and ``diff_sweeps`` return typed
results (:class:`Report`, :class:`Plan`, :class:`Diff`, :class:`FixResult`, :class:`Exported`,
:class:`SweepResult`, :class:`SweepDiff`); errors are :class:`LayerscopeError` subclasses carrying the command
line's exit codes. Importing this package is cheap on purpose: the API and everything it needs (numpy, onnx,
onnxruntime) are imported on first use. The generic engine lives in :mod:`layerscope.runner` (repository folder
``runner/``), the domain in :mod:`layerscope.pipelines` (``pipelines/``), the command line in
:mod:`layerscope.cli`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from layerscope._version import __version__
from layerscope.runner.errors import LayerscopeError, RunError, SpecError, StageError, UsageError

if TYPE_CHECKING:
    from layerscope.api import diff, diff_sweeps, export, fix, load_report, plan, run, sweep
    from layerscope.pipelines.reports.comparison import Comparison, LayerResult
    from layerscope.pipelines.reports.model import Report
    from layerscope.pipelines.reports.read import ReportError
    from layerscope.pipelines.reports.records import Metrics
    from layerscope.results import Diff, Exported, FixResult, Plan, SweepDiff, SweepExperiment, SweepResult

__all__ = [
    "Comparison",
    "Diff",
    "Exported",
    "FixResult",
    "LayerResult",
    "LayerscopeError",
    "Metrics",
    "Plan",
    "Report",
    "ReportError",
    "RunError",
    "SpecError",
    "StageError",
    "SweepDiff",
    "SweepExperiment",
    "SweepResult",
    "UsageError",
    "__version__",
    "diff",
    "diff_sweeps",
    "export",
    "fix",
    "load_report",
    "plan",
    "run",
    "sweep",
]

# Name -> the module that defines it, imported when the name is first used.
_LAZY = {
    **dict.fromkeys(("diff", "diff_sweeps", "export", "fix", "load_report", "plan", "run", "sweep"), "api"),
    **dict.fromkeys(
        ("Diff", "Exported", "FixResult", "Plan", "SweepDiff", "SweepExperiment", "SweepResult"), "results"
    ),
    **dict.fromkeys(("Comparison", "LayerResult"), "pipelines.reports.comparison"),
    "Metrics": "pipelines.reports.records",
    "Report": "pipelines.reports.model",
    "ReportError": "pipelines.reports.read",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f"layerscope.{_LAZY[name]}"), name)
        globals()[name] = value  # once imported, an ordinary attribute
        return value
    raise AttributeError(f"module 'layerscope' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
