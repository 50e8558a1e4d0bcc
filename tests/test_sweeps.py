"""`layerscope sweep`: configs × a matrix as one graph (shared stages once), a summary linking each report, the
same reports on the local threads and on a Dask LocalCluster of 2 worker processes (also when its workers are
killed mid-sweep), diffs of two summaries, and clear errors for bad sweep files and failed stages."""

from __future__ import annotations

import json
import os
import signal
import textwrap
from pathlib import Path
from typing import Any

import pytest

import layerscope
from layerscope.cli import main
from layerscope.runner.execute import NullReporter
from tests.conftest import without_execution

SWEEP = """\
name: precisions
configs: [exp.yaml]
matrix:
  runs.fp16.precision: [fp16, bf16]
"""


def write_sweep(folder: Path, text: str = SWEEP) -> Path:
    path = folder / "sweep.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def reports(out: Path) -> dict[str, dict[str, Any]]:
    """Each experiment's report.json (less its execution record), by the experiment's folder."""
    return {p.parent.name: without_execution(json.loads(p.read_text())) for p in sorted(out.glob("*/report.json"))}


def test_a_sweep_runs_shared_stages_once_and_links_each_report(write_config, tmp_path: Path) -> None:
    config = write_config()
    result = layerscope.sweep(write_sweep(config.parent), out=tmp_path / "out")
    assert isinstance(result, layerscope.SweepResult)
    assert [e.id for e in result.experiments] == ["exp runs.fp16.precision=fp16", "exp runs.fp16.precision=bf16"]
    assert {e.status for e in result.experiments} == {"pass"} and result.exit_code == 0
    totals = result.summary["totals"]
    # 7 stages each; the FP32 reference's build and dump are the same computation and ran once.
    assert totals["stages"] == 14 and totals["unique_stages"] == 12 and totals["ran"] == 12
    assert result.experiments[1].shared == 2
    for e in result.experiments:
        assert isinstance(e.report, layerscope.Report)
        assert (e.out_dir / "report.json").is_file()
        assert e.report.comparisons[0].verdict == "pass"
    md = result.files["md"].read_text()
    assert "| [exp runs.fp16.precision=bf16](exp_runs.fp16.precision=bf16/report.html) | fp16 vs fp32 | PASS |" in md
    assert (tmp_path / "out" / "sweep.html").read_text().count("<tr class=") == 2
    # A second sweep finds everything in the cache.
    again = layerscope.sweep(write_sweep(config.parent), out=tmp_path / "again")
    assert again.summary["totals"]["ran"] == 0
    assert all(e.cached == 7 for e in again.experiments)
    assert reports(tmp_path / "out") == reports(tmp_path / "again")


def test_the_local_threads_and_a_dask_cluster_give_identical_reports(
    write_config, tmp_path: Path, dask_cluster: str
) -> None:
    sweep = write_sweep(write_config().parent)
    local = layerscope.sweep(sweep, out=tmp_path / "local", cache_dir=tmp_path / "c1")
    remote = layerscope.sweep(
        sweep, out=tmp_path / "dask", cache_dir=tmp_path / "c2", executor="dask", scheduler=dask_cluster
    )
    assert reports(tmp_path / "local") == reports(tmp_path / "dask")
    assert len(reports(tmp_path / "local")) == 2
    assert remote.summary["execution"]["executor"] == f"dask {dask_cluster}"
    for a, b in zip(local.summary["experiments"], remote.summary["experiments"], strict=True):
        assert {k: v for k, v in a.items() if k != "seconds"} == {k: v for k, v in b.items() if k != "seconds"}


class KillWorkers:
    """A reporter that kills every worker process of the cluster when the first attribution stage starts."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.killed: list[int] = []

    def stage_started(self, sid: str, description: str) -> Any:
        if "attribute[" in sid and not self.killed:
            for pid in self.pids:
                os.kill(pid, signal.SIGKILL)
                self.killed.append(pid)
        return NullReporter().stage_started(sid, description)

    def stage_finished(self, outcome: Any) -> None:
        pass


def test_a_sweep_completes_when_its_workers_are_killed_mid_stage(write_config, tmp_path: Path) -> None:
    pytest.importorskip("distributed", reason="the dask extra is not installed")
    from distributed import Client, LocalCluster

    sweep = write_sweep(write_config().parent)
    layerscope.sweep(sweep, out=tmp_path / "local", cache_dir=tmp_path / "c1")
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        pids = list(client.run(os.getpid).values())
        killer = KillWorkers(pids)
        result = layerscope.sweep(
            sweep,
            out=tmp_path / "dask",
            cache_dir=tmp_path / "c2",
            executor="dask",
            scheduler=cluster.scheduler_address,
            progress=killer,
        )
    assert killer.killed == pids  # the workers died while the attribution stage ran; the nannies restarted them
    assert result.exit_code == 0
    assert reports(tmp_path / "local") == reports(tmp_path / "dask")


def test_a_failed_stage_fails_only_its_experiments_and_exits_3(write_config, tmp_path: Path, capsys) -> None:
    import numpy as np

    good = write_config()
    bad = write_config(good.read_text().replace("name: small", "name: broken"), name="broken.yaml")
    np.save(bad.parent / "x.npy", np.zeros((2, 1, 3, 8, 8), np.float32))
    text = bad.read_text().replace("source: {random: normal, seed: 0}", "source: {file: x.npy}")
    bad.write_text(text)
    sweep = write_sweep(good.parent, "configs: [exp.yaml, broken.yaml]\n")
    code = main(["sweep", str(sweep), "--out", str(tmp_path / "out"), "-q"])
    assert code == 3
    captured = capsys.readouterr()
    assert "ERROR: sweep sweep — 1 pass, 0 fail, 1 error" in captured.out
    assert "broken: dump[fp32] failed: x.npy has shape [2, 1, 3, 8, 8]" in captured.err
    summary = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert [e["status"] for e in summary["experiments"]] == ["pass", "error"]
    assert summary["experiments"][1]["candidates"] == [] and "reports" in summary["experiments"][1]
    assert "| broken | — | ERROR |" in (tmp_path / "out" / "sweep.md").read_text()


def test_bad_sweep_files_are_one_clear_message_each(write_config, tmp_path: Path, capsys) -> None:
    folder = write_config().parent
    bad = write_sweep(folder, "configs: [exp.yaml]\nmatrix: {runs.fp16.precision: []}\nextra: 1\n")
    assert main(["sweep", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "sweep.yaml:2" in err and "/matrix/runs.fp16.precision" in err
    assert "extra" in err and "Traceback" not in err
    missing = write_sweep(folder, "configs: [nothing-*.yaml]\n")
    assert main(["sweep", str(missing)]) == 2
    assert "'nothing-*.yaml' matches no config file" in capsys.readouterr().err
    invalid = write_sweep(folder, "configs: [exp.yaml]\nmatrix: {runs.fp16.precision: [fp17]}\n")
    assert main(["sweep", str(invalid)]) == 2  # every experiment is validated before anything runs
    assert "fp17" in capsys.readouterr().err


def test_diff_of_two_sweep_summaries(write_config, tmp_path: Path, capsys) -> None:
    sweep = write_sweep(write_config().parent)
    assert main(["sweep", str(sweep), "--out", str(tmp_path / "a"), "-q"]) == 0
    strict = ["--set", "thresholds.rel_error=0.0001"]
    assert main(["sweep", str(sweep), "--out", str(tmp_path / "b"), "-q", *strict]) == 1
    capsys.readouterr()
    a, b = str(tmp_path / "a"), str(tmp_path / "b" / "sweep.json")
    assert main(["diff", a, b, "--format", "md", "--fail-on-regression"]) == 1
    out = capsys.readouterr().out
    assert "(REGRESSED)" in out and "| exp runs.fp16.precision=bf16 | fp16 | regressed | PASS → FAIL |" in out
    assert main(["diff", a, a, "--fail-on-regression"]) == 0
    assert "no change" in capsys.readouterr().out
    found = layerscope.diff_sweeps(a, b)
    assert found.regressed and len(found.document["changes"]) == 2
    assert main(["diff", a, str(tmp_path / "b" / "exp_runs.fp16.precision=fp16" / "report.json")]) == 2
    assert "not one of each" in capsys.readouterr().err
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"schema": "layerscope-sweep", "schema_version": 1, "experiments": [{"id": 1}]}))
    assert main(["diff", a, str(broken)]) == 2
    assert "a sweep summary is malformed" in capsys.readouterr().err


def test_the_example_sweeps_validate() -> None:
    from layerscope.sweeps import load_experiments, load_spec

    root = Path(__file__).resolve().parents[1] / "configs" / "sweeps"
    files = sorted(root.glob("*.yaml"))
    assert files
    for path in files:
        spec = load_spec(path)
        assert len(load_experiments(spec, None)) == len(spec.experiments) >= 2
