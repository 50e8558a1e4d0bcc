"""Layer selection: which ONNX nodes a ``layers``/``overrides`` entry means.

A selector is a glob on the node name (a bare string or ``{name: ...}``), a Python regular expression
that must match the whole name (``{regex: ...}``), or op types (``{op: Conv}`` / ``{op: [Conv, Relu]}``).
Name selectors also match a node by any of its output tensor names, since that is the name users see in
Netron and in TensorRT logs. A selection is ``all``, a list of selectors, or ``{include, exclude}``.
Every selector must match at least one node; one that does not is an error with a suggestion.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from layerscope.pipelines.models.summary import ModelSummary, NodeInfo
from layerscope.runner.spec import ProblemCollector
from layerscope.runner.suggest import close_matches, did_you_mean, suggest


@dataclass(frozen=True)
class Selector:
    kind: str  # "name" | "regex" | "op"
    patterns: tuple[str, ...]
    ptr: str
    _regex: re.Pattern[str] | None = None
    valid: bool = True  # False for a regex that does not compile (already reported)

    def matches(self, node: NodeInfo) -> bool:
        if self.kind == "op":
            return node.op_type in self.patterns
        names = (node.name, *[t for t in node.outputs if t])
        if self.kind == "regex":
            assert self._regex is not None
            return any(self._regex.fullmatch(n) for n in names)
        return any(fnmatch.fnmatchcase(n, self.patterns[0]) for n in names)

    def describe(self) -> str:
        if self.kind == "op":
            return f"op {', '.join(self.patterns)}"
        return f"{self.kind} {self.patterns[0]!r}"


@dataclass(frozen=True)
class Selection:
    include: tuple[Selector, ...] | None  # None: every node
    exclude: tuple[Selector, ...] = ()
    # Also the layers whose values do not depend on the inputs (weights, constants, shape arithmetic, empty
    # tensors): off by default, since comparing a weight as a layer floods the report; a weight's format
    # problem is reported at the layer that reads it.
    constants: bool = False

    def exact_names(self) -> set[str]:
        """Names the selection spells out exactly (no wildcard): always honoured, constant or not."""
        return {
            s.patterns[0] for s in self.include or () if s.kind == "name" and not any(c in s.patterns[0] for c in "*?[")
        }

    def apply(self, nodes: Iterable[NodeInfo]) -> list[NodeInfo]:
        return [
            n
            for n in nodes
            if (self.include is None or any(s.matches(n) for s in self.include))
            and not any(s.matches(n) for s in self.exclude)
        ]

    def selectors(self) -> tuple[Selector, ...]:
        return (self.include or ()) + self.exclude

    def to_json(self) -> Any:
        def one(s: Selector) -> Any:
            return {s.kind: list(s.patterns) if s.kind == "op" else s.patterns[0]}

        return {
            "include": "all" if self.include is None else [one(s) for s in self.include],
            "exclude": [one(s) for s in self.exclude],
            **({"constants": True} if self.constants else {}),
        }


def parse_selector(value: Any, ptr: str, problems: ProblemCollector | None = None) -> Selector:
    if isinstance(value, str):
        return Selector("name", (value,), ptr)
    (kind, pattern), *_ = value.items()
    if kind == "op":
        return Selector("op", tuple([pattern] if isinstance(pattern, str) else pattern), ptr)
    if kind == "regex":
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            if problems is not None:
                problems.add(f"{ptr}/regex", f"invalid regular expression: {exc}")
            return Selector("regex", (pattern,), ptr, re.compile(re.escape(pattern)), valid=False)
        return Selector("regex", (pattern,), ptr, compiled)
    return Selector("name", (pattern,), ptr)


def parse_selection(value: Any, ptr: str, problems: ProblemCollector | None = None) -> Selection:
    if value is None or value == "all":
        return Selection(None)
    if isinstance(value, list):
        return Selection(tuple(parse_selector(v, f"{ptr}/{i}", problems) for i, v in enumerate(value)))
    include_raw = value.get("include", "all")
    include = (
        None
        if include_raw == "all"
        else tuple(parse_selector(v, f"{ptr}/include/{i}", problems) for i, v in enumerate(include_raw))
    )
    exclude = tuple(parse_selector(v, f"{ptr}/exclude/{i}", problems) for i, v in enumerate(value.get("exclude", [])))
    return Selection(include, exclude, constants=bool(value.get("constants", False)))


def check_selection(selection: Selection, summary: ModelSummary, problems: ProblemCollector) -> None:
    """Every selector must match at least one node; suggest the nearest names when it does not."""
    for s in selection.selectors():
        if not s.valid or any(s.matches(n) for n in summary.nodes):
            continue
        problems.add(s.ptr, f"{s.describe()} matches no node{_suggest(s, summary)}")


def _suggest(s: Selector, summary: ModelSummary) -> str:
    if s.kind == "op":
        ops = sorted({n.op_type for n in summary.nodes})
        lower = {o.lower(): o for o in ops}
        # an op written in the wrong case first: it is surely the one meant
        near = [lower[p.lower()] for p in s.patterns if p.lower() in lower]
        near += [m for p in s.patterns for m in close_matches(p, ops, n=2)]
        return did_you_mean(near) or f"; the model's op types are: {', '.join(ops)}"
    names = [n.name for n in summary.nodes]
    hint = suggest(s.patterns[0], names, n=3, cutoff=0.5)
    return hint or f" (the model has {len(names)} nodes, e.g. {', '.join(repr(x) for x in names[:3])})"


def glob_matches_any(pattern: str, summary: ModelSummary) -> bool:
    return any(Selector("name", (pattern,), "").matches(n) for n in summary.nodes)


def suggest_names(pattern: str, summary: ModelSummary) -> str:
    return _suggest(Selector("name", (pattern,), ""), summary)
