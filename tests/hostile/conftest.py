"""The hostile-input suite: what a careless or malicious user, model, file or machine can do to layerscope.

Every case asserts the exit code and the message, and that no traceback and no "internal error" reached the
user. ``cli`` runs the command line in process; ``cli_process`` runs it as a real process (for resource
limits, read-only mounts and concurrency).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from layerscope.cli import main
from tests.models import chain_model

CHAIN = """\
name: chain
model: model.onnx
samples: 2
inputs:
  input: {shape: [1, 4, 8, 8], source: {random: normal, seed: 0}}
runs:
  fp32: {precision: fp32}
  fp16: {precision: fp16}
thresholds: {rel_error: 0.1, max_deviation_ratio: 0.5}
"""


@dataclass
class Result:
    code: int
    out: str
    err: str

    def assert_clean(self) -> None:
        """No traceback and no "internal error" reached the user, whatever the exit code."""
        text = self.out + self.err
        assert "Traceback" not in text and "internal error" not in text, text

    def expect(self, code: int, *messages: str) -> Result:
        """The exit code, each message (in stdout or stderr), and nothing a user should never see."""
        self.assert_clean()
        assert self.code == code, f"exit {self.code}, expected {code}:\n{self.out}\n{self.err}"
        for message in messages:
            assert message in self.out + self.err, f"{message!r} not in:\n{self.out}\n{self.err}"
        return self


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    def run(*args: str) -> Result:
        capsys.readouterr()
        code = main(list(args))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def layerscope_process(
    *args: str, cwd: Path, preexec: Callable[[], None] | None = None, wrap: list[str] | None = None
) -> Result:
    """layerscope in a process of its own (environment as the test's: its cache, its working directory)."""
    cmd = [*(wrap or []), sys.executable, "-m", "layerscope", *args]
    proc = subprocess.run(
        cmd, cwd=cwd, capture_output=True, text=True, preexec_fn=preexec, env=dict(os.environ), timeout=300
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def chain(tmp_path: Path) -> Callable[..., Path]:
    """chain(text=CHAIN, **model) -> a config next to a small chain model (configs/model.onnx)."""
    folder = tmp_path / "configs"
    folder.mkdir(exist_ok=True)

    def write(text: str = CHAIN, name: str = "exp.yaml", **model_options: object) -> Path:
        if not (folder / "model.onnx").exists() or model_options:
            chain_model(folder / "model.onnx", **model_options)  # type: ignore[arg-type]
        path = folder / name
        path.write_text(textwrap.dedent(text))
        return path

    return write
