"""Helpers shared by the stages."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from layerscope.runner.errors import StageError

if TYPE_CHECKING:
    from layerscope.pipelines.experiment import Experiment


def ensure_model_unchanged(exp: Experiment) -> None:
    """The model file must still be the one the plan was keyed on (it may change while a run is under way)."""
    from layerscope.pipelines.models import load_summary

    current, _ = load_summary(exp.model.path, exp.cache)
    if current != exp.model.digest:
        raise StageError(f"the model {exp.model.path} changed while the run was under way; run again")


def finite_json(value: Any) -> Any:
    """Replace non-finite floats by the strings "inf", "-inf", "nan" (strict JSON has no such numbers)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    return value


def as_float(value: Any) -> float:
    """Inverse of finite_json for one number."""
    if isinstance(value, str):
        return float(value)
    return float(value) if value is not None else math.nan


def write_json(path: Any, value: Any) -> None:
    path.write_text(json.dumps(finite_json(value), indent=1, allow_nan=False))
