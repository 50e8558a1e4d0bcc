"""Shared fixtures: an isolated cache per test, and helpers to write configs and tiny models."""

from __future__ import annotations

import textwrap
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
