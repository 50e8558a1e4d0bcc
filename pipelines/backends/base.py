"""The Backend protocol: what every runtime (ONNX Runtime, TensorRT, ...) provides to the stages.

A backend builds an artifact from the precision-lowered model (``build``) and opens it as a session that
returns, for one sample, the values of the requested ONNX tensors (``open``). It reports whether it can
run here and why not, its library versions and its device, and the run options that belong in the build
and dump cache keys. Backend modules import their runtime lazily, so a missing runtime costs nothing
until it is used, and then says what to install.

A backend also owns its config policy (:meth:`Backend.configure`): the defaults of its run options and
what it cannot do with a format, reported as problems located in the run's config entry.

A build gets a :class:`BuildRequest`: the tensors the dump will read (a backend that has to mark them in
its artifact, like TensorRT, keys on them; one that does not, like ONNX Runtime, ignores them), the input
specs (for shape profiles) and a cache folder for data reused across builds (tuning caches).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np

    from layerscope.pipelines.experiment import InputSpec, RunSpec
    from layerscope.pipelines.lowering.formats import Format
    from layerscope.pipelines.models import ResolvedModel
    from layerscope.runner.graph import StageContext


@dataclass(frozen=True)
class BuildRequest:
    tensors: tuple[str, ...]  # original ONNX tensor names the dump will read, network order
    inputs: tuple[InputSpec, ...]  # the experiment's inputs (shapes of one sample, sources)
    shared_dir: Path  # cache folder for data reused across builds (never part of a key)


@dataclass(frozen=True)
class OptionProblem:
    """Something a backend cannot do with a run as configured."""

    pointer: str  # JSON pointer relative to the run's entry: "/options/execution", "/precision", "/backend"
    message: str


class Session(Protocol):
    # Requested (lowered) tensor names this session cannot return, with the reason in words: a runtime
    # that fuses layers may have no value for a tensor. The dump records them instead of failing; it reads
    # this after the first ``run``, since a runtime may learn of some only then (TensorRT's debug tensors).
    unobservable: Mapping[str, str]

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...
    def close(self) -> None: ...


class Backend(Protocol):
    name: str

    def availability(self) -> tuple[bool, str]:
        """(True, "") or (False, one clear sentence saying what is missing and what to do)."""
        ...

    def versions(self) -> dict[str, str]: ...

    def configure(self, fmt: Format, options: Mapping[str, Any]) -> tuple[dict[str, Any], list[OptionProblem]]:
        """A run's options (as written) with this backend's defaults filled in for ``fmt``, and what is wrong
        with them. Called at validation, only where the backend is available."""
        ...

    def device(self) -> str: ...

    def build_material(self, run: RunSpec, request: BuildRequest) -> dict[str, Any]:
        """Run options and environment facts that change the build artifact."""
        ...

    def dump_material(self, run: RunSpec) -> dict[str, Any]:
        """Run options and environment facts that change dumped values (beyond the build)."""
        ...

    def build(self, ctx: StageContext, model: ResolvedModel, run: RunSpec, request: BuildRequest) -> None:
        """Write the build artifact (lowering.json and whatever the backend needs) into ctx.out_dir."""
        ...

    def open(
        self, build_dir: Path, model: ResolvedModel, run: RunSpec, tensors: Sequence[str], threads: int
    ) -> Session:
        """A session returning the requested *lowered* tensor names for each sample."""
        ...


def code_modules(backend: Backend) -> tuple[str, ...]:
    """The module of ``backend``: the registry imports it by name, so no import statement leads a stage to it.
    With everything it imports (runner/codeversion.py), part of the build and dump stages' code version."""
    return (type(backend).__module__,)


# Backends whose sessions run on a GPU: their stages ask a cluster for a worker with one (runner/cluster.py).
_GPU_BACKENDS = frozenset({"tensorrt"})


def worker_resources(backend: str) -> dict[str, float]:
    """What a stage running ``backend``'s sessions needs from a worker: ``{"GPU": 1}`` for TensorRT, else nothing."""
    return {"GPU": 1} if backend in _GPU_BACKENDS else {}
