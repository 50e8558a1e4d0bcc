"""An input's source as loading builds it: defaults filled in, paths resolved, what can be checked without
running user code checked (every problem goes to the collector with its pointer).

Every path a source names (array files, image folders and globs, loader scripts and the files they depend on)
goes through the loading's ``resolve`` -- the same rule as the model's path and the ``file:`` source: relative
to the config. Image folders and globs are listed here, so the files an input reads (and their digests) are
known before anything runs; loader scripts are only located, never imported. With ``deep`` (``validate``)
array files and Polygraphy JSON are opened to check counts, shapes and dtypes, and every image used is opened
to check that it decodes.
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import TYPE_CHECKING, Any

from layerscope.pipelines.experiment.spec import CalibrationSpec, InputSpec
from layerscope.runner.errors import UsageError
from layerscope.runner.paths import fixed_prefix, leaving
from layerscope.runner.spec import pointer

if TYPE_CHECKING:
    from layerscope.pipelines.experiment.phases import Loading

IMAGE_DEFAULTS = {
    "resize": "stretch",
    "interpolation": "bilinear",
    "layout": "NCHW",
    "channels": "RGB",
    "mean": 0.0,
    "std": 1.0,
}


def build_input(
    ld: Loading,
    name: str,
    spec: dict[str, Any],
    ptr: str,
    *,
    model_shape: tuple[int, ...] | None,
    samples: int,
) -> InputSpec:
    """An input (or a calibration input) from its config entry; ``model_shape``: the model's static shape of
    this input (the default shape), ``samples``: how many samples the run reads from it."""
    source = dict(spec["source"])
    dtype = spec.get("dtype", "float32")
    shape = tuple(spec["shape"]) if "shape" in spec else model_shape
    if "random" in source:
        source = _random(ld, source, ptr, dtype)
        if shape is None:
            ld.problems.add(ptr, "shape is required for a random source (the model's input shape is not static)")
    elif "images" in source:
        source = _images(ld, source, ptr, shape, dtype, samples)
    elif "script" in source:
        source = _script(ld, source, ptr)
    else:
        source = _file(ld, source, ptr)
    return InputSpec(name, shape, dtype, source)


def _random(ld: Loading, source: dict[str, Any], ptr: str, dtype: str) -> dict[str, Any]:
    relevant = {"normal": ("mean", "std"), "uniform": ("low", "high")}[source["random"]]
    defaults = {"mean": 0.0, "std": 1.0, "low": 0.0, "high": 1.0}
    if dtype.startswith(("int", "uint")):
        defaults["high"] = 255.0  # integer inputs: byte values / token ids, valid for typical models
    source = {"seed": 0, **{k: defaults[k] for k in relevant}, **source}
    for k in set(defaults) - set(relevant):
        if k in source:
            ld.problems.add(f"{ptr}/source/{k}", f"{k} does not apply to a {source['random']} distribution", key=True)
    if source["random"] == "uniform" and source["high"] <= source["low"]:
        ld.problems.add(f"{ptr}/source/high", "high must be greater than low")
    return source


def _file(ld: Loading, source: dict[str, Any], ptr: str) -> dict[str, Any]:
    try:
        file = ld.resolve(source["file"])
    except UsageError as exc:
        ld.problems.add(f"{ptr}/source/file", exc.message)
        return source
    if not file.is_file():
        ld.problems.add(f"{ptr}/source/file", f"input file not found: {file}")
    if file.suffix == ".npz" and "key" not in source:
        ld.problems.add(f"{ptr}/source", "key is required for an .npz file (the array name inside it)")
    if file.suffix in (".h5", ".hdf5") and "dataset" not in source:
        ld.problems.add(f"{ptr}/source", "dataset is required for an HDF5 file")
    for key, suffixes in (("key", (".npz",)), ("dataset", (".h5", ".hdf5"))):
        if key in source and file.suffix not in suffixes:
            ld.problems.add(f"{ptr}/source/{key}", f"{key} applies to {' and '.join(suffixes)} files only", key=True)
    return {**source, "file": str(file)}


def _script(ld: Loading, source: dict[str, Any], ptr: str) -> dict[str, Any]:
    from layerscope.pipelines.experiment.userscript import split_script

    written, function = split_script(source["script"], source.get("function"), "load_data")
    out: dict[str, Any] = {"script": written, "function": function}
    try:
        script = ld.resolve(written)
    except UsageError as exc:
        ld.problems.add(f"{ptr}/source/script", exc.message)
        return out
    if not script.is_file():
        ld.problems.add(f"{ptr}/source/script", f"loader script not found: {script}")
    out["script"] = str(script)
    depends: list[str] = []
    for i, entry in enumerate(source.get("depends", [])):
        files, problems = matches(ld, entry)
        for message in problems:
            ld.problems.add(f"{ptr}/source/depends/{i}", message)
        depends += files
    if depends:
        out["depends_files"] = sorted(dict.fromkeys(depends))
    return out


def matches(ld: Loading, entry: str) -> tuple[list[str], list[str]]:
    """Files a ``depends`` entry names: a file, a folder (every file below it) or a glob."""
    try:
        target = ld.resolve(entry)
    except UsageError as exc:
        return [], [exc.message]
    if glob.has_magic(entry):
        found = sorted(p for p in glob.glob(str(target), recursive=True) if Path(p).is_file())
        if not found:
            return [], [f"no file matches {target}"]
        return leaving(entry, fixed_prefix(target) or Path("/"), found)
    if target.is_dir():
        return leaving(entry, target, sorted(str(p) for p in target.rglob("*") if p.is_file()))
    if target.is_file():
        return [str(target)], []
    return [], [f"not found: {target}"]


def _images(
    ld: Loading, source: dict[str, Any], ptr: str, shape: tuple[int, ...] | None, dtype: str, samples: int
) -> dict[str, Any]:
    from layerscope.pipelines.experiment.images import check_preprocessing, geometry, list_images, peek

    integer = dtype not in ("float32", "float16", "float64")
    out = {**IMAGE_DEFAULTS, "scale": 1.0 if integer else "1/255", **source}
    for sub, message in check_preprocessing(out, shape, dtype):
        ld.problems.add(f"{ptr}/source{sub}" if sub else ptr, message)
    written = source["images"]
    if isinstance(written, dict):
        files, problems = _dataset_files(ld, written)
    else:
        files, problems = list_images([written] if isinstance(written, str) else list(written), ld.resolve)
    for message in problems:
        ld.problems.add(f"{ptr}/source/images", message)
    if problems or shape is None or len(shape) not in (3, 4):
        out["files"] = files
        return out
    batch = geometry(shape, out["layout"])[0]
    needed = samples * batch
    if files and len(files) < needed:
        per = f" ({samples} samples of {batch})" if batch > 1 else ""
        ld.problems.add(
            f"{ptr}/source/images",
            f"{len(files)} image{'s' if len(files) != 1 else ''} found; the config asks for {needed}{per}",
        )
    out["files"] = files[:needed]
    if ld.deep:
        for i, (path, _) in enumerate(out["files"]):
            why = peek(path)
            if why is not None:
                ld.problems.add(f"{ptr}/source/images", f"cannot read image {path} (sample {i // batch}): {why}")
    return out


def _dataset_files(ld: Loading, written: dict[str, Any]) -> tuple[list[tuple[str, str]], list[str]]:
    from layerscope.pipelines.experiment.datasets import DATASETS, dataset_dir, fetched

    name = written["dataset"]
    if not fetched(ld.cache.root, name):
        return [], [f"data set {name!r} is not downloaded yet; run `layerscope data fetch {name}`"]
    folder = dataset_dir(ld.cache.root, name)
    known = [f.name for f in DATASETS[name].files]
    chosen = written.get("files", known)
    unknown = [f for f in chosen if f not in known]
    if unknown:
        return [], [f"data set {name!r} has no {', '.join(map(repr, unknown))} (it has: {', '.join(known)})"]
    return [(str(folder / f), f) for f in chosen], []


def check_calibration_sources(ld: Loading, calibration: CalibrationSpec | None) -> None:
    """``validate``: the calibration's own file sources hold its samples (the evaluation's were checked)."""
    if calibration is None or calibration.cache is not None or not ld.deep:
        return
    from layerscope.pipelines.experiment.inputs import check_source

    given = (ld.section("calibration") or {}).get("inputs") or {}
    for spec in calibration.inputs:
        if "file" not in spec.source:
            continue
        ptr = pointer("calibration", "inputs", spec.name) if spec.name in given else "/calibration/samples"
        try:
            check_source(spec, calibration.samples)
        except UsageError as exc:
            where = "" if spec.name in given else f" (input {spec.name!r} calibrates on its evaluation samples)"
            ld.problems.add(f"{ptr}/source" if spec.name in given else ptr, exc.message + where)
