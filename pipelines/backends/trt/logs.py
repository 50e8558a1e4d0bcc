"""Where TensorRT's log messages go: one logger per process, messages routed to the build or run that caused them.

TensorRT keeps a single logger: the first ``ILogger`` given to a ``Builder``/``Runtime`` is the one it uses
from then on (NVIDIA/TensorRT#1475), and an ``ILogger`` must outlive every object created with it. A logger
per build or session therefore loses messages (they go to the first, long-gone logger) and, with stages in
threads, can hand one build's error to another build's message. So the process has one logger (made once,
never freed: :func:`layerscope.pipelines.backends.trt.engine.process_logger`) that passes every message to
the :data:`ROUTER` here, and the router gives it to

* the thread's own capture, when the thread opened one (a session deserializing or running an engine);
* else the build in progress -- TensorRT builds are serialised (:meth:`LogRouter.build`), so there is at
  most one, and a message TensorRT logs from a worker thread of its own still reaches it;
* else nobody: kept in a short ring (:attr:`LogRouter.unclaimed`) for debugging.

Plain Python (no ``tensorrt`` import), so the routing is tested without TensorRT.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class Capture:
    """The errors and warnings TensorRT logged for one build or one session call."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def add(self, level: str, message: str) -> None:
        if level == "error":
            self.errors.append(message)
        elif level == "warning":
            self.warnings.append(message)

    def reason(self, limit: int = 3) -> str:
        """The first errors, joined for a stage message ('no reason given' when TensorRT logged none)."""
        return "; ".join(self.errors[:limit]) or "no reason given"


class LogRouter:
    def __init__(self) -> None:
        self._local = threading.local()
        self._build_lock = threading.Lock()  # TensorRT builds run one at a time in a process
        self._build: Capture | None = None
        self.unclaimed: deque[tuple[str, str]] = deque(maxlen=50)

    def log(self, level: str, message: str) -> None:
        """``level``: 'error', 'warning' or anything else (info, verbose: not kept)."""
        capture = getattr(self._local, "capture", None) or self._build
        if capture is None:
            if level in ("error", "warning"):
                self.unclaimed.append((level, message))
            return
        capture.add(level, message)

    @contextmanager
    def capture(self) -> Iterator[Capture]:
        """What TensorRT logs from this thread until the block ends (nested blocks: the innermost)."""
        outer = getattr(self._local, "capture", None)
        self._local.capture = capture = Capture()
        try:
            yield capture
        finally:
            self._local.capture = outer

    @contextmanager
    def build(self) -> Iterator[Capture]:
        """An exclusive TensorRT build: waits for the build in progress, then collects what TensorRT logs
        from this thread and from threads without a capture of their own until the block ends."""
        with self._build_lock, self.capture() as capture:
            self._build = capture
            try:
                yield capture
            finally:
                self._build = None


ROUTER = LogRouter()
