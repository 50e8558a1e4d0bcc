"""A stage's code version: the digest of every module of the project that its module really imports.

The modules are found by reading source, never by importing it: each module's ``import`` and ``from ... import``
statements, at any depth (imports inside functions count: the project imports heavy modules lazily), except
those under ``if TYPE_CHECKING:`` (annotations only; following them would make every stage depend on
everything). ``from pkg import name`` is the submodule ``pkg.name`` when there is one, else ``pkg`` itself,
and every package on a module's dotted path is included (its ``__init__`` runs on import), by its own
source. Only modules of the importing module's own top-level package are followed: third-party code is
versioned by its distribution's version in the keys that need it.

So a stage's version covers exactly the code that can compute its output, with no hand-written module list to
go stale: editing any module in the closure changes the version, and editing any other module does not. The
closure and the digests are computed once per process (``clear`` forgets them, for tests that edit sources).

What a module imports is also remembered across processes (:func:`remember_in`, the cache's memo folder), keyed
by the digest of the module's bytes together with the digest of this parser's own source and Python's version:
the memo answers only for exactly the text that would be parsed, so it is as safe as parsing it, and a damaged
or foreign memo entry is ignored and parsed again.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import sys
import threading
from functools import cache
from pathlib import Path

_LOCK = threading.Lock()
_MEMO: list[Path] = []  # the folder import lists are remembered in (remember_in); none: parse every module


def remember_in(folder: Path | None) -> None:
    """Remember what each module imports in ``folder`` (a cache's memo folder), across processes; None: don't."""
    _MEMO[:] = [] if folder is None else [Path(folder) / "imports"]


@cache
def _package_dir(name: str) -> Path | None:
    """The folder of a package (packages may be mapped to folders outside their parent's: package-dir)."""
    try:
        spec = importlib.util.find_spec(name)  # imports only the parent packages, whose __init__ runs anyway
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


@cache
def module_file(name: str) -> Path | None:
    """The source file of a module of the project, or None when ``name`` is not a module (an attribute)."""
    parts = name.split(".")
    # The top package and its direct subpackages are located by the import system; below them, by folder.
    base = _package_dir(".".join(parts[:2])) if len(parts) >= 2 else None
    if base is None:
        top = _package_dir(parts[0])
        if top is None:
            return None
        if len(parts) == 1:
            return top / "__init__.py"
        path = top / parts[1]
        return path.with_suffix(".py") if len(parts) == 2 and path.with_suffix(".py").is_file() else None
    path = base.joinpath(*parts[2:])
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    return None


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _statements(body: list[ast.stmt]) -> list[ast.stmt]:
    """Every statement in ``body`` at any depth, except the bodies of ``if TYPE_CHECKING:`` (their ``else`` counts).

    Imports are statements, so only statement lists are descended (bodies, ``else``, ``finally``, handlers,
    ``match`` cases): walking every expression node with ``ast.walk`` cost seconds per stage kind, on every run.
    """
    out: list[ast.stmt] = []
    todo = list(reversed(body))
    while todo:
        node = todo.pop()
        out.append(node)
        children: list[ast.stmt] = []
        if not (isinstance(node, ast.If) and _type_checking(node.test)):
            children += getattr(node, "body", [])
        children += getattr(node, "orelse", []) + getattr(node, "finalbody", [])
        for part in getattr(node, "handlers", []) + getattr(node, "cases", []):
            children += part.body
        todo += reversed(children)
    return out


@cache
def _parser_key() -> str:
    """What the import lists depend on besides a module's text: this parser's source and Python's grammar."""
    own = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()
    return f"{own}:{sys.version_info.major}.{sys.version_info.minor}"


def _memo_file(source_digest: str, top: str, package: str | None) -> Path | None:
    if not _MEMO:
        return None
    name = hashlib.sha256(json.dumps([_parser_key(), source_digest, top, package]).encode()).hexdigest()
    return _MEMO[0] / name[:2] / f"{name}.json"


def _recalled(memo: Path, source_digest: str) -> tuple[str, ...] | None:
    """The import list a memo entry holds for exactly this text, or None (missing, damaged, another text)."""
    try:
        stored = json.loads(memo.read_bytes())
        names = stored["imports"]
        if stored["source"] != source_digest or stored["parser"] != _parser_key():
            return None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            return None
        return tuple(names)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _remember(memo: Path, source_digest: str, names: tuple[str, ...]) -> None:
    from layerscope.runner.files import atomic_write

    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(memo, json.dumps({"source": source_digest, "parser": _parser_key(), "imports": list(names)}))
    except OSError:
        pass  # the memo is an optimisation: a read-only cache parses every time


@cache
def _imported(path: Path, top: str, module: str | None = None) -> tuple[str, ...]:
    """Modules of ``top`` that the source at ``path`` imports (outside ``if TYPE_CHECKING:`` blocks).

    Memoised: the stage kinds' closures share most modules, and parsing is what a closure costs; across
    processes by the digest of the very bytes that would be parsed (see the module doc)."""
    package = None
    if module is not None:
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    source = path.read_bytes()
    source_digest = hashlib.sha256(source).hexdigest()
    memo = _memo_file(source_digest, top, package)
    if memo is not None:
        recalled = _recalled(memo, source_digest)
        if recalled is not None:
            return recalled
    names = _parse_imports(source, path, top, package)
    if memo is not None:
        _remember(memo, source_digest, names)
    return names


def _parse_imports(source: bytes, path: Path, top: str, package: str | None) -> tuple[str, ...]:
    tree = ast.parse(source.decode("utf-8"), filename=str(path))
    out: list[str] = []
    for node in _statements(tree.body):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names if a.name == top or a.name.startswith(top + ".")]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                if package is None:
                    continue
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            if base != top and not base.startswith(top + "."):
                continue
            out.append(base)
            out += [f"{base}.{a.name}" for a in node.names if a.name != "*"]  # kept only where a submodule
    return tuple(out)


def _with_parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


@cache
def closure(module: str) -> frozenset[str]:
    """``module`` and every module of its top-level package it imports, transitively, plus the packages on each
    one's dotted path.

    A package on the path is included by its own source only: its ``__init__`` runs on import, but what *it*
    imports is followed only where a module imports the package itself (``from pkg import name``) -- else a
    package that re-exports its submodules would make every module depend on all of them.
    """
    top = module.split(".")[0]
    followed: set[str] = set()
    included: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name in followed:
            continue
        path = module_file(name)
        if path is None:  # ``from pkg import attribute``: not a module
            continue
        followed.add(name)
        included.update(p for p in _with_parents(name) if module_file(p) is not None)
        todo += _imported(path, top, name)
    return frozenset(included)


@cache
def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def code_version(*modules: str) -> str:
    """Digest of the sources of ``modules`` and everything of the project they import (see the module doc)."""
    with _LOCK:
        names = sorted(set().union(*(closure(m) for m in modules)))
        h = hashlib.sha256()
        for name in names:
            path = module_file(name)
            assert path is not None
            h.update(name.encode())
            h.update(b"\0")
            h.update(_file_digest(path).encode())
        return h.hexdigest()


def clear() -> None:
    """Forget the memoised closures and digests (for tests that edit sources)."""
    closure.cache_clear()
    _file_digest.cache_clear()
    _package_dir.cache_clear()
    module_file.cache_clear()
    _imported.cache_clear()
    _parser_key.cache_clear()
