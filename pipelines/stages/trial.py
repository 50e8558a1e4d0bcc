"""trial[...]: `fix`'s tries -- several pinned variants of one candidate judged against the reference, no dumps.

A try of the fix search is the candidate run with some layers pinned to FP32, and all the search reads of it
is a verdict: which compared tensors break their limits, and the targets' output error. As in the stream stage
(:mod:`.stream`) the models run sample by sample, nothing is dumped, and each tensor accumulates only the
verdict's metrics (:class:`.metrics.verdict.VerdictStats`: deviation ratio, cosine, SQNR, abs errors, NaN/Inf
introduced; no histograms, percentiles or range counts), the same values as compare's bit for bit. The reference
runs **once per sample for all the variants of the batch** (or is read from attribution's dump): a batch of k
variants costs k + 1 inference passes (k with the dump), and writes only small JSON documents
(``trial-<i>.json``, one per variant, in the order of ``variants``).

**Early exit.** A judged tensor whose deviating elements already exceed its limit's share of all the samples'
elements, or which introduced a NaN/Inf where none is allowed, fails whatever its other samples hold: it stops
accumulating (``"stopped": "fails"``) and its variant is known to fail. From the second sample on, a tensor all
of whose readers are known to fail is left (``"stopped": "variant fails"``; the search does not count it), except
the targets, which the output error reads in full. A layer that stopped keeps the metrics of its first
``"samples"``.

All the variants' sessions are open at once (one build each: the builds are ordinary cached build stages), so
memory holds one session per variant, one sample of the reference's selected tensors and one sample of one
variant's; the search bounds the batch size.

Key: the reference's and every variant's build keys (they hold the pins), the selected tensors, the input
digests, the sample count, the metric settings, the targets, what the backends say changes values at run time,
and the two limits the early exit reads (deviation ratio, NaN/Inf allowed): a change of another threshold
(cosine, SQNR, abs error) reuses every try, the search judges the documents.
"""

from __future__ import annotations

import contextlib
import json
import math
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from layerscope.pipelines import backends
from layerscope.pipelines.backends.base import code_modules, worker_resources
from layerscope.pipelines.experiment.inputs import input_material, sample_reader
from layerscope.pipelines.stages import stream
from layerscope.pipelines.stages.compare import _config, metric_settings, subgraph_tensors
from layerscope.pipelines.stages.dump import DUMP_FILE, requested_tensors
from layerscope.runner.codeversion import code_version
from layerscope.runner.errors import StageError
from layerscope.runner.graph import Stage, StageContext
from layerscope.runner.hashing import digest
from layerscope.runner.jsonio import write_json

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from layerscope.pipelines.backends.base import Session
    from layerscope.pipelines.experiment import Experiment, RunSpec


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
    *,
    targets: Sequence[str] = (),
    judged: Sequence[str] | None = None,
) -> Stage:
    """One stage judging ``variants`` (runs of one backend and precision, differing in their pins) against
    ``reference``; ``builds`` are their build stages' ids, in the same order. ``ref_dump``: the reference's dump
    stage of the same tensors, inputs and samples (attribution's), whose values are read instead of running the
    reference: then the batch costs one inference pass per variant. ``judged``: the tensors whose limits decide
    the verdict (default: every tensor of ``exp``), ``targets``: the tensors whose output error the search reads
    (accumulated to the end whatever the verdict)."""
    if not variants or len(variants) != len(builds):
        raise ValueError("a trial needs one build per variant")
    settings = metric_settings(exp, variants[0])
    inside = subgraph_tensors(exp)
    ref_backend = backends.get(reference.backend)
    cand_backend = backends.get(variants[0].backend)
    inputs = {spec.name: input_material(spec, exp.cache.digests) for spec in exp.inputs}
    roles = [f"variant{i}" for i in range(len(variants))]
    upstream = _pinned_upstream(exp, variants)
    early = _limits(exp, exp.tensors if judged is None else judged)
    wanted = set(targets)

    def action(ctx: StageContext) -> None:
        from layerscope.pipelines.metrics.verdict import VerdictStats

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
            stats: list[dict[str, VerdictStats]] = [{} for _ in variants]
            pairs: list[list[tuple[str, str, str]]] = [[] for _ in variants]
            reasons: list[dict[str, str]] = [{} for _ in variants]
            shapes: dict[str, tuple[int, ...]] = {}
            acc: dict[int, _Accumulated] = {}  # by id of a VerdictStats: how far it got, who reads it
            failed: set[int] = set()  # variants that already fail, whatever their other tensors do

            def needed(a: _Accumulated) -> bool:
                """Whether a tensor's next sample can still change a verdict or the output error."""
                return not a.stopped and (a.target or not a.users <= failed)

            def accumulate(k: int, i: int, r_values: dict[str, Any], c_values: dict[str, Any]) -> None:
                for t, r_name, c_name in pairs[k]:
                    st = stats[k][t]
                    a = acc[id(st)]
                    if a.samples > i:
                        continue  # accumulated for a variant with the same values (see _pinned_upstream)
                    # from the second sample on, when every variant reading it is known (first_sample registers them)
                    if a.samples < i or (i > 0 and not needed(a)):
                        a.stopped = a.stopped or "variant fails"  # never resumed: samples stay in order
                        continue
                    r, c = r_values[r_name], c_values[c_name]
                    if tuple(r.shape) != shapes[t] or r.shape != c.shape:
                        raise StageError(
                            f"tensor {t!r}, sample {i}: reference shape {list(r.shape)} vs {variants[k].name} "
                            f"{list(c.shape)} (sample 0: {list(shapes[t])})"
                        )
                    st.update(r, c)
                    a.samples = i + 1
                    if t in early and st.fails_already(a.total, *early[t]):
                        failed.update(a.users)  # a judged tensor that fails whatever follows
                        if not a.target and i + 1 < exp.samples:
                            a.stopped = "fails"
                ctx.progress.advance()

            def first_sample(k: int, session: Session, r_values: dict[str, Any]) -> None:
                """What variant ``k`` observed, and its accumulators (a runtime learns at its first run which
                tensors it cannot observe)."""
                req = requested[k]
                pairs[k], reasons[k] = stream._observed(exp, r_names, req[0], ref, session, r_values, inside)
                for t, r_name, _ in pairs[k]:
                    shapes.setdefault(t, tuple(int(d) for d in r_values[r_name].shape))
                    same = upstream.get((k, t))
                    if same is not None and t in stats[same]:  # the same values as variant `same`'s
                        stats[k][t] = stats[same][t]
                    else:
                        stats[k][t] = VerdictStats(_config(settings, t, cmaps[k][t].get("quant")), threads=ctx.threads)
                        total = math.prod(shapes[t]) * exp.samples
                        acc[id(stats[k][t])] = _Accumulated(total, t in wanted)
                    acc[id(stats[k][t])].users.add(k)

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
                            first_sample(k, session, r_values)
                        if pending is not None:
                            pending.result()
                        pending = pool.submit(accumulate, k, i, r_values, c_values)
                        del c_values
                    del r_values
                if pending is not None:
                    pending.result()
        for k in range(len(variants)):
            layers = []
            for t, _, _ in pairs[k]:
                a = acc[id(stats[k][t])]
                layer = {"tensor": t, "node": rmap[t]["node"], "index": rmap[t]["index"]}
                layer["metrics"] = stats[k][t].result()
                if a.samples < exp.samples:  # stopped early: its metrics are of the samples it got
                    layer["samples"], layer["stopped"] = a.samples, a.stopped
                layers.append(layer)
            layers.sort(key=lambda x: (x["index"], x["tensor"]))
            missing = [t for t in exp.tensors if t in reasons[k]]
            missing += [t for t in reasons[k] if t not in missing]
            doc = {"samples": exp.samples, "layers": layers, "not_observable": missing}
            write_json(ctx.out_dir / file_name(k), {**doc, "not_observable_reasons": reasons[k]})
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
            # a tensor stops early once it fails these: they are part of what the documents hold
            "early_exit": {t: list(v) for t, v in early.items()},
            "targets": sorted(wanted),
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
        imports=(
            "numpy",
            "onnx",
            "onnxruntime",
            "h5py",
            "layerscope.pipelines.metrics.kernel",
            "layerscope.pipelines.metrics.verdict_kernel",
        ),
        resources={**worker_resources(reference.backend), **worker_resources(variants[0].backend)},
    )


def _limits(exp: Experiment, judged: Sequence[str]) -> dict[str, tuple[float, bool]]:
    """Per judged tensor, the limits that can fail it before its last sample (its producer's limits, as the
    search judges it): the deviation ratio and whether NaN/Inf may appear."""
    producer = exp.model.summary.producer_of()
    out = {}
    for t in judged:
        limits = exp.thresholds.for_layer(producer[t].name if t in producer else t)
        out[t] = (limits.max_deviation_ratio, limits.allow_nonfinite)
    return out


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


@dataclass
class _Accumulated:
    """How far one tensor's statistics got (shared by the variants that read the same values)."""

    total: int  # elements over all samples
    target: bool  # the output error reads it: accumulated to the end
    samples: int = 0
    stopped: str | None = None  # "fails": it fails whatever follows; "variant fails": every reader fails
    users: set[int] = field(default_factory=set)


def _opened(stack: contextlib.ExitStack, session: Session) -> Session:
    stack.callback(session.close)
    return session
