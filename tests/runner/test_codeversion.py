"""Code versions come from real imports: editing any module a stage imports (transitively) changes the stage's
version, and editing a module it does not import leaves it alone (issue 10, item 8: the compare stage's hand-written
list once left out the metrics kernel, so editing the kernel served stale numbers)."""

from __future__ import annotations

import uuid
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


# -- the import lists remembered across processes (issue 14: ast.parse was ~0.25 s of every warm rerun) --------
@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A throwaway top-level package on sys.path (a new name each test: the import system remembers packages
    it found), its name, and the memo folder in ``tmp_path / "memo"``."""
    name = f"lsmemo_{uuid.uuid4().hex}"
    root = tmp_path / "src" / name
    root.mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "a.py").write_text(f"from {name} import b\n")
    (root / "b.py").write_text("X = 1\n")
    (root / "c.py").write_text("Y = 2\n")
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    codeversion.clear()
    codeversion.remember_in(tmp_path / "memo")
    yield root, name, tmp_path / "memo" / "imports"
    monkeypatch.undo()
    codeversion.remember_in(None)
    codeversion.clear()


def _parses(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    seen: list[Path] = []
    real = codeversion._parse_imports

    def counting(source: bytes, path: Path, top: str, package: str | None) -> tuple[str, ...]:
        seen.append(path)
        return real(source, path, top, package)

    monkeypatch.setattr(codeversion, "_parse_imports", counting)
    return seen


def test_a_new_process_reads_the_import_lists_from_the_memo(package, monkeypatch) -> None:
    _root, name, memo = package
    first = closure(f"{name}.a")
    assert f"{name}.b" in first and f"{name}.c" not in first
    assert any(memo.rglob("*.json"))
    codeversion.clear()  # as a new process
    parsed = _parses(monkeypatch)
    assert closure(f"{name}.a") == first
    assert parsed == []


def test_an_edited_module_is_parsed_again_not_answered_by_its_old_text(package, monkeypatch) -> None:
    root, name, _memo = package
    before = closure(f"{name}.a")
    (root / "a.py").write_text(f"from {name} import b\nfrom {name} import c\n")
    codeversion.clear()
    parsed = _parses(monkeypatch)
    after = closure(f"{name}.a")
    assert f"{name}.c" in after and f"{name}.c" not in before
    assert root / "a.py" in parsed


@pytest.mark.parametrize(
    "damage",
    [
        b"",
        b"{not json",
        b'{"source": "x", "parser": "y", "imports": ["lsmemo.c"]}',  # another text's entry
        b"[1, 2]",
        b'{"source": null, "imports": 3}',
    ],
)
def test_a_damaged_memo_is_parsed_again_and_rewritten(package, monkeypatch, damage: bytes) -> None:
    root, name, memo = package
    fresh = closure(f"{name}.a")
    entries = sorted(memo.rglob("*.json"))
    assert entries
    for entry in entries:
        entry.write_bytes(damage)
    codeversion.clear()
    parsed = _parses(monkeypatch)
    assert closure(f"{name}.a") == fresh
    assert root / "a.py" in parsed
    codeversion.clear()
    again = _parses(monkeypatch)
    assert closure(f"{name}.a") == fresh and again == []  # rewritten: the next process reads it


def test_the_memo_answers_only_for_the_parser_that_wrote_it(package, monkeypatch) -> None:
    _root, name, _memo = package
    closure(f"{name}.a")
    codeversion.clear()
    monkeypatch.setattr(codeversion, "_parser_key", lambda: "another parser")
    parsed = _parses(monkeypatch)
    closure(f"{name}.a")
    assert parsed  # a changed codeversion.py (or Python) does not trust its predecessor's lists


def test_an_unwritable_memo_only_costs_parsing(package, tmp_path: Path) -> None:
    _root, name, _memo = package
    blocker = tmp_path / "file"
    blocker.write_text("")
    codeversion.remember_in(blocker)  # imports/ cannot be made under a file
    assert f"{name}.b" in closure(f"{name}.a")
