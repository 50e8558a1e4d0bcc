"""Shared fixtures: an isolated cache per test, and helpers to write configs and tiny models."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own cache directory (never the user's) and runs in its own working directory."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("LAYERSCOPE_CACHE_DIR", str(cache))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return cache


SMALL_UNET = """\
name: small
model:
  builtin: unet
  options: {base_channels: 4, depth: 1}
samples: 2
inputs:
  input:
    shape: [1, 3, 16, 16]
    source: {random: normal, seed: 0}
runs:
  fp32: {backend: onnxruntime, precision: fp32}
  fp16: {backend: onnxruntime, precision: fp16}
compare:
  reference: fp32
  candidates: [fp16]
thresholds:
  rel_error: 0.1
  max_deviation_ratio: 0.5
"""


@pytest.fixture
def write_config(tmp_path: Path):
    """write_config(text, name="exp.yaml") -> path of a config file in the test's config folder."""
    folder = tmp_path / "configs"
    folder.mkdir(exist_ok=True)

    def write(text: str = SMALL_UNET, name: str = "exp.yaml") -> Path:
        path = folder / name
        path.write_text(textwrap.dedent(text))
        return path

    return write


@pytest.fixture
def no_tensorrt(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """TensorRT absent whatever this machine has: for tests of what a user without it sees (they pass on a GPU
    host too). The backend's probe is answered "not installed", and what it cached is forgotten before and after."""
    from layerscope.pipelines import backends
    from layerscope.pipelines.backends import tensorrt

    backend = backends.get("tensorrt")

    def forget() -> None:
        for name in ("_unavailable", "installed_version", "environment"):
            backend.__dict__.pop(name, None)

    forget()
    monkeypatch.setattr(tensorrt, "_has_module", lambda name: False)
    yield
    forget()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """gpu tests need TensorRT and a CUDA device; network tests can be turned off with LAYERSCOPE_OFFLINE=1."""
    import importlib.util
    import os

    has_trt = importlib.util.find_spec("tensorrt") is not None
    has_cuda = _cuda_device()
    offline = os.environ.get("LAYERSCOPE_OFFLINE") == "1"
    for item in items:
        if "gpu" in item.keywords and not (has_trt and has_cuda):
            why = "TensorRT is not installed" if not has_trt else "no CUDA device is visible"
            item.add_marker(pytest.mark.skip(reason=f"gpu test: {why}"))
        if "network" in item.keywords and offline:
            item.add_marker(pytest.mark.skip(reason="network test: LAYERSCOPE_OFFLINE=1"))


def _cuda_device() -> bool:
    import ctypes

    for lib in ("libcuda.so.1", "libcuda.so"):
        try:
            cuda = ctypes.CDLL(lib)
        except OSError:
            continue
        count = ctypes.c_int(0)
        return cuda.cuInit(0) == 0 and cuda.cuDeviceGetCount(ctypes.byref(count)) == 0 and count.value > 0
    return False


@pytest.fixture(scope="session")
def downloads() -> Path:
    """A folder shared by test sessions for downloaded wheels/models (never in the repository)."""
    import os

    folder = Path(os.environ.get("LAYERSCOPE_TEST_DOWNLOADS", Path.home() / ".cache" / "layerscope-test"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def dask_cluster() -> Iterator[str]:
    """The address of a Dask LocalCluster of 2 worker processes (one thread each), shared by the tests."""
    pytest.importorskip("distributed", reason="the dask extra is not installed")
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        yield cluster.scheduler_address


def without_execution(report: dict) -> dict:
    """A report document less what differs between two runs of the same stages (timings, cache, keys' order)."""
    return {k: v for k, v in report.items() if k != "execution"}
