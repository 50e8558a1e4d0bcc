"""trial[...]: `fix`'s tries -- several pinned variants of one candidate judged against the reference, no dumps.

A try of the fix search is the candidate run with some layers pinned to FP32. Dumping each variant and comparing
the dumps cost the search most of its time and gigabytes of cache; here, as in the stream stage
(:mod:`.stream`), the models run sample by sample and every selected tensor's statistics are accumulated with the
compare stage's kernel (:class:`.metrics.stats.TensorStats`, the same arrays in the same order), so each
variant's ``compare.json`` is the one that dump + dump + compare write for it. The reference runs **once per
sample for all the variants of the batch**, not once per variant: a batch of k variants costs k + 1 inference
passes instead of 2k, and writes only small JSON documents (``trial-<i>.json``, one per variant, in the order
of ``variants``).

All the variants' sessions are open at once (one build each: the builds are ordinary cached build stages), so
memory holds one session per variant, one sample of the reference's selected tensors and one sample of one
variant's; the search bounds the batch size.

Key: the reference's and every variant's build keys (they hold the pins), the selected tensors, the input
digests, the sample count, the metric settings and what the backends say changes values at run time. The
thresholds are not part of it: the search judges the documents, so a threshold change reuses every try.
"""

from __future__ import annotations

import contextlib
import json
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from layerscope.pipelines import backends
from layerscope.pipelines.backends.base import code_modules, worker_resources
from layerscope.pipelines.experiment.inputs import input_material, sample_reader
from layerscope.pipelines.stages import stream
from layerscope.pipelines.stages.compare import _config, document, metric_settings, subgraph_tensors
from layerscope.pipelines.stages.dump import DUMP_FILE, requested_tensors
from layerscope.runner.codeversion import code_version
from layerscope.runner.errors import StageError
from layerscope.runner.graph import Stage, StageContext
from layerscope.runner.hashing import digest
from layerscope.runner.jsonio import write_json

if TYPE_CHECKING:
    from pathlib import Path

    from layerscope.pipelines.backends.base import Session
    from layerscope.pipelines.experiment import Experiment, RunSpec
    from layerscope.pipelines.metrics.stats import TensorStats


def stage_id(variants: list[RunSpec]) -> str:
    # named like the variants' builds (``build[fp16~3:1a2b3c4d]``), so `cache ls` folds them into "fix trials"
    run = variants[0].name.split("~")[0]
    return f"trial[{run}~{len(variants)}x:{digest([v.name for v in variants])[:12]}]"


def file_name(i: int) -> str:
    return f"trial-{i}.json"


def make(
    exp: Experiment,
    reference: RunSpec,
    variants: list[RunSpec],
    ref_build: str,
    builds: list[str],
    ref_dump: str | None = None,
) -> Stage:
    """One stage judging ``variants`` (runs of one backend and precision, differing in their pins) against
    ``reference``; ``builds`` are their build stages' ids, in the same order. ``ref_dump``: the reference's dump
    stage of the same tensors, inputs and samples (attribution's), whose values are read instead of running the
    reference: then the batch costs one inference pass per variant."""
    if not variants or len(variants) != len(builds):
        raise ValueError("a trial needs one build per variant")
    settings = metric_settings(exp, variants[0])
    inside = subgraph_tensors(exp)
    ref_backend = backends.get(reference.backend)
    cand_backend = backends.get(variants[0].backend)
    inputs = {spec.name: input_material(spec, exp.cache.digests) for spec in exp.inputs}
    roles = [f"variant{i}" for i in range(len(variants))]
    upstream = _pinned_upstream(exp, variants)

    def action(ctx: StageContext) -> None:
        from layerscope.pipelines.metrics.stats import TensorStats

        ref_low = json.loads(ctx.inputs["reference"].file("lowering.json").read_text())
        rmap = ref_low["tensors"]
        r_names, _, r_requested = requested_tensors(exp, reference, rmap)
        lows = [json.loads(ctx.inputs[role].file("lowering.json").read_text()) for role in roles]
        cmaps = [low["tensors"] for low in lows]
        requested = [requested_tensors(exp, v, cmap) for v, cmap in zip(variants, cmaps, strict=True)]
        ctx.progress.start(exp.samples * len(variants), f"try {len(variants)} pinned variants")
        with contextlib.ExitStack() as stack:
            ref_path = ctx.inputs["reference"].path
            ref: Any  # a Session, or the dump's values (the same .unobservable, values by sample)
            if ref_dump is None:
                ref = _opened(
                    stack, ref_backend.open(ref_path, exp.model, reference, r_requested, ctx.threads, spin=False)
                )
            else:
                ref = stack.enter_context(_DumpValues(ctx.inputs["reference_dump"].file(DUMP_FILE), rmap))
            sessions = [
                _opened(stack, cand_backend.open(ctx.inputs[role].path, exp.model, v, req[2], ctx.threads, spin=False))
                for role, v, req in zip(roles, variants, requested, strict=True)
            ]
            readers = {s.name: stack.enter_context(sample_reader(s, exp.samples)) for s in exp.inputs}
            stats: list[dict[str, TensorStats]] = [{} for _ in variants]
            pre: list[dict[str, TensorStats]] = [{} for _ in variants]
            pairs: list[list[tuple[str, str, str]]] = [[] for _ in variants]
            reasons: list[dict[str, str]] = [{} for _ in variants]
            shapes: dict[str, tuple[int, ...]] = {}
            stored: list[dict[str, str]] = [{} for _ in variants]
            shared: list[set[str]] = [set() for _ in variants]

            def accumulate(k: int, i: int, r_values: dict[str, Any], c_values: dict[str, Any]) -> None:
                c_pre = requested[k][1]
                for t, r_name, c_name in pairs[k]:
                    if t in shared[k]:
                        continue  # accumulated as variant upstream[k, t]'s, which has the same values
                    r, c = r_values[r_name], c_values[c_name]
                    if tuple(r.shape) != shapes[t] or r.shape != c.shape:
                        raise StageError(
                            f"tensor {t!r}, sample {i}: reference shape {list(r.shape)} vs {variants[k].name} "
                            f"{list(c.shape)} (sample 0: {list(shapes[t])})"
                        )
                    stats[k][t].update(r, c)
                    if t in pre[k]:
                        pre[k][t].update(r, c_values[c_pre[t]])
                ctx.progress.advance()

            def first_sample(k: int, session: Session, r_values: dict[str, Any], c_values: dict[str, Any]) -> None:
                """What variant ``k`` observed, and its accumulators (a runtime learns at its first run which
                tensors it cannot observe)."""
                req = requested[k]
                pairs[k], reasons[k] = stream._observed(exp, r_names, req[0], ref, session, r_values, inside)
                cmap = cmaps[k]
                for t, r_name, _ in pairs[k]:
                    shapes.setdefault(t, tuple(int(d) for d in r_values[r_name].shape))
                    stored[k][t] = str(c_values[cmap[t]["name"]].dtype)
                    same = upstream.get((k, t))
                    if same is not None and t in stats[same]:  # the same values as variant `same`'s
                        shared[k].add(t)
                        stats[k][t] = stats[same][t]
                        if t in pre[same]:
                            pre[k][t] = pre[same][t]
                        continue
                    stats[k][t] = TensorStats(_config(settings, t, cmap[t].get("quant")), threads=ctx.threads)
                    if t in req[1] and req[1][t] not in session.unobservable:
                        pre[k][t] = TensorStats(replace(stats[k][t].config, quant=None), threads=ctx.threads)

            # Like the stream stage: variant k's sample is accumulated while the next variant runs, in the order
            # the compare stage reads them (per tensor, samples in order), so the metrics are the same.
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="trial-stats") as pool:
                pending: Future[None] | None = None
                for i in range(exp.samples):
                    feeds = {name: read(i) for name, read in readers.items()}
                    r_values = ref.run(feeds) if ref_dump is None else ref.values(i)
                    for k, session in enumerate(sessions):
                        c_values = session.run(feeds)
                        if i == 0:
                            first_sample(k, session, r_values, c_values)
                        if pending is not None:
                            pending.result()
                        pending = pool.submit(accumulate, k, i, r_values, c_values)
                        del c_values
                    del r_values
                if pending is not None:
                    pending.result()

            hidden_r = stream._hidden(exp, rmap, ref)
            hidden_c = [stream._hidden(exp, cmap, s) for cmap, s in zip(cmaps, sessions, strict=True)]
        ref_doc = stream._run_doc(exp, reference, ref_low, hidden_r, inputs)
        for k, v in enumerate(variants):
            cmap = cmaps[k]
            layers = [
                stream._layer(t, rmap[t], cmap[t], shapes[t], stored[k][t], stats[k][t], pre[k].get(t))
                for t, _, _ in pairs[k]
            ]
            layers.sort(key=lambda x: (x["index"], x["tensor"]))
            missing = [t for t in exp.tensors if t in reasons[k]]
            missing += [t for t in reasons[k] if t not in missing]
            cand_doc = stream._run_doc(exp, v, lows[k], hidden_c[k], inputs)
            doc = document(ref_doc, cand_doc, exp.samples, settings, layers, missing, reasons[k])
            write_json(ctx.out_dir / file_name(k), doc)
        passes = inference_passes(variants, ref_dump)
        ctx.result.update({"variants": len(variants), "samples": exp.samples, "inference_passes": passes})

    return Stage(
        id=stage_id(variants),
        kind="trial",
        params={
            "variants": [v.name for v in variants],
            "tensors": list(exp.tensors),
            "inputs": inputs,
            "samples": exp.samples,
            "metrics": settings,
            "backend_reference": ref_backend.dump_material(reference),
            "backend_candidate": [cand_backend.dump_material(v) for v in variants],
            **({"subgraph_tensors": inside} if inside else {}),
        },
        action=action,
        version=code_version(__name__, *code_modules(ref_backend), *code_modules(cand_backend)),
        deps={
            "reference": ref_build,
            **dict(zip(roles, builds, strict=True)),
            **({"reference_dump": ref_dump} if ref_dump else {}),
        },
        description=f"try {len(variants)} pinned variants of {variants[0].name.split('~')[0]}",
        imports=("numpy", "onnx", "onnxruntime", "h5py", "layerscope.pipelines.metrics.kernel"),
        resources={**worker_resources(reference.backend), **worker_resources(variants[0].backend)},
    )


def _pinned_upstream(exp: Experiment, variants: list[RunSpec]) -> dict[tuple[int, str], int]:
    """For variant ``k`` and tensor ``t``: an earlier variant of the batch with the same pins among the layers
    ``t``'s values depend on, so that ``t`` has the same values in both (the same lowered subgraph computes it;
    the runtime runs each sample the same way): its metrics are computed once. A drop-one round of the search
    shares many (a tensor differs only in the variants that unpin a layer it depends on). Nothing is shared in
    a model with subgraphs (their outer-scope inputs are not node inputs)."""
    nodes = exp.model.summary.nodes
    if any(n.subgraph for n in nodes):
        return {}
    # pins as bits over the layers pinned in any variant: the masks stay small on a graph of thousands of layers
    bit = {name: 1 << i for i, name in enumerate(sorted({p for v in variants for p in v.pinned}))}
    # A value depends on the pins of the layers upstream of it and of every reader of those values and of itself:
    # a quantized run puts a Q/DQ pair on a tensor when a reader is quantized, pinning it removes the pair.
    readers: dict[str, int] = {}
    for n in nodes:
        for i in n.inputs:
            readers[i] = readers.get(i, 0) | bit.get(n.name, 0)
    above: dict[str, int] = {}  # tensor -> the pinned layers its values depend on, as bits
    for n in nodes:  # ONNX nodes are in topological order
        mask = bit.get(n.name, 0)
        for i in n.inputs:
            mask |= above.get(i, 0) | readers.get(i, 0)
        for o in n.outputs:
            above[o] = mask | readers.get(o, 0)
    masks = [sum(bit[p] for p in set(v.pinned)) for v in variants]
    out: dict[tuple[int, str], int] = {}
    for t in exp.tensors:
        first: dict[int, int] = {}
        for k, m in enumerate(masks):
            j = first.setdefault(m & above.get(t, -1), k)
            if j != k:
                out[(k, t)] = j
    return out


def inference_passes(variants: list[RunSpec], ref_dump: str | None) -> int:
    """Every sample through one model counts once: each variant, and the reference unless read from its dump."""
    return len(variants) + (ref_dump is None)


class _DumpValues:
    """The reference's values of one sample from its dump, by lowered name, as its session would return them."""

    def __init__(self, path: Path, rmap: dict[str, Any]) -> None:
        from layerscope.pipelines.dumps import DumpReader

        self._reader = DumpReader(path)
        hidden = self._reader.json_attr("not_observable") if "not_observable" in self._reader.attrs else {}
        stored = {t.onnx_name for t in self._reader.tensors()}
        self._names = {t: m["name"] for t, m in rmap.items() if t in stored}
        self.unobservable: dict[str, str] = {
            m["name"]: hidden.get(t, "not in the reference's dump") for t, m in rmap.items() if t not in stored
        }

    def values(self, sample: int) -> dict[str, Any]:
        return {low: self._reader.read(t, sample) for t, low in self._names.items()}

    def __enter__(self) -> _DumpValues:
        return self

    def __exit__(self, *exc: object) -> None:
        self._reader.close()


def _opened(stack: contextlib.ExitStack, session: Session) -> Session:
    stack.callback(session.close)
    return session
