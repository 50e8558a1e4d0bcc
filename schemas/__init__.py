"""JSON Schemas shipped with layerscope (experiment config, report), read with importlib.resources."""
