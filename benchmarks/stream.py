"""Streaming-mode benchmark: disk written and peak RSS against samples (2, 20, 200) for `dump.keep` all (dump +
compare), none and failing (the stream stage). Prints a table, appends a record to benchmarks/history.jsonl
(the same format as run.py's).

Every run is a fresh `layerscope run` process with a fresh cache directory, timed from outside (interpreter
start-up included); disk written is the cache directory's size afterwards. Every run's exit status is checked
(0 or 1: the threshold may fail, never 2 or 3), and so is each report's stage list: the mode must have run the
stages it claims. Attribution is off in every run (it needs dumps; streaming cannot do it).

    python benchmarks/stream.py                          # demo UNet 32x32, 2/20/200 samples
    python benchmarks/stream.py --samples 2,20 --size 64
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
from scale import CONFIG as SWEEP_CONFIG

# scale.py's demo UNet experiment, without attribution (streaming cannot attribute) and with the JSON report only.
CONFIG = SWEEP_CONFIG.replace("report: {formats: [json, md]}", "attribution: false\nreport: {formats: [json]}")
EXPECTED = {  # the stages each mode must have run
    "all": {"build[fp32]", "build[fp16]", "dump[fp32]", "dump[fp16]", "compare[fp16]", "report"},
    "none": {"build[fp32]", "build[fp16]", "stream[fp16]", "report"},
    "failing": {"build[fp32]", "build[fp16]", "stream[fp16]", "report"},
}


def one(work: Path, config: Path, samples: int, keep: str) -> dict[str, Any]:
    cache, out = work / f"cache-{keep}-{samples}", work / f"out-{keep}-{samples}"
    env = {**os.environ, "LAYERSCOPE_CACHE_DIR": str(cache)}
    sets = ["--set", f"samples={samples}", "--set", f"dump.keep={keep}"]
    cmd = [sys.executable, "-m", "layerscope", "run", str(config), "-q", "--out", str(out), *sets]
    result = run_measured(cmd, env=env, cwd=work)
    if result["code"] not in (0, 1):
        raise RuntimeError(f"keep={keep} samples={samples} exited {result['code']}: {result['err']}")
    report = json.loads((out / "report.json").read_text())
    stages = report["execution"]["stages"]
    ran = {sid for sid, s in stages.items() if s["status"] == "ran"}
    if ran != EXPECTED[keep]:
        raise RuntimeError(f"keep={keep} samples={samples} ran {sorted(ran)}, expected {sorted(EXPECTED[keep])}")
    layers = report["comparisons"][0]["layers"]
    written = du(cache)
    shutil.rmtree(cache)
    shutil.rmtree(out)
    return {
        "name": f"stream: keep={keep}, {samples} samples",
        "seconds": result["wall"],
        "bytes": written,
        "rss": result["rss"],
        "detail": f"{len(layers)} layers, verdict {report['verdict']}",
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--samples", default="2,20,200", help="comma-separated sample counts")
    p.add_argument("--size", type=int, default=32, help="input height and width of the demo UNet")
    p.add_argument("--no-history", action="store_true", help="do not append to benchmarks/history.jsonl")
    args = p.parse_args()
    counts = [int(s) for s in args.samples.split(",")]
    load = subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    rows = []
    with tempfile.TemporaryDirectory(prefix="layerscope-stream-bench-") as tmp:
        work = Path(tmp)
        config = work / "bench.yaml"
        config.write_text(CONFIG.replace("SAMPLES", "2").replace("SIZE", str(args.size)))
        for samples in counts:
            for keep in ("all", "none", "failing"):
                row = one(work, config, samples, keep)
                rows.append(row)
                print(
                    f"{row['name']:<36} {row['seconds']:7.2f} s  {row['bytes'] / 1e6:9.2f} MB on disk  "
                    f"{row['rss'] / 1e6:7.0f} MB peak RSS  {row['detail']}",
                    flush=True,
                )
    load_after = subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    print(f"load before: {load}\nload after:  {load_after}")
    if not args.no_history:
        append_history(rows, [load, load_after], size=args.size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
