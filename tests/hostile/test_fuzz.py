"""Property-based fuzzing of configs and `--set` values on a valid model: whatever a user writes, layerscope
answers 0 (pass), 1 (a threshold failed) or 2 (invalid config or usage) -- never 3, never a traceback.

Bounded so the suite stays fast: a tiny model, few examples, derandomized (the same examples on every run, so
CI cannot turn red by luck). LAYERSCOPE_FUZZ_EXAMPLES=500 explores further (random examples then).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from layerscope.cli import main
from tests.hostile.conftest import CHAIN
from tests.models import chain_model

EXAMPLES = int(os.environ.get("LAYERSCOPE_FUZZ_EXAMPLES", "0"))
PATHS = [
    "name",
    "description",
    "model",
    "samples",
    "layers",
    "attribution",
    "inputs.input",
    "inputs.input.shape",
    "inputs.input.dtype",
    "inputs.input.source",
    "inputs.input.source.random",
    "inputs.input.source.mean",
    "inputs.input.source.std",
    "inputs.input.source.seed",
    "inputs.input.source.file",
    "inputs.other",
    "runs",
    "runs.fp16",
    "runs.fp16.precision",
    "runs.fp16.backend",
    "runs.fp16.overrides",
    "runs.fp16.overrides[0].layers",
    "runs.fp16.options",
    "runs.fp16.options.execution",
    "runs.bf16.precision",
    "compare",
    "compare.reference",
    "compare.candidates",
    "thresholds",
    "thresholds.rel_error",
    "thresholds.abs_floor",
    "thresholds.max_deviation_ratio",
    "thresholds.min_cosine",
    "thresholds.max_abs_error",
    "thresholds.min_sqnr_db",
    "thresholds.allow_nonfinite",
    "thresholds.layers",
    "thresholds.layers[0].match",
    "dump.compression",
    "dump.gzip_level",
    "report.formats",
    "report.dir",
    "cache",
    "calibration.samples",
    "calibration.method",
]
WORDS = ["fp32", "fp16", "bf16", "int8", "fp8", "all", "conv0", "relu*", "Conv", "normal", "uniform", "native",
         "emulated", "gzip", "lzf", "md", "html", "json", "onnxruntime", "tensorrt", "x.npy", "../x", "/etc/passwd",
         "", " ", "é", "a|b", "<script>", "${HOME}", "%s", "\\", "'", '"', "\t", "~"]  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 12),
    st.sampled_from([0, 1, 2**31, 2**63, 10**30, -(10**30)]),
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.sampled_from(WORDS),
    st.text(max_size=8),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(WORDS[:20]), inner, max_size=3),
    max_leaves=8,
)
RAW = st.sampled_from(["&a [*a]", "!!python/object/apply:os.system [x]", "{", "[1, 2", "\x00", ".nan", "-.inf",
                       "1e400", "0x10", "0o7", "2001-01-01", "!!binary aGk=", "? a : b", "*undefined"])  # fmt: skip


@st.composite
def override(draw: st.DrawFn) -> str:
    path = draw(st.sampled_from(PATHS))
    if draw(st.integers(0, 9)) == 0:
        return f"~{path}"
    if draw(st.integers(0, 5)) == 0:
        return f"{path}={draw(RAW)}"
    text = yaml.safe_dump(draw(VALUES), default_flow_style=True, allow_unicode=True).strip()
    return f"{path}={text.removesuffix('...').strip()}"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fuzz")
    chain_model(folder / "model.onnx")
    (folder / "exp.yaml").write_text(CHAIN.replace("samples: 2", "samples: 1"))
    return folder


def _check(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    code = main(args)
    captured = capsys.readouterr()
    said = captured.out + captured.err
    assert code in (0, 1, 2), f"exit {code} for {args}:\n{said}"
    assert "Traceback" not in said and "internal error" not in said, said


def bounded(examples: int) -> settings:
    """Few examples, the same on every run (CI cannot turn red by luck), unless LAYERSCOPE_FUZZ_EXAMPLES is set."""
    return settings(
        max_examples=EXAMPLES or examples,
        deadline=None,
        derandomize=not EXAMPLES,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


@bounded(30)
@given(overrides=st.lists(override(), min_size=1, max_size=3))
def test_set_values_never_fail_as_a_stage(model_dir: Path, capsys: pytest.CaptureFixture[str], overrides) -> None:
    args = ["run", str(model_dir / "exp.yaml"), "-q", "-j", "1", "--out", "fuzz-out"]
    _check([*args, *(a for o in overrides for a in ("--set", o))], capsys)


@bounded(20)
@given(data=st.dictionaries(st.sampled_from(["name", "model", "samples", "inputs", "runs", "compare", "thresholds",
                                             "layers", "dump", "report", "extra"]), VALUES, max_size=6))  # fmt: skip
def test_config_files_never_fail_as_a_stage(model_dir: Path, capsys, data: dict) -> None:
    base = yaml.safe_load(CHAIN.replace("samples: 2", "samples: 1"))
    config = model_dir / f"fuzz-{os.getpid()}.yaml"
    config.write_text(yaml.safe_dump({**base, **data}, allow_unicode=True))
    _check(["run", str(config), "-q", "-j", "1", "--out", "fuzz-out"], capsys)
