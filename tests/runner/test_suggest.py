"""One "did you mean" rule and wording for every near-miss name."""

from __future__ import annotations

from layerscope.runner.suggest import close_matches, did_you_mean, suggest


def test_nearest_names_in_one_wording() -> None:
    assert close_matches("fp23", ["fp32", "fp16"]) == ["fp32"]
    assert suggest("fp23", ["fp32", "fp16"]) == "; did you mean 'fp32'?"
    assert suggest("conv9", ["conv0", "conv1", "relu0"], n=3, cutoff=0.5) == "; did you mean 'conv1' or 'conv0'?"
    assert suggest("naem", ["name"], prefix=" (", suffix=")") == " (did you mean 'name'?)"


def test_nothing_near_gives_an_empty_hint() -> None:
    assert suggest("zzz", ["fp32"]) == ""
    assert did_you_mean([]) == ""
    assert did_you_mean(["Relu", "Relu"]) == "; did you mean 'Relu'?"
