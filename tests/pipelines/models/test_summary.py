"""The model summary as the cache keeps it: read back equal to the summary made from the model, its tensors made
into objects only when first used, and a damaged summary record summarized anew, never trusted."""

from __future__ import annotations

import json
from pathlib import Path

from layerscope.pipelines.models.resolve import load_summary
from layerscope.pipelines.models.summary import ModelSummary, TensorInfo, summarize
from layerscope.runner.cache import Cache
from tests.models import chain_model


def test_a_summary_read_back_equals_the_one_made_from_the_model(tmp_path: Path) -> None:
    made = summarize(chain_model(tmp_path / "m.onnx"))
    read = ModelSummary.from_json(made.to_json())
    assert read.tensors._records is not None  # type: ignore[attr-defined]  # not made into objects yet
    assert read == made and made == read
    assert dict(read.tensors) == dict(made.tensors) and len(read.tensors) == len(made.tensors) > 0
    assert all(isinstance(t, TensorInfo) for t in read.tensors.values())
    assert read.to_json() == made.to_json()
    name = next(iter(made.tensors))
    assert read.tensors[name] == made.tensors[name] and read.tensors.get("no such tensor") is None
    assert read.float_outputs(read.nodes[0]) == made.float_outputs(made.nodes[0])


def test_a_damaged_tensor_record_fails_the_read_not_a_later_use(tmp_path: Path) -> None:
    data = json.loads(summarize(chain_model(tmp_path / "m.onnx")).to_json())
    name = next(iter(data["tensors"]))
    for damage in ({"name": name, "dtype": "float32"}, {"name": 1, "dtype": None, "shape": None}, [name], "x"):
        broken = {**data, "tensors": {**data["tensors"], name: damage}}
        try:
            ModelSummary.from_json(json.dumps(broken))
        except ValueError:
            continue
        raise AssertionError(f"{damage!r} was read")


def test_a_damaged_cached_summary_is_summarized_anew(tmp_path: Path) -> None:
    model = chain_model(tmp_path / "m.onnx")
    cache = Cache(tmp_path / "cache")
    _digest, first = load_summary(model, cache)
    (found,) = (tmp_path / "cache").rglob("summary.json")
    data = json.loads(found.read_text())
    data["tensors"][next(iter(data["tensors"]))] = {"name": "x"}  # no shape: rejected when read
    found.chmod(0o644)
    found.write_text(json.dumps(data))
    _digest, again = load_summary(model, cache)
    assert again == first and dict(again.tensors) == dict(first.tensors)
