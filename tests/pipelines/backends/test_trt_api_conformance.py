"""Every TensorRT and CUDA name the TensorRT backend uses exists in the real Python bindings of each
supported version -- so a typo in an API name, or a name a version removed, fails CI without a GPU.

The names are read from the backend's source (apiscan.py: attribute chains on ``trt`` / ``cudart``,
attributes of variables annotated with a TensorRT class, methods overridden in TensorRT subclasses),
never kept by hand. The real bindings are PyPI's ``tensorrt-cu12-bindings`` (TensorRT 10 and 11) and
``cuda-bindings`` (CUDA 12 and 13) wheels, downloaded once into the test download folder (bindings.py
explains how the TensorRT module is loaded without a GPU); offline, these tests are skipped with the reason.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.pipelines.backends.apiscan import Use, scan
from tests.pipelines.backends.bindings import fetch_wheel, probe

# The oldest and the newest release of each supported major version, cu12 builds (the cu13 builds of
# 10.16.1.11 and 11.4.0.106 were checked once by hand and give the same answers).
TENSORRT = ["10.0.1", "10.16.1.11", "11.0.0.114", "11.4.0.106"]
CUDA_BINDINGS = {12: "12.9.10", 13: "13.5.0"}
CUDA_PATHFINDER = "1.9.1"  # a dependency cuda.bindings imports at load time


def backend_uses() -> list[Use]:
    from layerscope.pipelines.backends import tensorrt
    from layerscope.pipelines.backends.trt import engine, runtime

    return [u for m in (engine, runtime, tensorrt) for u in scan(Path(m.__file__ or ""))]


def _failures(uses: list[Use], answers: dict[str, str]) -> list[str]:
    return sorted({f"{u.name}: {answers[u.name]} (used at {u.where})" for u in uses if answers[u.name] != "ok"})


def test_scanner_finds_chains_annotated_objects_overrides_stores_and_version_markers(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    import tensorrt as trt\n"
        "    from cuda.bindings import runtime as cudart\n"
        "def build(config: trt.IBuilderConfig) -> None:  # tensorrt<11\n"
        "    config.set_flagg(trt.BuilderFlag.FP16)\n"
        "    net: trt.INetworkDefinition = make()\n"
        "    net.mark_output(x).ignored\n"
        "    config.profiling_verbosity = 1\n"
        "def run() -> None:\n"
        "    cudart.cudaMemcpyAsync(1)\n"
        "class L(trt.IDebugListener):\n"
        "    def process_debug_tensor(self) -> None: ...\n"
        "    def _private(self) -> None: ...\n"
        "class S:\n"
        "    def __init__(self) -> None:\n"
        "        self._ctx: trt.IExecutionContext = make()\n"
        "    def go(self) -> None:\n"
        "        self._ctx.execute_async_v3(0)\n"
        "        self.other.x\n"
    )
    uses = {(u.module, u.name, u.store, u.constraint) for u in scan(source)}
    old = ("<", (11,))
    assert ("tensorrt", "IBuilderConfig.set_flagg", False, old) in uses  # the typo is reported, not skipped
    assert ("tensorrt", "BuilderFlag.FP16", False, old) in uses
    assert ("tensorrt", "INetworkDefinition.mark_output", False, old) in uses
    assert ("tensorrt", "IBuilderConfig.profiling_verbosity", True, old) in uses
    assert ("cuda.bindings.runtime", "cudaMemcpyAsync", False, None) in uses
    assert ("tensorrt", "IDebugListener.process_debug_tensor", False, None) in uses
    assert ("tensorrt", "IExecutionContext.execute_async_v3", False, None) in uses
    assert not any("_private" in u[1] or "other" in u[1] or "ignored" in u[1] for u in uses)


def test_the_backend_uses_what_the_issue_asks_for() -> None:
    """A scanner that silently found nothing would make the conformance tests vacuous."""
    names = {(u.name, u.constraint) for u in backend_uses()}
    expected = {
        ("IBuilderConfig.set_flag", ("<", (11,))),
        ("BuilderFlag.OBEY_PRECISION_CONSTRAINTS", ("<", (11,))),
        ("ILayer.set_output_type", ("<", (11,))),
        ("NetworkDefinitionCreationFlag.STRONGLY_TYPED", None),
        ("INetworkDefinition.mark_unfused_tensors_as_debug_tensors", (">=", (10, 12))),
        ("INetworkDefinition.mark_debug", None),
        ("IExecutionContext.execute_async_v3", None),
        ("IExecutionContext.set_tensor_address", None),
        ("IDebugListener.process_debug_tensor", None),
        ("EngineInspector.get_engine_information", None),
        ("ProfilingVerbosity.DETAILED", None),
        ("cudaMemcpyAsync", None),
        ("cudaMallocHost", None),
        ("ITensor.is_shape_tensor", ("<", (11,))),
        ("ITensor.is_execution_tensor", ("<", (11,))),
        ("ILayer.type", ("<", (11,))),
        ("ITimingCache.combine", None),
        ("ILogger.log", None),
        ("ILogger.Severity.INTERNAL_ERROR", None),
    }
    assert expected <= names


@pytest.mark.network
@pytest.mark.parametrize("version", TENSORRT)
def test_every_tensorrt_name_exists_in_the_real_bindings(version: str, downloads: Path, tmp_path: Path) -> None:
    site = fetch_wheel(downloads, "tensorrt-cu12-bindings", version)
    parts = tuple(int(x) for x in version.split("."))
    uses = [u for u in backend_uses() if u.module == "tensorrt" and u.applies_to(parts)]
    chains = sorted({(u.chain, u.store) for u in uses})
    answers = probe("tensorrt_bindings", [site], chains, stubs=tmp_path, major=parts[0])
    assert not _failures(uses, answers), f"TensorRT {version}:\n" + "\n".join(_failures(uses, answers))


@pytest.mark.network
@pytest.mark.parametrize("major", sorted(CUDA_BINDINGS))
def test_every_cuda_name_exists_in_the_real_cuda_bindings(major: int, downloads: Path) -> None:
    version = CUDA_BINDINGS[major]
    paths = [
        fetch_wheel(downloads, "cuda-bindings", version),
        fetch_wheel(downloads, "cuda-pathfinder", CUDA_PATHFINDER),
    ]
    uses = [u for u in backend_uses() if u.module == "cuda.bindings.runtime"]
    answers = probe("cuda.bindings.runtime", paths, sorted({(u.chain, u.store) for u in uses}), stubs=None)
    assert not _failures(uses, answers), f"cuda-bindings {version}:\n" + "\n".join(_failures(uses, answers))


# Facts the backend's design rests on (docs/tensorrt.md), checked against the real bindings.
WEAK_TYPING = [
    ("BuilderFlag", "FP16"),
    ("BuilderFlag", "BF16"),
    ("BuilderFlag", "INT8"),
    ("BuilderFlag", "FP8"),
    ("BuilderFlag", "OBEY_PRECISION_CONSTRAINTS"),
    ("BuilderFlag", "PREFER_PRECISION_CONSTRAINTS"),
    ("ILayer", "precision"),
    ("ILayer", "set_output_type"),
]
UNFUSED = [
    ("INetworkDefinition", "mark_unfused_tensors_as_debug_tensors"),
    ("IExecutionContext", "unfused_tensors_debug_state"),
]


@pytest.mark.network
@pytest.mark.parametrize(
    ("version", "weak_typing", "unfused"),
    [("10.11.0.33", True, False), ("10.16.1.11", True, True), ("11.4.0.106", False, True)],
)
def test_version_facts(version: str, weak_typing: bool, unfused: bool, downloads: Path, tmp_path: Path) -> None:
    """TensorRT 11 removed weak typing (flags route: 10.x only); unfused debug tensors exist from 10.12."""
    site = fetch_wheel(downloads, "tensorrt-cu12-bindings", version)
    chains = [(c, False) for c in WEAK_TYPING + UNFUSED + [("NetworkDefinitionCreationFlag", "STRONGLY_TYPED")]]
    answers = probe("tensorrt_bindings", [site], chains, stubs=tmp_path, major=int(version.split(".")[0]))
    expected = {"NetworkDefinitionCreationFlag.STRONGLY_TYPED"}
    expected |= {".".join(c) for c in WEAK_TYPING} if weak_typing else set()
    expected |= {".".join(c) for c in UNFUSED} if unfused else set()
    assert {".".join(c) for c, _ in chains if answers[".".join(c)] == "ok"} == expected
