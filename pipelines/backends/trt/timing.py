"""The timing cache shared by the builds of one TensorRT version on one GPU, kept in the artifact cache's
shared folder (not an entry: ``cache gc`` leaves it, ``cache clear`` removes it).

A build starts from the shared cache and ends with a cache holding what it timed on top. Publishing that
file as it is would lose what every other build timed meanwhile (two runs built in parallel, or two
processes on one cache: the last writer wins), so publishing combines: under a file lock, the shared file
as it is now is merged into the build's cache (``ITimingCache.combine``, passed in as ``combine`` so this
module needs no TensorRT) unless it is still the one the build started from. Timing data decides which
tactic TensorRT picks, not what a layer computes, so the file is in no key.

Plain Python; the combine function is :func:`layerscope.pipelines.backends.trt.engine.combine_timing_caches`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from layerscope.runner.files import atomic_write


class SharedTimingCache:
    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> bytes:
        """The shared cache now (b"" when there is none yet); files are replaced whole, never written in place."""
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return b""

    def publish(self, ours: bytes, started_from: bytes, combine: Callable[[bytes, bytes], bytes]) -> str | None:
        """Make ``ours`` (a build's cache, grown from ``started_from``) the shared cache, keeping what other
        builds published since. Returns None, or why their entries could not be kept (then ours replaces
        them: the cache is only an optimisation)."""
        from filelock import FileLock

        self.path.parent.mkdir(parents=True, exist_ok=True)
        problem = None
        with FileLock(str(self.path.with_name(self.path.name + ".lock"))):
            now = self.read()
            data = ours
            if now and now != started_from and now != ours:
                try:
                    data = combine(ours, now)
                except Exception as exc:  # a damaged or foreign file: start over from ours
                    problem = f"the shared timing cache could not be combined with this build's ({exc}); replaced"
            atomic_write(self.path, data)
        return problem
