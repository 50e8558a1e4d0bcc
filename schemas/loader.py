"""Read the JSON Schemas shipped in this package (installed as package data, found with importlib.resources)."""

from __future__ import annotations

import json
from functools import cache
from typing import Any


def schema_text(name: str) -> str:
    """The text of ``<name>.schema.json`` (``experiment``, ``report``)."""
    from importlib.resources import files

    return files("layerscope.schemas").joinpath(f"{name}.schema.json").read_text(encoding="utf-8")


@cache
def load_schema(name: str) -> dict[str, Any]:
    """The parsed schema (read once per process; callers must not modify it)."""
    schema: dict[str, Any] = json.loads(schema_text(name))
    return schema
