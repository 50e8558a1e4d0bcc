"""task[candidate]: task-level agreement of the candidate's graph outputs with the reference's (metrics/task.py).

Key: both dump keys, the classification settings, and a user compare function's script bytes, function name
and declared dependencies. Thresholds are not part of it (the report applies them). The compare function is
user code, imported here and nowhere else. It is an optional analysis: when it fails, the error (script,
exception, line, sample) is recorded in place of its scores and the report is still written -- a threshold
on the scores then fails, because an undefined score cannot pass.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from layerscope.pipelines.stages.dump import DUMP_FILE
from layerscope.runner.codeversion import code_version
from layerscope.runner.errors import StageError, UsageError
from layerscope.runner.graph import Stage, StageContext
from layerscope.runner.jsonio import write_json

if TYPE_CHECKING:
    from layerscope.pipelines.experiment import Experiment, RunSpec, TaskSpec
    from layerscope.pipelines.experiment.userscript import ScriptRef

TASK_FILE = "task.json"


def stage_id(candidate: str) -> str:
    return f"task[{candidate}]"


def settings(exp: Experiment) -> dict[str, Any]:
    task = exp.task
    assert task is not None
    out: dict[str, Any] = {}
    if task.outputs:
        out["classification"] = {"outputs": list(task.outputs), "top_k": task.top_k, "axis": task.axis}
    if task.script is not None:
        out["func"] = {
            "script": task.script.name,
            "function": task.function,
            "script_sha256": exp.cache.digests(task.script) if task.script.is_file() else None,
            "depends": [{"name": p.name, "sha256": exp.cache.digests(p)} for p in task.depends],
        }
    return out


def make(exp: Experiment, run: RunSpec, ref_dump: str, cand_dump: str) -> Stage:
    task = exp.task
    assert task is not None
    outputs = [t.name for t in exp.model.summary.outputs if t.is_float]

    def action(ctx: StageContext) -> None:
        from layerscope.pipelines.dumps import DumpReader

        with (
            DumpReader(ctx.inputs["reference"].file(DUMP_FILE)) as ref,
            DumpReader(ctx.inputs["candidate"].file(DUMP_FILE)) as cand,
        ):
            doc = compute(task, outputs, ref, cand, ctx)
        write_json(ctx.out_dir / TASK_FILE, doc)
        ctx.result.update({k: len(v) for k, v in doc.items() if isinstance(v, dict)})

    return Stage(
        id=stage_id(run.name),
        kind="task",
        params=settings(exp),
        action=action,
        version=code_version(__name__),
        deps={"reference": ref_dump, "candidate": cand_dump},
        description=f"task agreement {run.name}",
        imports=("numpy", "h5py"),
    )


def compute(task: TaskSpec, outputs: list[str], ref: Any, cand: Any, ctx: StageContext) -> dict[str, Any]:
    """{"classification": {output: agreement}, "scores": {name: summary} | "scores_error": why}; ``outputs``:
    the model's floating-point graph outputs (what a compare function is given)."""
    from layerscope.pipelines.experiment.userscript import ScriptRef, load_function
    from layerscope.pipelines.metrics.task import Agreement, Scores

    names = {t.onnx_name for t in ref.tensors()} & {t.onnx_name for t in cand.tensors()}
    for output in task.outputs:
        if output not in names:
            raise StageError(f"output {output!r} is not in both dumps; it cannot be compared")
    agreements = {o: Agreement(task.top_k, task.axis) for o in task.outputs}
    scores, error, fn = Scores(), None, None
    script = ScriptRef(task.script, task.function) if task.script is not None else None
    if script is not None:
        try:
            fn = load_function(script)
        except UsageError as exc:
            error = exc.message
    given = [o for o in outputs if o in names]
    ctx.progress.start(ref.samples, "task agreement")
    for i in range(ref.samples):
        needed = set(task.outputs) | (set(given) if fn is not None and error is None else set())
        ref_out = {o: ref.read(o, i) for o in sorted(needed)}
        cand_out = {o: cand.read(o, i) for o in sorted(needed)}
        for o, agreement in agreements.items():
            try:
                agreement.update(i, ref_out[o], cand_out[o])
            except ValueError as exc:
                raise StageError(f"output {o!r}, sample {i}: {exc}") from None
        if script is not None and fn is not None and error is None:
            error = _score(script, fn, {o: ref_out[o] for o in given}, {o: cand_out[o] for o in given}, i, scores)
        ctx.progress.advance()
    doc: dict[str, Any] = {}
    if agreements:
        doc["classification"] = {o: a.result() for o, a in agreements.items()}
    if script is not None:
        doc["func"] = script.label
        if error is not None:
            doc["scores_error"] = error
        else:
            doc["scores"] = scores.result()
    return doc


def _score(
    script: ScriptRef, fn: Any, ref_out: dict[str, Any], cand_out: dict[str, Any], i: int, scores: Any
) -> str | None:
    """Score one sample; the error in words when the user function fails (later samples are then not scored)."""
    from layerscope.pipelines.experiment.userscript import call
    from layerscope.pipelines.metrics.task import ScoreError, as_scores

    try:
        scores.update(i, as_scores(call(script, fn, ref_out, cand_out, context=f" (sample {i})")))
    except UsageError as exc:
        return exc.message
    except ScoreError as exc:
        return f"{script.label} {exc} (sample {i})"
    return None
