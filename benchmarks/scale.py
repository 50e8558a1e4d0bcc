"""Sweep benchmark: the same experiments run one `layerscope run` after another (each with a fresh cache: nothing
shared; and on one cache: shared stages come from it), as one `layerscope sweep` graph on the local threads,
and as one sweep on a Dask LocalCluster of worker processes. Prints a table, appends a record to
benchmarks/history.jsonl (the same format as run.py's).

Every command is a fresh process timed from outside (interpreter start-up included), each with a fresh cache
directory; every command's exit status is checked (0 or 1: a threshold may fail by design, never 2 or 3).
Say how loaded the machine was: `uptime` is recorded with the numbers.

    python benchmarks/scale.py                       # 4 experiments: fp16/bf16 x two limits, demo UNet 128x128
    python benchmarks/scale.py --samples 4 --size 256 --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import append_history, du, run_measured  # the other benchmarks' measuring helpers

CONFIG = """\
name: bench-sweep
model: {builtin: unet}
samples: SAMPLES
inputs:
  input: {shape: [1, 3, SIZE, SIZE], source: {random: normal, seed: 0}}
runs:
  fp32: {precision: fp32}
  fp16: {precision: fp16}
compare: {reference: fp32, candidates: [fp16]}
thresholds: {rel_error: 0.01}
report: {formats: [json, md]}
"""
SWEEP = """\
name: bench
configs: [bench.yaml]
matrix:
  runs.fp16.precision: [fp16, bf16]
  thresholds.rel_error: [0.01, 0.05]
report: {formats: [json, md]}
"""
MATRIX = [(p, r) for p in ("fp16", "bf16") for r in (0.01, 0.05)]


def layerscope(args: list[str], cache: Path, cwd: Path) -> dict[str, Any]:
    env = {**os.environ, "LAYERSCOPE_CACHE_DIR": str(cache)}
    env.pop("DASK_SCHEDULER_ADDRESS", None)
    result = run_measured([sys.executable, "-m", "layerscope", *args], env=env, cwd=cwd)
    if result["code"] not in (0, 1):  # 1: a threshold failed, which the matrix's strict limit does by design
        raise RuntimeError(f"layerscope {' '.join(args)} exited {result['code']}: {result['err']}")
    return result


def bench_sweep(samples: int, size: int, workers: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="ls-bench-sweep-") as tmp:
        work = Path(tmp)
        (work / "bench.yaml").write_text(CONFIG.replace("SAMPLES", str(samples)).replace("SIZE", str(size)))
        (work / "sweep.yaml").write_text(SWEEP)

        def fresh(name: str) -> Path:
            path = work / name
            shutil.rmtree(path, ignore_errors=True)
            return path

        # 1. one process per experiment, nothing shared (a fresh cache each): what a shell loop costs.
        total, written = 0.0, 0
        for i, (prec, rel) in enumerate(MATRIX):
            cache = fresh(f"cache-alone-{i}")
            sets = ["--set", f"runs.fp16.precision={prec}", "--set", f"thresholds.rel_error={rel}"]
            r = layerscope(
                ["run", "bench.yaml", "-q", "--out", str(work / f"alone-{i}"), "-j", str(workers), *sets], cache, work
            )
            total += r["wall"]
            written += du(cache)
        rows.append({"name": "sweep: 4 x `layerscope run`, separate caches", "seconds": total, "bytes": written})
        # 2. one process per experiment on one cache: the reference comes from the cache after the first.
        cache = fresh("cache-seq")
        total = 0.0
        for i, (prec, rel) in enumerate(MATRIX):
            sets = ["--set", f"runs.fp16.precision={prec}", "--set", f"thresholds.rel_error={rel}"]
            r = layerscope(
                ["run", "bench.yaml", "-q", "--out", str(work / f"seq-{i}"), "-j", str(workers), *sets], cache, work
            )
            total += r["wall"]
        rows.append({"name": "sweep: 4 x `layerscope run`, one cache", "seconds": total, "bytes": du(cache)})
        # 3. and 4. one sweep: one graph, shared stages once; on the local threads and on a LocalCluster.
        for executor in ("local", "dask"):
            cache = fresh(f"cache-{executor}")
            args = ["sweep", "sweep.yaml", "-q", "--out", str(work / f"sweep-{executor}"), "-j", str(workers)]
            r = layerscope([*args, "--executor", executor], cache, work)
            summary = json.loads((work / f"sweep-{executor}" / "sweep.json").read_text())
            t = summary["totals"]
            rows.append(
                {
                    "name": f"sweep: `layerscope sweep --executor {executor}`",
                    "seconds": r["wall"],
                    "bytes": du(cache),
                    "rss": r["rss"],
                    "detail": f"{t['stages']} stages, {t['unique_stages']} distinct, {t['ran']} ran"
                    + (
                        f"; LocalCluster of {workers} worker processes (start-up included)"
                        if executor == "dask"
                        else ""
                    ),
                }
            )
    detail = f"{len(MATRIX)} experiments, demo UNet {size}x{size}, {samples} samples, -j {workers}"
    for row in rows:
        row["detail"] = f"{detail}; {row['detail']}" if "detail" in row else detail
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--samples", type=int, default=2)
    p.add_argument("--size", type=int, default=128, help="input height and width of the demo UNet")
    p.add_argument("--workers", type=int, default=2, help="-j: threads, or the LocalCluster's worker processes")
    p.add_argument("--no-history", action="store_true", help="do not append to benchmarks/history.jsonl")
    args = p.parse_args()
    load = subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    rows = bench_sweep(args.samples, args.size, args.workers)
    load_after = subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    for r in rows:
        print(f"{r['name']:<52} {r['seconds']:7.2f} s  {r['bytes'] / 1e6:8.1f} MB written  {r['detail']}")
    print(f"load before: {load}\nload after:  {load_after}")
    if not args.no_history:
        append_history(rows, [load, load_after])
    return 0


if __name__ == "__main__":
    sys.exit(main())
