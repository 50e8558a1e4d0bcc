"""The stage kinds and how an experiment becomes a plan (registered explicitly, one kind per module).

build[run] -> dump[run] --+--> compare[candidate] --> report
              dump[ref] --+--> task[candidate] ----^   (with compare.classification / compare.func)

Streaming (dump.keep: none | failing): build[ref] + build[candidate] --> stream[candidate] --> report.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING

from layerscope.pipelines.lowering.formats import FORMATS
from layerscope.pipelines.stages import attribute, build, compare, dump, report, stream
from layerscope.runner.graph import Plan, Stage

if TYPE_CHECKING:
    from layerscope.pipelines.experiment import Experiment

# Each kind's module, imported when a plan uses it: a plan uses few kinds, and compiling a module is a
# measurable part of a cached rerun where no bytecode is written (PYTHONDONTWRITEBYTECODE).
KINDS = {
    "calibrate": "calibrate",
    "build": "build",
    "dump": "dump",
    "compare": "compare",
    "attribute": "attribute",
    "task": "task",
    "stream": "stream",
    "trial": "trial",  # fix's tries (analysis/search.py), never in an experiment's own plan
    "report": "report",
}


def kind_module(kind: str) -> ModuleType:
    """The module of a stage kind (a KeyError for an unknown kind)."""
    return importlib.import_module(f"layerscope.pipelines.stages.{KINDS[kind]}")


def stages_for(exp: Experiment) -> list[Stage]:
    used = [exp.reference, *exp.candidates]
    stages: list[Stage] = []
    calibrate_id = None
    if any(FORMATS[exp.runs[n].precision].quantized for n in used):
        calibrate = kind_module("calibrate")
        stages.append(calibrate.make(exp))
        calibrate_id = calibrate.STAGE_ID
    for name in used:
        run = exp.runs[name]
        stages.append(build.make(exp, run, calibrate_id if FORMATS[run.precision].quantized else None))
        if not stream.streaming(exp):
            stages.append(dump.make(exp, run, build.stage_id(name)))
    if stream.streaming(exp):
        return [*stages, *_streamed(exp)]
    compare_ids, attribute_ids, task_ids = {}, {}, {}
    for cand in exp.candidates:
        run = exp.runs[cand]
        stages.append(compare.make(exp, run, dump.stage_id(exp.reference), dump.stage_id(cand)))
        compare_ids[cand] = compare.stage_id(cand)
        if exp.attribution:
            stages.append(attribute.make(exp, run, dump.stage_id(exp.reference), build.stage_id(cand)))
            attribute_ids[cand] = attribute.stage_id(cand)
        if exp.task is not None and exp.task.active:
            task = kind_module("task")
            stages.append(task.make(exp, run, dump.stage_id(exp.reference), dump.stage_id(cand)))
            task_ids[cand] = task.stage_id(cand)
    stages.append(report.make(exp, compare_ids, attribute_ids, task_ids))
    return stages


def _streamed(exp: Experiment) -> list[Stage]:
    """No dumps: each candidate's stream stage compares as it runs; attribution, which runs each layer on the
    reference's dumped inputs, says why it is unavailable (the task stage is refused when the config loads)."""
    ref = exp.runs[exp.reference]
    stages = [
        stream.make(exp, ref, exp.runs[c], build.stage_id(exp.reference), build.stage_id(c)) for c in exp.candidates
    ]
    unavailable = {c: stream.ATTRIBUTION_NEEDS_DUMPS for c in exp.candidates} if exp.attribution else {}
    ids = {c: stream.stage_id(c) for c in exp.candidates}
    return [*stages, report.make(exp, ids, attribution_unavailable=unavailable)]


def comparison_id(exp: Experiment, candidate: str) -> str:
    """The stage whose compare.json holds a candidate's per-layer metrics: compare, or stream when streaming."""
    return stream.stage_id(candidate) if stream.streaming(exp) else compare.stage_id(candidate)


def plan_for(exp: Experiment) -> Plan:
    return Plan(stages_for(exp))
