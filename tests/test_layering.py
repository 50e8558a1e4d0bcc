"""The architecture, checked: runner/ is the generic engine and imports nothing of the domain or the top
layer; pipelines/ does not reach up into the API or the command line; the public API is exactly the
documented set and importing it is cheap; every package is installed."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import layerscope

ROOT = Path(__file__).resolve().parents[1]
TOP = (
    "layerscope.api",
    "layerscope.cli",
    "layerscope.results",
    "layerscope.sides",
    "layerscope.sweeps",
    "layerscope.executors",
    "layerscope.__main__",
)

# The public API, as docs/python-api.md documents it.
DOCUMENTED = {
    "run",
    "plan",
    "diff",
    "fix",
    "load_report",
    "export",
    "Exported",
    "sweep",
    "diff_sweeps",
    "SweepResult",
    "SweepExperiment",
    "SweepDiff",
    "Report",
    "Comparison",
    "LayerResult",
    "Metrics",
    "Plan",
    "Diff",
    "FixResult",
    "LayerscopeError",
    "UsageError",
    "SpecError",
    "StageError",
    "RunError",
    "ReportError",
    "__version__",
}


def imports(folder: Path, package: str) -> list[tuple[str, int, str]]:
    """(file, line, imported module) for every import in the .py files under ``folder`` (relative imports
    resolved against ``package``, the folder's installed name)."""
    found = []
    for path in sorted(folder.rglob("*.py")):
        parts = path.relative_to(folder).with_suffix("").parts
        module = ".".join((package, *parts)).removesuffix(".__init__")
        where = str(path.relative_to(folder.parent))
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found += [(where, node.lineno, a.name) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = module.rsplit(".", node.level - (path.name == "__init__.py"))[0]
                    name = f"{base}.{node.module}" if node.module else base
                else:
                    name = node.module or ""
                found.append((where, node.lineno, name))
                found += [(where, node.lineno, f"{name}.{a.name}") for a in node.names]
    return found


def test_runner_imports_nothing_of_the_domain_or_the_top_layer() -> None:
    allowed = ("layerscope.runner", "layerscope._version")
    bad = [
        f"{file}:{line}: {name}"
        for file, line, name in imports(ROOT / "runner", "layerscope.runner")
        if (name == "layerscope" or name.startswith("layerscope.")) and not name.startswith(allowed)
    ]
    assert not bad, "runner/ must stay generic:\n" + "\n".join(bad)


def test_the_scan_sees_imports_anywhere_in_a_module(tmp_path: Path) -> None:
    """The check above cannot pass by missing imports inside functions or relative imports."""
    (tmp_path / "mod.py").write_text(
        "def f():\n"
        "    from layerscope.pipelines import stages\n"
        "    from ..pipelines import app\n"
        "    import layerscope.cli\n"
    )
    names = {name for _, _, name in imports(tmp_path, "layerscope.runner")}
    assert {"layerscope.pipelines", "layerscope.pipelines.app", "layerscope.cli"} <= names


def test_pipelines_do_not_reach_up_into_the_api_or_the_command_line() -> None:
    bad = [
        f"{file}:{line}: {name}"
        for file, line, name in imports(ROOT / "pipelines", "layerscope.pipelines")
        if name.startswith(TOP)
    ]
    assert not bad, "\n".join(bad)


def test_the_public_api_is_exactly_the_documented_set() -> None:
    assert set(layerscope.__all__) == DOCUMENTED
    assert len(layerscope.__all__) == len(set(layerscope.__all__))
    for name in layerscope.__all__:
        assert getattr(layerscope, name) is not None, name
    assert set(layerscope.__all__) <= set(dir(layerscope))
    doc = (ROOT / "docs" / "python-api.md").read_text()
    assert all(f"`{name}" in doc for name in DOCUMENTED - {"__version__"}), "document every exported name"


def test_importing_layerscope_is_cheap() -> None:
    code = (
        "import sys, layerscope\n"
        "heavy = ('numpy', 'onnx', 'onnxruntime', 'h5py', 'jsonschema', 'yaml', 'rich', 'pandas', 'matplotlib')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_package_folder_is_installed() -> None:
    """pyproject lists packages explicitly (the folders map onto the layerscope namespace): none forgotten."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    mapping = config["package-dir"]
    found = set()
    for name, folder in mapping.items():
        for init in sorted((ROOT / folder).rglob("__init__.py")):
            rel = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((name, *rel)))
    assert found == listed
