"""layerscope benchmarks: against Polygraphy, against the floor, the cached rerun, metrics throughput, memory
at scale, and cache hashing. Prints a table, appends a record to benchmarks/history.jsonl.

    pip install -e ".[bench]"
    python benchmarks/run.py                 # everything (~4 minutes on 2 cores)
    python benchmarks/run.py --only warm,compare

Every end-to-end number is a fresh process (interpreter start-up included) with a fresh cache directory,
timed from outside. Peak memory is the child's maximum resident set size (getrusage). Timings are never
asserted anywhere: this script measures, the README records.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import costs  # benchmarks/: the per-layer and fix rows (issue 14)

ROOT = Path(__file__).resolve().parents[1]
HISTORY = ROOT / "benchmarks" / "history.jsonl"

SEED_CONFIG = """\
name: bench
model: {builtin: unet, options: {base_channels: 40, depth: 2}}
samples: SAMPLES
inputs:
  input: {shape: [1, 3, 256, 256], source: {random: normal, seed: 0}}
runs:
  fp32: {precision: fp32}
  fp16: {precision: fp16, options: {execution: native}}  # the work Polygraphy's --fp-to-fp16 run does
compare: {reference: fp32, candidates: [fp16]}
thresholds: {max_deviation_ratio: 0.005}
attribution: ATTRIBUTION
report: {formats: FORMATS}
"""


def run_measured(cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> dict[str, Any]:
    """Wall time and peak RSS of a command run in a fresh child (measured by a throw-away parent). Dirty pages
    of earlier runs are flushed first, so that no run pays for another's writes."""
    os.sync()
    probe = textwrap.dedent(
        """
        import json, resource, subprocess, sys, time
        t = time.perf_counter()
        p = subprocess.run(sys.argv[1:], capture_output=True, text=True)
        wall = time.perf_counter() - t
        rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        print(json.dumps({"wall": wall, "rss": rss, "code": p.returncode, "err": p.stderr[-2000:]}))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, *cmd], capture_output=True, text=True, env=env, cwd=cwd, check=True
    )
    return dict(json.loads(out.stdout))


def du(*paths: Path) -> int:
    total = 0
    for path in paths:
        for root, _dirs, files in os.walk(path):
            for f in files:
                p = Path(root, f)
                if not p.is_symlink():
                    total += p.stat().st_size
    return total


def write_config(folder: Path, samples: int, attribution: bool, formats: str) -> Path:
    text = SEED_CONFIG.replace("SAMPLES", str(samples)).replace("ATTRIBUTION", str(attribution).lower())
    path = folder / "bench.yaml"
    path.write_text(text.replace("FORMATS", formats))
    return path


def layerscope_run(work: Path, config: Path, cache: Path, *extra: str) -> dict[str, Any]:
    env = {**os.environ, "LAYERSCOPE_CACHE_DIR": str(cache)}
    cmd = [sys.executable, "-m", "layerscope", "run", str(config), "-q", "--out", str(work / "out"), *extra]
    result = run_measured(cmd, env=env, cwd=work)
    if result["code"] not in (0, 1):
        raise RuntimeError(f"layerscope failed: {result['err']}")
    return result


# -- 1 & 2: the seed job, against Polygraphy and against the floor ---------------------------------------
def median_of(n: int, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    runs = sorted((fn() for _ in range(n)), key=lambda r: r["wall"])
    best = runs[len(runs) // 2]
    walls = ", ".join(f"{r['wall']:.2f}" for r in runs)
    return {**best, "detail": f"median of {n}: {walls} s"}


def bench_seed(samples: int, repeats: int = 3) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="ls-bench-") as tmp:
        work = Path(tmp)
        config = write_config(work, samples, attribution=False, formats="[json, md]")
        counter = iter(range(1000))

        def cold(*extra: str) -> dict[str, Any]:
            cache = work / f"cache{next(counter)}"
            result = layerscope_run(work, config, cache, *extra)
            result["bytes"] = du(cache / "v1" / "objects", work / "out")
            shutil.rmtree(cache)
            return result

        ours = median_of(repeats, cold)
        rows.append(
            {
                "name": "seed job: layerscope (cold, no attribution/html)",
                "seconds": ours["wall"],
                "bytes": ours["bytes"],
                "rss": ours["rss"],
                "detail": ours["detail"],
            }
        )
        dumps = median_of(repeats, lambda: cold("--only", "dump[fp32]", "--only", "dump[fp16]"))
        full_cfg = write_config(work, samples, attribution=True, formats="[json, md, html]")
        full = layerscope_run(work, full_cfg, work / "cache-full")
        stages = json.loads((work / "out" / "report.json").read_text())["execution"]["stages"]
        rows.append(
            {
                "name": "seed job: layerscope (cold, with attribution + html)",
                "seconds": full["wall"],
                "bytes": du(work / "cache-full" / "v1" / "objects"),
                "rss": full["rss"],
                "detail": ", ".join(f"{k} {v['seconds']:.1f} s" for k, v in stages.items()),
            }
        )
        rows.append(
            {
                "name": "  attribution: the attribute[fp16] stage of that run",
                "seconds": stages["attribute[fp16]"]["seconds"],
                "detail": f"compare[fp16] {stages['compare[fp16]']['seconds']:.2f} s for comparison",
            }
        )
        model = next((work / "cache-full" / "v1" / "objects" / "model").rglob("model.onnx"))
        poly = polygraphy_job(work, model, samples)
        if "failed" in poly:
            rows.append({**poly, "target": "layerscope >= 14x faster", "ok": False, "detail": poly["failed"]})
        else:
            rows.append(
                {
                    **poly,
                    "ratio": poly["seconds"] / ours["wall"],
                    "target": "layerscope >= 14x faster",
                    "ok": poly["seconds"] / ours["wall"] >= 14,
                }
            )
        floor = median_of(repeats, lambda: floor_job(work, model, samples))
        rows.append(
            {
                "name": "floor: ORT with every output of both models + np.save of each tensor",
                "seconds": floor["wall"],
                "bytes": floor["bytes"],
                "rss": floor["rss"],
                "detail": floor["detail"],
            }
        )
        rows.append(
            {
                "name": "  layerscope seed job against the floor",
                "ratio": ours["wall"] / floor["wall"],
                "target": "<= 1.3x the floor",
                "ok": ours["wall"] / floor["wall"] <= 1.3,
            }
        )
        rows.append(
            {
                "name": "  layerscope seed job with attribution + html against the floor",
                "ratio": full["wall"] / floor["wall"],
                "target": "<= 2x the floor",
                "ok": full["wall"] / floor["wall"] <= 2,
            }
        )
        rows.append(
            {
                "name": "  layerscope builds + dumps only (the floor's work) against the floor",
                "seconds": dumps["wall"],
                "ratio": dumps["wall"] / floor["wall"],
                "target": "<= 1.5x the floor",
                "ok": dumps["wall"] / floor["wall"] <= 1.5,
                "detail": dumps["detail"],
            }
        )
    return rows


def polygraphy_job(work: Path, model: Path, samples: int) -> dict[str, Any]:
    """Polygraphy doing the seed job; a step that fails is a row that says so (exit status, its stderr), never
    a missing row or a timing of work that did not happen."""
    name = "seed job: Polygraphy (convert, run fp32 + save, run fp16 + compare)"
    if shutil.which("polygraphy") is None:
        return {"name": name, "failed": "polygraphy is not installed: pip install -e '.[bench]'"}
    pg = work / "polygraphy"
    pg.mkdir()
    steps = [
        ["polygraphy", "convert", str(model), "--fp-to-fp16", "-o", str(pg / "fp16.onnx")],
        [
            "polygraphy",
            "run",
            str(model),
            "--onnxrt",
            "--onnx-outputs",
            "mark",
            "all",
            "--iterations",
            str(samples),
            "--input-shapes",
            "input:[1,3,256,256]",
            "--save-inputs",
            str(pg / "inputs.json"),
            "--save-outputs",
            str(pg / "ref.json"),
        ],
        [
            "polygraphy",
            "run",
            str(pg / "fp16.onnx"),
            "--onnxrt",
            "--onnx-outputs",
            "mark",
            "all",
            "--load-inputs",
            str(pg / "inputs.json"),
            "--load-outputs",
            str(pg / "ref.json"),
        ],
    ]
    wall, rss = 0.0, 0
    codes = []
    for cmd in steps:
        r = run_measured(cmd)
        wall, rss = wall + r["wall"], max(rss, r["rss"])
        codes.append(r["code"])
        # the last step exits 1 when Polygraphy's own comparison fails its default tolerance: the job was done
        if r["code"] != 0 and not (cmd is steps[-1] and r["code"] == 1):
            tail = r["err"].strip().splitlines()[-1:] or [""]
            return {"name": name, "failed": f"`{' '.join(cmd[:3])}` exited {r['code']}: {tail[0][:300]}"}
    return {
        "name": name,
        "detail": f"exit status of each step: {', '.join(map(str, codes))}",
        "seconds": wall,
        "bytes": du(pg) - (pg / "fp16.onnx").stat().st_size,
        "rss": rss,
    }


FLOOR = """
import sys, time, numpy as np, onnx, onnxruntime as ort
from onnxruntime.transformers.float16 import convert_float_to_float16
model, out, samples = sys.argv[1], sys.argv[2], int(sys.argv[3])
fp32 = onnx.load(model)
fp16 = convert_float_to_float16(onnx.load(model), keep_io_types=True)
n = 0
for m in (fp32, fp16):
    names = [o for node in m.graph.node for o in node.output]
    for name in names:
        if name not in {o.name for o in m.graph.output}:
            m.graph.output.append(onnx.ValueInfoProto(name=name))
    s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    for i in range(samples):
        x = np.random.default_rng([0, i]).standard_normal((1, 3, 256, 256)).astype(np.float32)
        for name, value in zip(names, s.run(names, {"input": x})):
            np.save(f"{out}/{n}.npy", value)
            n += 1
"""


def floor_job(work: Path, model: Path, samples: int) -> dict[str, Any]:
    out = work / "floor"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    r = run_measured([sys.executable, "-c", FLOOR, str(model), str(out), str(samples)])
    if r["code"] != 0:
        raise RuntimeError(r["err"])
    return {**r, "bytes": du(out)}


# -- 3: the cached rerun -----------------------------------------------------------------------------------
def bench_warm(samples: int) -> list[dict[str, Any]]:
    config = ROOT / "configs" / "unet-fp16.yaml"
    with tempfile.TemporaryDirectory(prefix="ls-bench-") as tmp:
        work = Path(tmp)
        layerscope_run(work, config, work / "cache", "--set", f"samples={samples}")
        walls = [layerscope_run(work, config, work / "cache", "--set", f"samples={samples}")["wall"] for _ in range(7)]
    walls.sort()
    median = walls[len(walls) // 2]
    return [
        {
            "name": "warm rerun of the demo config (whole process, everything cached)",
            "seconds": median,
            "target": "<= 0.5 s",
            "ok": median <= 0.5,
            "detail": f"min {walls[0]:.3f} s, max {walls[-1]:.3f} s",
        }
    ]


# -- 4: metrics throughput ---------------------------------------------------------------------------------
def bench_compare() -> list[dict[str, Any]]:
    import numpy as np

    from layerscope.pipelines.metrics.stats import MetricConfig, TensorStats

    rng = np.random.default_rng(0)
    ref = rng.standard_normal(40 * 256 * 256 * 8).astype(np.float32)  # 8 samples of conv0
    cand = (ref + rng.normal(0, 1e-3, ref.size)).astype(np.float16)
    gigabytes = (ref.nbytes + cand.nbytes) / 1e9

    def timed(fn: Callable[[], object]) -> float:
        fn()
        best = min(_time(fn) for _ in range(5))
        return gigabytes / best

    baseline = timed(lambda: np.count_nonzero(np.abs(ref - cand) > 0.1 * np.abs(ref)))
    threads = os.cpu_count() or 1

    def ours() -> object:
        s = TensorStats(MetricConfig(), threads=threads)
        s.update(ref, cand)
        return s.result()

    ours_gbs = timed(ours)
    return [
        {"name": "metrics baseline: numpy, one line (count of |r-x| > 0.1|r|)", "gbps": baseline},
        {
            "name": f"metrics: layerscope, all metrics, {threads} threads",
            "gbps": ours_gbs,
            "ratio": ours_gbs / baseline,
            "target": ">= 50% of the baseline",
            "ok": ours_gbs / baseline >= 0.5,
        },
    ]


def _time(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


# -- 5: memory at scale ------------------------------------------------------------------------------------
def bench_scale(samples: int) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="ls-bench-") as tmp:
        work = Path(tmp)
        for n in (2, samples):
            config = write_config(work, n, attribution=False, formats="[json, md]")
            r = layerscope_run(work, config, work / f"cache{n}")
            size = du(work / f"cache{n}" / "v1" / "objects" / "dump")
            rows.append(
                {
                    "name": f"scale: {n} samples of the 256x256 UNet, every layer",
                    "seconds": r["wall"],
                    "bytes": size,
                    "rss": r["rss"],
                    "detail": f"dumps {size / r['rss']:.1f}x peak RSS",
                }
            )
    return rows


# -- HDF5 compression: measured, not guessed ------------------------------------------------------------------
def bench_compression(samples: int) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="ls-bench-") as tmp:
        work = Path(tmp)
        config = write_config(work, samples, attribution=False, formats="[json, md]")
        for codec in ("none", "lzf", "gzip"):
            cache = work / f"cache-{codec}"
            r = layerscope_run(work, config, cache, "--set", f"dump.compression={codec}", "--set", "dump.gzip_level=1")
            size = du(cache / "v1" / "objects" / "dump")
            rows.append(
                {
                    "name": f"seed job, dumps compressed with {codec}" + (" (level 1)" if codec == "gzip" else ""),
                    "seconds": r["wall"],
                    "bytes": size,
                    "rss": r["rss"],
                }
            )
    return rows


# -- 6: hashing a 1 GB model -------------------------------------------------------------------------------
def bench_hash() -> list[dict[str, Any]]:
    from layerscope.runner.hashing import FileDigests

    with tempfile.TemporaryDirectory(prefix="ls-bench-") as tmp:
        big = Path(tmp, "model.bin")
        with open(big, "wb") as f:
            chunk = os.urandom(1 << 20)
            for _ in range(1024):
                f.write(chunk)
        first = _time(lambda: FileDigests(Path(tmp, "memo"))(big))
        again = _time(lambda: FileDigests(Path(tmp, "memo"))(big))  # a new process's view: on-disk memo
    return [
        {"name": "hash a 1 GiB model file, first time", "seconds": first},
        {"name": "hash it again (memoised by stat)", "seconds": again, "ratio": first / again},
    ]


BENCHES: dict[str, Callable[[argparse.Namespace], list[dict[str, Any]]]] = {
    "seed": lambda a: bench_seed(a.samples),
    "warm": lambda a: bench_warm(a.samples),
    "compare": lambda a: bench_compare(),
    "scale": lambda a: bench_scale(a.scale_samples),
    "hash": lambda a: bench_hash(),
    "compression": lambda a: bench_compression(a.samples),
    "layers": lambda a: costs.bench_layers(run_measured, du, a.baseline_python),
    "fix": lambda a: costs.bench_fix(run_measured, du, a.baseline_python),
}


def machine() -> dict[str, Any]:
    from layerscope.pipelines.backends.onnxruntime import cpu_name

    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "memory_gib": round(mem / 2**30, 1),
        "python": platform.python_version(),
        "commit": commit or "?",
    }


def append_history(rows: list[dict[str, Any]], uptime: list[str] | None = None, **extra: Any) -> None:
    """Append one record (when, machine, optional load before/after, extra fields, rows) to history.jsonl."""
    mach = machine() if uptime is None else {**machine(), "uptime": uptime}
    record = {"when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": mach, **extra, "rows": rows}
    with open(HISTORY, "a") as f:
        f.write(json.dumps(record) + "\n")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default=",".join(BENCHES), help=f"comma-separated subset of {', '.join(BENCHES)}")
    p.add_argument("--samples", type=int, default=4, help="samples of the seed job (default 4, as the demo)")
    p.add_argument("--scale-samples", type=int, default=20)
    p.add_argument(
        "--baseline-python",
        help="layers/fix: also run these rows with another checkout's interpreter (its virtualenv), labelled before",
    )
    p.add_argument("--no-history", action="store_true", help="do not append to benchmarks/history.jsonl")
    args = p.parse_args()
    rows: list[dict[str, Any]] = []
    for name in args.only.split(","):
        rows += BENCHES[name.strip()](args)
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"layerscope benchmarks — {machine()}", title_justify="left")
    for col in ("benchmark", "time", "GB/s", "written", "peak RSS", "ratio", "target", "detail"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["name"],
            f"{r['seconds']:.2f} s" if "seconds" in r else "",
            f"{r['gbps']:.2f}" if "gbps" in r else "",
            f"{r['bytes'] / 1e9:.2f} GB" if "bytes" in r else "",
            f"{r['rss'] / 2**30:.2f} GiB" if "rss" in r else "",
            f"{r['ratio']:.1f}x" if "ratio" in r else "",
            (("[green]" if r["ok"] else "[red]") + r["target"] + ("[/green]" if r["ok"] else "[/red]"))
            if "target" in r
            else "",
            ("[red]FAILED: " + r["failed"] + "[/red]") if "failed" in r else r.get("detail", ""),
        )
    Console(width=200).print(table)
    if not args.no_history:
        append_history(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
