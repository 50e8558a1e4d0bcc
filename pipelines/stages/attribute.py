"""attribute[candidate]: each layer's local error, computed alone on the reference's inputs (analysis/attribution.py).

Key: the reference dump's key, the candidate's build key (the built graph the layers are cut from), the
compared tensors, the per-tensor metric settings, the session options and this code's version.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from layerscope.pipelines.stages.compare import _config, key_settings, metric_settings
from layerscope.pipelines.stages.dump import DUMP_FILE
from layerscope.runner.codeversion import code_version
from layerscope.runner.errors import StageError
from layerscope.runner.graph import Stage, StageContext
from layerscope.runner.jsonio import write_json

if TYPE_CHECKING:
    from layerscope.pipelines.experiment import Experiment, RunSpec


def stage_id(candidate: str) -> str:
    return f"attribute[{candidate}]"


def make(exp: Experiment, run: RunSpec, ref_dump: str, cand_build: str) -> Stage:
    settings = metric_settings(exp, run)

    def action(ctx: StageContext) -> None:
        import json

        from layerscope.pipelines.analysis.attribution import attribute
        from layerscope.pipelines.backends.onnxruntime import session_options
        from layerscope.pipelines.dumps import DumpReader

        build = ctx.inputs["build"]
        lowering = json.loads(build.file("lowering.json").read_text())
        lowered = build.file("lowered.onnx") if build.file("lowered.onnx").is_file() else None
        if lowered is None and run.precision != "fp32":
            # The runtime applied the precision itself (TensorRT 10's builder flags): estimate each layer's
            # local error on the shared typed lowering of the same plan instead.
            lowered, lowering = _shared_lowering(exp, run, ctx.out_dir / "estimate.onnx")
        pinned = {name for name, n in lowering["nodes"].items() if n["execution"] == "pinned"}
        ctx.progress.start(len(exp.tensors), f"attribute {run.name}")
        doc: dict[str, Any] = {"backend_note": _backend_note(run.backend), "tensors": {}}
        try:
            with DumpReader(ctx.inputs["reference"].file(DUMP_FILE)) as reference:
                doc["tensors"] = attribute(
                    lowered,
                    exp.model.summary,
                    lowering["tensors"],
                    list(exp.tensors),
                    pinned,
                    reference,
                    metric_config=lambda t: _config(settings, t, lowering["tensors"].get(t, {}).get("quant")),
                    session_options=lambda: session_options(run, ctx.threads),
                    progress=ctx.progress.advance,
                    threads=ctx.threads,
                )
        except (MemoryError, OSError, StageError):
            raise  # the machine or the inputs, not the analysis: fail (uncached), the report says attribution failed
        except Exception as exc:  # an optional analysis never costs the report: record why it is unavailable
            doc["unavailable"] = f"{type(exc).__name__}: {str(exc).strip()[:300]}"
        write_json(ctx.out_dir / "attribution.json", doc)
        if (ctx.out_dir / "estimate.onnx").exists():
            (ctx.out_dir / "estimate.onnx").unlink()
        ctx.result["attributed"] = sum(1 for r in doc["tensors"].values() if r["status"] == "ok")

    deps = {"reference": ref_dump, "build": cand_build}
    return Stage(
        id=stage_id(run.name),
        kind="attribute",
        params={"tensors": list(exp.tensors), "metrics": key_settings(settings), "session": backend_dump_material(run)},
        action=action,
        version=code_version(__name__),
        deps=deps,
        description=f"attribute {run.name}",
        imports=(
            "numpy",
            "onnx",
            "onnxruntime",
            "onnxruntime.transformers.float16",
            "h5py",
            "ml_dtypes",
            "layerscope.pipelines.metrics.kernel",
        ),
    )


def _shared_lowering(exp: Experiment, run: RunSpec, path: Any) -> tuple[Any, dict[str, Any]]:
    from dataclasses import replace

    import onnx

    from layerscope.pipelines.backends.onnxruntime import precision_plan
    from layerscope.pipelines.lowering import lower

    # ONNX Runtime's CPU provider runs FP16 natively; other formats are estimated by emulation.
    plan = replace(precision_plan(run), execution="native" if run.precision == "fp16" else "emulated")
    result = lower(onnx.load(str(exp.model.path)), exp.model.summary, plan)
    assert result.model is not None
    onnx.save(result.model, str(path))
    return path, result.info


def backend_dump_material(run: RunSpec) -> dict[str, Any]:
    from layerscope.pipelines import backends

    return backends.get("onnxruntime").dump_material(run)


def _backend_note(backend: str) -> str | None:
    if backend == "onnxruntime":
        return None
    return f"local errors of this {backend} run are estimated by running each layer alone on ONNX Runtime"
