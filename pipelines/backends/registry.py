"""Backend registry. Backends are registered explicitly by name and imported only when used."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from layerscope.runner.errors import UsageError

if TYPE_CHECKING:
    from layerscope.pipelines.backends.base import Backend

_REGISTRY: dict[str, tuple[str, str]] = {
    "onnxruntime": ("layerscope.pipelines.backends.onnxruntime", "OnnxRuntimeBackend"),
    "tensorrt": ("layerscope.pipelines.backends.tensorrt", "TensorRTBackend"),
}
_INSTANCES: dict[str, Backend] = {}


def names() -> list[str]:
    return list(_REGISTRY)


def get(name: str) -> Backend:
    if name not in _REGISTRY:
        raise UsageError(f"unknown backend {name!r}; known: {', '.join(_REGISTRY)}")
    if name not in _INSTANCES:
        module, cls = _REGISTRY[name]
        _INSTANCES[name] = getattr(importlib.import_module(module), cls)()
    return _INSTANCES[name]


def availability(name: str) -> tuple[bool, str]:
    return get(name).availability()


def table() -> list[tuple[str, bool, str, str]]:
    """(name, available, the device or why not, versions) per backend: what `layerscope backends` shows."""
    rows = []
    for name in names():
        b = get(name)
        ok, why = b.availability()
        versions = ", ".join(f"{k} {v}" for k, v in b.versions().items())
        rows.append((name, ok, why or b.device(), versions))
    return rows
