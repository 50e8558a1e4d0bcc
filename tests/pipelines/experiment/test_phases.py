"""Loading in phases: each phase reads only what the schema accepted, so hostile configs give problems,
never an exception, and checks that need only a section's keys still run beside the schema's problems."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from layerscope.pipelines import backends
from layerscope.pipelines.experiment import load_experiment
from layerscope.pipelines.lowering.formats import FORMATS
from layerscope.runner.errors import SpecError
from tests.conftest import SMALL_UNET

KEYS = [
    "model",
    "samples",
    "inputs",
    "inputs.input",
    "inputs.input.source",
    "inputs.input.shape",
    "layers",
    "runs",
    "runs.fp16",
    "runs.fp16.precision",
    "runs.fp16.options",
    "runs.fp16.overrides",
    "compare",
    "compare.reference",
    "compare.candidates",
    "thresholds",
    "thresholds.layers",
    "calibration",
    "calibration.inputs",
    "dump",
    "report",
    "name",
]
VALUES = ["5", "x", "[]", "{}", "null", "[1, 2]", "{a: 1}", "[{}]", "{fp32: 3}", "{input: {shape: x, source: 5}}"]


@pytest.mark.parametrize("key", KEYS)
def test_a_malformed_section_is_a_problem_never_a_crash(write_config, key: str) -> None:
    path = write_config()
    for value, remove in itertools.product(VALUES, (False, True)):
        override = f"~{key}" if remove else f"{key}={value}"
        try:
            exp = load_experiment(path, [override])
        except SpecError as err:
            assert err.problems, override
        else:  # some replacements are valid configs (an empty report section, say): they load for real
            assert exp.tensors, override


def problems(path: Path, overrides: list[str]) -> list[str]:
    with pytest.raises(SpecError) as err:
        load_experiment(path, overrides)
    return [f"{p.pointer}: {p.message}" for p in err.value.problems]


def test_schema_problems_and_the_checks_that_need_only_keys_are_reported_together(write_config) -> None:
    path = write_config()
    got = problems(
        path,
        [
            "inputs.inptu={shape: [1, 3, 16, 16], source: {random: normal, seed: -1}}",  # rejected, and misnamed
            "runs.fp16.options={execution: native}",
            "runs.fp16.precision=bf16",  # accepted: the backend's policy still checks its options
            "compare.reference=fp23",
        ],
    )
    assert got == [
        "/inputs/inptu/source/seed: -1 is less than the minimum of 0",
        "/runs/fp16/options/execution: ONNX Runtime's CPU provider has no bf16 kernels; use execution: emulated "
        "(FP32 compute, every value rounded to the format)",
        "/compare/reference: no run named 'fp23'; did you mean 'fp32'?",
        "/inputs/inptu: the model has no input 'inptu'; did you mean 'input'? (its inputs: input)",
    ]


def test_a_rejected_run_still_counts_as_written_and_is_not_second_guessed(write_config) -> None:
    path = write_config(SMALL_UNET.replace("compare:\n  reference: fp32\n  candidates: [fp16]\n", ""))
    # The fp32 run is rejected (unknown key); the default reference (the one fp32 run) cannot be decided
    # until it is fixed, so the only problem is the schema's.
    got = problems(path, ["runs.fp32.colour=blue"])
    assert len(got) == 1 and got[0].startswith("/runs/fp32/colour: unknown key 'colour'")
    # and a candidate naming a rejected run is not "no run named ..."
    got = problems(path, ["runs.fp16.colour=blue", "compare={reference: fp32, candidates: [fp16]}"])
    assert len(got) == 1 and got[0].startswith("/runs/fp16/colour: unknown key 'colour'")


def test_backend_policy_defaults_and_problems() -> None:
    ort = backends.get("onnxruntime")
    options, found = ort.configure(FORMATS["bf16"], {})
    assert options == {"execution": "emulated", "graph_optimization": "all"} and found == []
    options, found = ort.configure(FORMATS["fp8"], {"execution": "native"})
    assert options["graph_optimization"] == "basic"
    assert [p.pointer for p in found] == ["/options/execution"]
