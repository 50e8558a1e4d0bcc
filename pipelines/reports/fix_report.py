"""What `layerscope fix` writes: an overrides snippet to paste, and a report of the ranking and the search."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from layerscope.pipelines.reports.format import fmt_num
from layerscope.runner.files import atomic_write

if TYPE_CHECKING:
    from layerscope.pipelines.analysis.search import SearchResult
    from layerscope.pipelines.experiment import Experiment


def snippet(exp: Experiment, result: SearchResult) -> str:
    """YAML for the run's ``overrides``: the run's own pinned layers and the ones found."""
    assert result.found is not None
    layers = [*result.base_pinned, *[x for x in result.found if x not in result.base_pinned]]
    head = [
        f"# layerscope fix {exp.source} --run {result.run}",
        f"# {len(result.found)} layer(s) to keep in FP32 so that every threshold passes"
        + (f" (besides the {len(result.base_pinned)} the run pins already)" if result.base_pinned else ""),
        "# minimal: removing any one of them fails a threshold. Paste under runs:"
        if result.minimal
        else "# not proven minimal (the search stopped in its budget; --prove-minimal proves it). Paste under runs:",
    ]
    if not layers:
        return "\n".join([*head[:1], "# the run already passes: nothing to pin"]) + "\n"
    body = [
        f"{result.run}:",
        "  overrides:",
        f"    - layers: [{', '.join(_yaml_name(x) for x in layers)}]",
        "      precision: fp32",
    ]
    return "\n".join(head + body) + "\n"


def _yaml_name(name: str) -> str:
    plain = name.replace("_", "").replace("-", "").replace(".", "").isalnum() and not name[:1].isdigit()
    return name if plain else json.dumps(name)


def markdown(exp: Experiment, result: SearchResult) -> str:
    out = [f"# layerscope fix: {exp.name}, run {result.run}", ""]
    if result.found is None:
        out += ["**No set of the ranked layers makes every threshold pass** (even all of them pinned).", ""]
    elif not result.found:
        out += ["The run passes every threshold as it is: nothing to pin.", ""]
    else:
        claim = (
            "Removing any one of them fails a threshold (minimal)"
            if result.minimal
            else "Not proven minimal: the search stopped within its budget of tries (`--prove-minimal` removes each "
            "layer in turn until none can go)"
        )
        out += [
            f"**Pin {len(result.found)} layer(s) to FP32: {', '.join(result.found)}.** {claim}; it is not "
            "guaranteed to be the smallest such set.",
            "",
        ]
    c = result.cost
    out += [
        f"Cost: {c.ran} stages ran ({c.inference_runs} inference passes over the samples), "
        f"{c.cached} came from the cache.",
        "",
    ]
    out += [f"- {n}" for n in result.notes]
    if result.sensitivity and result.ranked_by == "attribution":
        out += [
            "## Ranking (error attribution)",
            "",
            "Each layer's error alone on the reference's inputs; the layers that fail locally (root causes) are "
            "tried first.",
            "",
            "| Layer | Fails locally | Local SQNR dB | Local MSE |",
            "|---|---|---:|---:|",
        ]
        for r in result.sensitivity:
            fails = "—" if r["local_fails"] is None else ("**yes**" if r["local_fails"] else "no")
            out.append(f"| {r['layer']} | {fails} | {fmt_num(r['local_sqnr_db'], 4)} | {fmt_num(r['local_mse'], 4)} |")
        out.append("")
    elif result.sensitivity:
        out += [
            "## Sensitivity",
            "",
            f"Output error = noise/signal power on {', '.join(result.targets)}; baseline = the run as configured.",
            "",
            "| Layer | Output SQNR dB, this layer pinned | Gain | Output SQNR dB, only this layer reduced |",
            "|---|---:|---:|---:|",
        ]
        for r in result.sensitivity:
            out.append(
                f"| {r['layer']} | {fmt_num(_db(r['error_pinned']), 4)} | {_gain(r['pin_gain'])} "
                f"| {fmt_num(_db(r['error_alone']), 4)} |"
            )
        out.append("")
    out += [
        "## Search",
        "",
        "Each try judges every compared tensor (tries run in batches that dump nothing).",
        "",
        "| # | Step | Pinned | Tensors judged | Result | Output SQNR dB |",
        "|---:|---|---:|---:|---|---:|",
    ]
    for i, step in enumerate(result.steps, 1):
        verdict = "PASS" if step["passed"] else f"{step['failing_layers']} layers fail (first: {step['first_failing']})"
        out.append(
            f"| {i} | {step['action']} | {step['size']} | {step.get('tensors_judged', '—')} | {verdict} "
            f"| {fmt_num(step['output_sqnr_db'], 4)} |"
        )
    return "\n".join(out) + "\n"


def _db(error: float) -> float:
    if error == 0:
        return math.inf
    return -10 * math.log10(error) if math.isfinite(error) else -math.inf


def _gain(gain: float) -> str:
    return "inf" if math.isinf(gain) else f"{gain:.3g}"


def write(exp: Experiment, result: SearchResult, out_dir: Path) -> dict[str, Path]:
    from layerscope.runner.jsonio import write_json

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"md": out_dir / f"fix-{result.run}.md", "json": out_dir / f"fix-{result.run}.json"}
    atomic_write(paths["md"], markdown(exp, result))
    doc: dict[str, Any] = asdict(result)
    write_json(paths["json"], doc)
    if result.found is not None:
        paths["yaml"] = out_dir / f"fix-{result.run}.yaml"
        atomic_write(paths["yaml"], snippet(exp, result))
    return paths
