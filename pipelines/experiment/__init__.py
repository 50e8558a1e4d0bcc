"""The validated experiment: its dataclasses (:mod:`.spec`), loading a config in phases (:mod:`.load`), input
samples (:mod:`.inputs`) and layer selection (:mod:`.selection`)."""

from layerscope.pipelines.experiment.load import (
    ENV_CACHE,
    FileResolver,
    load_experiment,
    load_experiment_data,
    load_experiment_text,
    resolve_cache_dir,
)
from layerscope.pipelines.experiment.spec import (
    CalibrationSpec,
    Experiment,
    InputSpec,
    Limits,
    RunSpec,
    TaskLimits,
    TaskSpec,
    Thresholds,
)

__all__ = [
    "ENV_CACHE",
    "CalibrationSpec",
    "Experiment",
    "FileResolver",
    "InputSpec",
    "Limits",
    "RunSpec",
    "TaskLimits",
    "TaskSpec",
    "Thresholds",
    "load_experiment",
    "load_experiment_data",
    "load_experiment_text",
    "resolve_cache_dir",
]
