"""The config's task-level agreement (``compare.classification``, ``compare.func``) and its thresholds, checked
against the model's graph outputs when the config is loaded.

``compare.classification: {outputs: [...], top_k: 5, axis: -1}`` names classifier outputs (default: every
floating-point graph output); ``compare.func: {script: ..., function: ...}`` a user score function, located
here and imported only by the stage that computes the scores (user code, like a loader script).
``thresholds.min_top1_agreement`` / ``min_topk_overlap`` need ``classification``, ``min_task_score`` needs
``func``: a threshold on something never computed is a config error, not a silent pass.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from layerscope.pipelines.experiment.spec import TaskSpec
from layerscope.runner.errors import UsageError
from layerscope.runner.suggest import suggest

if TYPE_CHECKING:
    from layerscope.pipelines.experiment.phases import Loading
    from layerscope.pipelines.models.resolve import ResolvedModel


def task_spec(ld: Loading, model: ResolvedModel | None) -> TaskSpec | None:
    section = ld.data.get("compare") if ld.accepted("/compare") else None
    section = section if isinstance(section, dict) else {}
    cls, func = section.get("classification"), section.get("func")
    limits = ld.data.get("thresholds") if ld.accepted("/thresholds") else None
    limits = limits if isinstance(limits, dict) else {}
    for key, needs, present in (
        ("min_top1_agreement", "compare.classification", cls is not None),
        ("min_topk_overlap", "compare.classification", cls is not None),
        ("min_task_score", "compare.func", func is not None),
    ):
        if key in limits and not present:
            ld.problems.add(f"/thresholds/{key}", f"{key} needs {needs} (nothing computes it otherwise)", key=True)
    if cls is None and func is None:
        return None
    outputs: tuple[str, ...] = ()
    top_k, axis = 5, -1
    if cls is not None:
        top_k, axis = int(cls.get("top_k", 5)), int(cls.get("axis", -1))
        outputs = _outputs(ld, model, cls.get("outputs"), top_k, axis)
    script: Path | None = None
    depends: tuple[Path, ...] = ()
    function = "compare"
    if func is not None:
        script, function, depends = _func(ld, func)
    return TaskSpec(outputs, top_k, axis, script, function, depends)


def _outputs(
    ld: Loading, model: ResolvedModel | None, written: list[str] | None, top_k: int, axis: int
) -> tuple[str, ...]:
    if model is None:
        return tuple(written or ())
    declared = {t.name: t for t in model.summary.outputs if t.is_float}
    names = list(written) if written is not None else list(declared)
    for i, name in enumerate(names):
        ptr = f"/compare/classification/outputs/{i}"
        t = declared.get(name)
        if t is None:
            hint = suggest(name, declared) or f" (its outputs: {', '.join(declared) or 'none'})"
            ld.problems.add(ptr, f"{name!r} is not a floating-point graph output of the model{hint}")
            continue
        if t.shape is None:
            continue
        where = ptr if written is not None else "/compare/classification"
        if not -len(t.shape) <= axis < len(t.shape):
            ld.problems.add("/compare/classification/axis", f"axis {axis} is out of range for {name!r} {list(t.shape)}")
            continue
        classes = t.shape[axis]
        if isinstance(classes, int) and classes > 0 and top_k > classes:
            shape = list(t.shape)
            ld.problems.add(
                where, f"top_k {top_k} exceeds the {classes} classes of output {name!r} (axis {axis} of {shape})"
            )
    return tuple(names)


def _func(ld: Loading, func: dict[str, Any]) -> tuple[Path | None, str, tuple[Path, ...]]:
    from layerscope.pipelines.experiment.sources import matches
    from layerscope.pipelines.experiment.userscript import split_script

    written, function = split_script(str(func["script"]), func.get("function"), "compare")
    try:
        script = ld.resolve(written)
    except UsageError as exc:
        ld.problems.add("/compare/func/script", exc.message)
        return None, function, ()
    if not script.is_file():
        ld.problems.add("/compare/func/script", f"compare script not found: {script}")
    depends: list[str] = []
    for i, entry in enumerate(func.get("depends") or []):
        files, problems = matches(ld, str(entry))
        for message in problems:
            ld.problems.add(f"/compare/func/depends/{i}", message)
        depends += files
    return script, function, tuple(Path(p) for p in sorted(dict.fromkeys(depends)))
