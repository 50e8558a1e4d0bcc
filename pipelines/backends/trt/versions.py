"""Which TensorRT is installed, whether it can run here, and what each version allows -- without importing it.

Facts this module encodes (checked against the real bindings of TensorRT 10.16 and 11.4 by the API
conformance test, and stated in docs/tensorrt.md):

* TensorRT 11 removed weak typing: no precision builder flags (``BuilderFlag.FP16``/``BF16``/``INT8``/
  ``FP8``), no ``OBEY``/``PREFER_PRECISION_CONSTRAINTS``, no ``ILayer.precision``/``set_output_type``.
  Every network is strongly typed, so precision must live in the ONNX graph: the ``typed`` route.
* TensorRT 10.x has both routes: ``typed`` (a strongly typed network from the precision-lowered ONNX) and
  ``flags`` (the FP32 graph with a builder precision flag; precision constraints on pinned layers, or on
  every layer with ``constrain: all``). ``typed`` is the default everywhere: it builds exactly the types the
  shared lowering wrote, so every backend runs the same graph, and it is the only route on 11.
* ``INetworkDefinition.mark_unfused_tensors_as_debug_tensors`` (dump_mode ``unfused``) exists from 10.12.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SUPPORTED_MAJORS = (10, 11)
UNFUSED_SINCE = (10, 12)
ROUTES = ("typed", "flags")
DUMP_MODES = ("outputs", "debug", "unfused")
ALTERNATIVE = "`layerscope backends` lists what is available; the onnxruntime backend runs anywhere without a GPU"
# The pip distributions that install ``import tensorrt`` (the meta package, or one per CUDA major).
DISTRIBUTIONS = ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-cu11")


@dataclass(frozen=True)
class Version:
    parts: tuple[int, ...]
    text: str

    @property
    def major(self) -> int:
        return self.parts[0]

    def at_least(self, *parts: int) -> bool:
        return self.parts[: len(parts)] >= parts

    def __str__(self) -> str:
        return self.text


def parse_version(text: str) -> Version:
    """'10.16.1.11', '10.7.0.post1', '11.0.0.114' -> Version; ValueError when it has no leading number."""
    numbers = re.findall(r"\d+", text.split("+")[0].split(".post")[0])
    if not numbers:
        raise ValueError(f"not a TensorRT version: {text!r}")
    return Version(tuple(int(n) for n in numbers), text)


def unavailable_reason(
    *, installed: bool, version: Version | None, cuda_python: bool, devices: int, device_error: str = ""
) -> str | None:
    """None when the backend can run; otherwise one sentence: what is missing and what to do."""
    if not installed:
        return (
            "backend tensorrt needs TensorRT (pip install 'layerscope[tensorrt-cu12]' or "
            "'layerscope[tensorrt-cu13]', by the CUDA version nvidia-smi shows; an NVIDIA GPU and driver), "
            f"which is not installed here; {ALTERNATIVE}"
        )
    if version is None or version.major not in SUPPORTED_MAJORS:
        found = f"TensorRT {version}" if version is not None else "a TensorRT whose version could not be read"
        return f"backend tensorrt supports TensorRT 10.x and 11.x, and {found} is installed here; {ALTERNATIVE}"
    if not cuda_python:
        return (
            f"backend tensorrt needs cuda-python (pip package cuda-python>=12.8, for device memory and streams) "
            f"next to TensorRT {version}, and it is not installed here; {ALTERNATIVE}"
        )
    if devices < 1:
        detail = f" ({device_error})" if device_error else ""
        return (
            f"backend tensorrt needs a CUDA device: TensorRT {version} is installed but no CUDA device is "
            f"visible{detail}; {ALTERNATIVE}"
        )
    return None


def resolve_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The run's options with their defaults filled in (the same on every version)."""
    out = dict(options)
    out.setdefault("precision_mode", "typed")  # on every version: flags is opt-in on 10 and refused on 11
    out.setdefault("dump_mode", "outputs")
    if out.get("precision_mode") == "flags":
        out.setdefault("strict", True)
        out.setdefault("constrain", "pinned")
    else:
        # Meaningless for typed precision: kept out of the keys and the report. (``constrain`` is left for
        # option_problems to refuse: a user asking to force every layer must not be ignored silently.)
        out.pop("strict", None)
    return out


def option_problems(version: Version | None, precision: str, options: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(option key, message) for each option this TensorRT cannot honour; empty when all is well."""
    problems: list[tuple[str, str]] = []
    if precision in ("int8", "fp8"):
        problems.append(
            (
                "precision",
                f"{precision} on the TensorRT backend is not wired up yet (the typed route needs the Q/DQ model "
                "with calibrated scales, the flags route a calibration cache); the onnxruntime backend runs it",
            )
        )
    mode = options.get("precision_mode")
    if version is not None and mode == "flags" and version.major >= 11:
        problems.append(
            (
                "precision_mode",
                f"TensorRT {version} has no builder precision flags (TensorRT 11 removed weak typing); use "
                "precision_mode: typed, which builds the precision-lowered ONNX graph (FP16/BF16 islands, "
                "pinned layers FP32) as a strongly typed network",
            )
        )
    if "constrain" in options and mode != "flags":
        problems.append(
            (
                "constrain",
                "constrain applies to precision_mode: flags (TensorRT 10's builder precision flag with per-layer "
                "constraints); with precision_mode: typed each layer's precision is in the lowered graph",
            )
        )
    dump_mode = options.get("dump_mode", "outputs")
    if version is not None and dump_mode == "unfused" and not version.at_least(*UNFUSED_SINCE):
        problems.append(
            (
                "dump_mode",
                f"dump_mode unfused needs TensorRT 10.12 or newer (mark_unfused_tensors_as_debug_tensors); "
                f"TensorRT {version} offers dump_mode outputs or debug",
            )
        )
    return problems
