"""How much memory and disk a run will take, estimated from the model's shapes before anything runs.

Sizes used to be found out by running: an input of 1×3×100000×100000 passed ``validate`` and died at dump
with a 224 GiB ``MemoryError``. The estimate multiplies what a run must hold: every selected tensor of one
sample (the dump streams samples, but one sample's tensors are all outputs of the session at once), the
inputs of one sample (random inputs are drawn in float64), the weights (the session and a lowered copy), and
on disk the dumps (each selected tensor × samples, per run) and the lowered models. Tensor shapes come from
ONNX shape inference with the config's input shapes in place of the model's symbolic ones; the result is
memoised in the cache by model digest and shapes, so a cached rerun does not infer again. A tensor whose size
inference cannot tell is counted as zero and said to be unknown: the estimate is a floor, and it refuses only
what cannot fit even so.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from layerscope.runner.codeversion import code_version
from layerscope.runner.errors import UsageError
from layerscope.runner.files import atomic_write
from layerscope.runner.hashing import digest
from layerscope.runner.resources import available_memory, free_disk, human

if TYPE_CHECKING:
    from layerscope.pipelines.experiment.spec import Experiment

_ITEMSIZE = {
    "float64": 8,
    "int64": 8,
    "uint64": 8,
    "float32": 4,
    "int32": 4,
    "uint32": 4,
    "float16": 2,
    "bfloat16": 2,
    "int16": 2,
    "uint16": 2,
}


@dataclass(frozen=True)
class Estimate:
    """What one run of an experiment holds in memory and writes to disk (bytes)."""

    input_bytes: int  # one sample of every input, as the model takes it
    tensor_bytes: int  # one sample of every selected tensor
    weight_bytes: int  # the model file and its external data
    samples: int
    runs: int  # runs that dump (reference and candidates)
    unknown: int  # selected tensors whose size shape inference could not tell

    @property
    def dump_bytes(self) -> int:
        """One run's dump."""
        return self.tensor_bytes * self.samples

    @property
    def memory(self) -> int:
        """Peak of one stage: the session's weights and a lowered copy, one sample's inputs (float64 while drawn,
        then as fed) and its selected tensors twice (outputs of the session, and what the dump writes)."""
        return 2 * self.weight_bytes + 3 * self.input_bytes + 2 * self.tensor_bytes

    def disk(self, dumping: int | None = None) -> int:
        """Disk for ``dumping`` runs' dumps (default: every run) and their lowered models."""
        n = self.runs if dumping is None else dumping
        return n * (self.dump_bytes + self.weight_bytes)

    def describe(self) -> str:
        floor = f" (at least: {self.unknown} tensors of unknown size)" if self.unknown else ""
        return f"needs ~{human(self.memory)} of memory per stage and ~{human(self.disk())} of disk{floor}"


def _elements(shape: Iterable[Any]) -> int | None:
    dims = list(shape)
    if any(not isinstance(d, int) or d < 0 for d in dims):
        return None
    return math.prod(dims)


def estimate(exp: Experiment) -> Estimate:
    """The estimate for ``exp`` (shape inference memoised in its cache)."""
    input_bytes = 0
    for spec in exp.inputs:
        n = _elements(spec.shape) if spec.shape is not None else None
        input_bytes += (n or 0) * _ITEMSIZE.get(spec.dtype, 1)
    sizes = _tensor_sizes(exp)
    unknown = sum(1 for t in exp.tensors if sizes.get(t) is None)
    tensor_bytes = sum(sizes.get(t) or 0 for t in exp.tensors)
    weights = _file_size(exp.model.path) + sum(
        _file_size(exp.model.path.parent / loc) for loc in exp.model.summary.external_data
    )
    runs = len({exp.reference, *exp.candidates})
    return Estimate(input_bytes, tensor_bytes, weights, exp.samples, runs, unknown)


def check(exp: Experiment, est: Estimate, *, dumping: int | None = None) -> None:
    """Refuse (UsageError, exit 2) a run that cannot fit in memory or, for ``dumping`` runs to dump (default:
    every run), on the cache's disk; the message gives the estimate and what is free."""
    memory = available_memory()
    if memory is not None and est.memory > memory:
        raise UsageError(
            f"{exp.source}: this experiment needs ~{human(est.memory)} of memory per stage "
            f"(one sample's inputs {human(est.input_bytes)}, its {len(exp.tensors)} selected tensors "
            f"{human(est.tensor_bytes)}, weights {human(est.weight_bytes)}); {human(memory)} is available",
            hint="use smaller input shapes, select fewer layers, or a machine with more memory",
        )
    need = est.disk(dumping)
    free = free_disk(exp.cache.root)
    if free is not None and need > free:
        raise UsageError(
            f"{exp.source}: the dumps of this experiment need ~{human(need)} of disk in {exp.cache.root} "
            f"({est.samples} samples × {human(est.tensor_bytes)} per run); {human(free)} is free there",
            hint="use fewer samples or layers, free space (`layerscope cache gc`), or another --cache-dir",
        )


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _tensor_sizes(exp: Experiment) -> dict[str, int | None]:
    """Bytes of one sample of each tensor of the model, at the config's input shapes (memoised)."""
    shapes = {s.name: list(s.shape) if s.shape is not None else None for s in exp.inputs}
    summary = exp.model.summary
    declared = {t.name: t.shape for t in summary.inputs}
    if all(declared.get(n) is not None and list(declared[n] or ()) == s for n, s in shapes.items()):
        # The model's own (static) shapes are the config's: the summary already knows every size.
        return {name: _bytes(t.dtype, t.shape) for name, t in summary.tensors.items()}
    key = digest({"model": exp.model.digest, "shapes": shapes, "code": code_version(__name__)})
    memo = exp.cache.base / "memo" / "estimate" / f"{key}.json"
    try:
        return dict(json.loads(memo.read_text()))
    except (OSError, ValueError):
        pass
    sizes = _infer(exp.model.path, shapes)
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(memo, json.dumps(sizes))
    except OSError:
        pass  # a memo: a read-only cache only means inferring again next time
    return sizes


def _bytes(dtype: str | None, shape: Any) -> int | None:
    if dtype is None or shape is None:
        return None
    n = _elements(shape)
    return None if n is None else n * _ITEMSIZE.get(dtype, 1)


def _infer(path: Path, shapes: dict[str, list[int] | None]) -> dict[str, int | None]:
    import onnx

    from layerscope.pipelines.models.summary import ELEM_TYPES, _tensor_info

    model = onnx.load(str(path), load_external_data=False)
    for vi in model.graph.input:
        shape = shapes.get(vi.name)
        if shape is None or not vi.type.HasField("tensor_type"):
            continue
        dims = vi.type.tensor_type.shape.dim
        del dims[:]
        for d in shape:
            dims.add().dim_value = int(d)
    del model.graph.value_info[:]
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception:  # best effort, as for the summary: what is unknown is counted as unknown
        inferred = model
    g = inferred.graph
    out: dict[str, int | None] = {}
    for vi in [*g.input, *g.value_info, *g.output]:
        info = _tensor_info(vi)
        out[vi.name] = _bytes(info.dtype, info.shape)
    for init in g.initializer:
        out[init.name] = _bytes(ELEM_TYPES.get(init.data_type), tuple(init.dims))
    return out
