"""TensorRT's INT8 calibration cache, the text file IInt8EntropyCalibrator2 (and the other calibrators) read
and write, so scales calibrated here can be reused by a TensorRT 10 build and vice versa.

Format: a header line ``TRT-<version>-<Algorithm>`` (e.g. ``TRT-101401-EntropyCalibration2`` for TensorRT
10.14.1; TensorRT refuses a cache whose version differs from its own), then one line per tensor,
``<tensor name>: <hex>``, where ``<hex>`` is the IEEE-754 bit pattern of the float32 *scale* written in
hexadecimal without leading zeros (``3c010a14``; ``0`` for a zero scale). The scale is the per-tensor
dynamic range divided by 127: TensorRT quantizes symmetrically, ``q = clamp(round(x / scale), -127, 127)``.
Tensor names are the network's tensor names, which for a parsed ONNX model are the ONNX tensor names.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

from layerscope.runner.errors import UsageError

_HEADER = re.compile(r"^TRT-(\d+)-(\w+)$")
_LINE = re.compile(r"^(.*): ([0-9a-fA-F]{1,8})$")


def version_number(version: str) -> int:
    """TensorRT's NV_TENSORRT_VERSION for a dotted version: 10.14.1 -> 101401, 8.6.1 -> 8601."""
    parts = [int(p) for p in version.split(".")[:3]] + [0, 0]
    major, minor, patch = parts[:3]
    return major * 10000 + minor * 100 + patch if major >= 10 else major * 1000 + minor * 100 + patch


def write_trt_cache(
    scales: dict[str, float], path: Path, *, trt_version: str, algorithm: str = "EntropyCalibration2"
) -> None:
    lines = [f"TRT-{version_number(trt_version)}-{algorithm}"]
    for name in sorted(scales):
        if "\n" in name or name.endswith(":"):
            continue  # not representable in the line format
        bits = struct.unpack(">I", struct.pack(">f", float(scales[name])))[0]
        lines.append(f"{name}: {bits:x}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def read_trt_cache(path: Path) -> tuple[int, str, dict[str, float]]:
    """(version number, algorithm, {tensor: scale}) of a TensorRT calibration cache file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read TensorRT calibration cache {path}: {exc}") from None
    lines = [line.rstrip("\r") for line in text.splitlines() if line.strip()]
    header = _HEADER.match(lines[0]) if lines else None
    if header is None:
        raise UsageError(
            f"{path} is not a TensorRT calibration cache (first line should look like TRT-101401-EntropyCalibration2)"
        )
    scales: dict[str, float] = {}
    for number, line in enumerate(lines[1:], start=2):
        m = _LINE.match(line)
        if m is None:
            raise UsageError(f"{path}:{number}: expected 'tensor: hexscale', got {line!r}")
        scales[m.group(1)] = struct.unpack(">f", struct.pack(">I", int(m.group(2), 16)))[0]
    return int(header.group(1)), header.group(2), scales


def scales_from_ranges(ranges: dict[str, tuple[float, float]]) -> dict[str, float]:
    """Symmetric INT8 scales (amax / 127) from calibrated ranges."""
    return {name: max(abs(lo), abs(hi)) / 127.0 for name, (lo, hi) in ranges.items()}


def ranges_from_scales(scales: dict[str, float]) -> dict[str, tuple[float, float]]:
    return {name: (-127.0 * s, 127.0 * s) for name, s in scales.items()}
