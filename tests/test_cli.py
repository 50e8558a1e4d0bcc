"""The command line, in process: main([...]) == exit code, with what it prints and writes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from layerscope.cli import main
from layerscope.pipelines.dumps import DumpReader
from tests.conftest import SMALL_UNET


def run_ok(args: list[str], code: int = 0) -> None:
    assert main(args) == code


def report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


def statuses(out: Path) -> dict[str, str]:
    return {sid: s["status"] for sid, s in report(out)["execution"]["stages"].items()}


def test_validate_ok(write_config, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config()
    run_ok(["validate", str(path)])
    out = capsys.readouterr().out
    assert out.startswith(f"{path}: valid — model builtin unet")
    assert "compare fp16 against fp32" in out


def test_validate_reports_every_error_without_traceback(write_config, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(
        SMALL_UNET.replace("max_deviation_ratio: 0.5", "max_deviation_ratio: 1.5").replace("seed: 0", "seed: -1")
    )
    run_ok(["validate", str(path)], 2)
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"{path}:9:36: /inputs/input/source/seed: -1 is less than the minimum of 0",
        "    9 |     source: {random: normal, seed: -1}",
        f"{path}:18:24: /thresholds/max_deviation_ratio: 1.5 is greater than the maximum of 1",
        "   18 |   max_deviation_ratio: 1.5",
        f"{path}: 2 errors",
    ]
    assert "Traceback" not in err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert main(["frobnicate"]) == 2
    assert main(["run", "missing.yaml"]) == 2
    err = capsys.readouterr().err
    assert "config not found: missing.yaml" in err and "Traceback" not in err


def test_run_writes_reports_and_dumps_then_reruns_from_cache(write_config, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config()
    out = Path("out")
    run_ok(["run", str(path), "--out", str(out), "-q"])
    assert set(statuses(out).values()) == {"ran"}
    doc = report(out)
    _conforms(doc)
    assert doc["verdict"] == "pass"
    layers = doc["comparisons"][0]["layers"]
    assert [x["tensor"] for x in layers[:3]] == ["conv0", "bn0", "relu0"]
    assert layers[0]["metrics"]["elements"] == 2 * 4 * 16 * 16
    assert (out / "report.md").read_text().count("| conv0 | Conv |") == 1
    with DumpReader(out / "dumps" / "fp16.h5") as dump:
        conv0 = dump.read_samples("conv0")
        assert conv0.shape == (2, 1, 4, 16, 16) and conv0.dtype == np.float16
        assert dump.attrs["execution"] == "emulated"  # ONNX Runtime CPU FP16: emulated by default (docs/precision.md)
    capsys.readouterr()

    # second run: everything cached, no inference, no rehash of artifacts
    from layerscope.pipelines.backends.onnxruntime import OnnxRuntimeBackend

    def no_inference(*a: object, **k: object) -> None:
        raise AssertionError("a cached rerun must not run inference")

    mp = pytest.MonkeyPatch()
    mp.setattr(OnnxRuntimeBackend, "open", no_inference)
    mp.setattr(OnnxRuntimeBackend, "build", no_inference)
    from layerscope.runner import hashing

    hashed: list[Path] = []
    real = hashing.hash_file
    mp.setattr(hashing, "hash_file", lambda p: hashed.append(p) or real(p))
    try:
        run_ok(["run", str(path), "--out", str(out), "-q"])
    finally:
        mp.undo()
    assert set(statuses(out).values()) == {"cached"}
    assert hashed == []

    # plan says so
    run_ok(["plan", str(path)])
    text = capsys.readouterr().out
    assert "everything is cached: nothing to run" in text

    # a threshold change reruns what computes metrics, and the report
    run_ok(["run", str(path), "--out", str(out), "-q", "--set", "thresholds.rel_error=0.2"])
    assert {s for s, v in statuses(out).items() if v == "ran"} == {"compare[fp16]", "attribute[fp16]", "report"}

    # --force a stage: it and its dependents
    run_ok(["run", str(path), "--out", str(out), "-q", "--force", "dump[fp16]"])
    assert {s for s, v in statuses(out).items() if v == "ran"} == {"dump[fp16]", "compare[fp16]", "report"}


def test_threshold_failure_exits_1_and_names_first_failing_layer(
    write_config, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config()
    run_ok(
        [
            "run",
            str(path),
            "--out",
            "o",
            "--set",
            "thresholds.max_deviation_ratio=0",
            "--set",
            "thresholds.rel_error=1e-9",
        ],
        1,
    )
    doc = report(Path("o"))
    assert doc["verdict"] == "fail" and doc["comparisons"][0]["first_failing_layer"] == "conv0"
    assert "first failing layer: conv0" in capsys.readouterr().out


def test_stage_failure_exits_3_with_one_message(write_config, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config()
    np.save(path.parent / "x.npy", np.zeros((2, 1, 3, 8, 8), np.float32))  # samples of another shape than the config's
    code = main(["run", str(path), "--out", "o", "-q", "--set", "inputs.input.source={file: x.npy}"])
    assert code == 3
    err = capsys.readouterr().err
    assert (
        "dump[fp32] failed: x.npy has shape [2, 1, 3, 8, 8], which holds neither samples of shape [1, 3, 16, 16] "
        "along a first axis ([N, 1, 3, 16, 16]) nor a stack of them along the batch axis ([N, 3, 16, 16])" in err
    )
    assert "compare[fp16] skipped: depends on failed dump" in err
    assert "Traceback" not in err


def test_report_command_rerenders(write_config, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config()
    run_ok(["run", str(path), "--out", "o", "-q"])
    capsys.readouterr()
    run_ok(["report", "o", "--format", "md"])
    assert capsys.readouterr().out == Path("o/report.md").read_text()
    run_ok(["report", "o/report.json", "--format", "json"])
    assert json.loads(capsys.readouterr().out)["verdict"] == "pass"
    run_ok(["report", "o"])
    assert "fp16 vs fp32" in capsys.readouterr().out
    run_ok(["report", "nowhere"], 2)
    run_ok(["report", "o", "-o", "table.txt"], 2)
    run_ok(["report", "o", "--format", "md", "-o", "again.md"])
    assert Path("again.md").read_text() == Path("o/report.md").read_text()


def test_report_json_reaches_a_terminal_only_when_asked(
    write_config, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config()
    run_ok(["run", str(path), "--out", "o", "-q"])
    capsys.readouterr()
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    for fmt in ("json", "html"):
        run_ok(["report", "o", "--format", fmt], 2)
        err = capsys.readouterr().err
        assert f"--format {fmt} is not printed to a terminal" in err and "-o -" in err
    run_ok(["report", "o", "--format", "json", "-o", "-"])
    assert json.loads(capsys.readouterr().out)["verdict"] == "pass"
    run_ok(["report", "o", "--format", "md", "--rows", "3"], 2)
    assert "--rows and --all shorten the terminal table" in capsys.readouterr().err


def test_report_table_is_shortened_like_run(write_config, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(SMALL_UNET.replace("max_deviation_ratio: 0.5", "max_deviation_ratio: 0.004"))
    run_ok(["run", str(path), "--out", "o", "-q"], 1)
    capsys.readouterr()
    run_ok(["report", "o", "--rows", "4"])
    out = " ".join(capsys.readouterr().out.split())
    failing = report(Path("o"))["comparisons"][0]["failing_layers"]
    assert failing > 0 and f"{failing} failing layer" in out and "of 22 layers" in out
    run_ok(["report", "o", "--all"])
    assert "of 22 layers:" not in " ".join(capsys.readouterr().out.split())


def test_no_cache_keeps_artifacts_private(write_config, isolated_cache: Path) -> None:
    path = write_config()
    run_ok(["run", str(path), "--out", "o", "-q", "--no-cache"])
    assert not (isolated_cache / "v1" / "objects" / "dump").exists()
    assert Path("o/dumps/fp16.h5").resolve().is_relative_to(Path("o/artifacts").resolve())


def test_cache_commands(write_config, capsys: pytest.CaptureFixture[str]) -> None:
    run_ok(["run", str(write_config()), "--out", "o", "-q", "-j", "1"])
    capsys.readouterr()
    run_ok(["cache", "ls"])
    listing = capsys.readouterr().out
    # grouped by experiment and run, with totals
    assert re.search(r"small\s+│\s+fp16\s+│\s+4\s+│\s+build, dump, compare, attribute", listing), listing
    assert re.search(r"small\s+│\s+—\s+│\s+1\s+│\s+report", listing)
    assert re.search(r"small\s+│\s+fp32\s+│\s+2\s+│\s+build, dump", listing)
    assert re.search(r"\(shared\)\s+│\s+—\s+│\s+4\s+│\s+model, summary, figures, markdown", listing)
    assert re.search(r"total 11 entries, .*, 1 experiment$", listing, re.M)
    run_ok(["cache", "ls", "--entries", "--kind", "dump", "--experiment", "sm*"])
    listing = capsys.readouterr().out
    assert "dump[fp16]" in listing and "build[fp32]" not in listing
    assert "total 2 entries" in listing and "(filtered; the cache holds 11 entries" in listing
    run_ok(["cache", "ls", "--experiment", "other"])
    assert "total 0 entries" in capsys.readouterr().out
    run_ok(["cache", "ls", "--max-size", "1G"], 2)
    assert "--max-size applies to `cache gc` only" in capsys.readouterr().err
    run_ok(["cache", "gc"])  # no option: says what it did and why it kept the rest
    out = capsys.readouterr().out
    assert "removed 0 entries" in out and "without --max-size or --older-than it removes only" in out
    assert "the 11 entries" in out and "--max-size 20G" in out
    run_ok(["cache", "gc", "--max-size", "1K", "--dry-run"])
    assert "would remove" in capsys.readouterr().out
    run_ok(["cache", "gc", "--older-than", "1x"], 2)
    capsys.readouterr()
    run_ok(["cache", "clear"], 2)  # no terminal to ask on: it says what it would delete and break, and asks for --yes
    err = capsys.readouterr().err
    assert "cache clear would delete 11 entries" in err and "dumps/ links of" in err and "--yes" in err
    assert Path("o/dumps/fp16.h5").exists()
    run_ok(["cache", "clear", "--yes"])
    out = capsys.readouterr().out
    assert "cleared" in out and f"broke the links into the cache of: {Path('o').absolute()}" in out
    assert not Path("o/dumps/fp16.h5").exists()  # the dangling link, as announced


def test_backends_lists_availability(capsys: pytest.CaptureFixture[str], no_tensorrt: None) -> None:
    run_ok(["backends"])
    out = capsys.readouterr().out
    assert "onnxruntime" in out and "tensorrt" in out
    from layerscope.pipelines import backends

    rows = {r[0]: r for r in backends.table()}
    assert rows["onnxruntime"][1] is True and rows["onnxruntime"][2].startswith("CPU: ")
    assert rows["tensorrt"][1] is False and "the onnxruntime backend runs anywhere" in rows["tensorrt"][2]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from layerscope import __version__

    run_ok(["--version"])
    assert capsys.readouterr().out.strip() == f"layerscope {__version__}"


def _conforms(doc: dict) -> None:
    from jsonschema import Draft202012Validator

    from layerscope.schemas import schema_text

    errors = sorted(Draft202012Validator(json.loads(schema_text("report"))).iter_errors(doc), key=str)
    assert not errors, errors[0]


def test_force_before_the_config_forces_everything(write_config, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config()
    run_ok(["run", str(path), "--out", "o", "-q"])
    capsys.readouterr()
    run_ok(["plan", "--force", str(path)])
    assert "7 of 7 stages would run" in capsys.readouterr().out
    run_ok(["run", str(path), "-j", "0"], 2)
    assert "-j/--jobs must be at least 1" in capsys.readouterr().err


def test_only_runs_the_selected_stages_and_their_inputs(write_config, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config()
    run_ok(["run", str(path), "--out", "o", "-q", "--only", "dump[fp16]"])
    out = capsys.readouterr().out
    assert out.startswith("done: build[fp16], dump[fp16] (--only: no report written)")
    assert not Path("o/report.json").exists()


def test_one_bad_precision_is_one_error_with_a_suggestion_whatever_its_case(
    write_config, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(SMALL_UNET.replace("fp16: {backend: onnxruntime, precision: fp16}", "fp16: {precision: FP16}"))
    run_ok(["validate", str(path)], 2)
    err = capsys.readouterr().err
    assert '"FP16" is not one of' in err and "(did you mean 'fp16'?)" in err
    assert "no run named" not in err and err.rstrip().endswith("1 error")


def test_usage_errors_name_the_program_once(write_config, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config()
    run_ok(["run", str(path), str(path)], 2)
    err = capsys.readouterr().err
    assert err.startswith("layerscope: unrecognized arguments: ") and "layerscope: layerscope" not in err
    assert "each command takes one CONFIG" in err
    run_ok(["run"], 2)
    assert capsys.readouterr().err.startswith("layerscope: run: the following arguments are required: config")
