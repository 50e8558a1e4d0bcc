"""Strict JSON with non-finite numbers as strings, and back."""

from __future__ import annotations

import json
import math
from pathlib import Path

from layerscope.runner.jsonio import as_float, dumps, finite_json, read_json, write_json


def test_non_finite_numbers_round_trip_as_strings(tmp_path: Path) -> None:
    value = {"a": math.inf, "b": [-math.inf, math.nan, 1.5], "c": None, "d": 2}
    assert finite_json(value) == {"a": "inf", "b": ["-inf", "nan", 1.5], "c": None, "d": 2}
    assert json.loads(dumps(value)) == finite_json(value)
    write_json(tmp_path / "x.json", value)
    back = read_json(tmp_path / "x.json")
    assert as_float(back["a"]) == math.inf and as_float(back["b"][0]) == -math.inf
    assert math.isnan(as_float(back["b"][1])) and math.isnan(as_float(back["c"])) and as_float(back["d"]) == 2.0
