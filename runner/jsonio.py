"""Strict JSON for artifacts and reports: non-finite floats are written as the strings "inf", "-inf", "nan".

Strict JSON has no such numbers, but metrics legitimately are infinite (an error that appeared where the
reference is 0) or undefined (no finite pairs). Every JSON file layerscope writes goes through
:func:`finite_json`, and readers turn the strings back with :func:`as_float`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from layerscope.runner.files import atomic_write


def finite_json(value: Any) -> Any:
    """Replace non-finite floats by the strings "inf", "-inf", "nan" (strict JSON has no such numbers)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    return value


def as_float(value: Any) -> float:
    """Inverse of finite_json for one number (None, an undefined value, is NaN)."""
    if isinstance(value, str):
        return float(value)
    return float(value) if value is not None else math.nan


# Above this many bytes a document is written without indentation: the standard library indents only in its
# pure-Python encoder (12 s for the 11 MB report of a 2,000-layer model, 0.3 s compact), and nobody reads such
# a document without a tool anyway.
INDENT_UP_TO = 1 << 20


def encode(value: Any, *, compact: bool = False) -> str:
    """A finite JSON document as text: one-space indents when small, compact when large (INDENT_UP_TO) or
    when ``compact`` (a document made for tools, such as report.json's packed layer tables)."""
    text = json.dumps(value, allow_nan=False, separators=(",", ":"))
    return text if compact or len(text) > INDENT_UP_TO else json.dumps(value, indent=1, allow_nan=False)


def dumps(value: Any, *, compact: bool = False) -> str:
    """The text layerscope writes for a JSON document: non-finite floats as strings (see :func:`encode`)."""
    try:  # most documents have no non-finite float: the C encoder says so faster than a walk in Python
        return encode(value, compact=compact)
    except ValueError:
        return encode(finite_json(value), compact=compact)


def write_json(path: Path, value: Any) -> None:
    """Write ``value`` as :func:`dumps` does, atomically (readers never see a part)."""
    atomic_write(path, dumps(value))


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))
