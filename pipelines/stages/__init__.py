"""The stage kinds (build, calibrate, dump, compare, attribute, report: one kind per module) and how an
experiment becomes a plan of them (:mod:`.plan`)."""

from layerscope.pipelines.stages.plan import KINDS, kind_module, plan_for, stages_for

__all__ = ["KINDS", "kind_module", "plan_for", "stages_for"]
