"""JSON Schemas shipped with layerscope (experiment config, report), read with importlib.resources."""

from layerscope.schemas.loader import load_schema, schema_text

__all__ = ["load_schema", "schema_text"]
