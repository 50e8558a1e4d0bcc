"""compare[candidate]: per-layer metrics of a candidate dump against the reference dump.

Key: both dump keys and the metric settings (per-layer relative-error threshold and denominator floor,
the candidate format's limits for the range-risk counts). Verdict limits (max deviation ratio, cosine,
...) are not part of it: changing them reruns only the report. Tensors are compared in parallel: a large one
streamed one sample at a time, small ones in batches (each read whole, one metrics kernel call per batch).
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from layerscope.pipelines.lowering.formats import FORMATS
from layerscope.pipelines.stages.dump import DUMP_FILE
from layerscope.runner.codeversion import code_version
from layerscope.runner.errors import StageError
from layerscope.runner.graph import Stage, StageContext
from layerscope.runner.hashing import canonical_json
from layerscope.runner.jsonio import write_json

if TYPE_CHECKING:
    from layerscope.pipelines.dumps import DumpReader, TensorMeta
    from layerscope.pipelines.experiment import Experiment, RunSpec
    from layerscope.pipelines.metrics.stats import MetricConfig, TensorStats

RUN_ATTRS = (
    "backend",
    "precision",
    "execution",
    "versions",
    "device",
    "notes",
    "tool_version",
    "model_digest",
    "audit",
)


def stage_id(candidate: str) -> str:
    return f"compare[{candidate}]"


def metric_settings(exp: Experiment, run: RunSpec) -> dict[str, Any]:
    fmt = FORMATS[run.precision]
    # A quantized format's own limits say nothing about values before scaling: its range risk is the
    # saturation/zeroing by each tensor's scale, counted from the Q/DQ parameters instead.
    limits = {k: None for k in fmt.limits()} if fmt.quantized else fmt.limits()
    producer = exp.model.summary.producer_of()
    per_tensor = {}
    for t in exp.tensors:
        node = producer[t].name if t in producer else t
        lim = exp.thresholds.for_layer(node)
        per_tensor[t] = {"rel_error": lim.rel_error, "abs_floor": lim.abs_floor}
    return {"format": fmt.name, "limits": limits, "per_tensor": per_tensor}


def key_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """:func:`metric_settings` as a stage's key holds them: each distinct per-tensor setting once with its tensors
    (``per_tensor_by_value``: ``[[setting, [tensors, sorted]], ...]`` ordered by the setting's canonical JSON),
    the same information as one entry per tensor. Digesting 8,000 tensors' entries, and reading them back from
    manifests and the stage state, was ~0.2 s of every warm rerun (issue 14)."""
    groups: dict[tuple[Any, ...], tuple[dict[str, Any], list[str]]] = {}
    for tensor, setting in settings["per_tensor"].items():
        # The exact type and repr tell values apart as canonical JSON does (1 and 1.0, True and 1 stay apart).
        same = tuple((name, type(v).__name__, repr(v)) for name, v in setting.items())
        groups.setdefault(same, (setting, []))[1].append(tensor)
    ordered = sorted(((canonical_json(v), v, ts) for v, ts in groups.values()), key=lambda g: g[0])
    rest = {k: v for k, v in settings.items() if k != "per_tensor"}
    return {**rest, "per_tensor_by_value": [[v, sorted(ts)] for _, v, ts in ordered]}


def subgraph_tensors(exp: Experiment) -> dict[str, str]:
    """Tensors computed inside the subgraphs (If branches, Loop bodies) of the selected nodes, with the reason they
    cannot be compared: a runtime returns only the main graph's values."""
    selected = set(exp.tensors)
    out: dict[str, str] = {}
    for node in exp.model.summary.nodes:
        if node.subgraph_tensors and any(t in selected for t in node.outputs):
            why = (
                f"computed inside the subgraph of {node.op_type} node {node.name!r}; only main-graph values can be read"
            )
            out.update({t: why for t in node.subgraph_tensors if t not in selected})
    return out


def make(exp: Experiment, candidate: RunSpec, ref_dump: str, cand_dump: str) -> Stage:
    settings = metric_settings(exp, candidate)
    inside = subgraph_tensors(exp)

    def action(ctx: StageContext) -> None:
        from layerscope.pipelines.dumps import DumpReader

        with (
            DumpReader(ctx.inputs["reference"].file(DUMP_FILE)) as ref,
            DumpReader(ctx.inputs["candidate"].file(DUMP_FILE)) as cand,
        ):
            if ref.samples != cand.samples:
                raise StageError(f"reference has {ref.samples} samples, candidate {cand.samples}")
            _same_inputs(ref, cand, ref_dump, cand_dump)
            ref_tensors = ref.tensors()
            cand_by_name = {t.onnx_name: t for t in cand.tensors()}
            # A tensor with no elements has nothing to compare: every metric of it would be undefined.
            empty = {t.onnx_name for t in ref_tensors if 0 in t.shape}
            pairs = [
                (t, cand_by_name[t.onnx_name])
                for t in ref_tensors
                if t.onnx_name in cand_by_name and t.onnx_name not in empty
            ]
            missing = [t.onnx_name for t in ref_tensors if t.onnx_name not in cand_by_name]
            reasons = _not_observable(ref, cand, missing)
            for t in sorted(empty):
                reasons.setdefault(t, "the tensor has no elements (a dimension of 0): nothing to compare")
            for t, why in inside.items():
                reasons.setdefault(t, why)
            missing += [t for t in reasons if t not in missing]
            for r, c in pairs:
                if r.shape != c.shape:
                    raise StageError(
                        f"tensor {r.onnx_name!r}: reference shape {list(r.shape)} vs candidate {list(c.shape)}"
                    )
            ctx.progress.start(len(pairs) * ref.samples, f"compare {candidate.name}")

            def job(batch: list[tuple[TensorMeta, TensorMeta]]) -> list[dict[str, Any]]:
                r, c = batch[0]
                if not (_small(r) and _small(c)):
                    return [_layer(r, c, ref, cand, _config(settings, r.onnx_name, c.quant), ctx)]
                return _layers(batch, ref, cand, settings, ctx)

            # Two workers: one reads HDF5 while the other's metrics kernel (which uses every core) computes.
            with ThreadPoolExecutor(max_workers=2) as pool:
                layers = [layer for done in pool.map(job, _batches(pairs, ref.samples)) for layer in done]
            doc = document(
                {k: ref.json_attr(k) for k in RUN_ATTRS if k in ref.attrs},
                {k: cand.json_attr(k) for k in RUN_ATTRS if k in cand.attrs},
                ref.samples,
                settings,
                layers,
                missing,
                reasons,
            )
        write_json(ctx.out_dir / "compare.json", doc)
        ctx.result.update({"layers": len(layers)})

    return Stage(
        id=stage_id(candidate.name),
        kind="compare",
        params={**key_settings(settings), **({"subgraph_tensors": inside} if inside else {})},
        action=action,
        version=code_version(__name__),
        deps={"reference": ref_dump, "candidate": cand_dump},
        description=f"compare {candidate.name}",
        imports=("numpy", "h5py", "layerscope.pipelines.metrics.kernel"),
    )


def document(
    reference: dict[str, Any],
    candidate: dict[str, Any],
    samples: int,
    settings: dict[str, Any],
    layers: list[dict[str, Any]],
    missing: list[str],
    reasons: dict[str, str],
) -> dict[str, Any]:
    """compare.json, as the compare stage and the stream stage (the streaming mode) both write it."""
    return {
        "reference": reference,
        "candidate": candidate,
        "samples": samples,
        "format": settings["format"],
        "format_limits": settings["limits"],
        "layers": layers,
        "not_observable": missing,
        "not_observable_reasons": reasons,
    }


def _same_inputs(ref: DumpReader, cand: DumpReader, ref_id: str, cand_id: str) -> None:
    """Both runs were fed the same values. Inputs from a loader script can change without its key changing
    (data it reads but does not declare in ``depends``, or randomness): comparing such runs would be a lie."""
    a, b = ref.attrs.get("inputs_fed_sha256"), cand.attrs.get("inputs_fed_sha256")
    if a is not None and b is not None and a != b:
        raise StageError(
            f"{ref_id} and {cand_id} were fed different input values although their inputs' keys are equal: "
            "a loader script that is not deterministic, or that reads files not listed in its depends",
            hint="list what the script reads under source.depends, seed its randomness, then run with --force dump",
        )


def _not_observable(ref: DumpReader, cand: DumpReader, missing: list[str]) -> dict[str, str]:
    """Why tensors have no value: the reasons the dumps recorded (a TensorRT engine that fused them away)."""
    reasons: dict[str, str] = {}
    for role, dump in (("reference", ref), ("candidate", cand)):
        for tensor, why in (dump.json_attr("not_observable") or {}).items():
            reasons.setdefault(tensor, f"{role}: {why}")
    for tensor in missing:
        reasons.setdefault(tensor, "candidate: not in the dump")
    return reasons


def _config(settings: dict[str, Any], tensor: str, quant: dict[str, Any] | None = None) -> MetricConfig:
    from layerscope.pipelines.metrics.stats import MetricConfig, QuantParams

    t = settings["per_tensor"].get(tensor, {"rel_error": 0.1, "abs_floor": 0.0})
    lim = settings["limits"]
    q = QuantParams(quant["type"], quant["scale"], quant["zero_point"], quant["qmin"], quant["qmax"]) if quant else None
    return MetricConfig(
        t["rel_error"], t["abs_floor"], lim["max"], lim["smallest_normal"], lim["smallest_subnormal"], quant=q
    )


# Tensors of at most this many elements per sample (one kernel chunk) and no prequant value are compared in
# batches of up to BATCH_ELEMENTS elements (all samples, one side): each batch is a few reads per tensor and one
# kernel call. At 8,000 tensors of 64 values the per-tensor calls, reads and merges were most of compare's time.
SMALL_ELEMENTS = 1 << 16
BATCH_ELEMENTS = 1 << 21
BATCH_TENSORS = 1024


def _small(t: TensorMeta) -> bool:
    return not t.has_prequant and 0 < math.prod(t.shape) <= SMALL_ELEMENTS


def _batches(pairs: list[tuple[TensorMeta, TensorMeta]], samples: int) -> list[list[tuple[TensorMeta, TensorMeta]]]:
    """The pairs in order, small ones grouped (consecutive, up to the limits), every other one alone."""
    out: list[list[tuple[TensorMeta, TensorMeta]]] = []
    open_batch: list[tuple[TensorMeta, TensorMeta]] = []
    size = 0
    for pair in pairs:
        if not (_small(pair[0]) and _small(pair[1])):
            out.append([pair])
            open_batch, size = [], 0  # the next small one starts a batch after it: the layers keep their order
            continue
        n = math.prod(pair[0].shape) * samples
        if open_batch and (size + n > BATCH_ELEMENTS or len(open_batch) >= BATCH_TENSORS):
            open_batch, size = [], 0
        if not open_batch:
            out.append(open_batch)
        open_batch.append(pair)
        size += n
    return out


def _layers(
    batch: list[tuple[TensorMeta, TensorMeta]],
    ref: DumpReader,
    cand: DumpReader,
    settings: dict[str, Any],
    ctx: StageContext,
) -> list[dict[str, Any]]:
    """compare.json layers of small tensors: each read whole (every sample in one read), all computed in one
    kernel call per pair of dtypes; the same numbers as :func:`_layer` (a test holds them equal)."""
    import numpy as np

    from layerscope.pipelines.metrics.batch import many
    from layerscope.pipelines.metrics.stats import sparse_counts_rows

    # Packed tensors (dump format 2): one read of the columns the batch spans, sliced per tensor.
    refs = ref.read_many([r.onnx_name for r, _ in batch])
    cands = cand.read_many([c.onnx_name for _, c in batch])
    items = [
        (rv, cv, _config(settings, r.onnx_name, c.quant)) for (r, c), rv, cv in zip(batch, refs, cands, strict=True)
    ]
    results = many(items, threads=ctx.threads)
    ctx.progress.advance(len(batch) * ref.samples)
    # The histograms' sparse form for the whole batch at once (it was most of each result's cost).
    rel = sparse_counts_rows(np.stack([s.rel_hist for s in results]))
    ref_abs = sparse_counts_rows(np.stack([s.abs_hist for s in results]))
    return [
        layer_doc(_fields(r, c), stats, None, c.weights, sparse=(rh, ah))
        for (r, c), stats, rh, ah in zip(batch, results, rel, ref_abs, strict=True)
    ]


def _fields(r: TensorMeta, c: TensorMeta) -> dict[str, Any]:
    return {
        "tensor": r.onnx_name,
        "node": r.node,
        "op_type": r.op_type,
        "index": r.index,
        "shape": list(r.shape),
        "dtype_reference": r.dtype_executed,
        "dtype_candidate": c.dtype_executed,
        "stored_candidate": c.stored,
        "execution": c.execution,
    }


def _layer(
    r: TensorMeta, c: TensorMeta, ref: DumpReader, cand: DumpReader, config: MetricConfig, ctx: StageContext
) -> dict[str, Any]:
    from layerscope.pipelines.metrics.stats import TensorStats

    stats = TensorStats(config, threads=ctx.threads)
    pre = TensorStats(replace(config, quant=None), threads=ctx.threads) if c.has_prequant else None
    for i in range(ref.samples):
        # read(): a tensor with a prequant value may be small, so packed (dump format 2)
        reference = ref.read(r.onnx_name, i)
        stats.update(reference, cand.read(c.onnx_name, i))
        if pre is not None:
            pre.update(reference, cand.read(c.onnx_name, i, group="prequant"))
        ctx.progress.advance()
    return layer_doc(_fields(r, c), stats, pre, c.weights)


def layer_doc(
    fields: dict[str, Any],
    stats: TensorStats,
    pre: TensorStats | None,
    weights: dict[str, Any] | None,
    *,
    sparse: tuple[dict[str, Any], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A layer of compare.json (compare and stream stages): its fields, settings, metrics, and the metrics of the
    value before its Q/DQ pair (quantized runs)."""
    extra: dict[str, Any] = {}
    if pre is not None:
        prequant = pre.result()
        prequant.pop("histograms")
        extra["prequant_metrics"] = prequant
    return {
        **fields,
        "rel_error_threshold": stats.config.rel_error,
        "abs_floor": stats.config.abs_floor,
        "metrics": stats.result(sparse=sparse),
        **({"weights": weights} if weights else {}),
        **extra,
    }
