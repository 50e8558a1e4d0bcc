"""The greedy search against an exhaustive one, on generated chains whose minimal set of FP16-hostile layers is
known by construction (tests/zoo/models.py: fp16_hostile_chain)."""

from __future__ import annotations

from itertools import combinations

import onnx
import pytest

from layerscope.pipelines.analysis.search import Search
from layerscope.pipelines.experiment import load_experiment
from tests.zoo.models import fp16_hostile_chain

CONFIG = """\
name: chain
model: m.onnx
samples: 2
inputs:
  x: {shape: [1, 16], source: {random: normal, seed: 0}}
runs:
  fp32: {precision: fp32}
  fp16: {precision: fp16}
thresholds: {rel_error: 0.05, max_deviation_ratio: 0.25, min_sqnr_db: 40}
"""


def smallest_passing_sets(search: Search, layers: list[str], up_to: int) -> tuple[int, list[set[str]]]:
    """Every passing set of the smallest size (at most ``up_to``), each judged on every compared layer."""
    for size in range(up_to + 1):
        passing = [set(c) for c in combinations(layers, size) if search.evaluate(c, full=True).passed]
        if passing:
            return size, passing
    return -1, []


@pytest.mark.parametrize(
    ("blocks", "hostile"),
    [
        pytest.param(6, (1, 4), id="2-of-6"),
        pytest.param(4, (0, 2, 3), id="3-of-4-adjacent", marks=pytest.mark.slow),
    ],
)
def test_greedy_finds_the_exhaustive_minimum(write_config, blocks: int, hostile: tuple[int, ...]) -> None:
    config = write_config(CONFIG)
    model = fp16_hostile_chain(config.parent / "m.onnx", blocks, hostile)
    onnx.checker.check_model(str(model))
    exp = load_experiment(config)
    greedy = Search(exp, "fp16")
    result = greedy.search()
    known = {f"/blocks.{i}/MatMul" for i in hostile}
    assert result.found is not None and set(result.found) == known and result.minimal
    assert result.ranked_by == "attribution"
    assert {r["layer"] for r in result.sensitivity if r["local_fails"]} == known  # the root causes
    # every try judges every compared layer: no watched subset whose verdict a confirmation could overturn
    assert all(s["tensors_judged"] == len(exp.tensors) for s in result.steps if s["passed"])
    # a few inference passes, not two per layer: the baseline's trial (reference + candidate), attribution
    # (the reference's dump + the cut layers), the root causes' trial, one shrink round (reference + each drop)
    assert result.cost.inference_runs <= 2 + 2 + 2 + (1 + len(known))

    exhaustive = Search(exp, "fp16")  # its own memo: every set is judged afresh, on every compared layer
    size, sets = smallest_passing_sets(exhaustive, exhaustive.eligible(), len(known))
    assert size == len(result.found)  # the greedy set is a smallest one
    assert len(result.found) <= 2 * size  # the bound (met here with equality)
    assert sets == [known]  # and the only one


def test_a_weak_ranking_ends_within_twice_the_minimum_and_says_it_is_not_proven(write_config) -> None:
    """Without attribution the prefix is long (sensitivity ranks the hostile blocks anywhere): the shrink stops at
    its budget of tries; the set still passes, is within 2x of the exhaustive minimum, and is not called minimal.
    --prove-minimal then proves a minimal set."""
    config = write_config(CONFIG + "attribution: false\n")
    fp16_hostile_chain(config.parent / "m.onnx", 8, (2, 6))
    exp = load_experiment(config)
    bounded = Search(exp, "fp16", max_tries=3)  # the baseline and a prefix or two: no room for a proof
    result = bounded.search()
    assert result.found is not None and bounded.evaluate(result.found).passed
    size, _ = smallest_passing_sets(Search(exp, "fp16"), bounded.eligible(), 2)
    assert size == 2 and len(result.found) <= 2 * size
    assert not result.minimal and any("not proven minimal" in n and "--prove-minimal" in n for n in result.notes)
    proven = Search(exp, "fp16", max_tries=3, prove_minimal=True).search()
    assert proven.minimal and set(proven.found or ()) == {"/blocks.2/MatMul", "/blocks.6/MatMul"}


def test_one_hostile_layer_among_many_needs_one_pin(write_config) -> None:
    config = write_config(CONFIG)
    fp16_hostile_chain(config.parent / "m.onnx", 8, (5,))
    exp = load_experiment(config)
    result = Search(exp, "fp16").search()
    assert result.found == ("/blocks.5/MatMul",)
    exhaustive = Search(exp, "fp16")
    assert not any(exhaustive.evaluate([x], full=True).passed for x in exhaustive.eligible() if x not in result.found)
    assert not exhaustive.evaluate([], full=True).passed


def test_without_attribution_the_search_falls_back_to_sensitivity_and_says_so(write_config) -> None:
    config = write_config(CONFIG + "attribution: false\n")
    fp16_hostile_chain(config.parent / "m.onnx", 4, (2,))
    result = Search(load_experiment(config), "fp16").search()
    assert result.ranked_by == "sensitivity" and result.found == ("/blocks.2/MatMul",)
    assert any("attribution is off" in n for n in result.notes)


def test_trial_batches_shrink_to_fit_the_memory_available() -> None:
    from layerscope.pipelines.analysis.search import BATCH, batch_size

    assert batch_size(100 << 20, None) == BATCH  # unknown memory: the default
    assert batch_size(100 << 20, 64 << 30) == BATCH  # plenty: at most BATCH sessions open
    assert batch_size(1 << 30, 8 << 30) == 4  # half of 8 GiB for variants of 1 GiB each
    assert batch_size(8 << 30, 8 << 30) == 1  # never fewer than one variant
