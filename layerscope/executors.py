"""Where an experiment's stages run: the choice behind ``--executor local|dask`` and ``--scheduler``.

The keys of a plan are computed by this process, so a Dask worker must run the same code and libraries for
its results to be what the keys describe, and must see the files the stages read (the model, input folders)
at the same paths. This module says what those are; :mod:`layerscope.runner.cluster` checks every worker
against them before anything is submitted.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from layerscope.runner.execute import ExecutorChoice

if TYPE_CHECKING:
    from layerscope.pipelines.experiment import Experiment

# Libraries whose version changes what a stage computes (the backends' versions are in the keys as well).
_LIBRARIES = ("numpy", "onnx", "onnxruntime", "h5py", "ml_dtypes", "numba")


def choose(executor: str | None, scheduler: str | None, experiments: Iterable[Experiment]) -> ExecutorChoice:
    """The executor for ``--executor``/``--scheduler`` (and ``DASK_SCHEDULER_ADDRESS``), with the paths its
    workers must see and the environment they must share."""
    choice = ExecutorChoice.parse(executor, scheduler)
    if choice.kind == "local":
        return choice
    return choice.needing(sorted({p for exp in experiments for p in read_paths(exp)}), worker_environment)


def read_paths(exp: Experiment) -> list[str]:
    """Files and folders the stages of ``exp`` open by path: the model and the inputs named by path."""
    paths = [os.fspath(exp.model.path)]
    for spec in exp.inputs:
        value = spec.source.get("path")  # a file source's path is absolute once loaded
        if isinstance(value, (str, os.PathLike)):
            paths.append(os.fspath(value))
    return paths


def worker_environment() -> dict[str, Any]:
    """What must be equal here and on every worker: layerscope's own source and the libraries' versions.
    Module-level and argument-free so that Dask can send it to the workers and call it there."""
    from layerscope.runner.cluster import source_digest

    env: dict[str, Any] = {
        "layerscope source": source_digest("layerscope", "layerscope.runner", "layerscope.pipelines"),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    from layerscope.runner.versions import installed_version

    env.update({name: installed_version(name) for name in _LIBRARIES})
    return env
