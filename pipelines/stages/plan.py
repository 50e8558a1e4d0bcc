"""The stage kinds and how an experiment becomes a plan (registered explicitly, one kind per module).

build[run] -> dump[run] --+--> compare[candidate] --> report
              dump[ref] --+--> task[candidate] ----^   (with compare.classification / compare.func)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from layerscope.pipelines.lowering.formats import FORMATS
from layerscope.pipelines.stages import attribute, build, calibrate, compare, dump, report, task
from layerscope.runner.graph import Plan, Stage

if TYPE_CHECKING:
    from layerscope.pipelines.experiment import Experiment

KINDS = {
    "calibrate": calibrate,
    "build": build,
    "dump": dump,
    "compare": compare,
    "attribute": attribute,
    "task": task,
    "report": report,
}


def stages_for(exp: Experiment) -> list[Stage]:
    used = [exp.reference, *exp.candidates]
    stages: list[Stage] = []
    if any(FORMATS[exp.runs[n].precision].quantized for n in used):
        stages.append(calibrate.make(exp))
    for name in used:
        run = exp.runs[name]
        stages.append(build.make(exp, run, calibrate.STAGE_ID if FORMATS[run.precision].quantized else None))
        stages.append(dump.make(exp, run, build.stage_id(name)))
    compare_ids, attribute_ids, task_ids = {}, {}, {}
    for cand in exp.candidates:
        run = exp.runs[cand]
        stages.append(compare.make(exp, run, dump.stage_id(exp.reference), dump.stage_id(cand)))
        compare_ids[cand] = compare.stage_id(cand)
        if exp.attribution:
            stages.append(attribute.make(exp, run, dump.stage_id(exp.reference), build.stage_id(cand)))
            attribute_ids[cand] = attribute.stage_id(cand)
        if exp.task is not None and exp.task.active:
            stages.append(task.make(exp, run, dump.stage_id(exp.reference), dump.stage_id(cand)))
            task_ids[cand] = task.stage_id(cand)
    stages.append(report.make(exp, compare_ids, attribute_ids, task_ids))
    return stages


def plan_for(exp: Experiment) -> Plan:
    return Plan(stages_for(exp))
