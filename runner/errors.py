"""Error types that reach the user, each with the exit code the command line returns for it.

User errors (a bad config, a missing file, an unavailable backend) derive from :class:`LayerscopeError`
and are printed as one clear message without a traceback. Anything else escaping a command is a bug in
layerscope and is reported as such. Exit codes: 0 thresholds met, 1 a threshold failed, 2 invalid config
or usage, 3 a stage failed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

EXIT_OK = 0
EXIT_THRESHOLD = 1
EXIT_USAGE = 2
EXIT_STAGE = 3


class LayerscopeError(Exception):
    """A problem the user can act on. ``str(err)`` is the whole message; ``hint`` is an optional next step."""

    exit_code = EXIT_STAGE

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def render(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class UsageError(LayerscopeError):
    """Invalid command-line usage or input that is not a config problem (exit 2)."""

    exit_code = EXIT_USAGE


class StageError(LayerscopeError):
    """A stage could not produce its artifact (exit 3)."""

    exit_code = EXIT_STAGE


class RunError(StageError):
    """Stages of a run failed, and the stages that needed them were skipped (exit 3).

    ``stages``: every stage's outcome (``runner.execute.Outcome``); ``outcomes``: the failed and skipped ones.
    """

    def __init__(self, stages: Mapping[str, Any]) -> None:
        self.stages = dict(stages)
        self.outcomes = [o for o in self.stages.values() if o.status in ("failed", "skipped")]
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        """One line per failed stage (with its error), then one per skipped stage."""
        failed = [f"{o.sid} failed: {o.error}" for o in self.outcomes if o.status == "failed"]
        return failed + [f"{o.sid} {o.reason}" for o in self.outcomes if o.status == "skipped"]


class CacheError(LayerscopeError):
    """The artifact cache is unusable (unwritable directory, foreign layout)."""

    exit_code = EXIT_STAGE


@dataclass(frozen=True)
class SpecProblem:
    """One problem in a config, located by JSON pointer and, where known, line and column."""

    source: str
    pointer: str
    message: str
    line: int | None = None
    column: int | None = None
    excerpt: str | None = None

    def render(self) -> str:
        where = self.source
        if self.line is not None:
            where += f":{self.line}:{self.column or 1}"
        text = f"{where}: {self.pointer or '/'}: {self.message}"
        if self.excerpt is not None and self.line is not None:
            text += f"\n{self.line:>5} | {self.excerpt}"
        return text


class SpecError(UsageError):
    """Every problem found in one config, reported together (never one at a time)."""

    def __init__(self, problems: list[SpecProblem], source: str = "<config>") -> None:
        self.problems = list(problems)
        self.source = source
        super().__init__(self.render())

    def render(self) -> str:
        lines = [p.render() for p in self.problems]
        n = len(self.problems)
        lines.append(f"{self.source}: {n} error{'s' if n != 1 else ''}")
        return "\n".join(lines)
