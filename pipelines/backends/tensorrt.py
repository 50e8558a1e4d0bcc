"""TensorRT backend: registered so configs can name it and get a precise answer about availability.

Building and running engines is the TensorRT issue's work; until then this backend reports itself as not
available, saying whether TensorRT is missing (the usual case: it needs an NVIDIA GPU and the
``tensorrt`` package) or present but not yet supported by this version of layerscope.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any

from layerscope.runner.errors import StageError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from layerscope.pipelines.backends.base import Session
    from layerscope.pipelines.experiment import RunSpec
    from layerscope.pipelines.models import ResolvedModel
    from layerscope.runner.graph import StageContext

_ALTERNATIVE = "`layerscope backends` lists what is available; the onnxruntime backend runs anywhere without a GPU"


class TensorRTBackend:
    name = "tensorrt"

    def availability(self) -> tuple[bool, str]:
        if importlib.util.find_spec("tensorrt") is None:
            return False, (
                "backend tensorrt needs TensorRT (pip package tensorrt, with an NVIDIA GPU and driver), "
                f"which is not installed here; {_ALTERNATIVE}"
            )
        return False, f"this version of layerscope cannot build TensorRT engines yet; {_ALTERNATIVE}"

    def versions(self) -> dict[str, str]:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return {"tensorrt": version("tensorrt")}
        except PackageNotFoundError:
            return {"tensorrt": "missing"}

    def device(self) -> str:
        return "GPU"

    def build_material(self, run: RunSpec) -> dict[str, Any]:
        return {"versions": self.versions()}

    def dump_material(self, run: RunSpec) -> dict[str, Any]:
        return {}

    def build(self, ctx: StageContext, model: ResolvedModel, run: RunSpec) -> None:
        raise StageError(self.availability()[1])

    def open(
        self, build_dir: Path, model: ResolvedModel, run: RunSpec, tensors: Sequence[str], threads: int
    ) -> Session:
        raise StageError(self.availability()[1])
