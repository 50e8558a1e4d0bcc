"""Write docs/spec-reference.md from schemas/experiment.schema.json (run after changing the schema).

    python docs/generate_spec_reference.py

tests/test_docs.py fails when the committed page differs from what this script writes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "schemas" / "experiment.schema.json"
OUT = ROOT / "docs" / "spec-reference.md"


def _resolve(node: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = schema
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _type(node: dict[str, Any], schema: dict[str, Any]) -> str:
    node = _resolve(node, schema)
    if "enum" in node:
        return " \\| ".join(f"`{json.dumps(v)}`" for v in node["enum"])
    if "const" in node:
        return f"`{json.dumps(node['const'])}`"
    for key in ("oneOf", "anyOf"):
        if key in node:
            return " or ".join(_type(n, schema) for n in node[key])
    t = node.get("type", "object" if "properties" in node else "any")
    if t == "array":
        return f"list of {_type(node.get('items', {}), schema)}"
    if isinstance(t, list):
        return " or ".join(t)
    bounds = []
    for k, sym in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<")):
        if k in node:
            bounds.append(f"{sym} {node[k]}")
    return t + (f" ({', '.join(bounds)})" if bounds else "")


def _walk(node: dict[str, Any], path: str, schema: dict[str, Any], rows: list[str], seen: set[str]) -> None:
    node = _resolve(node, schema)
    variants = node.get("oneOf") or node.get("anyOf")
    if variants:
        for v in variants:
            _walk(v, path, schema, rows, seen)
        return
    props = node.get("properties", {})
    required = set(node.get("required", []))
    for name, sub in props.items():
        key = f"{path}.{name}" if path else name
        sub_r = _resolve(sub, schema)
        if key not in seen:
            seen.add(key)
            default = f" Default: `{json.dumps(sub_r['default'])}`." if "default" in sub_r else ""
            req = " **required**" if name in required else ""
            desc = sub_r.get("description", "").replace("\n", " ")
            rows.append(f"| `{key}` | {_type(sub, schema)}{req} | {desc}{default} |")
        _walk(sub_r, key, schema, rows, seen)
        if sub_r.get("type") == "array" and isinstance(sub_r.get("items"), dict):
            _walk(sub_r["items"], f"{key}[]", schema, rows, seen)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        _walk(extra, f"{path}.<name>", schema, rows, seen)
    for branch in ("then", "else"):
        if isinstance(node.get(branch), dict):
            _walk(node[branch], path, schema, rows, seen)
    for sub in node.get("allOf", []):
        _walk(sub, path, schema, rows, seen)


def render() -> str:
    schema = json.loads(SCHEMA.read_text())
    rows: list[str] = []
    _walk(schema, "", schema, rows, set())
    head = [
        "# Experiment config reference",
        "",
        "Generated from `schemas/experiment.schema.json` by `docs/generate_spec_reference.py`; do not edit by hand.",
        "",
        schema.get("description", ""),
        "",
        "Keys are listed as dotted paths; `<name>` stands for a name you choose (a run, an input) and `[]` for the",
        "items of a list. Besides the schema, `layerscope validate` checks the config against the model: input",
        "names, shapes and dtypes, that every layer pattern matches a node, that the reference and candidate runs",
        "exist, and that each run's backend and precision can run here.",
        "",
        "| Key | Type | Meaning |",
        "|---|---|---|",
    ]
    return "\n".join(head + rows) + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
    sys.stdout.write(f"wrote {OUT.relative_to(ROOT)}\n")
