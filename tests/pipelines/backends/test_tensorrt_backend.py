"""The TensorRT backend around the engine: availability messages at validation, option checks, build keys,
and whole experiments with the engine build and the GPU runner replaced by the stand-ins of standins.py
(no GPU here); everything else is the real code.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from layerscope.cli import main
from layerscope.pipelines import backends
from layerscope.pipelines.backends.trt import engine as trt_engine
from layerscope.pipelines.backends.trt import runtime as trt_runtime
from layerscope.pipelines.experiment import load_experiment
from layerscope.pipelines.stages import plan_for
from layerscope.runner.errors import SpecError
from tests.conftest import SMALL_UNET
from tests.pipelines.backends import standins
from tests.pipelines.backends.conftest import forget

TRT_UNET = SMALL_UNET.replace(
    """runs:
  fp32: {backend: onnxruntime, precision: fp32}
  fp16: {backend: onnxruntime, precision: fp16}""",
    """runs:
  fp32: {backend: tensorrt, precision: fp32}
  fp16: {backend: tensorrt, precision: fp16, options: {precision_mode: typed, dump_mode: unfused}}""",
)


def test_without_tensorrt_validation_says_which_package_and_exits_2(write_config, capsys, no_tensorrt) -> None:
    path = write_config(TRT_UNET)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "/runs/fp32/backend: backend tensorrt needs TensorRT (pip install 'layerscope[tensorrt-cu12]'" in err
    assert "`layerscope backends` lists what is available; the onnxruntime backend runs anywhere" in err
    assert "/runs/fp16/backend: backend tensorrt cannot run here (the reason is given at /runs/fp32/backend)" in err
    assert err.count("layerscope[tensorrt-cu12]") == 1  # said once, not once per run
    assert "Traceback" not in err
    for command in ("plan", "run"):
        assert main([command, str(path)]) == 2
        assert "backend tensorrt needs TensorRT" in capsys.readouterr().err


def test_installed_without_a_cuda_device_is_refused_at_validation(write_config, capsys, monkeypatch) -> None:
    from layerscope.pipelines.backends import tensorrt as trt_backend

    backend = backends.get("tensorrt")
    forget(monkeypatch, backend)
    monkeypatch.setattr(trt_backend, "_has_module", lambda name: True)
    monkeypatch.setattr(trt_backend, "_dist_version", lambda *names: "10.16.1.11")
    monkeypatch.setattr(trt_runtime, "device_count", lambda: (0, "cudaErrorNoDevice"))
    path = write_config(TRT_UNET)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert (
        "backend tensorrt needs a CUDA device: TensorRT 10.16.1.11 is installed but no CUDA device is visible "
        "(cudaErrorNoDevice); `layerscope backends` lists what is available" in err
    )
    assert "Traceback" not in err


def test_flags_route_is_refused_on_tensorrt_11_naming_the_typed_route(write_config, fake_trt) -> None:
    fake_trt("11.4.0.106")
    path = write_config(TRT_UNET.replace("precision_mode: typed", "precision_mode: flags"))
    with pytest.raises(SpecError) as err:
        load_experiment(path)
    (problem,) = err.value.problems
    assert problem.pointer == "/runs/fp16/options/precision_mode"
    assert "use precision_mode: typed" in problem.message


def test_the_typed_route_is_the_default_on_every_version(write_config, fake_trt) -> None:
    path = write_config(TRT_UNET.replace("precision_mode: typed, ", ""))
    assert load_experiment(path).runs["fp16"].options["precision_mode"] == "typed"
    fake_trt("11.4.0.106")
    assert load_experiment(path).runs["fp16"].options["precision_mode"] == "typed"


def keys(path: Path, overrides: list[str]) -> dict[str, str]:
    return {ps.stage.id: ps.key for ps in plan_for(load_experiment(path, overrides))}


@pytest.mark.parametrize(
    ("override", "changes_fp16_build"),
    [
        ("layers=[conv0, relu0]", False),  # unfused: the engine does not depend on the selection
        ("runs.fp16.options.dump_mode=outputs", True),
        ("runs.fp16.overrides=[{layers: [conv0], precision: fp32}]", True),
        ("runs.fp16.options.workspace_mib=256", True),
        ("runs.fp16.options.strict=false", False),  # means nothing to the typed route
        ("thresholds.rel_error=0.2", False),
    ],
)
def test_build_keys(write_config, fake_trt, override: str, changes_fp16_build: bool) -> None:
    path = write_config(TRT_UNET)
    assert (keys(path, [])["build[fp16]"] != keys(path, [override])["build[fp16]"]) is changes_fp16_build


def test_marked_tensors_are_in_the_key_in_outputs_mode(write_config, fake_trt) -> None:
    path = write_config(TRT_UNET.replace("dump_mode: unfused", "dump_mode: outputs"))
    assert keys(path, [])["build[fp16]"] != keys(path, ["layers=[conv0, relu0]"])["build[fp16]"]
    fake_trt("10.16.1.12")
    assert keys(path, [])["build[fp16]"] != keys(path, [])["build[fp32]"]


def test_an_experiment_runs_end_to_end_with_the_engine_stood_in(write_config, fake_trt, capsys) -> None:
    from tests.test_cli import _conforms

    path = write_config(TRT_UNET)
    assert main(["run", str(path), "--out", "out", "-q"]) in (0, 1)
    report = json.loads(Path("out/report.json").read_text())
    _conforms(report)
    (c,) = report["comparisons"]
    audit = c["candidate_run"]["audit"]
    assert audit["inspector_format"] == "10.x" and audit["source"] == "TensorRT 10.16.1.11 engine inspector"
    rows = {r["node"]: r for r in audit["layers"]}
    assert rows["conv0"]["fused_with"] == ["bn0", "relu0"] and rows["conv0"]["ran"] == "fp16"
    assert rows["pool0"]["flag"] == "asked fp16, ran fp32" and "pool0" in audit["ran_fp32"]
    # unfused: conv0's and bn0's values were fused into the conv0 + bn0 + relu0 layer
    assert {"conv0", "bn0"} <= set(c["not_observable"])
    assert c["not_observable_reasons"]["conv0"] == (
        "candidate: not observable in this engine: fused into engine layer 'conv0 + bn0 + relu0'"
    )
    compared = {x["tensor"] for x in c["layers"]}
    assert "relu0" in compared and "conv0" not in compared
    md = Path("out/report.md").read_text()
    assert "### Precision audit of fp16" in md and "| pool0 | MaxPool | fp16 | fp32 |" in md
    assert "fused into engine layer 'conv0 + bn0 + relu0': conv0, bn0" in md
    # the engine, its timing cache, the inspector JSON and the name map are in the build's cache entry
    exp = load_experiment(path)
    plan = plan_for(exp)
    entry = exp.cache.lookup("build", plan["build[fp16]"].key).entry
    assert entry is not None
    assert {"engine.plan", "timing.cache", "layer_info.json", "observe.json", "lowering.json"} <= {
        p.name for p in entry.path.iterdir()
    }
    observe = json.loads(entry.file("observe.json").read_text())
    assert observe["mode"] == "unfused" and observe["marked"] == [] and observe["graph_outputs"] == ["logits"]
    assert observe["graph"]["relu0"][1:] == ["Relu", ["relu0"]]  # the name map is made from it when a dump opens
    # the fp16 session asked TensorRT only for the debug tensors that carry selected values (not conv0's)
    (fp16,) = [r for r in standins.Runner.opened if r.mode == "unfused"]
    assert "relu0" in fp16.wanted and "conv0" not in fp16.wanted and fp16.closed
    # a rerun uses the cached engines
    capsys.readouterr()
    assert main(["plan", str(path)]) == 0
    assert "everything is cached" in capsys.readouterr().out


def test_flags_route_runs_the_fp32_graph_and_records_the_plan(write_config, fake_trt) -> None:
    path = write_config(
        TRT_UNET.replace("precision_mode: typed, dump_mode: unfused", "precision_mode: flags, dump_mode: outputs")
    )
    assert main(["run", str(path), "--out", "out", "-q"]) in (0, 1)
    report = json.loads(Path("out/report.json").read_text())
    (c,) = report["comparisons"]
    assert not c["not_observable"]
    assert any("marked as engine outputs" in n and "weak typing" in n for n in c["candidate_run"]["notes"])
    assert c["candidate_run"]["audit"]["summary"].startswith("1 of ")  # pool0 ran fp32 in the stand-in


def test_every_module_of_the_backend_is_in_the_build_and_dump_code_version() -> None:
    """Editing any module that makes engines or dumps must change the keys (a stale engine is the worst bug)."""
    import pkgutil

    from layerscope.pipelines.backends import trt
    from layerscope.pipelines.backends.base import code_modules
    from layerscope.runner.codeversion import closure

    listed = set().union(*(closure(m) for m in code_modules(backends.get("tensorrt"))))
    package = {f"{trt.__name__}.{m.name}" for m in pkgutil.iter_modules(trt.__path__)}
    assert package | {"layerscope.pipelines.backends.tensorrt"} <= listed
    assert code_modules(backends.get("onnxruntime")) == ("layerscope.pipelines.backends.onnxruntime",)


def test_unnamed_nodes_are_parsed_under_the_names_the_config_and_report_use(
    write_config, fake_trt, monkeypatch
) -> None:
    """TensorRT reports layers by ONNX node name; an unnamed node must reach it under its layerscope name."""
    from tests.models import chain_model

    seen: list[trt_engine.EngineRequest] = []

    def capture(req: trt_engine.EngineRequest) -> trt_engine.EngineResult:
        seen.append(req)
        return standins.build_engine(req)

    monkeypatch.setattr(trt_engine, "build_engine", capture)
    path = write_config(
        """\
        name: chain
        model: m.onnx
        inputs: {input: {shape: [1, 4, 8, 8], source: {random: normal}}}
        runs:
          fp32: {backend: tensorrt, precision: fp32}
          fp16: {backend: tensorrt, precision: fp16, options: {precision_mode: flags},
                 overrides: [{layers: [t/relu0], precision: fp32}]}
        """
    )
    chain_model(path.parent / "m.onnx", names=False)
    assert main(["run", str(path), "--out", "out", "-q"]) in (0, 1)
    flags = next(r for r in seen if r.route == "flags" and r.precision == "fp16")
    assert flags.onnx_path.name == "lowered.onnx"  # a renamed copy, not the model file
    assert {"t/conv0", "t/relu0", "t/mul0", "output"} <= flags.nodes and flags.pinned == {"t/relu0"}
    audit = json.loads(Path("out/report.json").read_text())["comparisons"][0]["candidate_run"]["audit"]
    assert {r["node"]: r["asked"] for r in audit["layers"]}["t/relu0"] == "fp32"
    assert not audit["not_in_engine"]


def test_the_shipped_tensorrt_config_is_valid_where_tensorrt_is(fake_trt) -> None:
    config = Path(__file__).resolve().parents[3] / "configs" / "unet-trt-fp16.yaml"
    exp = load_experiment(config)
    assert exp.runs["fp16"].options["precision_mode"] == "typed"
    fake_trt("11.4.0.106")
    assert load_experiment(config).runs["fp16"].options["precision_mode"] == "typed"


def test_unfused_engine_serves_a_changed_selection(write_config, fake_trt) -> None:
    """unfused: the selection is not in the build key, so the name map must not come from the build."""
    path = write_config(TRT_UNET)
    assert main(["run", str(path), "--out", "one", "-q", "--set", "layers=[relu0]"]) in (0, 1)
    assert main(["run", str(path), "--out", "two", "-q", "--set", "layers=[relu0, pool0]"]) in (0, 1)
    report = json.loads(Path("two/report.json").read_text())
    assert report["execution"]["stages"]["build[fp16]"]["status"] == "cached"
    (c,) = report["comparisons"]
    assert {x["tensor"] for x in c["layers"]} >= {"relu0", "pool0"}  # (and the model output)


def test_a_debug_tensor_tensorrt_never_emits_is_reported_not_observable(write_config, fake_trt) -> None:
    """NvInfer.h: "There is no guarantee that all unfused tensors are marked" -- the dump must not fail."""
    standins.Runner.not_emitted = {"pool0"}
    path = write_config(TRT_UNET)
    assert main(["run", str(path), "--out", "out", "-q", "--set", "layers=[relu0, pool0]"]) in (0, 1)
    (c,) = json.loads(Path("out/report.json").read_text())["comparisons"]
    assert c["not_observable_reasons"]["pool0"] == (
        "candidate: not observable in this engine: TensorRT emitted no unfused debug tensor 'pool0' "
        "(it does not promise to emit every unfused tensor)"
    )
    assert "relu0" in {x["tensor"] for x in c["layers"]}


def _requests(monkeypatch: pytest.MonkeyPatch) -> list[trt_engine.EngineRequest]:
    seen: list[trt_engine.EngineRequest] = []

    def capture(req: trt_engine.EngineRequest) -> trt_engine.EngineResult:
        seen.append(req)
        return standins.build_engine(req)

    monkeypatch.setattr(trt_engine, "build_engine", capture)
    return seen


@pytest.mark.parametrize("route", ["typed", "flags"])
def test_the_engine_request_does_not_depend_on_the_selection_in_unfused_mode(
    write_config, fake_trt, monkeypatch, route: str
) -> None:
    """The selection is not in an unfused build's key, so nothing it asks TensorRT may depend on it -- the
    model's outputs included (they are engine outputs and keep FP32 in the flags route)."""
    seen = _requests(monkeypatch)
    path = write_config(TRT_UNET.replace("precision_mode: typed", f"precision_mode: {route}"))
    for i, layers in enumerate(["[relu0]", "[relu0, pool0]", "all"]):
        assert main(["run", str(path), "--out", f"o{i}", "-q", "--no-cache", "--set", f"layers={layers}"]) in (0, 1)
    # (the lowered file's folder and the timing cache it starts from may differ; neither changes what is built)
    fp16 = [dataclasses.replace(r, onnx_path=r.onnx_path.name, timing_cache=b"") for r in seen if r.precision == "fp16"]
    assert len(fp16) == 3 and fp16[0] == fp16[1] == fp16[2]
    assert fp16[0].marks.graph_outputs == ("logits",)  # the lowered graph's output, whether selected or not


def test_flags_route_sends_the_constraint_mode(write_config, fake_trt, monkeypatch) -> None:
    seen = _requests(monkeypatch)
    flags = "precision_mode: flags, dump_mode: outputs"
    path = write_config(TRT_UNET.replace("precision_mode: typed, dump_mode: unfused", flags))
    assert main(["run", str(path), "--out", "o", "-q"]) in (0, 1)
    assert main(["run", str(path), "--out", "o2", "-q", "--set", "runs.fp16.options.constrain=all"]) in (0, 1)
    assert [r.constrain for r in seen if r.precision == "fp16"] == ["pinned", "all"]


def test_builds_add_to_the_shared_timing_cache(write_config, fake_trt) -> None:
    path = write_config(TRT_UNET)
    assert main(["run", str(path), "--out", "out", "-q"]) in (0, 1)
    exp = load_experiment(path)
    (shared,) = (exp.cache.root / "v1" / "shared" / "tensorrt" / "timing").glob("*.cache")
    assert json.loads(shared.read_bytes()) == ["fp16/typed", "fp32/typed"]
