"""YAML with positions, --set overrides, and schema errors reported all at once with exact messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from layerscope.runner.errors import SpecError, UsageError
from layerscope.runner.spec import apply_overrides, load_document, parse_document, validate_schema

SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "required": ["name"],
    "properties": {
        "name": {"type": "string"},
        "thresholds": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"deviation": {"type": "object", "properties": {"rel": {"type": "number", "minimum": 0}}}},
        },
        "runs": {
            "type": "object",
            "additionalProperties": {"type": "object", "properties": {"precision": {"enum": ["fp32", "fp16"]}}},
        },
    },
}


def test_positions_point_at_values_and_keys() -> None:
    doc = parse_document("name: x\nthresholds:\n  deviation:\n    rel: -1\n", source="c.yaml")
    assert doc.data == {"name": "x", "thresholds": {"deviation": {"rel": -1}}}
    assert doc.positions["/thresholds/deviation/rel"] == (4, 10)
    assert doc.key_positions["/thresholds/deviation/rel"] == (4, 5)


def test_schema_error_matches_design_format() -> None:
    doc = parse_document("name: x\nthresholds:\n  deviation:\n    rel: -1\n", source="configs/fp16.yaml")
    problems = validate_schema(doc, SCHEMA)
    assert [p.render() for p in problems] == [
        "configs/fp16.yaml:4:10: /thresholds/deviation/rel: -1 is less than the minimum of 0\n    4 |     rel: -1"
    ]


def test_every_error_reported_at_once_in_file_order() -> None:
    text = "nme: x\nthresholds:\n  deviation: {rel: -2}\nruns:\n  a: {precision: fp61}\n"
    problems = validate_schema(parse_document(text, source="c.yaml"), SCHEMA)
    rendered = [p.render().splitlines()[0] for p in problems]
    assert rendered == [
        "c.yaml:1:1: /: 'name' is required",
        "c.yaml:1:1: /nme: unknown key 'nme' (did you mean 'name'?); allowed: name, runs, thresholds",
        "c.yaml:3:20: /thresholds/deviation/rel: -2 is less than the minimum of 0",
        'c.yaml:5:18: /runs/a/precision: "fp61" is not one of "fp32", "fp16" (did you mean \'fp16\'?)',
    ]


def test_duplicate_keys_are_errors() -> None:
    with pytest.raises(SpecError) as err:
        parse_document("name: a\nname: b\n", source="c.yaml")
    assert err.value.problems[0].render().startswith("c.yaml:2:1: /name: duplicate key 'name'")


def test_configs_never_execute_code() -> None:
    with pytest.raises(SpecError) as err:
        parse_document("name: !!python/object/apply:os.system ['echo hi']\n", source="c.yaml")
    assert "unsupported YAML" in err.value.render()


def test_invalid_yaml_is_located() -> None:
    with pytest.raises(SpecError) as err:
        parse_document("name: [a, b\nx: 1\n", source="c.yaml")
    text = err.value.render()
    assert text.startswith("c.yaml:2:") and "invalid YAML" in text


def test_empty_config() -> None:
    with pytest.raises(SpecError, match="the config is empty"):
        parse_document("", source="c.yaml")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="config not found"):
        load_document(tmp_path / "nope.yaml")


def test_set_overrides_paths_lists_and_removal() -> None:
    doc = parse_document(
        "name: x\nruns:\n  a: {precision: fp32, overrides: [{layers: c, precision: fp32}]}\n", source="c"
    )
    apply_overrides(
        doc,
        ["runs.a.precision=fp16", "runs.a.overrides[0].layers=[conv0, conv1]", "thresholds.deviation.rel=0.5", "~name"],
    )
    assert doc.data == {
        "runs": {"a": {"precision": "fp16", "overrides": [{"layers": ["conv0", "conv1"], "precision": "fp32"}]}},
        "thresholds": {"deviation": {"rel": 0.5}},
    }
    assert doc.overrides == [
        "runs.a.precision=fp16",
        "runs.a.overrides[0].layers=[conv0, conv1]",
        "thresholds.deviation.rel=0.5",
        "~name",
    ]


def test_errors_in_overridden_values_name_the_override() -> None:
    doc = parse_document("name: x\n", source="c.yaml")
    apply_overrides(doc, ["thresholds.deviation.rel=-3"])
    (problem,) = validate_schema(doc, SCHEMA)
    assert (
        problem.render()
        == "--set thresholds.deviation.rel=-3: /thresholds/deviation/rel: -3 is less than the minimum of 0"
    )


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("novalue", "expected KEY.PATH=VALUE"),
        ("runs.a[5].x=1", "out of range"),
        ("name.x=1", "is not a mapping"),
        ("a..b=1", "cannot parse"),
    ],
)
def test_bad_overrides_are_usage_errors(expr: str, message: str) -> None:
    doc = parse_document("name: x\nruns:\n  a: []\n", source="c")
    with pytest.raises(UsageError, match=message):
        apply_overrides(doc, [expr])


def test_shipped_schema_is_valid_2020_12() -> None:
    from jsonschema import Draft202012Validator

    from layerscope.schemas import schema_text

    Draft202012Validator.check_schema(json.loads(schema_text("experiment")))
    Draft202012Validator.check_schema(json.loads(schema_text("report")))


def _errors_of(config: str) -> list[str]:
    from layerscope.schemas.loader import load_schema

    problems = validate_schema(parse_document(config, source="c.yaml"), load_schema("experiment"))
    return [p.render().splitlines()[0] for p in problems]


SOURCE = "name: x\nmodel: m.onnx\ninputs:\n  x: {shape: [1], source: SOURCE}\nruns: {a: {precision: fp32}}\n"


def test_an_unknown_source_kind_lists_the_kinds() -> None:
    # (was: "'random' is required", the first alternative's complaint)
    assert _errors_of(SOURCE.replace("SOURCE", "{gaussian: 1}")) == [
        "c.yaml:4:27: /inputs/x/source: expected one of the keys random, file, images, script (found: gaussian)"
    ]
    (only,) = _errors_of(SOURCE.replace("SOURCE", "{randm: normal, seed: 0}"))
    assert only.endswith("(found: randm, seed); did you mean 'random'?")


def test_a_wrong_file_suffix_is_said_in_words_not_as_a_regex() -> None:
    (only,) = _errors_of(SOURCE.replace("SOURCE", "{file: x.txt}"))
    assert only.endswith('/inputs/x/source/file: "x.txt": an input file ends in .npy, .npz, .h5, .hdf5 or .json')
    assert "\\." not in only and "$" not in only
