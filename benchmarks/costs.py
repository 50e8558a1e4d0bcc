"""Benchmarks of issue 14: the per-layer cost (a chain of 500 / 2,000 / 8,000 tiny layers, cold, warm and the
size of report.json) and `layerscope fix` on the demo UNet at 128x128. Imported by run.py (``--only
layers,fix``); each row names its target and whether it was met. Every command's exit status is checked."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import chain

ROOT = Path(__file__).resolve().parents[1]
LAYER_COUNTS = (500, 2000, 8000)


def _layerscope(
    run_measured: Callable[..., dict[str, Any]],
    work: Path,
    cache: Path,
    *args: str,
    python: str = sys.executable,
    ok: tuple[int, ...] = (0, 1),
) -> dict[str, Any]:
    env = {**os.environ, "LAYERSCOPE_CACHE_DIR": str(cache)}
    result = run_measured([python, "-m", "layerscope", *args], env=env, cwd=work)
    if result["code"] not in ok:
        raise RuntimeError(f"layerscope {args[0]} exited {result['code']}: {result['err']}")
    return result


def _versions(baseline: str | None) -> list[tuple[str, str]]:
    """(label, interpreter): this checkout, and before it, a baseline's (another checkout's virtualenv)."""
    return [*([("before: ", baseline)] if baseline else []), ("", sys.executable)]


def bench_layers(
    run_measured: Callable[..., dict[str, Any]], du: Callable[..., int], baseline: str | None = None
) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="ls-bench-") as tmp:
        for n in LAYER_COUNTS:
            for label, python in _versions(baseline):
                rows += _chain_rows(run_measured, du, Path(tmp), n, label, python)
    return rows


def _chain_rows(
    run_measured: Callable[..., dict[str, Any]], du: Callable[..., int], work: Path, n: int, label: str, python: str
) -> list[dict[str, Any]]:
    config = chain.write(work, n)
    out, cache = work / f"out{n}{label[:1]}", work / f"cache{n}{label[:1]}"
    args = ("run", str(config), "-q", "--out", str(out))
    cold = _layerscope(run_measured, work, cache, *args, python=python)
    report = json.loads((out / "report.json").read_text())
    stages = {k: v["seconds"] for k, v in report["execution"]["stages"].items()}
    size, written = (out / "report.json").stat().st_size, du(cache / "v1" / "objects")
    side = out / "report.histograms.json"  # schema version 3: the histograms a large report does not show
    beside = f"report.histograms.json beside it: {side.stat().st_size / 1e6:.1f} MB" if side.is_file() else None
    warm = sorted(_layerscope(run_measured, work, cache, *args, python=python)["wall"] for _ in range(3))[1]
    shutil.rmtree(cache)
    big = n == LAYER_COUNTS[-1] and not label  # the targets are for this checkout at 8,000 layers
    return [
        {
            "name": f"{label}layers: chain of {n} tiny layers (64 floats, 2 samples, fp16), cold",
            "seconds": cold["wall"],
            "rss": cold["rss"],
            "bytes": written,
            "detail": ", ".join(f"{k} {v:.1f} s" for k, v in stages.items() if v >= 0.05),
            **({"target": "<= 5 s", "ok": cold["wall"] <= 5} if big else {}),
        },
        {
            "name": f"{label}layers: chain of {n}, warm rerun (median of 3)",
            "seconds": warm,
            **({"target": "<= 0.5 s", "ok": warm <= 0.5} if big else {}),
        },
        {
            "name": f"{label}layers: chain of {n}, report.json",
            "bytes": size,
            **({"detail": beside} if beside else {}),
            **({"target": "<= 5 MB", "ok": size <= 5e6} if big else {}),
        },
    ]


FIX_CONFIG = """\
name: fixbench
model: {builtin: unet, options: {base_channels: 40, depth: 2}}
samples: 2
inputs:
  input: {shape: [1, 3, 128, 128], source: {random: normal, seed: 0}}
runs:
  fp32: {precision: fp32}
  fp16: {precision: fp16}
thresholds: {rel_error: 0.1, max_deviation_ratio: 0.005, min_cosine: 0.999}
report: {formats: [json, md]}
"""


def bench_fix(
    run_measured: Callable[..., dict[str, Any]], du: Callable[..., int], baseline: str | None = None
) -> list[dict[str, Any]]:
    """`layerscope fix` from nothing cached (its attribution and baseline included), then the same search again."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="ls-bench-") as tmp:
        for label, python in _versions(baseline):
            work = Path(tmp) / f"fix{label[:1]}"
            work.mkdir()
            config = work / "fix.yaml"
            config.write_text(FIX_CONFIG)
            cache = work / "cache"
            # --out is new (the baseline writes into the config's report.dir, under work/ as well)
            args = ("fix", str(config), "--run", "fp16", "-q", *(() if label else ("--out", str(work / "fix"))))
            cold = _layerscope(run_measured, work, cache, *args, python=python)
            result = json.loads(next(work.rglob("fix-fp16.json")).read_text())
            written = du(cache / "v1" / "objects")
            passes = result["cost"]["inference_runs"]
            found = result["found"]
            ok = cold["wall"] <= 10 and written <= 100e6 and passes <= 30
            rows.append(
                {
                    "name": f"{label}fix: demo UNet at 128x128, 2 samples (nothing cached)",
                    "seconds": cold["wall"],
                    "bytes": written,
                    "rss": cold["rss"],
                    **({} if label else {"target": "<= 10 s, <= 100 MB, <= 30 passes", "ok": ok}),
                    "detail": f"exit {cold['code']}, {passes} inference passes, {result['cost']['ran']} stages ran, "
                    f"pinned {len(found) if found is not None else 'nothing found'}: {found}",
                }
            )
            again = _layerscope(run_measured, work, cache, *args, python=python)
            rows.append({"name": f"{label}fix: the same search again (cached)", "seconds": again["wall"]})
    return rows
