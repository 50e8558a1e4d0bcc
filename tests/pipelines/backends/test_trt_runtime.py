"""The TensorRT backend's run-time logic that needs no GPU: the debug listener's sink, the session around the
engine runner, where TensorRT's log messages go (one logger per process, builds one at a time), the
timing cache a build starts from, and the shared timing cache that builds add to."""

from __future__ import annotations

import enum
import json
import sys
import threading
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from layerscope.pipelines.backends.trt import engine as trt_engine
from layerscope.pipelines.backends.trt.logs import ROUTER, Capture, LogRouter
from layerscope.pipelines.backends.trt.runtime import DebugSink, TensorRTSession
from layerscope.pipelines.backends.trt.timing import SharedTimingCache
from layerscope.runner.errors import StageError

# -- the debug listener keeps only what was asked for --------------------------------------------------


def test_the_debug_sink_copies_only_requested_tensors() -> None:
    copied: list[int] = []

    def copy(size: int) -> bytes:
        copied.append(size)
        return np.arange(size // 4, dtype=np.float32).tobytes()

    sink = DebugSink(frozenset({"wanted"}))
    sink.receive("other", "INT4", (3,), copy)  # a type the dump cannot read, on a tensor nobody asked for
    sink.receive("internal", "FLOAT", (1000, 1000), copy)
    sink.receive("wanted", "FLOAT", (2, 2), copy)
    assert copied == [16] and not sink.error
    assert list(sink.values) == ["wanted"] and sink.values["wanted"].shape == (2, 2)
    assert sink.seen == {"other", "internal", "wanted"}  # what TensorRT emitted, for diagnostics


def test_the_debug_sink_keeps_a_failure_for_the_session_instead_of_raising_into_tensorrt() -> None:
    sink = DebugSink(frozenset({"odd"}))
    sink.receive("odd", "INT4", (3,), lambda size: b"\x00" * size)  # never raises into the C++ caller
    assert sink.error.startswith("debug tensor 'odd':") and "sub-byte" in sink.error
    sink.clear()
    assert not sink.error and not sink.values


# -- the session ---------------------------------------------------------------------------------------


class _Runner:
    """Engine outputs and debug tensors per sample, as scripted."""

    def __init__(self, samples: list[tuple[dict[str, Any], dict[str, Any]]]) -> None:
        self.samples, self.closed = list(samples), False

    def execute(self, feeds: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        return self.samples.pop(0)

    def close(self) -> None:
        self.closed = True


def test_the_session_maps_engine_tensors_to_the_requested_names() -> None:
    a, b = np.ones(2), np.zeros(2)
    runner = _Runner([({"output": a}, {"__myln_k_arg__bb1_1": b, "unrequested": a})])
    sources = {"t/relu0": "__myln_k_arg__bb1_1", "graph_output_cast_0": "output", "output": "output"}
    session = TensorRTSession(runner, sources, "unfused", {"t/conv0": "fused"})
    values = session.run({})
    assert set(values) == {"t/relu0", "graph_output_cast_0", "output"} and values["t/relu0"] is b
    assert session.unobservable == {"t/conv0": "fused"}
    session.close()
    assert runner.closed


def test_a_tensor_not_emitted_for_the_first_sample_becomes_unobservable_with_the_reason() -> None:
    x = np.ones(1)
    runner = _Runner([({}, {"a": x}), ({}, {"a": x})])
    session = TensorRTSession(runner, {"t/a": "a", "t/b": "b"}, "unfused", {})
    assert set(session.run({})) == {"t/a"}
    assert session.unobservable == {
        "t/b": "not observable in this engine: TensorRT emitted no unfused debug tensor 'b' "
        "(it does not promise to emit every unfused tensor)"
    }
    assert set(session.run({})) == {"t/a"}  # and is not asked for again


def test_a_tensor_that_goes_missing_after_the_first_sample_fails_the_dump_with_a_message() -> None:
    x = np.ones(1)
    runner = _Runner([({}, {"a": x, "b": x}), ({}, {"a": x})])
    session = TensorRTSession(runner, {"t/a": "a", "t/b": "b"}, "debug", {})
    session.run({})
    with pytest.raises(StageError, match=r"no value for engine tensor 'b' \(tensor 't/b'\) in sample 1, though"):
        session.run({})


# -- logging: one logger per process, builds one at a time ---------------------------------------------


def test_messages_go_to_the_capture_of_the_thread_that_caused_them() -> None:
    router = LogRouter()
    router.log("error", "before anything")
    with router.capture() as outer:
        router.log("warning", "w1")
        with router.capture() as inner:
            router.log("error", "e1")
        router.log("info", "not kept")
    assert (outer.errors, outer.warnings, inner.errors) == ([], ["w1"], ["e1"])
    assert list(router.unclaimed) == [("error", "before anything")]


def test_concurrent_builds_run_one_at_a_time_and_each_gets_its_own_errors() -> None:
    router = LogRouter()
    started, release = threading.Event(), threading.Event()
    captures: dict[str, Capture] = {}
    order: list[str] = []

    def build(name: str, first: bool) -> None:
        with router.build() as log:
            order.append(f"{name} start")
            router.log("error", f"error of {name}")
            if first:
                started.set()
                release.wait(5)
                # TensorRT logging from a worker thread of its own reaches the build in progress ...
                worker = threading.Thread(target=router.log, args=("warning", f"worker of {name}"))
                worker.start()
                worker.join()
            order.append(f"{name} end")
            captures[name] = log

    def session() -> None:  # ... and a session running in another thread meanwhile keeps its own
        with router.capture() as log:
            router.log("error", "error of the session")
        captures["session"] = log

    a = threading.Thread(target=build, args=("a", True))
    a.start()
    started.wait(5)
    b = threading.Thread(target=build, args=("b", False))
    b.start()
    s = threading.Thread(target=session)
    s.start()
    s.join(5)
    release.set()
    a.join(5)
    b.join(5)
    assert order == ["a start", "a end", "b start", "b end"]
    assert captures["a"].errors == ["error of a"] and captures["a"].warnings == ["worker of a"]
    assert captures["b"].errors == ["error of b"]
    assert captures["session"].errors == ["error of the session"]


def test_build_engine_holds_the_build_lock_and_reports_its_own_errors(monkeypatch) -> None:
    """Two build stages in threads: each build's failure message names its own TensorRT error."""
    running: list[int] = []
    peak: list[int] = []

    def fake_build(req: Any, log: Capture) -> Any:
        running.append(1)
        peak.append(len(running))
        ROUTER.log("error", f"cannot build {req}")
        threading.Event().wait(0.05)
        running.pop()
        raise StageError(f"TensorRT could not build the engine: {log.reason()}")

    monkeypatch.setattr(trt_engine, "_build", fake_build)
    messages: dict[str, str] = {}

    def build(name: str) -> None:
        try:
            trt_engine.build_engine(name)  # type: ignore[arg-type]
        except StageError as exc:
            messages[name] = str(exc)

    threads = [threading.Thread(target=build, args=(n,)) for n in ("one", "two", "three")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert max(peak) == 1
    assert messages == {n: f"TensorRT could not build the engine: cannot build {n}" for n in ("one", "two", "three")}


class _Severity(enum.Enum):
    INTERNAL_ERROR = 0
    ERROR = 1
    WARNING = 2
    INFO = 3


def test_there_is_one_tensorrt_logger_per_process_and_it_routes_messages(monkeypatch) -> None:
    """With a stand-in ``tensorrt`` module (ILogger and its Severity): the logger is made once, however many
    threads ask at once, and what TensorRT logs through it lands in the caller's capture."""

    class ILogger:
        Severity = _Severity

        def __init__(self) -> None:
            pass

    made: list[object] = []

    class Counting(ILogger):
        def __init__(self) -> None:
            made.append(self)

    fake = types.ModuleType("tensorrt")
    fake.ILogger = Counting  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setattr(trt_engine, "_LOGGER", None)
    got: list[object] = []
    threads = [threading.Thread(target=lambda: got.append(trt_engine.process_logger())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert len(made) == 1 and all(g is got[0] for g in got) and len(got) == 8
    logger: Any = got[0]
    with ROUTER.capture() as log:
        logger.log(_Severity.ERROR, "bad")
        logger.log(_Severity.INTERNAL_ERROR, "worse")
        logger.log(_Severity.WARNING, "hm")
        logger.log(_Severity.INFO, "fine")
    assert (log.errors, log.warnings) == (["bad", "worse"], ["hm"])


# -- timing caches ---------------------------------------------------------------------------------------


class _Config:
    """IBuilderConfig's timing-cache calls; a cache TensorRT rejects makes it log an error, as TensorRT does."""

    def __init__(self, accepts: bool) -> None:
        self.accepts = accepts
        self.set: list[bytes] = []

    def create_timing_cache(self, data: bytes) -> bytes | None:
        if data == b"damaged":
            ROUTER.log("error", "cannot deserialize the timing cache")
            return None
        if data == b"raises":
            raise RuntimeError("bad cache")
        return data

    def set_timing_cache(self, cache: bytes, ignore_mismatch: bool) -> bool:
        if cache and not self.accepts:
            ROUTER.log("error", "Timing cache was created on a different device")
            return False
        self.set.append(cache)
        return True


def test_an_unusable_timing_cache_is_replaced_and_its_error_is_not_a_build_failure_reason() -> None:
    with ROUTER.build() as log:
        ROUTER.log("error", "an earlier error")
        notes = trt_engine._use_timing_cache(_Config(accepts=False), b"cache from another GPU", log)  # type: ignore[arg-type]
    assert log.errors == ["an earlier error"]
    assert notes == [
        "the shared timing cache was not usable and was replaced: Timing cache was created on a different device"
    ]
    config = _Config(accepts=True)
    with ROUTER.build() as log:
        assert trt_engine._use_timing_cache(config, b"good", log) == []  # type: ignore[arg-type]
    assert config.set == [b"good"] and not log.errors
    for data, why in [(b"damaged", "cannot deserialize the timing cache"), (b"raises", "bad cache")]:
        config = _Config(accepts=True)
        with ROUTER.build() as log:
            notes = trt_engine._use_timing_cache(config, data, log)  # type: ignore[arg-type]
        assert notes == [f"the shared timing cache was not usable and was replaced: {why}"]
        assert config.set == [b""] and not log.errors


def _union(ours: bytes, theirs: bytes) -> bytes:
    return json.dumps(sorted({*json.loads(ours), *json.loads(theirs)})).encode()


def test_publishing_keeps_what_other_builds_published_meanwhile(tmp_path: Path) -> None:
    shared = SharedTimingCache(tmp_path / "timing" / "gpu.cache")
    assert shared.read() == b""
    start = shared.read()
    assert shared.publish(b'["a"]', start, _union) is None  # nothing there yet: ours
    # two builds started from ["a"]; the second to finish keeps the first's entries
    start = shared.read()
    assert shared.publish(b'["a", "b"]', start, _union) is None
    assert shared.publish(b'["a", "c"]', start, _union) is None
    assert json.loads(shared.read()) == ["a", "b", "c"]


def test_publishing_does_not_combine_when_nobody_else_wrote(tmp_path: Path) -> None:
    shared = SharedTimingCache(tmp_path / "gpu.cache")
    shared.publish(b'["a"]', b"", _union)

    def refuse(ours: bytes, theirs: bytes) -> bytes:
        raise AssertionError("combined although the file was the one the build started from")

    assert shared.publish(b'["a", "b"]', b'["a"]', refuse) is None
    assert shared.read() == b'["a", "b"]'


def test_a_cache_that_cannot_be_combined_is_replaced_and_said_so(tmp_path: Path) -> None:
    shared = SharedTimingCache(tmp_path / "gpu.cache")
    shared.publish(b"damaged", b"", _union)

    def refuse(ours: bytes, theirs: bytes) -> bytes:
        raise StageError("TensorRT could not combine two timing caches: mismatch")

    problem = shared.publish(b'["a"]', b"", refuse)
    assert problem is not None and "could not be combined" in problem and "mismatch" in problem
    assert shared.read() == b'["a"]'
    assert not list(tmp_path.glob(".*.tmp"))


def test_concurrent_publishers_lose_nothing(tmp_path: Path) -> None:
    shared = SharedTimingCache(tmp_path / "gpu.cache")
    threads = [
        threading.Thread(target=shared.publish, args=(json.dumps([str(i)]).encode(), b"", _union)) for i in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert json.loads(shared.read()) == [str(i) for i in range(8)]
