"""The TensorRT backend on a real GPU: skipped with the reason unless TensorRT and a CUDA device are present
(tests/conftest.py). None of these has run in this repository's CI, which has no GPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from layerscope.cli import main
from layerscope.pipelines.dumps import DumpReader
from tests.conftest import SMALL_UNET

pytestmark = pytest.mark.gpu


def trt_config(runs: str, reference: str, candidates: str) -> str:
    head = SMALL_UNET.split("runs:")[0].replace("shape: [1, 3, 16, 16]", "shape: [1, 3, 64, 64]")
    return f"{head}runs:\n{runs}compare:\n  reference: {reference}\n  candidates: {candidates}\n"


def test_unet_fp32_and_fp16_build_run_and_rerun_from_the_engine_cache(write_config, capsys) -> None:
    path = write_config(
        trt_config(
            "  fp32: {backend: tensorrt, precision: fp32}\n"
            "  fp16: {backend: tensorrt, precision: fp16, options: {dump_mode: outputs}}\n",
            "fp32",
            "[fp16]",
        )
    )
    assert main(["run", str(path), "--out", "out", "-q"]) in (0, 1)
    report = json.loads(Path("out/report.json").read_text())
    (c,) = report["comparisons"]
    assert c["candidate_run"]["backend"] == "tensorrt" and c["candidate_run"]["device"].startswith("GPU: ")
    assert c["candidate_run"]["audit"]["layers"], "the inspector's DETAILED layer information was read"
    relu0 = next(x for x in c["layers"] if x["tensor"] == "relu0")
    assert relu0["metrics"]["cosine"] > 0.999
    capsys.readouterr()
    assert main(["run", str(path), "--out", "out2", "-q"]) in (0, 1)
    stages = json.loads(Path("out2/report.json").read_text())["execution"]["stages"]
    assert stages["build[fp16]"]["status"] == "cached" and stages["build[fp32]"]["status"] == "cached"


def test_outputs_and_unfused_dumps_agree_where_both_observe(write_config) -> None:
    from layerscope.pipelines import backends

    version = backends.get("tensorrt").installed_version  # type: ignore[attr-defined]
    if version is None or not version.at_least(10, 12):
        pytest.skip(f"dump_mode unfused needs TensorRT >= 10.12 (installed: {version})")
    path = write_config(
        trt_config(
            "  marked: {backend: tensorrt, precision: fp16, options: {precision_mode: typed, dump_mode: outputs}}\n"
            "  unfused: {backend: tensorrt, precision: fp16, options: {precision_mode: typed, dump_mode: unfused}}\n",
            "marked",
            "[unfused]",
        )
    )
    assert main(["run", str(path), "--out", "out", "-q"]) in (0, 1)
    report = json.loads(Path("out/report.json").read_text())
    (c,) = report["comparisons"]
    with DumpReader(Path("out/dumps/marked.h5")) as marked, DumpReader(Path("out/dumps/unfused.h5")) as unfused:
        shared = {t.onnx_name for t in marked.tensors()} & {t.onnx_name for t in unfused.tensors()}
        assert shared, "the unfused engine exposes some tensors"
        for name in shared:
            a = marked.read_samples(name).astype(np.float32)
            b = unfused.read_samples(name).astype(np.float32)
            assert np.allclose(a, b, rtol=0.05, atol=0.05 * float(np.abs(a).max() or 1)), name
    assert all(why for why in c["not_observable_reasons"].values())
