"""--executor dask end to end: the same report as the local threads, the workers' checks, the usage errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import layerscope
from layerscope.cli import main
from layerscope.executors import choose, read_paths, worker_environment
from layerscope.runner.errors import UsageError
from tests.conftest import without_execution


def test_dask_gives_the_report_the_local_threads_give(write_config, tmp_path: Path, dask_cluster: str) -> None:
    config = write_config()
    local = layerscope.run(config, out=tmp_path / "local", cache_dir=tmp_path / "c1")
    remote = layerscope.run(
        config, out=tmp_path / "dask", cache_dir=tmp_path / "c2", executor="dask", scheduler=dask_cluster
    )
    a = json.loads((tmp_path / "local" / "report.json").read_text())
    b = json.loads((tmp_path / "dask" / "report.json").read_text())
    assert without_execution(a) == without_execution(b)
    assert local.verdict == remote.verdict == "pass"
    # The same keys: the workers' results are exactly what the keys computed here describe.
    keys = {sid: s["key"] for sid, s in a["execution"]["stages"].items()}
    assert keys == {sid: s["key"] for sid, s in b["execution"]["stages"].items()}
    assert {s["status"] for s in b["execution"]["stages"].values()} == {"ran"}


def test_the_cli_takes_the_scheduler_from_the_environment(
    write_config, tmp_path: Path, dask_cluster: str, monkeypatch
) -> None:
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", dask_cluster)
    assert main(["run", str(write_config()), "--executor", "dask", "--out", str(tmp_path / "o"), "-q"]) == 0
    assert (tmp_path / "o" / "report.json").is_file()


def test_an_unreachable_scheduler_is_a_usage_error(write_config, tmp_path: Path, capsys, monkeypatch) -> None:
    pytest.importorskip("distributed", reason="the dask extra is not installed")
    monkeypatch.setattr("layerscope.runner.cluster.CONNECT_TIMEOUT", "1s")
    code = main(["run", str(write_config()), "--scheduler", "tcp://127.0.0.1:9", "-q"])
    assert code == 2
    err = capsys.readouterr().err
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in err
    assert "Traceback" not in err


def test_choices() -> None:
    assert choose(None, None, []).kind == "local"
    assert choose(None, "tcp://h:8786", []).address == "tcp://h:8786"
    with pytest.raises(UsageError, match="--scheduler needs --executor dask"):
        choose("local", "tcp://h:8786", [])


def test_workers_must_see_the_model_and_share_the_code(write_config) -> None:
    exp = layerscope.api.load_experiment(write_config())
    assert str(exp.model.path) in read_paths(exp)
    env = worker_environment()
    assert len(env["layerscope source"]) == 64 and env["numpy"]
