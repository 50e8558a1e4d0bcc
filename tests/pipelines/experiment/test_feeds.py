"""Polygraphy-compatible sources: data-loader scripts (user code, run only when samples are read) and the JSON
``polygraphy run --save-inputs`` writes, round-tripped through the real Polygraphy when it is installed."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from layerscope.pipelines.experiment import load_experiment
from layerscope.pipelines.experiment.inputs import sample_reader
from layerscope.pipelines.stages import plan_for
from layerscope.runner.errors import SpecError, UsageError
from tests.models import classifier_model

CONFIG = """\
name: feeds
model: m.onnx
samples: 2
inputs:
  input:
    source: {script: loader.py}
runs:
  fp32: {precision: fp32}
  fp16: {precision: fp16}
"""

LOADER = """\
import numpy as np

open("loaded.marker", "w").close()  # proves when the script runs (the test runs in its own folder)


def load_data():
    for i in range(3):
        yield {"input": np.full((1, 3, 16, 16), i, dtype=np.float32)}
"""


@pytest.fixture
def config(write_config):
    path = write_config(CONFIG)
    classifier_model(path.parent / "m.onnx")
    (path.parent / "loader.py").write_text(LOADER)
    return path


def read_all(path: Path, overrides: list[str] | None = None) -> list[np.ndarray]:
    exp = load_experiment(path, overrides)
    with sample_reader(exp.inputs[0], exp.samples) as reader:
        return [reader(i) for i in range(exp.samples)]


def failure(path: Path, overrides: list[str] | None = None) -> str:
    with pytest.raises(UsageError) as err:
        read_all(path, overrides)
    return err.value.message


def test_a_loader_script_is_run_only_when_its_samples_are_read(config: Path) -> None:
    exp = load_experiment(config, deep=True)  # validate
    plan_for(exp)  # plan: keys from the script's bytes
    assert not Path("loaded.marker").exists()
    values = read_all(config)
    assert Path("loaded.marker").exists()
    assert [float(v.mean()) for v in values] == [0.0, 1.0]


def test_the_script_and_its_depends_are_in_the_key(config: Path) -> None:
    data = config.parent / "data.bin"
    data.write_bytes(b"1")
    with_depends = ["inputs.input.source.depends=[data.bin]"]

    def dump_key(overrides: list[str]) -> str:
        return {ps.stage.id: ps.key for ps in plan_for(load_experiment(config, overrides))}["dump[fp32]"]

    before, before_dep = dump_key([]), dump_key(with_depends)
    data.write_bytes(b"2")
    assert dump_key([]) == before and dump_key(with_depends) != before_dep
    (config.parent / "loader.py").write_text(LOADER + "\n# edited\n")
    assert dump_key([]) != before
    assert _problems(config, ["inputs.input.source.depends=[nothing.bin]"]) == [
        f"/inputs/input/source/depends/0: not found: {config.parent / 'nothing.bin'}"
    ]


def _problems(path: Path, overrides: list[str]) -> list[str]:
    with pytest.raises(SpecError) as err:
        load_experiment(path, overrides)
    return [f"{p.pointer}: {p.message}" for p in err.value.problems]


def test_missing_script_and_polygraphy_style_function_names(config: Path) -> None:
    assert _problems(config, ["inputs.input.source.script=nope.py"]) == [
        f"/inputs/input/source/script: loader script not found: {config.parent / 'nope.py'}"
    ]
    (config.parent / "loader.py").write_text(LOADER.replace("def load_data", "def my_loader"))
    assert len(read_all(config, ["inputs.input.source.script=loader.py:my_loader"])) == 2
    assert failure(config) == "loader.py defines no function 'load_data' (it defines: my_loader)"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "def load_data():\n    raise RuntimeError('no camera attached')\n",
            "loader.py:load_data raised RuntimeError: no camera attached (loader.py:2) when called",
        ),
        (
            "def load_data():\n    yield {'input': np.zeros((1, 3, 16, 16), np.float32)}\n"
            "    raise OSError('disk gone')\n",
            "loader.py:load_data raised OSError: disk gone (loader.py:3) (sample 1)",
        ),
        (
            "def load_data():\n    return [{'image': np.zeros((1, 3, 16, 16), np.float32)}] * 2\n",
            "loader.py:load_data, sample 0 has no input 'input' (it has: 'image')",
        ),
        (
            "def load_data():\n    return [{'input': np.zeros((1, 3, 8, 8), np.float32)}] * 2\n",
            "loader.py:load_data, sample 0: input 'input' has shape [1, 3, 8, 8], the config says [1, 3, 16, 16]",
        ),
        (
            "def load_data():\n    return [{'input': np.zeros((1, 3, 16, 16), np.float32)}]\n",
            "loader.py:load_data yielded 1 feed dict; the config asks for 2 samples",
        ),
        (
            "def load_data():\n    return 3\n",
            "loader.py:load_data returned a int, not an iterable of feed dicts (a generator or a list of "
            "{input_name: array})",
        ),
        ("x = 1 +\n", "loader.py: the script raised SyntaxError: invalid syntax (loader.py:1) while loading"),
    ],
    ids=["raises", "raises-later", "wrong-name", "wrong-shape", "too-few", "not-iterable", "syntax"],
)
def test_loader_errors_name_the_script_and_the_sample(config: Path, body: str, message: str) -> None:
    (config.parent / "loader.py").write_text("import numpy as np\n" * ("np." in body) + body)
    if "np." in body:  # the import shifts the lines by one
        message = message.replace("(loader.py:2)", "(loader.py:3)").replace(
            "(loader.py:3) (sample", "(loader.py:4) (sample"
        )
    assert failure(config) == message


# -- Polygraphy's own files and scripts ------------------------------------------------------------------------
def polygraphy_cli() -> str:
    pytest.importorskip("polygraphy", reason="Polygraphy is not installed (pip install -e '.[test]' brings it)")
    exe = shutil.which("polygraphy") or str(Path(sys.executable).parent / "polygraphy")
    if not Path(exe).is_file():
        pytest.skip("Polygraphy's command line is not installed")
    return exe


def polygraphy_run(folder: Path, *args: str) -> None:
    cmd = [polygraphy_cli(), "run", "m.onnx", "--onnxrt", *args]
    proc = subprocess.run(cmd, cwd=folder, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


def test_inputs_saved_by_polygraphy_load_with_the_same_values(config: Path) -> None:
    from polygraphy.json import load_json

    folder = config.parent
    polygraphy_run(folder, "--iterations", "3", "--val-range", "input:[-2,5]", "--save-inputs", "inputs.json")
    saved = load_json(str(folder / "inputs.json"))  # Polygraphy's own reading of its file
    got = read_all(config, ["inputs.input.source={file: inputs.json}", "samples=3"])
    assert len(saved) == 3
    for feed, value in zip(saved, got, strict=True):
        np.testing.assert_array_equal(value, feed["input"])
    assert load_experiment(config, ["inputs.input.source={file: inputs.json}", "samples=3"], deep=True)
    with pytest.raises(SpecError) as err:
        load_experiment(config, ["inputs.input.source={file: inputs.json}", "samples=4"], deep=True)
    assert [p.message for p in err.value.problems] == ["inputs.json holds 3 feed dicts; the config asks for 4 samples"]


def test_a_polygraphy_data_loader_script_works_unchanged(config: Path) -> None:
    from polygraphy.json import load_json

    folder = config.parent
    (folder / "pg_loader.py").write_text(
        textwrap.dedent(
            """\
            import numpy as np

            def load_data():
                rng = np.random.default_rng(4)
                for _ in range(2):
                    yield {"input": rng.standard_normal((1, 3, 16, 16)).astype(np.float32)}
            """
        )
    )
    polygraphy_run(folder, "--data-loader-script", "pg_loader.py", "--save-inputs", "fed.json")
    fed = load_json(str(folder / "fed.json"))  # what Polygraphy fed from the script
    got = read_all(config, ["inputs.input.source={script: pg_loader.py}"])
    for feed, value in zip(fed, got, strict=True):
        np.testing.assert_array_equal(value, feed["input"])


def test_legacy_and_malformed_polygraphy_json(config: Path) -> None:
    import base64
    import io
    import json

    buf = io.BytesIO()
    np.save(buf, np.ones((1, 3, 16, 16), np.float32))
    legacy = {
        "__polygraphy_encoded_ndarray": "polygraphy_serialized_json_type",
        "array": base64.b64encode(buf.getvalue()).decode(),
    }
    (config.parent / "old.json").write_text(json.dumps([{"input": legacy}] * 2))
    assert [float(v.sum()) for v in read_all(config, ["inputs.input.source={file: old.json}"])] == [768.0, 768.0]
    (config.parent / "bad.json").write_text("[{")
    assert failure(config, ["inputs.input.source={file: bad.json}"]).startswith(
        f"cannot read Polygraphy inputs {config.parent / 'bad.json'}: Expecting property name"
    )
