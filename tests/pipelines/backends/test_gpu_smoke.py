"""scripts/gpu-smoke without a GPU: its command line, the configs it writes (valid where TensorRT is), its
checks on fabricated evidence, that a failing command fails its step with the reason, and its steps that need
no TensorRT in the script's own process run end to end against the stand-ins (standins.py)."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from layerscope.pipelines.experiment import load_experiment
from tests.pipelines.backends import standins

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "scripts" / "gpu-smoke"


@pytest.fixture(scope="module")
def smoke() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("gpu_smoke", str(SCRIPT))
    spec = importlib.util.spec_from_loader("gpu_smoke", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_smoke"] = module  # dataclasses look their module up
    loader.exec_module(module)
    return module


def test_the_script_is_executable_and_lists_its_steps(smoke: ModuleType, capsys) -> None:
    assert SCRIPT.stat().st_mode & 0o111
    assert SCRIPT.read_text().startswith("#!/usr/bin/env python3\n")
    assert smoke.main(["--list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in listed] == [f"{i}. {n}" for i, (n, _) in enumerate(smoke.STEPS, 1)]


def test_dry_run_writes_configs_that_are_valid_where_tensorrt_is(smoke: ModuleType, tmp_path: Path, fake_trt) -> None:
    out = tmp_path / "evidence"
    assert smoke.main([str(out), "--dry-run"]) == 0
    configs = sorted(out.glob("work/*/*.yaml"))
    assert {p.parent.name for p in configs} == {
        "engines-vs-onnxruntime",
        "debug-vs-outputs",
        "unfused",
        "builds-in-threads",
        "selection-change",
    }
    for path in configs:
        load_experiment(path)  # schema, model, layers and the TensorRT options of 10.16
    summary = json.loads((out / "summary.json").read_text())
    assert {s["status"] for s in summary.values()} == {"dry run"}
    assert not (out / "cache").exists()


def test_bad_usage_is_refused(smoke: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "summary.json").write_text("{}")
    for argv in ([str(tmp_path / "old")], [str(tmp_path / "new"), "--steps", "versions,warp-drive"], []):
        with pytest.raises(SystemExit) as exc:
            smoke.main(argv)
        assert exc.value.code == 2


# -- checks on fabricated evidence -------------------------------------------------------------------------


def _report(cosines: dict[str, list[float | None]], audit: dict[str, list[str | None]] | None = None) -> dict:
    comparisons = []
    for cand, values in cosines.items():
        rows = [{"node": f"n{i}", "engine_layer": f"l{i}", "ran": r} for i, r in enumerate((audit or {}).get(cand, []))]
        comparisons.append(
            {
                "candidate": cand,
                "layers": [{"tensor": f"t{i}", "metrics": {"cosine": c}} for i, c in enumerate(values)],
                "candidate_run": {"audit": {"summary": "s", "layers": rows}} if audit and cand in audit else {},
            }
        )
    return {"comparisons": comparisons}


def test_cosine_check(smoke: ModuleType) -> None:
    report = _report({"fp32": [1.0, 0.999995], "fp16": [0.9995, None]})
    problems = smoke.cosine_problems(report, {"fp32": 0.999999, "fp16": 0.999, "bf16": 0.99})
    assert problems == [
        "fp32: t1: cosine 0.999995 < 0.999999",
        "fp16: t1: cosine None < 0.999",  # undefined is not a pass
        "bf16: no comparison in the report",
    ]
    assert smoke.cosine_problems(report, {"fp32": 0.99999}) == []


def test_audit_check(smoke: ModuleType) -> None:
    report = _report({"a": [1.0], "b": [1.0], "c": [1.0]}, {"a": ["fp16", "fp32"], "b": ["fp32"], "c": ["fp16"]})
    assert smoke.audit_problems(report, "a", "fp16") == []
    assert "no layer of the fp16 engine ran fp16" in smoke.audit_problems(report, "b", "fp16")[0]
    assert "layers of the fp32 engine ran reduced" in smoke.audit_problems(report, "c", None)[0]
    assert smoke.audit_problems(report, "b", "fp16", strict=False) == []  # flags: TensorRT may pick fp32 anywhere
    assert smoke.audit_problems(_report({"d": [1.0]}), "d", None) == ["d: no precision audit in the report"]


def test_cache_value_name_and_junit_checks(smoke: ModuleType, tmp_path: Path) -> None:
    report = {"execution": {"stages": {"build[a]": {"status": "cached"}, "dump[a]": {"status": "ran"}}}}
    assert smoke.not_cached(report) == ["dump[a]: ran"]
    a = np.array([1.0, 2.0, 4.0], np.float32)
    assert smoke.value_problem("t", a, a.copy(), rtol=0, scale_atol=0) is None
    assert smoke.value_problem("t", a, a * (1 + 1e-7), rtol=1e-5, scale_atol=1e-5) is None
    assert "values differ (max |a - b| = 0.1" in smoke.value_problem("t", a, a + 0.1, rtol=1e-5, scale_atol=1e-5)
    assert "shapes differ" in smoke.value_problem("t", a, a[:2], rtol=1, scale_atol=1)
    assert smoke.emitted_problems(["x", "y"], ["x", "y", "z"]) == []
    assert smoke.emitted_problems([], ["x"]) == ["TensorRT emitted no unfused debug tensor"]
    assert "1 emitted names are not in the inspector's JSON, e.g. ['q']" in smoke.emitted_problems(["q"], ["x"])[0]
    xml = tmp_path / "j.xml"
    xml.write_text('<testsuites><testsuite tests="2" failures="0" errors="0" skipped="2"/></testsuites>')
    assert smoke.junit_problems(xml) == ["all 2 GPU tests were skipped"]
    xml.write_text('<testsuite tests="3" failures="1" errors="0" skipped="0"/>')
    assert smoke.junit_problems(xml) == ["1 of 3 GPU tests failed"]
    xml.write_text('<testsuite tests="0" failures="0" errors="0" skipped="0"/>')
    assert smoke.junit_problems(xml) == ["no GPU test was collected"]


# -- steps fail loudly --------------------------------------------------------------------------------------


def test_a_failing_command_fails_its_step_naming_the_command_and_status_and_is_logged(
    smoke: ModuleType, tmp_path: Path, monkeypatch
) -> None:
    s = smoke.Smoke(tmp_path)
    s.step = "demo"
    with pytest.raises(smoke.StepError, match=r"boom: `.*` exited 3 \(expected 0/1\): it broke"):
        s.command(
            "boom", [sys.executable, "-c", "import sys; print('it broke', file=sys.stderr); sys.exit(3)"], ok=(0, 1)
        )
    log = (tmp_path / "logs" / "demo-boom.log").read_text()
    assert "# exit status 3" in log and "it broke" in log
    with pytest.raises(smoke.StepError, match="was killed by signal 9"):
        s.command("killed", [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"])
    monkeypatch.setattr(smoke, "STEP_TIMEOUT_S", 1)
    with pytest.raises(smoke.StepError, match="slow: timed out after 1 s"):
        s.command("slow", [sys.executable, "-c", "import time; time.sleep(30)"])


def test_every_step_runs_and_failures_are_named_in_the_summary(smoke: ModuleType, tmp_path: Path, capsys) -> None:
    class Scripted(smoke.Smoke):  # type: ignore[name-defined,misc]
        def versions(self) -> None:
            raise smoke.StepError("mismatch")

        def unfused(self) -> None:
            raise smoke.NotApplicableError("too old")

        def debug_vs_outputs(self) -> None:
            raise KeyError("a bug")

        def pytest_gpu(self) -> None:
            self.note("fine")

    summary = smoke.run_steps(Scripted(tmp_path), ["versions", "unfused", "debug-vs-outputs", "pytest-gpu"])
    assert {k: v["status"] for k, v in summary.items()} == {
        "versions": "failed",
        "unfused": "skipped",
        "debug-vs-outputs": "failed",
        "pytest-gpu": "passed",
    }
    assert summary["debug-vs-outputs"]["why"] == "KeyError: 'a bug'"
    assert (tmp_path / "logs" / "debug-vs-outputs-traceback.log").exists()
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    out = capsys.readouterr().out
    assert "FAILED versions: mismatch" in out and "FAILED debug-vs-outputs: KeyError" in out


# -- steps end to end, TensorRT stood in ------------------------------------------------------------------


@pytest.mark.slow
def test_steps_run_end_to_end_with_the_stand_ins(smoke: ModuleType, tmp_path: Path, fake_trt, capsys) -> None:
    """The steps whose TensorRT work happens in layerscope processes: launched with the stand-ins in place,
    they pass, and keep the inspector JSON of every engine."""
    out = tmp_path / "evidence"
    launcher = [sys.executable, str(Path(standins.__file__))]
    s = smoke.Smoke(out, launcher=launcher, version=(10, 16, 1, 11))
    summary = smoke.run_steps(s, ["engines-vs-onnxruntime", "debug-vs-outputs", "selection-change"])
    assert {k: v["status"] for k, v in summary.items()} == dict.fromkeys(summary, "passed"), summary
    kept = sorted(p.name for p in (out / "inspector").iterdir())
    assert kept == [
        "debug-vs-outputs-debug.json",
        "debug-vs-outputs-outputs.json",
        "engines-vs-onnxruntime-trt-fp16-flags.json",
        "engines-vs-onnxruntime-trt-fp16.json",
        "engines-vs-onnxruntime-trt-fp32.json",
    ]
    assert json.loads((out / "inspector" / "engines-vs-onnxruntime-trt-fp16.json").read_text())["Layers"]
    logs: Any = sorted(p.name for p in (out / "logs").iterdir())
    assert "selection-change-second.log" in logs


@pytest.mark.slow
def test_a_mismatch_fails_the_step(smoke: ModuleType, tmp_path: Path, fake_trt) -> None:
    """The same step with an "engine" whose values are wrong (the stand-in's fp16 report doctored): failed."""
    s = smoke.Smoke(tmp_path / "e", launcher=[sys.executable, str(Path(standins.__file__))], version=(10, 16, 1, 11))
    real = s.layerscope

    def doctored(label: str, args: list[str]) -> dict | None:
        report = real(label, args)
        for c in report["comparisons"] if report else []:
            if c["candidate"] == "trt-fp16":
                c["layers"][0]["metrics"]["cosine"] = 0.5
        return report

    s.layerscope = doctored  # type: ignore[method-assign]
    summary = smoke.run_steps(s, ["engines-vs-onnxruntime"])
    assert summary["engines-vs-onnxruntime"]["status"] == "failed"
    assert (
        "trt-fp16: " in summary["engines-vs-onnxruntime"]["why"]
        and "cosine 0.5 < 0.999" in summary["engines-vs-onnxruntime"]["why"]
    )


def test_the_threaded_build_check_wants_the_bad_build_to_fail_with_its_own_error(
    smoke: ModuleType, tmp_path: Path, monkeypatch
) -> None:
    import onnx

    from layerscope.pipelines.backends.trt import engine as trt_engine
    from layerscope.runner.errors import StageError

    def parser(req: Any) -> str:  # TensorRT's parser, as far as this check cares
        model = onnx.load(str(req.onnx_path))
        onnx.checker.check_model(model)  # both models are valid ONNX (opset 17, IR 8)
        if any(n.domain == "smoke" for n in model.graph.node):
            raise StageError("TensorRT's ONNX parser rejected the model: No importer registered for op: NoSuchOp")
        return "engine"

    s = smoke.Smoke(tmp_path)
    s.step = "builds-in-threads"
    (tmp_path / "logs").mkdir()
    monkeypatch.setattr(trt_engine, "build_engine", parser)
    assert s.good_and_bad_build() == []
    monkeypatch.setattr(trt_engine, "build_engine", lambda req: "engine")
    assert s.good_and_bad_build() == ["the model TensorRT cannot parse built: engine"]
