"""Docs that are generated must be current; the README's commands must be the ones CI runs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

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
    command = 'pip install -e ".[test]" && scripts/check'
    assert command in readme and command in ci
    assert "pip install -e . && layerscope run configs/unet-fp16.yaml" in readme


@pytest.mark.slow
def test_python_api_doc_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """Every python block of the README and docs/python-api.md, in order, in one namespace, on the demo config
    at a reduced input size (the code is the docs', unchanged)."""
    import re

    text = (ROOT / "README.md").read_text() + (ROOT / "docs" / "python-api.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) >= 4
    demo = (ROOT / "configs" / "unet-fp16.yaml").read_text()
    small = demo.replace("shape: [1, 3, 256, 256]", "shape: [1, 3, 32, 32]").replace("samples: 4\n", "samples: 2\n")
    assert small.count("32, 32") == 1 and "samples: 2\n" in small
    Path("configs").mkdir()
    Path("configs/unet-fp16.yaml").write_text(small)
    namespace: dict[str, object] = {}
    for block in blocks:
        exec(compile(block, "docs/python-api.md", "exec"), namespace)
    out = capsys.readouterr().out
    assert "\nfail\n" in out  # the demo fails its 0.5% limit at this size too
    assert "2 ['/thresholds/rel_error: -1 is less than" in out and "layers: [" in out


def test_every_test_reliability_md_names_exists() -> None:
    """docs/reliability.md proves each guarantee by naming tests: each named test must exist."""
    import re

    text = (ROOT / "docs" / "reliability.md").read_text()
    named = re.findall(r"`(tests/[\w/]+\.py)::(test_\w+)`", text)
    assert len(named) >= 30
    missing = [f"{f}::{t}" for f, t in named if not re.search(rf"^def {t}\(", (ROOT / f).read_text(), re.M)]
    assert not missing, missing
