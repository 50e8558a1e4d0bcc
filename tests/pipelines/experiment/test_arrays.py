"""Array files in their natural layouts: samples first or stacked along the batch axis, told apart by rank, with
counts, shapes and dtypes checked at validate (the file's real shape in every message) as at run time."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from layerscope.pipelines.experiment import load_experiment
from layerscope.pipelines.experiment.inputs import sample_reader
from layerscope.runner.errors import SpecError, UsageError
from tests.models import classifier_model

CONFIG = """\
name: arrays
model: m.onnx
samples: 2
inputs:
  input:
    source: {file: x.npy}
runs:
  fp32: {precision: fp32}
  fp16: {precision: fp16}
"""


@pytest.fixture
def config(write_config) -> Path:
    path = write_config(CONFIG)
    classifier_model(path.parent / "m.onnx")  # input [1, 3, 16, 16]
    return path


def stack(n: int, *shape: int, dtype: str = "float32") -> np.ndarray:
    return np.arange(n * int(np.prod(shape)), dtype=np.float64).reshape(n, *shape).astype(dtype)


def problems(path: Path, overrides: list[str] | None = None) -> list[str]:
    with pytest.raises(SpecError) as err:
        load_experiment(path, overrides, deep=True)
    return [f"{p.pointer}: {p.message}" for p in err.value.problems]


def samples(path: Path, overrides: list[str] | None = None) -> list[np.ndarray]:
    exp = load_experiment(path, overrides, deep=True)
    with sample_reader(exp.inputs[0], exp.samples) as read:
        return [read(i) for i in range(exp.samples)]


@pytest.mark.parametrize("layout", ["stacked", "samples-first"])
def test_both_layouts_give_the_same_samples(config: Path, layout: str) -> None:
    data = stack(3, 3, 16, 16)
    np.save(config.parent / "x.npy", data if layout == "stacked" else data[:, None])
    got = samples(config, ["samples=3"])
    for i in range(3):
        np.testing.assert_array_equal(got[i], data[i : i + 1])


def test_a_batch_of_eight_takes_eight_rows_per_sample(config: Path) -> None:
    classifier_model(config.parent / "m.onnx", batch="N")
    data = stack(16, 3, 16, 16)
    np.save(config.parent / "x.npy", data)
    got = samples(config, ["inputs.input.shape=[8, 3, 16, 16]"])
    np.testing.assert_array_equal(got[1], data[8:16])


def test_validate_checks_counts_shapes_and_dtypes_with_the_files_shape(config: Path) -> None:
    ptr = "/inputs/input/source"
    np.save(config.parent / "x.npy", stack(2, 3, 16, 16))
    assert problems(config, ["samples=3"]) == [
        f"{ptr}: x.npy holds 2 samples (shape [2, 3, 16, 16]); the config asks for 3"
    ]
    np.save(config.parent / "x.npy", stack(2, 3, 8, 8))
    assert problems(config) == [
        f"{ptr}: x.npy has shape [2, 3, 8, 8], which holds neither samples of shape [1, 3, 16, 16] along a first "
        "axis ([N, 1, 3, 16, 16]) nor a stack of them along the batch axis ([N, 3, 16, 16])"
    ]
    np.save(config.parent / "x.npy", stack(2, 3, 16, 16, dtype="complex64"))
    assert problems(config) == [
        f"{ptr}: x.npy holds complex64 values (shape [2, 3, 16, 16]), which cannot be used as float32 input 'input'"
    ]
    np.save(config.parent / "x.npy", stack(5, 3, 16, 16).reshape(5, 1, 3, 16, 16))
    assert len(samples(config, ["samples=5"])) == 5


def test_npz_and_hdf5_headers_are_read_without_the_data(config: Path) -> None:
    np.savez(config.parent / "x.npz", a=stack(1, 3, 16, 16))
    assert problems(config, ["inputs.input.source={file: x.npz, key: a}"]) == [
        "/inputs/input/source: x.npz holds 1 samples (shape [1, 3, 16, 16]); the config asks for 2"
    ]
    assert problems(config, ["inputs.input.source={file: x.npz, key: b}"]) == [
        "/inputs/input/source: x.npz has no array 'b' (it has: a)"
    ]
    with h5py.File(config.parent / "x.h5", "w") as f:
        f["d"] = stack(4, 3, 16, 16)
    got = samples(config, ["inputs.input.source={file: x.h5, dataset: d}", "samples=4"])
    np.testing.assert_array_equal(got[3], stack(4, 3, 16, 16)[3:4])


def test_run_time_gives_the_same_message_as_validate(config: Path) -> None:
    np.save(config.parent / "x.npy", stack(2, 3, 16, 16))
    exp = load_experiment(config, ["samples=3"])  # run: no deep check at load
    with pytest.raises(UsageError) as err, sample_reader(exp.inputs[0], 3):
        pass
    assert err.value.message == "x.npy holds 2 samples (shape [2, 3, 16, 16]); the config asks for 3"
