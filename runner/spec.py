"""Apply ``--set`` overrides to a config and validate it against a JSON Schema, every problem at once.

The config comes from :mod:`runner.yamldoc` (plain data with positions; its names are re-exported here).
Non-finite numbers (``.nan``, ``.inf``) are errors wherever they appear: no setting of layerscope means
anything with them. Validation reports every problem at once as ``file:line:col: /pointer: message`` with the
offending line. The domain layer (``pipelines``) adds its semantic checks through :class:`ProblemCollector`,
which uses the same positions.
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Iterable, Iterator
from typing import Any

from layerscope.runner.errors import SpecError, SpecProblem, UsageError
from layerscope.runner.suggest import suggest
from layerscope.runner.yamldoc import (
    MAX_DEPTH,
    MAX_TEXT_BYTES,
    MAX_VALUES,
    Document,
    escape_pointer_token,
    load_document,
    parse_document,
    parse_value,
    pointer,
)

__all__ = [
    "MAX_DEPTH",
    "MAX_TEXT_BYTES",
    "MAX_VALUES",
    "Document",
    "ProblemCollector",
    "apply_overrides",
    "escape_pointer_token",
    "load_document",
    "nonfinite_problems",
    "parse_document",
    "parse_value",
    "pointer",
    "validate_schema",
]


# -- --set key.path=value ------------------------------------------------------------------------------
_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _parse_path(path: str) -> list[str | int]:
    tokens: list[str | int] = []
    pos = 0
    for m in _TOKEN.finditer(path):
        gap = path[pos : m.start()]
        if gap not in ("", "."):
            raise UsageError(f"--set {path}: cannot parse the key path near {gap!r}")
        tokens.append(m.group(1) if m.group(1) is not None else int(m.group(2)))
        pos = m.end()
    if not tokens or path[pos:] not in ("",):
        raise UsageError(f"--set {path}: cannot parse the key path")
    return tokens


def apply_overrides(doc: Document, expressions: Iterable[str]) -> None:
    """Apply ``key.path=value`` overrides (value parsed as YAML); a ``~key.path`` removes a key.

    List elements are addressed as ``runs.fp16.overrides[0].layers``. Missing mappings are created.
    """
    data = copy.deepcopy(doc.data)
    for expr in expressions:
        remove = expr.startswith("~")
        if remove:
            path_text, value_text = expr[1:], None
        elif "=" in expr:
            path_text, value_text = expr.split("=", 1)
        else:
            raise UsageError(f"--set {expr}: expected KEY.PATH=VALUE (or ~KEY.PATH to remove a key)")
        tokens = _parse_path(path_text.strip())
        node = data
        for i, tok in enumerate(tokens[:-1]):
            nxt = tokens[i + 1]
            if isinstance(tok, int):
                if not isinstance(node, list) or tok >= len(node):
                    raise UsageError(f"--set {expr}: index [{tok}] is out of range")
                node = node[tok]
            else:
                if not isinstance(node, dict):
                    raise UsageError(f"--set {expr}: {'.'.join(map(str, tokens[:i]))} is not a mapping")
                if tok not in node or node[tok] is None:
                    if remove:
                        break
                    node[tok] = [] if isinstance(nxt, int) else {}
                node = node[tok]
        else:
            last = tokens[-1]
            if remove:
                if isinstance(node, dict):
                    node.pop(str(last), None)
                elif isinstance(node, list) and isinstance(last, int) and last < len(node):
                    node.pop(last)
            else:
                value = parse_value(value_text or "", f"--set {expr}")
                if isinstance(last, int):
                    if not isinstance(node, list) or last > len(node):
                        raise UsageError(f"--set {expr}: index [{last}] is out of range")
                    if last == len(node):
                        node.append(value)
                    else:
                        node[last] = value
                else:
                    if not isinstance(node, dict):
                        raise UsageError(f"--set {expr}: the parent of {last!r} is not a mapping")
                    node[last] = value
        doc.overridden[pointer(*tokens)] = expr
        doc.overrides.append(expr)
    doc.data = data


# -- schema validation --------------------------------------------------------------------------------
def nonfinite_problems(doc: Document) -> list[SpecProblem]:
    """A problem for every NaN or infinity in the config (no setting means anything with them)."""
    return [doc.problem(ptr, f"{value} is not a finite number") for ptr, value in _nonfinite(doc.data, "")]


def validate_schema(doc: Document, schema: dict[str, Any]) -> list[SpecProblem]:
    """Every schema violation and non-finite number, ordered by position in the file."""
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(schema)
    problems: list[tuple[tuple[int, int, str], SpecProblem]] = []
    nonfinite = {p.pointer for p in nonfinite_problems(doc)}
    for problem in nonfinite_problems(doc):
        problems.append(((problem.line or 0, problem.column or 0, problem.pointer), problem))
    for err in _specific(validator.iter_errors(doc.data)):
        ptr = pointer(*err.absolute_path)
        if ptr in nonfinite:  # said once, as what it is
            continue
        message = _message(err)
        at_key = err.validator == "additionalProperties"
        if at_key:
            extra = _extra_property(err)
            if extra is not None:
                ptr = pointer(*err.absolute_path, extra)
        problem = doc.problem(ptr, message, key=at_key)
        problems.append(((problem.line or 0, problem.column or 0, ptr), problem))
    problems.sort(key=lambda p: p[0])
    seen: set[str] = set()
    unique = []
    for _, p in problems:
        if p.render() not in seen:
            seen.add(p.render())
            unique.append(p)
    return unique


def _nonfinite(value: Any, ptr: str) -> Iterator[tuple[str, str]]:
    """(pointer, YAML spelling) of every NaN or infinity in config data."""
    if isinstance(value, float) and not math.isfinite(value):
        yield ptr, ".nan" if math.isnan(value) else (".inf" if value > 0 else "-.inf")
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _nonfinite(v, f"{ptr}/{escape_pointer_token(k)}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _nonfinite(v, f"{ptr}/{i}")


_SHALLOW = {"required", "type", "const", "enum", "additionalProperties"}


def _specific(errors: Iterable[Any]) -> Iterator[Any]:
    """Replace a oneOf/anyOf failure by the errors of the branch the user meant.

    The intended branch is the one whose discriminating checks (type, required keys, allowed keys) passed at
    the failing value itself, so that its errors lie deeper inside the value; ties go to the deepest errors.
    """
    for err in errors:
        if err.validator not in ("oneOf", "anyOf") or not err.context:
            yield err
            continue
        branches: dict[Any, list[Any]] = {}
        for e in err.context:
            branches.setdefault(e.schema_path[0], []).append(e)
        depth = len(err.absolute_path)

        def score(errs: Iterable[Any], depth: int = depth) -> tuple[int, int, int]:  # depth bound now, not later
            errs = list(errs)
            at_value = [e for e in errs if len(e.absolute_path) <= depth]
            wrong_type = sum(1 for e in at_value if e.validator in ("type", "const"))
            shallow = sum(1 for e in at_value if e.validator in _SHALLOW)
            return wrong_type, shallow, -max(len(e.absolute_path) for e in errs)

        kinds = _kinds(err, branches.values(), depth)
        if kinds is not None:
            yield kinds
            continue
        yield from _specific(min(branches.values(), key=score))


def _kinds(err: Any, branches: Iterable[list[Any]], depth: int) -> Any | None:
    """When a mapping names none of the keys that tell the alternatives apart (``source: {gaussian: 1}``), one
    error listing them -- not the first alternative's "'random' is required"."""
    if not isinstance(err.instance, dict):
        return None
    names: list[str] = []
    for errs in branches:
        missing = [e for e in errs if e.validator == "required" and len(e.absolute_path) <= depth]
        if not missing:
            return None  # some alternative has its key: its own errors say what is wrong
        names += [str(k) for e in missing for k in e.validator_value if k not in err.instance]
    kinds = list(dict.fromkeys(names))
    if len(kinds) < 2:
        return None
    found = ", ".join(map(str, err.instance)) or "none"
    hints = [h for k in err.instance if (h := suggest(str(k), kinds, prefix="", suffix=""))]
    message = f"expected one of the keys {', '.join(kinds)} (found: {found})"
    if hints:
        message += f"; {hints[0]}"
    out = copy.copy(err)
    out.message = message
    out.validator = "kinds"
    return out


def _extra_property(err: Any) -> str | None:
    allowed = set(err.schema.get("properties", {}))
    extras = [k for k in err.instance if k not in allowed] if isinstance(err.instance, dict) else []
    return extras[0] if len(extras) == 1 else None


def _message(err: Any) -> str:
    if err.validator == "pattern" and "x-pattern-message" in err.schema:
        return f"{json.dumps(err.instance)}: {err.schema['x-pattern-message']}"
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        allowed = sorted(err.schema.get("properties", {}))
        extras = [k for k in err.instance if k not in allowed]
        parts = [f"unknown key {k!r}" + suggest(k, allowed, prefix=" (", suffix=")") for k in extras]
        return "; ".join(parts) + f"; allowed: {', '.join(allowed)}"
    if err.validator == "enum":
        options = [json.dumps(o) for o in err.validator_value]
        hint = suggest(str(err.instance), [str(o) for o in err.validator_value], prefix=" (", suffix=")")
        return f"{json.dumps(err.instance)} is not one of {', '.join(options)}{hint}"
    if err.validator == "maxProperties" and isinstance(err.instance, dict):
        keys = ", ".join(err.instance)
        return f"expected at most {err.validator_value} key{'s' if err.validator_value != 1 else ''}, got {keys}"
    if err.validator == "required":
        return str(err.message).replace("is a required property", "is required")
    return str(err.message)


class ProblemCollector:
    """Gathers semantic problems so that all of them are reported together."""

    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.problems: list[SpecProblem] = []

    def add(self, ptr: str, message: str, *, key: bool = False) -> None:
        self.problems.append(self.doc.problem(ptr, message, key=key))

    def raise_if_any(self) -> None:
        if self.problems:
            self.problems.sort(key=lambda p: (p.line or 0, p.column or 0))
            raise SpecError(self.problems, self.doc.source)
