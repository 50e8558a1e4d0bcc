"""End to end: the shipped demo config, on a reduced input size, from YAML to report."""

from __future__ import annotations

import json
from pathlib import Path

from layerscope.cli import main

DEMO = Path(__file__).resolve().parents[1] / "configs" / "unet-fp16.yaml"


def test_demo_config_on_reduced_input(capsys) -> None:
    code = main(["run", str(DEMO), "--out", "demo", "--set", "inputs.input.shape=[1, 3, 32, 32]", "--set", "samples=2"])
    assert code in (0, 1)
    report = json.loads(Path("demo/report.json").read_text())
    (comparison,) = report["comparisons"]
    layers = {x["tensor"]: x for x in comparison["layers"]}
    per_sample = 40 * 32 * 32  # the seed's 40 channels at the reduced resolution
    for name in ("conv0", "bn0", "relu0"):
        assert layers[name]["metrics"]["elements"] == 2 * per_sample
        assert layers[name]["dtype_candidate"] == "float16" and layers[name]["execution"] == "emulated"
    assert report["experiment"]["overrides"] == ["inputs.input.shape=[1, 3, 32, 32]", "samples=2"]
    assert comparison["candidate_run"]["execution"] == "emulated"
    md = Path("demo/report.md").read_text()
    assert "| Layer | Op | Count with rel err > 10% | Total | Per sample | Deviation ratio |" in md
    assert f"| conv0 | Conv | {layers['conv0']['metrics']['deviating']:,} | {2 * per_sample:,} | {per_sample:,} |" in md
    assert "### Range risk of the reference in fp16" in md
    verdict = "PASS" if code == 0 else "FAIL"
    assert f"{verdict}: unet-fp16" in capsys.readouterr().out
