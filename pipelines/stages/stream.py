"""stream[candidate]: the streaming mode (``dump.keep: none | failing``) -- compare without dumping every tensor.

The reference and the candidate run sample by sample on the sessions of their build stages, and each selected
tensor's statistics are accumulated with the compare stage's kernel (:class:`.metrics.stats.TensorStats`, fed the
same arrays in the same order), so ``compare.json`` here is the one that dump[ref] + dump[cand] + compare[cand]
write for the same inputs. Memory holds two samples of both runs (one accumulated while the next runs) plus the
kept samples; disk grows with the layers, not the samples:

* ``compare.json``: what the report reads, as the compare stage writes it;
* ``stats.json``: each tensor's accumulator state (counts, sums, extremes, the relative-error histogram), which
  :meth:`.TensorStats.from_state` turns back into the same metrics, or merges with other samples' states;
* ``kept.h5`` (``keep: failing``): for each tensor with an element over its relative-error threshold, the
  reference and candidate values of its ``keep_worst`` worst samples (most infinite errors, then most deviating
  elements, then largest squared error), with the samples' indices.

Key: both builds' keys, the selected tensors, the input digests, the sample count, the metric settings (the
per-layer relative-error threshold decides which elements count as deviating, exactly: changing it reruns this
stage), what both backends say changes values at run time, and ``keep``/``keep_worst``. The verdict limits are
not part of it: the report judges, and a limit change reruns only the report.
"""

from __future__ import annotations

import contextlib
import heapq
import json
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from layerscope.pipelines import backends
from layerscope.pipelines.backends.base import code_modules, worker_resources
from layerscope.pipelines.experiment.inputs import input_material, sample_reader
from layerscope.pipelines.stages.compare import (
    RUN_ATTRS,
    _config,
    document,
    layer_doc,
    metric_settings,
    subgraph_tensors,
)
from layerscope.pipelines.stages.dump import requested_tensors, run_attrs
from layerscope.runner.codeversion import code_version
from layerscope.runner.errors import StageError
from layerscope.runner.graph import Stage, StageContext
from layerscope.runner.jsonio import write_json

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np

    from layerscope.pipelines.backends.base import Session
    from layerscope.pipelines.experiment import Experiment, RunSpec
    from layerscope.pipelines.metrics.stats import TensorStats

KEPT_FILE = "kept.h5"
ATTRIBUTION_NEEDS_DUMPS = "attribution needs dumps (dump.keep: all): it runs each layer on the reference's inputs"


def stage_id(candidate: str) -> str:
    return f"stream[{candidate}]"


def streaming(exp: Experiment) -> bool:
    return str(exp.dump.get("keep", "all")) != "all"


def make(exp: Experiment, reference: RunSpec, candidate: RunSpec, ref_build: str, cand_build: str) -> Stage:
    settings = metric_settings(exp, candidate)
    inside = subgraph_tensors(exp)
    ref_backend, cand_backend = backends.get(reference.backend), backends.get(candidate.backend)
    inputs = {spec.name: input_material(spec, exp.cache.digests) for spec in exp.inputs}
    keep = str(exp.dump.get("keep", "none"))
    worst = int(exp.dump.get("keep_worst", 2)) if keep == "failing" else 0

    def action(ctx: StageContext) -> None:
        from layerscope.pipelines.metrics.stats import TensorStats

        ref_low = json.loads(ctx.inputs["reference"].file("lowering.json").read_text())
        cand_low = json.loads(ctx.inputs["candidate"].file("lowering.json").read_text())
        rmap, cmap = ref_low["tensors"], cand_low["tensors"]
        r_names, _, r_requested = requested_tensors(exp, reference, rmap)
        c_names, c_pre, c_requested = requested_tensors(exp, candidate, cmap)
        ctx.progress.start(exp.samples, f"stream {candidate.name}")
        with contextlib.ExitStack() as stack:
            # The sessions are opened as the dump stage opens them (same threads): the same values, run for run;
            # but their threads must not spin between runs, or they take the cores from the metrics kernel.
            ref_path, cand_path = ctx.inputs["reference"].path, ctx.inputs["candidate"].path
            ref = _opened(stack, ref_backend.open(ref_path, exp.model, reference, r_requested, ctx.threads, spin=False))
            cand = _opened(
                stack, cand_backend.open(cand_path, exp.model, candidate, c_requested, ctx.threads, spin=False)
            )
            readers = {s.name: stack.enter_context(sample_reader(s, exp.samples)) for s in exp.inputs}
            stats: dict[str, TensorStats] = {}
            pre: dict[str, TensorStats] = {}
            kept: dict[str, Kept] = {}
            shapes: dict[str, tuple[int, ...]] = {}
            stored: dict[str, str] = {}
            pairs: list[tuple[str, str, str]] = []
            reasons: dict[str, str] = {}

            def accumulate(i: int, r_values: dict[str, Any], c_values: dict[str, Any]) -> None:
                for t, r_name, c_name in pairs:
                    r, c = r_values[r_name], c_values[c_name]
                    if tuple(r.shape) != shapes[t] or r.shape != c.shape:
                        raise StageError(
                            f"tensor {t!r}, sample {i}: reference shape {list(r.shape)} vs candidate {list(c.shape)}"
                            f" (sample 0: {list(shapes[t])})"
                        )
                    before = _score(stats[t]) if worst else None
                    stats[t].update(r, c)
                    if t in pre:
                        pre[t].update(r, c_values[c_pre[t]])
                    if before is not None:
                        _keep_worst(kept.setdefault(t, []), worst, i, before, stats[t], r, c)
                ctx.progress.advance()

            # Sample i is accumulated while sample i+1 runs (the runtimes and the kernel release the GIL), in
            # sample order as the compare stage reads them: at most two samples of both runs are in memory.
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="stream-stats") as pool:
                pending: Future[None] | None = None
                for i in range(exp.samples):
                    feeds = {name: read(i) for name, read in readers.items()}
                    r_values, c_values = ref.run(feeds), cand.run(feeds)
                    if i == 0:  # a runtime may only learn at its first run which tensors it cannot observe
                        pairs, reasons = _observed(exp, r_names, c_names, ref, cand, r_values, inside)
                        for t, _, _ in pairs:
                            shapes[t] = tuple(int(d) for d in r_values[rmap[t]["name"]].shape)
                            stored[t] = str(c_values[cmap[t]["name"]].dtype)
                            stats[t] = TensorStats(_config(settings, t, cmap[t].get("quant")), threads=ctx.threads)
                            if t in c_pre and c_pre[t] not in cand.unobservable:
                                pre[t] = TensorStats(replace(stats[t].config, quant=None), threads=ctx.threads)
                    if pending is not None:
                        pending.result()
                    pending = pool.submit(accumulate, i, r_values, c_values)
                    del r_values, c_values
                if pending is not None:
                    pending.result()
        layers = [_layer(t, rmap[t], cmap[t], shapes[t], stored[t], stats[t], pre.get(t)) for t, _, _ in pairs]
        layers.sort(key=lambda x: (x["index"], x["tensor"]))  # the dump reader's order: compare.json's
        missing = [t for t in exp.tensors if t in reasons]
        missing += [t for t in reasons if t not in missing]
        hidden_r, hidden_c = _hidden(exp, rmap, ref), _hidden(exp, cmap, cand)
        doc = document(
            _run_doc(exp, reference, ref_low, hidden_r, inputs),
            _run_doc(exp, candidate, cand_low, hidden_c, inputs),
            exp.samples,
            settings,
            layers,
            missing,
            reasons,
        )
        write_json(ctx.out_dir / "compare.json", doc)
        write_json(
            ctx.out_dir / "stats.json",
            {
                "samples": exp.samples,
                "tensors": {
                    t: {"state": stats[t].state(), **({"prequant_state": pre[t].state()} if t in pre else {})}
                    for t, _, _ in pairs
                },
            },
        )
        if worst:
            _write_kept(ctx.out_dir / KEPT_FILE, kept, worst)
        ctx.result.update({"layers": len(layers), "samples": exp.samples, "kept": sum(len(v) for v in kept.values())})

    return Stage(
        id=stage_id(candidate.name),
        kind="stream",
        params={
            "tensors": list(exp.tensors),
            "inputs": inputs,
            "samples": exp.samples,
            "keep": keep,
            "keep_worst": worst,
            "metrics": settings,
            "backend_reference": ref_backend.dump_material(reference),
            "backend_candidate": cand_backend.dump_material(candidate),
            **({"subgraph_tensors": inside} if inside else {}),
        },
        action=action,
        version=code_version(__name__, *code_modules(ref_backend), *code_modules(cand_backend)),
        deps={"reference": ref_build, "candidate": cand_build},
        description=f"stream {reference.name} vs {candidate.name}",
        imports=("numpy", "onnx", "onnxruntime", "h5py", "layerscope.pipelines.metrics.kernel"),
        # Both runs' sessions live in this stage: a GPU worker when either needs one.
        resources={**worker_resources(reference.backend), **worker_resources(candidate.backend)},
    )


def _opened(stack: contextlib.ExitStack, session: Session) -> Session:
    stack.callback(session.close)
    return session


def _hidden(exp: Experiment, tmap: dict[str, Any], session: Session) -> dict[str, str]:
    return {t: session.unobservable[tmap[t]["name"]] for t in exp.tensors if tmap[t]["name"] in session.unobservable}


def _observed(
    exp: Experiment,
    r_names: list[str],
    c_names: list[str],
    ref: Session,
    cand: Session,
    r_values: dict[str, Any],
    inside: dict[str, str],
) -> tuple[list[tuple[str, str, str]], dict[str, str]]:
    """The tensors both runs observed (with their lowered names), and why the others have no comparison: the
    same reasons, in the same order of precedence, as the compare stage gives."""
    reasons: dict[str, str] = {}
    for role, session, names in (("reference", ref, r_names), ("candidate", cand, c_names)):
        for t, low in zip(exp.tensors, names, strict=True):
            if low in session.unobservable:
                reasons.setdefault(t, f"{role}: {session.unobservable[low]}")
    pairs = []
    for t, r_name, c_name in zip(exp.tensors, r_names, c_names, strict=True):
        if t in reasons:
            continue
        if 0 in r_values[r_name].shape:
            reasons[t] = "the tensor has no elements (a dimension of 0): nothing to compare"
            continue
        pairs.append((t, r_name, c_name))
    for t, why in inside.items():
        reasons.setdefault(t, why)
    return pairs, reasons


def _run_doc(
    exp: Experiment, run: RunSpec, lowering: dict[str, Any], hidden: dict[str, str], inputs: dict[str, Any]
) -> dict[str, Any]:
    attrs = run_attrs(exp, run, lowering, hidden, inputs)
    return {k: attrs[k] for k in RUN_ATTRS if k in attrs}


Kept = list[tuple[tuple[int, int, float], int, "np.ndarray", "np.ndarray"]]


def _score(stats: TensorStats) -> tuple[int, int, float]:
    return stats.count("infinite_errors"), stats.count("deviating"), stats.total("sum_sq_err")


def _keep_worst(
    heap: Kept, k: int, sample: int, before: tuple[int, int, float], stats: TensorStats, r: np.ndarray, c: np.ndarray
) -> None:
    """Keep sample ``sample`` of a tensor if it is among its ``k`` worst so far. Its score is the accumulators'
    change (no second pass over the elements): infinite errors, then deviating elements, then squared error."""
    after = _score(stats)
    score = (after[0] - before[0], after[1] - before[1], after[2] - before[2])
    if not (score[0] or score[1]):
        return  # within the threshold everywhere: nothing to look at
    entry = (score, -sample, r.copy(), c.copy())  # -sample: of equal scores the earliest sample stays
    if len(heap) < k:
        heapq.heappush(heap, entry)
    elif entry[:2] > heap[0][:2]:
        heapq.heapreplace(heap, entry)


def _write_kept(path: Path, kept: dict[str, Kept], k: int) -> None:
    """kept.h5: /reference/<tensor> and /candidate/<tensor>, shape (kept samples, *tensor shape), worst first,
    with attribute ``samples`` (their indices) and ``deviating``/``infinite_errors`` per kept sample."""
    import h5py
    import numpy as np

    from layerscope.pipelines.dumps import escape

    with h5py.File(path, "w") as f:
        f.attrs["format"] = "layerscope-kept"
        f.attrs["keep_worst"] = k
        for t, heap in kept.items():
            if not heap:
                continue
            ordered = sorted(heap, key=lambda e: (e[0], e[1]), reverse=True)
            for role, column in (("reference", 2), ("candidate", 3)):
                ds = f.require_group(role).create_dataset(escape(t), data=np.stack([e[column] for e in ordered]))
                ds.attrs["onnx_name"] = t
                ds.attrs["samples"] = [-e[1] for e in ordered]
                ds.attrs["infinite_errors"] = [e[0][0] for e in ordered]
                ds.attrs["deviating"] = [e[0][1] for e in ordered]


def _layer(
    t: str,
    r: dict[str, Any],
    c: dict[str, Any],
    shape: tuple[int, ...],
    stored: str,
    stats: TensorStats,
    pre: TensorStats | None,
) -> dict[str, Any]:
    """A layer of compare.json, with the fields the compare stage reads from the dumps' attributes."""
    fields = {
        "tensor": t,
        "node": r["node"],
        "op_type": r["op_type"],
        "index": r["index"],
        "shape": list(shape),
        "dtype_reference": r["dtype"],
        "dtype_candidate": c["dtype"],
        "stored_candidate": stored,
        "execution": c["execution"],
    }
    return layer_doc(fields, stats, pre, c.get("weights"))
