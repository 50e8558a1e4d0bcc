"""Python warnings raised while stages run are kept for the report, never printed between progress lines.

``warnings.showwarning`` is process-wide, so one router is installed for the whole execution: a warning raised
in a thread that is running a stage is recorded for that stage; one raised in any other thread (a stage's own
worker threads) is recorded for the run as a whole. Filters are left alone: whatever the process's filters turn
into an error (pytest's ``filterwarnings = error``) still raises, and what they ignore is still ignored.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Iterator
from typing import Any

_LOCAL = threading.local()
_LOCK = threading.Lock()
_DEPTH = 0
_ORIGINAL: Any = None
_UNATTRIBUTED: list[str] = []


def _text(message: Any, category: type[Warning], filename: str, lineno: int) -> str:
    where = filename.rsplit("/", 1)[-1]
    return f"{category.__name__}: {str(message).strip()} ({where}:{lineno})"


def _route(
    message: Any, category: type[Warning], filename: str, lineno: int, file: Any = None, line: Any = None
) -> None:
    lines = getattr(_LOCAL, "lines", None)
    target = lines if lines is not None else _UNATTRIBUTED
    text = _text(message, category, filename, lineno)
    with _LOCK:
        if text not in target:
            target.append(text)


@contextlib.contextmanager
def routed() -> Iterator[list[str]]:
    """Route warnings to the stages while the block runs; yields the run's unattributed warnings."""
    global _DEPTH, _ORIGINAL
    with _LOCK:
        if _DEPTH == 0:
            _ORIGINAL = warnings.showwarning
            warnings.showwarning = _route
            _UNATTRIBUTED.clear()
        _DEPTH += 1
    collected: list[str] = []
    try:
        yield collected
    finally:
        with _LOCK:
            collected.extend(_UNATTRIBUTED)
            _DEPTH -= 1
            if _DEPTH == 0:
                warnings.showwarning = _ORIGINAL
                _UNATTRIBUTED.clear()


@contextlib.contextmanager
def stage_warnings() -> Iterator[list[str]]:
    """Record the warnings this thread raises while the block runs (a stage's action)."""
    previous = getattr(_LOCAL, "lines", None)
    _LOCAL.lines = []
    try:
        yield _LOCAL.lines
    finally:
        _LOCAL.lines = previous
