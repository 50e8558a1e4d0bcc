"""Docs that are generated must be current; the README's commands must be the ones CI runs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_spec_reference_is_current() -> None:
    spec = importlib.util.spec_from_file_location("gen", ROOT / "docs" / "generate_spec_reference.py")
    assert spec is not None and spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert (ROOT / "docs" / "spec-reference.md").read_text() == gen.render(), (
        "run: python docs/generate_spec_reference.py"
    )


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    command = 'pip install -e ".[test]" && python -m pytest'
    assert command in readme and command in ci
    assert "pip install -e . && layerscope run configs/unet-fp16.yaml" in readme
