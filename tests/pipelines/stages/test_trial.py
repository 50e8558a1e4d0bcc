"""fix's trial stage: a batch of pinned variants judged in one stage gives each variant the compare.json of
dump + compare on the same pins, whether the reference runs or is read from its dump, and whether a tensor's
metrics were computed for it or shared with a variant of the same pins upstream."""

from __future__ import annotations

import json

import pytest

from layerscope.api import run
from layerscope.pipelines.analysis.search import Search
from layerscope.pipelines.experiment import load_experiment
from layerscope.pipelines.stages import plan_for
from tests.conftest import SMALL_UNET
from tests.pipelines.lowering.test_quantize import INT8_TEMPLATE

INT8 = INT8_TEMPLATE.replace("{extra_runs}", "")


def _pins(exp, count: int) -> list[str]:
    nodes = [n.name for n in exp.model.summary.nodes if n.op_type != "Constant" and exp.model.summary.float_outputs(n)]
    return nodes[1 : 1 + count]


def _with_pins(text: str, candidate: str, pinned: tuple[str, ...]) -> str:
    lines = text.splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith(f"  {candidate}: {{"))
    names = ", ".join(json.dumps(p) for p in pinned)
    lines[i] = lines[i][:-1] + f", overrides: [{{layers: [{names}], precision: fp32}}]}}"
    return "\n".join(lines) + "\n"


def _compare_file(path, candidate: str):
    exp = load_experiment(path)
    planned = plan_for(exp).stages[f"compare[{candidate}]"]
    return exp.cache.entry_dir(planned.stage.kind, planned.key) / "compare.json"


@pytest.mark.parametrize(("text", "candidate"), [(SMALL_UNET, "fp16"), (INT8, "int8")])
def test_a_batch_equals_dump_and_compare_of_each_variant(write_config, text: str, candidate: str) -> None:
    path = write_config(text)
    exp = load_experiment(path)
    pins = _pins(exp, 3)
    drop_one = [tuple(p for p in pins if p != x) for x in pins]
    batch = Search(exp, candidate)._execute(drop_one)  # the reference run once, tensors shared between variants
    from_dump = Search(exp, candidate)
    from_dump.attribution()  # runs the reference's dump (attribution's), which the next tries read
    assert from_dump.reference_dump is not None
    read = from_dump._execute(drop_one)
    for i, (pinned, a, b) in enumerate(zip(drop_one, batch, read, strict=True)):
        # the ordinary experiment with these layers pinned (the user's way): dump + dump + compare
        pinned_path = write_config(_with_pins(text, candidate, pinned), name=f"pinned{i}.yaml")
        run(pinned_path)
        c = json.loads(_compare_file(pinned_path, candidate).read_text())
        assert a["layers"] == c["layers"], pinned  # every metric, histogram and field, in the same order
        assert b["layers"] == c["layers"], pinned
        assert a["not_observable"] == c["not_observable"]
