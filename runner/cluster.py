"""The Dask executor: a plan's stages as tasks of a Dask distributed cluster (``--executor dask``).

Dask schedules; nothing here does. Each stage that must run is one task whose arguments hold its upstream
stages' tasks, so the scheduler starts it when they are done, on any worker with the resources it asks for
(``resources={"GPU": 1}`` for a TensorRT build). A task runs the stage exactly as a local thread does
(:func:`.execute.run_stage`: the key's lock, a temporary directory, an atomic publish into the cache), so
the cache directory must be the same shared directory on every worker: that is checked before anything is
submitted, with the worker's environment (the keys are computed by this process, so a worker with other
code, libraries or CPU would publish values under keys that do not describe them). A stage whose upstream
failed returns "skipped" on the worker without running. Outcomes and progress come back to this process:
outcomes as the tasks' results, progress as worker events on a topic of this run. A worker that dies
mid-stage leaves a temporary directory (removed by ``cache gc``) and releases its lock with its process;
the scheduler runs the task again on another worker, up to Dask's ``allowed-failures`` times.

Without an address a LocalCluster of worker processes (one thread each) is started for the run and closed
after it.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from layerscope.runner.cache import Cache, Entry
from layerscope.runner.capture import routed
from layerscope.runner.errors import CacheError, UsageError
from layerscope.runner.execute import NullReporter, Outcome, Reporter, run_stage, settled
from layerscope.runner.graph import Plan, PlannedStage

_LOST = frozenset({"failed", "skipped"})
_IMPORTS = threading.Lock()
# How long to wait for a scheduler to answer (Dask retries a refused connection until then).
CONNECT_TIMEOUT = "20s"
_PROGRESS_INTERVAL = 0.25  # seconds between progress events of one stage: the scheduler relays each


class DaskExecutor:
    def __init__(
        self,
        cache: Cache,
        *,
        address: str | None = None,
        workers: int = 1,
        reporter: Reporter | None = None,
        visible: tuple[str, ...] = (),
        environment: Callable[[], Mapping[str, Any]] | None = None,
        experiment: str | None = None,
    ) -> None:
        self.cache = cache
        self.experiment = experiment  # recorded in the entries made (cache ls), not part of any key
        self.address = address
        self.workers = max(1, workers)
        self.reporter = reporter or NullReporter()
        self.visible = visible
        self.environment = environment
        self.warnings: list[str] = []

    def execute(self, plan: Plan, decisions: Mapping[str, Any]) -> dict[str, Outcome]:
        outcomes = settled(plan, decisions, self.cache, self.reporter)
        to_run = [sid for sid in plan.ids() if decisions[sid].status == "run"]
        if not to_run:
            return {sid: outcomes[sid] for sid in plan.ids()}
        needs = {k for sid in to_run for k in plan[sid].stage.resources}
        with self._client(needs) as client:
            check_workers(client, self.cache, self.visible, self.environment)
            check_resources(client, plan, to_run)
            outcomes.update(self._submit_all(client, plan, decisions, to_run, outcomes))
        return {sid: outcomes[sid] for sid in plan.ids()}

    @contextlib.contextmanager
    def _client(self, resources: set[str]) -> Iterator[Any]:
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise UsageError(
                "--executor dask needs dask.distributed, which is not installed",
                hint='pip install "layerscope[dask]"',
            ) from None
        if self.address:
            try:
                client = Client(self.address, timeout=CONNECT_TIMEOUT)
            except (OSError, TimeoutError) as exc:
                raise UsageError(f"cannot reach the Dask scheduler at {self.address}: {exc}") from None
            with client:
                yield client
            return
        # On this machine: worker processes of one thread each (a stage uses the worker's cores); a GPU the
        # plan needs is this machine's, shared by the workers as the local executor's threads share it.
        with (
            LocalCluster(
                n_workers=self.workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",  # any free port: two runs on one machine must not both want 8787
                resources=dict.fromkeys(resources, 1) or None,
            ) as cluster,
            Client(cluster) as client,
        ):
            yield client

    def _submit_all(
        self, client: Any, plan: Plan, decisions: Mapping[str, Any], to_run: list[str], known: dict[str, Outcome]
    ) -> dict[str, Outcome]:
        from distributed import as_completed

        topic = f"layerscope-{uuid.uuid4().hex}"
        relay = _ProgressRelay(self.reporter, plan)
        client.subscribe_topic(topic, relay.event)
        futures: dict[str, Any] = {}
        try:
            for sid in to_run:  # plan order: a stage's upstream tasks exist before it
                ps = plan[sid]
                upstream = {role: futures.get(dep, known.get(dep)) for role, dep in ps.stage.deps.items()}
                futures[sid] = client.submit(
                    remote_stage,
                    self.cache,
                    ps,
                    decisions[sid].reason,
                    upstream,
                    topic,
                    self.experiment,
                    key=f"{sid}-{ps.key[:12]}-{uuid.uuid4().hex[:8]}",
                    resources=dict(ps.stage.resources) or None,
                    pure=False,
                )
            by_future = {f.key: sid for sid, f in futures.items()}
            done: dict[str, Outcome] = {}
            for fut in as_completed(list(futures.values())):
                sid = by_future[fut.key]
                done[sid] = _result(sid, fut)
                relay.finished(done[sid])
        finally:
            with contextlib.suppress(Exception):
                client.unsubscribe_topic(topic)
        return done


def _result(sid: str, fut: Any) -> Outcome:
    """The outcome a task returned, or why the cluster could not give one (its workers kept dying)."""
    try:
        outcome = fut.result()
    except Exception as exc:
        name = type(exc).__name__
        if name == "KilledWorker":
            why = f"the workers running it died repeatedly (Dask gave up: {exc})"
        else:
            why = f"the cluster could not run it: {name}: {exc}"
        return Outcome(sid, "failed", "run", error=why)
    if not isinstance(outcome, Outcome):
        return Outcome(sid, "failed", "run", error=f"internal error: the task returned {type(outcome).__name__}")
    return outcome


def remote_stage(
    cache: Cache,
    ps: PlannedStage,
    reason: str,
    upstream: Mapping[str, Any],
    topic: str,
    experiment: str | None = None,
) -> Outcome:
    """A stage on a Dask worker: skipped when a required upstream stage failed, run otherwise."""
    from distributed import get_worker

    stage = ps.stage
    worker = get_worker()
    lost = {role for role, o in upstream.items() if o is None or o.status in _LOST or o.entry is None}
    failed = sorted(stage.deps[role] for role in lost - stage.optional)
    if failed:
        return Outcome(stage.id, "skipped", f"skipped: depends on failed {', '.join(failed)}", worker=worker.address)
    inputs: dict[str, Entry] = {role: o.entry for role, o in upstream.items() if role not in lost}
    with _IMPORTS:  # a first import racing in two threads can fail (numpy's C extension does)
        for module in stage.imports:
            with contextlib.suppress(ImportError):
                importlib.import_module(module)
    threads = max(1, (os.cpu_count() or 1) // max(1, worker.state.nthreads))
    progress = _WorkerProgress(worker, topic, stage.id, stage.description or stage.id)
    progress.send("started")
    with routed() as unattributed:
        outcome = run_stage(cache, ps, reason, inputs, threads, progress, experiment)
    if unattributed and outcome.entry is None and outcome.error:
        outcome.error += f" (warnings: {'; '.join(unattributed[:3])})"
    outcome.worker = worker.address
    return outcome


class _WorkerProgress:
    """A stage's progress on a worker, sent to the client as events (throttled: the scheduler relays each)."""

    def __init__(self, worker: Any, topic: str, sid: str, description: str) -> None:
        self.worker, self.topic, self.sid, self.description = worker, topic, sid, description
        self.pending = 0.0
        self.last = 0.0

    def send(self, what: str, **fields: Any) -> None:
        with contextlib.suppress(Exception):  # progress is a courtesy: it never fails a stage
            self.worker.log_event(self.topic, {"sid": self.sid, "what": what, "pid": os.getpid(), **fields})

    def start(self, total: float | None, description: str = "") -> None:
        self.flush()
        self.send("start", total=total, description=description or self.description)

    def advance(self, amount: float = 1.0) -> None:
        self.pending += amount
        now = time.monotonic()
        if now - self.last >= _PROGRESS_INTERVAL:
            self.flush()
            self.last = now

    def flush(self) -> None:
        if self.pending:
            self.send("advance", amount=self.pending)
            self.pending = 0.0

    def log(self, message: str) -> None:
        self.send("log", message=message)


class _ProgressRelay:
    """Worker events of this run -> the reporter: a stage starts, advances, logs; its outcome ends it."""

    def __init__(self, reporter: Reporter, plan: Plan) -> None:
        self.reporter = reporter
        self.plan = plan
        self.progress: dict[str, Any] = {}
        self.pids: dict[str, int] = {}  # the worker process running each stage (observable: tests kill it)
        self.lock = threading.Lock()

    def event(self, event: Any) -> None:
        _when, msg = event
        sid = msg.get("sid")
        if sid not in self.plan.stages:
            return
        with self.lock:
            if msg["what"] == "started":
                self.pids[sid] = int(msg["pid"])
                if sid not in self.progress:  # a retried task starts again: keep its bar
                    stage = self.plan[sid].stage
                    self.progress[sid] = self.reporter.stage_started(sid, stage.description or sid)
                return
            progress = self.progress.get(sid)
        if progress is None:
            return
        if msg["what"] == "start":
            progress.start(msg.get("total"), msg.get("description", ""))
        elif msg["what"] == "advance":
            progress.advance(float(msg.get("amount", 1.0)))
        elif msg["what"] == "log":
            progress.log(str(msg.get("message", "")))

    def finished(self, outcome: Outcome) -> None:
        with self.lock:
            self.progress.pop(outcome.sid, None)
        self.reporter.stage_finished(outcome)


# -- checks before anything is submitted -------------------------------------------------------------------
def check_workers(
    client: Any, cache: Cache, visible: tuple[str, ...], environment: Callable[[], Mapping[str, Any]] | None
) -> None:
    """Every worker sees this cache (the same directory: a file written here is read there) and the other
    paths stages read, and runs in the same environment as this process."""
    probe_dir = cache.base / "tmp"
    try:
        probe_dir.mkdir(parents=True, exist_ok=True)
        token = uuid.uuid4().hex
        probe = probe_dir / f"probe-{token}"
        probe.write_text(token)
    except OSError as exc:
        raise CacheError(f"cannot write to the cache {cache.root}: {exc.strerror or exc}") from None
    mine = environment() if environment is not None else {}
    try:
        found = client.run(worker_view, str(probe), token, str(probe_dir), list(visible), environment)
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
    if not found:
        raise UsageError(f"the Dask cluster at {client.scheduler.address} has no workers")
    problems: list[str] = []
    for address, view in sorted(found.items()):
        problems += [f"worker {address}: {p}" for p in view["problems"]]
        theirs = view.get("environment") or {}
        differs = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
        if differs:
            shown = ", ".join(f"{k}: {theirs.get(k)!r} here {mine.get(k)!r}" for k in differs[:3])
            problems.append(f"worker {address} runs another environment ({shown})")
    if problems:
        raise UsageError(
            "the Dask workers cannot run this plan:\n  " + "\n  ".join(problems[:10]),
            hint="the cache must be one shared directory, mounted at the same path on every worker, and workers "
            "need the same layerscope, libraries and CPU as this process (docs/scale.md)",
        )


def worker_view(
    probe: str, token: str, tmp: str, visible: list[str], environment: Callable[[], Mapping[str, Any]] | None
) -> dict[str, Any]:
    """On a worker: what it sees of the cache and the paths, and its environment."""
    problems: list[str] = []
    try:
        if Path(probe).read_text() != token:
            problems.append(f"{probe} holds something else: the cache at this path is another directory")
    except OSError as exc:
        problems.append(f"cannot read the cache (the probe {probe}: {exc.strerror or exc}): is it shared?")
    try:
        mine = Path(tmp) / f"probe-{uuid.uuid4().hex}"
        mine.write_text("w")
        mine.unlink()
    except OSError as exc:
        problems.append(f"cannot write into the cache ({tmp}: {exc.strerror or exc})")
    problems += [f"cannot see {p}" for p in visible if not os.path.exists(p)]
    return {"problems": problems, "environment": dict(environment()) if environment is not None else {}}


def check_resources(client: Any, plan: Plan, to_run: list[str]) -> None:
    """A stage asking for a resource no worker has would wait forever: say so before submitting it."""
    info = client.scheduler_info(n_workers=-1) if _accepts_n_workers(client) else client.scheduler_info()
    offered: set[str] = set()
    for worker in info.get("workers", {}).values():
        offered |= {k for k, v in (worker.get("resources") or {}).items() if v}
    for sid in to_run:
        missing = sorted(set(plan[sid].stage.resources) - offered)
        if missing:
            raise UsageError(
                f"{sid} needs a worker with resource {missing[0]}, and no worker of the cluster has one",
                hint=f"start workers on such machines with `dask worker ADDRESS --resources {missing[0]}=1`",
            )


def _accepts_n_workers(client: Any) -> bool:
    import inspect

    return "n_workers" in inspect.signature(client.scheduler_info).parameters


def source_digest(*packages: str) -> str:
    """A digest of the source files of installed packages (what a worker must run to honour the keys)."""
    h = hashlib.sha256()
    for name in packages:
        module = importlib.import_module(name)
        for root in sorted(getattr(module, "__path__", [])):
            for path in sorted(Path(root).rglob("*")):
                if path.suffix in (".py", ".json") and "__pycache__" not in path.parts:
                    h.update(f"{name}/{path.relative_to(root).as_posix()}\0".encode())
                    h.update(path.read_bytes())
    return h.hexdigest()
