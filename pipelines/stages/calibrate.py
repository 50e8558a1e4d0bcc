"""calibrate: activation ranges for the quantized (INT8/FP8) runs, from calibration samples or imported from
a TensorRT calibration cache. One stage serves every quantized run: ranges do not depend on the format.

Key: the model digest, the calibration method and its parameter, the calibration samples (input digests
and count) or the imported cache's digest, the TensorRT version written into the exported cache, and the
quantization library's version. Not the thresholds, the layer selection, the pinned layers or the runs'
formats: changing those never recalibrates. Output: ``ranges.json`` (ONNX Runtime's calibration cache,
read by the builds) and ``calibration.cache``, the INT8 scales in TensorRT's text format.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from layerscope.pipelines.experiment.inputs import input_material, sample_reader
from layerscope.pipelines.lowering.opset import PER_CHANNEL_OPSET
from layerscope.runner.codeversion import code_version
from layerscope.runner.graph import Stage, StageContext

if TYPE_CHECKING:
    from layerscope.pipelines.experiment import CalibrationSpec, Experiment

TRT_CACHE = "calibration.cache"


STAGE_ID = "calibrate"


def make(exp: Experiment) -> Stage:
    from importlib.metadata import version

    cal = exp.calibration
    assert cal is not None
    imported = cal.cache is not None
    method = "minmax" if imported else cal.method
    params: dict[str, Any] = {"model": exp.model.digest, "method": method, "onnxruntime": version("onnxruntime")}
    if imported:
        assert cal.cache is not None
        params["trt_cache"] = exp.cache.digests(cal.cache)
    else:
        params["samples"] = cal.samples
        params["inputs"] = {s.name: input_material(s, exp.cache.digests) for s in cal.inputs}
        if method == "percentile":
            params["percentile"] = cal.percentile
    params["trt_version"] = cal.trt_version
    # Per-channel weights need opset 13 (lowering/opset.py), and the upgrade can add tensors (Softmax's adapter):
    # calibration runs on the same upgraded graph the quantizer will see. Only then does per_channel matter here.
    upgrade = cal.per_channel and exp.model.summary.opsets.get("ai.onnx", 0) < PER_CHANNEL_OPSET
    if upgrade:
        params["opset_upgrade"] = PER_CHANNEL_OPSET

    def action(ctx: StageContext) -> None:
        from layerscope.pipelines.lowering.calibration_cache import (
            ranges_from_scales,
            read_trt_cache,
            scales_from_ranges,
            write_trt_cache,
        )
        from layerscope.pipelines.lowering.quantize import calibrate, read_ranges, write_ranges

        ranges_path = ctx.out_dir / "ranges.json"
        notes: list[str] = list(cal.notes)
        if imported:
            assert cal.cache is not None
            version_number, algorithm, scales = read_trt_cache(cal.cache)
            write_ranges(ranges_from_scales(scales), ranges_path)
            shutil.copyfile(cal.cache, ctx.out_dir / TRT_CACHE)
            notes.append(
                f"INT8 scales of {len(scales)} tensors imported from TensorRT cache {cal.cache.name} "
                f"(TRT-{version_number}-{algorithm})"
            )
        else:
            ctx.progress.start(None, f"calibrate ({method}): preparing the model")
            work = ctx.out_dir / "work"  # scratch inside the staging directory, removed before publishing
            work.mkdir()

            def phase(what: str) -> None:
                # "": the samples are fed (a bar of them); else a part ONNX Runtime does without telling
                ctx.progress.start(None if what else cal.samples, f"calibrate ({method}): {what or 'samples'}")

            notes += calibrate(
                exp.model.path,
                _samples(cal),
                method=method,
                percentile=cal.percentile,
                per_channel=upgrade,
                work_dir=work,
                out=ranges_path,
                progress=ctx.progress.advance,
                phase=phase,
            )
            shutil.rmtree(work)
            write_trt_cache(
                scales_from_ranges(read_ranges(ranges_path)), ctx.out_dir / TRT_CACHE, trt_version=cal.trt_version
            )
        (ctx.out_dir / "notes.json").write_text(json.dumps(notes, indent=1))
        ctx.result.update({"method": method, "tensors": len(read_ranges(ranges_path))})

    return Stage(
        id=STAGE_ID,
        kind="calibrate",
        params=params,
        action=action,
        version=code_version(__name__),
        description="calibrate",
        imports=("numpy", "onnx", "onnxruntime", "onnxruntime.quantization", "h5py"),
    )


def _samples(cal: CalibrationSpec) -> Iterator[dict[str, Any]]:
    with contextlib.ExitStack() as stack:
        readers = {s.name: stack.enter_context(sample_reader(s, cal.samples)) for s in cal.inputs}
        for i in range(cal.samples):
            yield {name: read(i) for name, read in readers.items()}
