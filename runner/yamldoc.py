"""A YAML config read into plain data with the source position of every value, under bounds.

YAML is composed with the safe loader only (no tags that construct objects: configs never execute code)
and rebuilt into plain data while recording, for every JSON pointer, the line and column it came from.
Duplicate keys, which ``yaml.safe_load`` silently collapses, are errors; dates stay strings (YAML 1.2).
Rebuilding is bounded: YAML aliases can make a few lines expand to billions of values (an "alias bomb") or
refer to themselves, so the text, the number of values after expansion and the nesting depth have limits,
and passing one is a config error at the line where it happened. ``--set`` values are read the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from layerscope.runner.errors import SpecError, SpecProblem, UsageError


def escape_pointer_token(token: str | int) -> str:
    return str(token).replace("~", "~0").replace("/", "~1")


def pointer(*tokens: str | int) -> str:
    return "".join(f"/{escape_pointer_token(t)}" for t in tokens)


@dataclass
class Document:
    """Parsed config: plain data plus where each value came from."""

    source: str  # as shown to the user (the path as given)
    path: Path | None
    text: str
    data: Any
    positions: dict[str, tuple[int, int]] = field(default_factory=dict)  # pointer -> (line, col), 1-based
    key_positions: dict[str, tuple[int, int]] = field(default_factory=dict)  # pointer -> position of its key
    overrides: list[str] = field(default_factory=list)  # the --set expressions applied, in order
    overridden: dict[str, str] = field(default_factory=dict)  # pointer -> the --set expression that set it

    def locate(self, ptr: str, *, key: bool = False) -> tuple[int, int] | None:
        """Position of ``ptr``, or of its nearest ancestor that has one."""
        table = self.key_positions if key and ptr in self.key_positions else self.positions
        probe = ptr
        while True:
            if probe in table:
                return table[probe]
            if not probe:
                return None
            probe = probe.rsplit("/", 1)[0]

    def problem(self, ptr: str, message: str, *, key: bool = False) -> SpecProblem:
        for over_ptr, expr in self.overridden.items():
            if ptr == over_ptr or ptr.startswith(over_ptr + "/"):
                return SpecProblem(f"--set {expr}", ptr, message)
        pos = self.locate(ptr, key=key)
        if pos is None:
            return SpecProblem(self.source, ptr, message)
        line, col = pos
        lines = self.text.splitlines()
        excerpt = lines[line - 1] if 0 < line <= len(lines) else None
        return SpecProblem(self.source, ptr, message, line, col, excerpt)


# Far beyond any real experiment (the largest example config has ~100 values), far below what hurts.
MAX_TEXT_BYTES = 4 << 20
MAX_VALUES = 100_000
MAX_DEPTH = 64


class _TooLargeError(Exception):
    """The config passed a bound while it was rebuilt, at ``ptr`` (``node``: the value being expanded)."""

    def __init__(self, message: str, node: yaml.Node, ptr: str) -> None:
        super().__init__(message)
        self.message = message
        self.node = node
        self.ptr = ptr


class _Composer:
    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.problems: list[SpecProblem] = []
        self.values = 0
        self.path: set[int] = set()  # ids of the collections being rebuilt: an alias back to one is a cycle

    def build(self, node: yaml.Node, ptr: str, depth: int = 0) -> Any:
        self.values += 1
        if self.values > MAX_VALUES:
            raise _TooLargeError(
                f"the config expands to more than {MAX_VALUES:,} values (YAML aliases repeating each other?)", node, ptr
            )
        if depth > MAX_DEPTH:
            raise _TooLargeError(f"the config is nested more than {MAX_DEPTH} levels deep", node, ptr)
        if id(node) in self.path:
            raise _TooLargeError("a YAML alias refers to a value that contains it (a cycle)", node, ptr)
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
            self.path.add(id(node))
            try:
                return self._collection(node, ptr, depth)
            finally:
                self.path.discard(id(node))
        self.doc.positions.setdefault(ptr, (node.start_mark.line + 1, node.start_mark.column + 1))
        return _scalar(node)

    def _collection(self, node: yaml.Node, ptr: str, depth: int) -> Any:
        self.doc.positions.setdefault(ptr, (node.start_mark.line + 1, node.start_mark.column + 1))
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.tag not in _PLAIN_TAGS:
            # Only plain mappings and lists: a tag like !!python/object would construct code.
            raise yaml.constructor.ConstructorError(None, None, f"tag {node.tag!r} is not allowed", node.start_mark)
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    raise UsageError(f"{self.doc.source}: YAML merge keys (<<) are not supported; write the keys out")
                key = _scalar(key_node)
                if not isinstance(key, str):
                    key = str(key)
                child = f"{ptr}/{escape_pointer_token(key)}"
                if key in out:
                    self.doc.positions[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                    self.problems.append(self.doc.problem(child, f"duplicate key {key!r}"))
                    continue
                self.doc.key_positions[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                out[key] = self.build(value_node, child, depth + 1)
            return out
        return [self.build(item, f"{ptr}/{i}", depth + 1) for i, item in enumerate(node.value)]


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """The safe loader, reading 1e-6 as a number as YAML 1.2 does (PyYAML's YAML 1.1 rules need 1.0e-6)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)
# A config is JSON-like data. YAML 1.1 would read 2001-01-01 as a date (which no setting takes and no digest
# can spell): as in YAML 1.2, it is a string.
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in _Loader.yaml_implicit_resolvers.items()
}
_CONSTRUCTOR = yaml.SafeLoader("")
_PLAIN_TAGS = {"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}
_PLAIN_TYPES = (type(None), bool, int, float, str)


def _scalar(node: yaml.Node) -> Any:
    if not isinstance(node, yaml.ScalarNode):
        raise UsageError("mapping keys must be scalars")
    # SafeConstructor knows only plain YAML types; an unknown tag is a ConstructorError, reported as such.
    value = _CONSTRUCTOR.construct_object(node, deep=True)
    if not isinstance(value, _PLAIN_TYPES):  # an explicit !!timestamp, !!binary: plain data only
        raise yaml.constructor.ConstructorError(None, None, f"tag {node.tag!r} is not allowed", node.start_mark)
    return value


def load_document(path: Path, *, source: str | None = None) -> Document:
    try:
        size = path.stat().st_size if path.is_file() else 0
        if size > MAX_TEXT_BYTES:
            raise UsageError(f"config {path} is {size:,} bytes; a config may have at most {MAX_TEXT_BYTES:,}")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"config not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read config {path}: {exc}") from None
    return parse_document(text, source=source or str(path), path=path)


def parse_document(text: str, *, source: str, path: Path | None = None) -> Document:
    doc = Document(source=source, path=path, text=text, data=None)
    node = _compose(text, source)
    if node is None:
        raise SpecError([SpecProblem(source, "", "the config is empty")], source)
    composer = _Composer(doc)
    try:
        doc.data = composer.build(node, "")
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        raise SpecError([_located(source, text, f"unsupported YAML: {exc.problem}", mark)], source) from None
    except _TooLargeError as exc:
        # Where the expansion started (the top-level key whose value blew up), not the leaf the alias reached.
        top = "/" + exc.ptr.split("/")[1] if exc.ptr.count("/") >= 1 and exc.ptr else ""
        pos = doc.key_positions.get(top) or doc.positions.get(top)
        where: Any = pos if pos is not None else exc.node.start_mark
        raise SpecError([_located(source, text, exc.message, where, top)], source) from None
    if composer.problems:
        raise SpecError(composer.problems, source)
    return doc


def _compose(text: str, source: str) -> yaml.Node | None:
    """The YAML node graph of ``text`` (aliases not expanded yet), or a SpecError saying where it is invalid."""
    if len(text) > MAX_TEXT_BYTES:
        raise SpecError([SpecProblem(source, "", f"the config is longer than {MAX_TEXT_BYTES:,} characters")], source)
    try:
        return yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        problem = f"invalid YAML: {exc.problem or exc}"
        raise SpecError([_located(source, text, problem, exc.problem_mark or exc.context_mark)], source) from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow (NUL, other control characters)
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        what = f"character U+{exc.character:04X}" if isinstance(exc.character, int) else "character"
        problem = f"invalid YAML: {what} is not allowed in YAML text ({exc.reason})"
        raise SpecError([_located(source, text, problem, (line, column))], source) from None
    except yaml.YAMLError as exc:
        raise SpecError([SpecProblem(source, "", f"invalid YAML: {exc}")], source) from None
    except RecursionError:
        raise SpecError(
            [SpecProblem(source, "", f"the config is nested too deeply (limit {MAX_DEPTH})")], source
        ) from None


def _located(source: str, text: str, message: str, mark: Any, ptr: str = "") -> SpecProblem:
    """A problem at a YAML mark (0-based) or a (line, column) pair (1-based), with its line as the excerpt."""
    if mark is None:
        return SpecProblem(source, ptr, message)
    line, col = mark if isinstance(mark, tuple) else (mark.line + 1, mark.column + 1)
    lines = text.splitlines()
    excerpt = lines[line - 1] if 0 < line <= len(lines) else None
    if excerpt is not None:
        excerpt = "".join(c if c.isprintable() or c == "\t" else "?" for c in excerpt)
    return SpecProblem(source, ptr, message, line, col, excerpt)


def parse_value(text: str, what: str) -> Any:
    """One YAML value given on the command line (``--set``), under the same bounds as a config."""
    doc = Document(source=what, path=None, text=text, data=None)
    try:
        node = _compose(text, what)
        if node is None:
            return None
        composer = _Composer(doc)
        value = composer.build(node, "")
    except SpecError as exc:
        raise UsageError(f"{what}: the value is not valid YAML ({exc.problems[0].message})") from None
    except (_TooLargeError, yaml.constructor.ConstructorError) as exc:
        raise UsageError(f"{what}: {getattr(exc, 'message', None) or getattr(exc, 'problem', exc)}") from None
    if composer.problems:
        raise UsageError(f"{what}: {composer.problems[0].message}")
    return value
