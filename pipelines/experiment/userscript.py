"""User code a config names: a Python script and a function in it (input loader scripts, compare functions).

A script runs with the user's privileges, exactly like a Python config would: layerscope imports it only in
the stage that needs what it computes (never at ``validate`` or ``plan``), in a fresh module each time, with
the script's folder on ``sys.path`` while it loads (so it can import its neighbours, as Polygraphy allows).
Whatever goes wrong in user code is a :class:`UsageError` that names the script, the function, the
exception and the line of the script it came from: never a traceback.
"""

from __future__ import annotations

import importlib.util
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from layerscope.runner.errors import UsageError
from layerscope.runner.suggest import suggest


@dataclass(frozen=True)
class ScriptRef:
    """A function in a user script: the resolved path and the function's name."""

    path: Path
    function: str

    @property
    def label(self) -> str:
        return f"{self.path.name}:{self.function}"


def split_script(written: str, function: str | None, default: str) -> tuple[str, str]:
    """(path, function) from ``script`` as written: ``loader.py`` or Polygraphy's ``loader.py:func`` form."""
    path, sep, tail = written.rpartition(":")
    if sep and tail.isidentifier() and path.endswith(".py"):
        return path, function or tail
    return written, function or default


def where(exc: BaseException, path: Path) -> str:
    """``ValueError: bad value (loader.py:12)``: the exception and the innermost line of the script it passed."""
    line = None
    if isinstance(exc, SyntaxError) and exc.filename and Path(exc.filename) == path:
        line = exc.lineno
    for frame in traceback.extract_tb(exc.__traceback__):
        if Path(frame.filename) == path:
            line = frame.lineno
    text = (exc.msg if isinstance(exc, SyntaxError) and exc.msg else str(exc)).strip() or "(no message)"
    return f"{type(exc).__name__}: {text}" + (f" ({path.name}:{line})" if line else "")


def load_function(ref: ScriptRef) -> Callable[..., Any]:
    """Import the script (user code runs here) and return its function."""
    if not ref.path.is_file():
        raise UsageError(f"script not found: {ref.path}")
    name = f"layerscope_user_script_{abs(hash((str(ref.path), ref.function)))}"
    spec = importlib.util.spec_from_file_location(name, ref.path)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot load {ref.path} as a Python script")
    module = importlib.util.module_from_spec(spec)
    folder = str(ref.path.parent)
    sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise UsageError(f"{ref.path.name}: the script raised {where(exc, ref.path)} while loading") from None
    finally:
        if sys.path and sys.path[0] == folder:
            sys.path.pop(0)
    fn = getattr(module, ref.function, None)
    if fn is None:
        names = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")]
        hint = suggest(ref.function, names) or (f" (it defines: {', '.join(names)})" if names else "")
        raise UsageError(f"{ref.path.name} defines no function {ref.function!r}{hint}")
    if not callable(fn):
        raise UsageError(f"{ref.label} is a {type(fn).__name__}, not a function")
    return fn


def call(ref: ScriptRef, fn: Callable[..., Any], *args: Any, context: str = "") -> Any:
    """``fn(*args)``, with an exception in user code turned into one clear message naming ``context``."""
    try:
        return fn(*args)
    except Exception as exc:
        raise UsageError(f"{ref.label} raised {where(exc, ref.path)}{context}") from None
