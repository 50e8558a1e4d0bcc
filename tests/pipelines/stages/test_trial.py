"""fix's trial stage: a batch of pinned variants judged in one stage gives each variant the verdict of dump +
compare on the same pins (the verdict's metrics equal to compare's, bit for bit), whether the reference runs or
is read from its dump, whether a tensor's metrics were computed for it or shared with a variant of the same
pins upstream, and whether its accumulation stopped early once the variant failed."""

from __future__ import annotations

import json

import pytest

from layerscope.api import run
from layerscope.pipelines.analysis.search import Search
from layerscope.pipelines.experiment import load_experiment
from layerscope.pipelines.metrics.limits import check
from layerscope.pipelines.metrics.verdict import KEYS
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


# strict: 0.1% of the elements may deviate by 0.1%, so that FP16 fails on the first sample and tries stop early
STRICT = SMALL_UNET.replace(
    "rel_error: 0.1\n  max_deviation_ratio: 0.5", "rel_error: 0.001\n  max_deviation_ratio: 0.001"
)


@pytest.mark.parametrize(
    ("text", "candidate"), [(SMALL_UNET, "fp16"), (STRICT, "fp16"), (INT8, "int8")], ids=["fp16", "strict", "int8"]
)
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
    stopped = 0
    for i, (pinned, a, b) in enumerate(zip(drop_one, batch, read, strict=True)):
        # the ordinary experiment with these layers pinned (the user's way): dump + dump + compare
        pinned_path = write_config(_with_pins(text, candidate, pinned), name=f"pinned{i}.yaml")
        run(pinned_path)
        c = json.loads(_compare_file(pinned_path, candidate).read_text())
        fails = [layer["tensor"] for layer in c["layers"] if check(layer["metrics"], exp.thresholds.base)]
        assert a["not_observable"] == c["not_observable"] == b["not_observable"]
        for doc in (a, b):
            ev = Search(exp, candidate)._judge(pinned, doc)
            assert ev.passed == (not fails), pinned  # the verdict compare gives
            assert [x["tensor"] for x in doc["layers"]] == [x["tensor"] for x in c["layers"]]
            for mine, theirs in zip(doc["layers"], c["layers"], strict=True):
                if "stopped" not in mine:  # every sample: the same metrics, the same floats
                    assert mine["metrics"] == {k: theirs["metrics"][k] for k in KEYS}, (pinned, mine["tensor"])
                elif mine["stopped"] == "fails":  # it failed on its first samples: it fails over all
                    assert mine["tensor"] in fails and check(mine["metrics"], exp.thresholds.base)
                else:  # left once the variant failed
                    assert fails and ev.unjudged
            assert set(ev.failing_tensors) <= set(fails) and (ev.unjudged or set(ev.failing_tensors) == set(fails))
        stopped += sum("stopped" in x for x in a["layers"])
    assert stopped or text != STRICT, "no variant stopped early: the test does not exercise it"
