"""INT8/FP8: calibration, Q/DQ lowering, per-layer quantization metrics, TensorRT calibration cache interop."""

from __future__ import annotations

import functools
import json
import struct
from pathlib import Path

import numpy as np
import onnx
import pytest

from layerscope.cli import main
from layerscope.pipelines.experiment import load_experiment
from layerscope.pipelines.lowering.calibration_cache import (
    ranges_from_scales,
    read_trt_cache,
    scales_from_ranges,
    version_number,
    write_trt_cache,
)
from layerscope.pipelines.lowering.quantize import calibrate, read_ranges
from layerscope.pipelines.stages import plan_for
from layerscope.runner.errors import UsageError
from tests.models import chain_model

INT8_TEMPLATE = """\
name: q
model:
  builtin: unet
  options: {base_channels: 8, depth: 1}
samples: 2
inputs:
  input:
    shape: [1, 3, 16, 16]
    source: {random: normal, seed: 0}
runs:
  fp32: {precision: fp32, options: {graph_optimization: disabled}}
  int8: {precision: int8, options: {graph_optimization: disabled}}
{extra_runs}compare: {reference: fp32}
calibration: {samples: 4}
thresholds: {max_deviation_ratio: 1.0}
"""
INT8 = INT8_TEMPLATE.replace("{extra_runs}", "")


def report(out: str) -> dict:
    return json.loads(Path(out, "report.json").read_text())


def layers(doc: dict, candidate: str) -> dict[str, dict]:
    (c,) = [c for c in doc["comparisons"] if c["candidate"] == candidate]
    return {x["tensor"]: x for x in c["layers"]}


def test_calibration_methods_differ_on_a_skewed_distribution(tmp_path: Path) -> None:
    model = chain_model(tmp_path / "m.onnx")
    rng = np.random.default_rng(0)
    # mostly small values with a long tail: max, entropy and a percentile disagree about the range
    shape = (1, 4, 8, 8)
    samples = [
        {"input": (rng.standard_normal(shape) * rng.exponential(0.2, shape) ** 3).astype(np.float32)} for _ in range(8)
    ]
    amax = {}
    for method in ("minmax", "entropy", "percentile"):
        work = tmp_path / method
        work.mkdir()
        events: list[str] = []
        calibrate(
            model,
            iter(samples),
            method=method,
            percentile=99.0,
            work_dir=work,
            out=work / "ranges.json",
            progress=functools.partial(events.append, "sample"),
            phase=events.append,
        )
        # the progress a user sees: a bar of the samples, then ONNX Runtime's uncountable part by name
        assert events == [
            "",
            *["sample"] * 8,
            f"computing the ranges of {method} calibration (ONNX Runtime; not countable)",
        ]
        lo, hi = read_ranges(work / "ranges.json")["input"]
        amax[method] = max(abs(lo), abs(hi))
    assert amax["minmax"] == pytest.approx(max(float(np.abs(s["input"]).max()) for s in samples), rel=1e-6)
    assert amax["percentile"] < amax["minmax"] and amax["entropy"] < amax["minmax"]
    assert len({round(v, 6) for v in amax.values()}) == 3


def test_int8_run_layers_scales_and_pinned_layers_without_qdq(write_config) -> None:
    pinned_run = "  int8-pinned: {precision: int8, overrides: [{layers: [conv0, bn0], precision: fp32}]}\n"
    path = write_config(INT8_TEMPLATE.replace("{extra_runs}", pinned_run))
    assert main(["run", str(path), "--out", "o", "-q"]) == 0
    doc = report("o")
    int8 = layers(doc, "int8")
    conv0 = int8["conv0"]
    assert conv0["execution"] == "native" and conv0["dtype_candidate"] == "int8"
    q = conv0["metrics"]["quant"]
    assert q["type"] == "int8" and q["scale"] > 0 and q["zero_point"] == 0
    assert "prequant_metrics" in conv0
    assert doc["comparisons"][0]["candidate_run"]["execution"] == "native"
    pinned = layers(doc, "int8-pinned")
    assert pinned["conv0"]["execution"] == "pinned" and pinned["bn0"]["execution"] == "pinned"
    # the pinned layers read FP32 values and FP32 weights: no DequantizeLinear feeds them
    exp = load_experiment(path)
    plan = plan_for(exp)
    entry = exp.cache.lookup("build", plan["build[int8-pinned]"].key).entry
    assert entry is not None
    model = onnx.load(str(entry.file("lowered.onnx")))
    producers = {o: n for n in model.graph.node for o in n.output}
    for node in model.graph.node:
        if node.name in ("conv0", "bn0"):
            assert all(producers.get(i) is None or producers[i].op_type != "DequantizeLinear" for i in node.input)
    assert Path("o/calibration.cache").read_text().startswith("TRT-101300-EntropyCalibration2\n")


def test_sqnr_agrees_with_onnxruntime_qdq_loss_debug(write_config, tmp_path: Path) -> None:
    """Our per-layer SQNR of the INT8 demo UNet equals ORT's own qdq_loss_debug on the same tensors."""
    from onnxruntime.quantization import CalibrationDataReader
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        compute_signal_to_quantization_noice_ratio,
        create_activation_matching,
        modify_model_output_intermediate_tensors,
    )

    from layerscope.pipelines.experiment.inputs import sample_reader

    path = write_config(INT8.replace("base_channels: 8", "base_channels: 40"))
    assert main(["run", str(path), "--out", "o", "-q"]) == 0
    ours = layers(report("o"), "int8")
    exp = load_experiment(path)
    plan = plan_for(exp)
    build = exp.cache.lookup("build", plan["build[int8]"].key).entry
    assert build is not None

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.i = 0

        def get_next(self) -> dict | None:
            if self.i == exp.samples:
                return None
            with sample_reader(exp.inputs[0], exp.samples) as read:
                feed = {"input": read(self.i)}
            self.i += 1
            return feed

    qdq_aug, float_aug = tmp_path / "qdq_aug.onnx", tmp_path / "float_aug.onnx"
    modify_model_output_intermediate_tensors(str(build.file("lowered.onnx")), str(qdq_aug))
    modify_model_output_intermediate_tensors(str(exp.model.path), str(float_aug))
    matching = create_activation_matching(
        collect_activations(str(qdq_aug), Reader()), collect_activations(str(float_aug), Reader())
    )
    compared = 0
    for name, match in matching.items():
        if name not in ours or not match.get("float"):
            continue
        theirs = compute_signal_to_quantization_noice_ratio(
            [a.astype(np.float64) for a in match["float"]], [a.astype(np.float64) for a in match["post_qdq"]]
        )
        assert float(ours[name]["metrics"]["sqnr_db"]) == pytest.approx(theirs, abs=1e-6), name
        if "prequant_metrics" in ours[name]:
            pre = compute_signal_to_quantization_noice_ratio(
                [a.astype(np.float64) for a in match["float"]], [a.astype(np.float64) for a in match["pre_qdq"]]
            )
            assert float(ours[name]["prequant_metrics"]["sqnr_db"]) == pytest.approx(pre, abs=1e-6), name
        compared += 1
    assert compared >= 20  # every conv/bn/relu/pool/up/concat output of the UNet


def test_saturation_is_detected(write_config) -> None:
    """Calibrated on small values, evaluated on large ones: the scale clips, and the report says how much."""
    path = write_config(
        INT8.replace(
            "calibration: {samples: 4}",
            "calibration:\n  samples: 4\n  inputs:\n    input: {source: {random: normal, std: 0.05, seed: 3}}",
        )
    )
    assert main(["run", str(path), "--out", "o", "-q"]) == 0
    conv0 = layers(report("o"), "int8")["conv0"]
    q = conv0["metrics"]["quant"]
    assert q["saturated"] > 0.05 * conv0["metrics"]["elements"]
    assert float(conv0["metrics"]["sqnr_db"]) < float(conv0["prequant_metrics"]["sqnr_db"])
    assert "| conv0 |" in Path("o/report.md").read_text().split("### Quantization (int8)")[1]


def test_trt_cache_format_and_round_trip(tmp_path: Path) -> None:
    scales = {"input": 1.0, "/enc/conv0/Conv_output_0": 0.0078125, "zero": 0.0, "tiny": 1e-40, "x": 0.0123}
    path = tmp_path / "calibration.cache"
    write_trt_cache(scales, path, trt_version="10.14.1")
    lines = path.read_text().splitlines()
    assert lines[0] == "TRT-101401-EntropyCalibration2"
    # IEEE-754 bits of the float32 scale, hexadecimal without leading zeros (as TensorRT writes them)
    assert "input: 3f800000" in lines and "/enc/conv0/Conv_output_0: 3c000000" in lines and "zero: 0" in lines
    assert f"tiny: {struct.unpack('>I', struct.pack('>f', 1e-40))[0]:x}" in lines
    version, algorithm, read = read_trt_cache(path)
    assert (version, algorithm) == (101401, "EntropyCalibration2")
    assert read == {k: float(np.float32(v)) for k, v in scales.items()}
    assert version_number("8.6.1") == 8601 and version_number("10.0.0") == 100000
    ranges = ranges_from_scales({"a": 0.5})
    assert ranges == {"a": (-63.5, 63.5)} and scales_from_ranges(ranges) == {"a": 0.5}


def test_reads_a_cache_written_by_tensorrt(tmp_path: Path) -> None:
    """A cache in TensorRT's own layout (from its documentation and ORT's TensorRT EP reader)."""
    path = tmp_path / "trt.cache"
    path.write_text("TRT-7103-EntropyCalibration2\ndata_0: 4000889d\n(Unnamed Layer* 64) [Shuffle]_output: 0\n")
    version, algorithm, scales = read_trt_cache(path)
    assert version == 7103 and algorithm == "EntropyCalibration2"
    assert scales["data_0"] == pytest.approx(2.0083382, rel=1e-6)
    assert scales["(Unnamed Layer* 64) [Shuffle]_output"] == 0.0
    path.write_text("not a cache\n")
    with pytest.raises(UsageError, match="is not a TensorRT calibration cache"):
        read_trt_cache(path)


def test_imported_trt_scales_are_the_scales_used(write_config) -> None:
    path = write_config(INT8)
    cache = path.parent / "from_trt.cache"
    write_trt_cache({"conv0": 0.02, "input": 0.03}, cache, trt_version="10.13.0")
    assert main(["run", str(path), "--out", "o", "-q", "--set", "calibration.cache=from_trt.cache"]) == 0
    conv0 = layers(report("o"), "int8")["conv0"]
    assert conv0["metrics"]["quant"]["scale"] == pytest.approx(0.02, rel=1e-6)
    assert report("o")["calibration"]["imported_trt_cache"] == "from_trt.cache"


def test_fp8_run_is_emulated_with_amax_scales(write_config) -> None:
    path = write_config(INT8.replace("int8: {precision: int8", "fp8: {precision: fp8"))
    assert main(["run", str(path), "--out", "o", "-q"]) == 0
    doc = report("o")
    fp8 = layers(doc, "fp8")
    assert doc["comparisons"][0]["candidate_run"]["execution"] == "emulated"
    assert fp8["relu0"]["metrics"]["quant"]["type"] == "float8_e4m3fn"
    assert fp8["relu0"]["metrics"]["cand_nan"] == 0
    # a Relu output is never negative (ORT's extended optimizations used to drop it between float8 Q/DQ)
    from layerscope.pipelines.dumps import DumpReader

    with DumpReader(Path("o/dumps/fp8.h5")) as dump:
        assert float(dump.read_samples("relu0").min()) >= 0.0
    assert float(fp8["bn0"]["metrics"]["sqnr_db"]) > 15  # amax scales: BatchNormalization's weights do not saturate


def test_calibration_is_not_rerun_for_thresholds_layers_or_pinning(write_config) -> None:
    path = write_config(INT8)

    def key(overrides: list[str]) -> str:
        return plan_for(load_experiment(path, overrides))["calibrate"].key

    base = key([])
    unrelated = [
        "thresholds.rel_error=0.3",
        "layers=[conv0]",
        "runs.int8.overrides=[{layers: [conv0], precision: fp32}]",
        "calibration.per_channel=false",
        "runs.fp8={precision: fp8}",
    ]
    assert key(unrelated) == base
    assert key(["calibration.samples=5"]) != base
    assert key(["calibration.method=entropy"]) != base
