"""build[run]: lower the model to the run's precision plan and prepare what the backend runs.

Key: the model digest (bytes and external data), the precision plan (format, execution, pinned layers),
the backend and what it says changes its artifact (library versions, options, and for TensorRT the GPU
and the tensors marked in the engine), and this code's version. Not the model's path, not the run's
name, not the layer selection for backends where marking tensors does not change the artifact.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from layerscope.pipelines import backends
from layerscope.pipelines.backends.base import BuildRequest, code_modules, worker_resources
from layerscope.pipelines.lowering import PrecisionPlan
from layerscope.runner.codeversion import code_version
from layerscope.runner.errors import StageError
from layerscope.runner.graph import Stage, StageContext

if TYPE_CHECKING:
    from layerscope.pipelines.experiment import Experiment, RunSpec


def stage_id(run: str) -> str:
    return f"build[{run}]"


def make(exp: Experiment, run: RunSpec, calibration: str | None = None) -> Stage:
    backend = backends.get(run.backend)
    plan = PrecisionPlan(run.precision, str(run.options.get("execution", "native")), run.pinned)
    request = BuildRequest(exp.tensors, exp.inputs, exp.cache.base / "shared" / run.backend)

    def action(ctx: StageContext) -> None:
        _ensure_model_unchanged(exp)
        backend.build(ctx, exp.model, run, request)

    return Stage(
        id=stage_id(run.name),
        kind="build",
        params={
            "model": exp.model.digest,
            "plan": plan.to_json(),
            "backend": run.backend,
            "backend_build": backend.build_material(run, request),
        },
        action=action,
        # The backend is chosen at run time (the registry imports it by name): its module's closure joins ours.
        version=code_version(__name__, *code_modules(backend)),
        deps={"calibration": calibration} if calibration else {},
        description=f"build {run.name} ({run.backend}, {run.precision})",
        imports=("numpy", "onnx", "onnxruntime", "onnxruntime.transformers.float16", "ml_dtypes"),
        resources=worker_resources(run.backend),
    )


def _ensure_model_unchanged(exp: Experiment) -> None:
    """The model file must still be the one the plan was keyed on (it may change while a run is under way)."""
    from layerscope.pipelines.models import load_summary

    current, _ = load_summary(exp.model.path, exp.cache)
    if current != exp.model.digest:
        raise StageError(f"the model {exp.model.path} changed while the run was under way; run again")
