"""Code versions come from real imports: editing any module a stage imports (transitively) changes the stage's
version, and editing a module it does not import leaves it alone (issue 10, item 8: the compare stage's hand-written
list once left out the metrics kernel, so editing the kernel served stale numbers)."""

from __future__ import annotations

from pathlib import Path

import pytest

from layerscope.runner import codeversion
from layerscope.runner.codeversion import closure, code_version, module_file

STAGES = ("build", "calibrate", "dump", "compare", "attribute", "report")


@pytest.fixture
def edited(monkeypatch: pytest.MonkeyPatch):
    """Make one module's source read as edited (a comment appended), through the reader the versions use."""
    original = codeversion._file_digest.__wrapped__

    def edit(module: str) -> None:
        target = module_file(module)
        assert target is not None

        def digest(path: Path) -> str:
            if path == target:
                import hashlib

                return hashlib.sha256(path.read_bytes() + b"\n# edited\n").hexdigest()
            return original(path)

        monkeypatch.setattr(codeversion, "_file_digest", digest)

    yield edit
    monkeypatch.undo()
    codeversion.clear()


def stage_module(kind: str) -> str:
    return f"layerscope.pipelines.stages.{kind}"


def test_the_closure_follows_function_level_imports_and_skips_type_checking_blocks() -> None:
    compare = closure(stage_module("compare"))
    assert "layerscope.pipelines.metrics.kernel" in compare  # imported inside a function, via stats
    assert "layerscope.pipelines.metrics.stats" in compare
    assert "layerscope.runner.jsonio" in compare  # writes the JSON
    assert "layerscope.pipelines.metrics" in compare  # a package on the path: its __init__ runs
    # compare names Experiment only under TYPE_CHECKING: the experiment loader is not compare's code
    assert "layerscope.pipelines.experiment.load" not in compare
    assert "layerscope.pipelines.stages.report" not in compare  # a sibling re-exported by stages/__init__


def test_from_package_import_name_resolves_to_the_submodule() -> None:
    attribute = closure(stage_module("attribute"))
    assert "layerscope.pipelines.analysis.attribution" in attribute
    assert "layerscope.pipelines.backends.onnxruntime" in attribute  # session options
    assert "layerscope.pipelines.stages.compare" in attribute  # its metric settings
    assert "layerscope.pipelines.lowering.lower" in attribute  # the estimate's lowering


@pytest.mark.parametrize("kind", STAGES)
def test_editing_any_module_a_stage_imports_changes_its_version(kind: str, edited, monkeypatch) -> None:
    module = stage_module(kind)
    modules = sorted(closure(module))
    before = code_version(module)
    for dep in modules:  # (the closures stay memoised: appending a comment changes no import)
        monkeypatch.undo()
        edited(dep)
        assert code_version(module) != before, f"editing {dep} left {kind}'s version unchanged"


@pytest.mark.parametrize("kind", STAGES)
def test_editing_a_module_a_stage_does_not_import_leaves_it(kind: str, edited) -> None:
    module = stage_module(kind)
    before = code_version(module)
    unrelated = "layerscope.pipelines.reports.diff_render"
    assert unrelated not in closure(module)
    edited(unrelated)
    assert code_version(module) == before


def test_versions_are_computed_once_per_process() -> None:
    codeversion.clear()
    code_version(stage_module("compare"))
    hits = codeversion.closure.cache_info().hits
    code_version(stage_module("compare"))
    assert codeversion.closure.cache_info().hits == hits + 1
