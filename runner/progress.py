"""Progress on the terminal: a rich progress bar per running stage and one line per finished stage.

On a terminal, bars update live; elsewhere (CI logs, pipes) only the finished-stage lines are printed,
so logs stay readable. Stage threads call ``advance`` concurrently; rich's Progress is thread-safe.
"""

from __future__ import annotations

import threading
from typing import Any

from layerscope.runner.execute import Outcome
from layerscope.runner.graph import Progress


class _Task:
    def __init__(self, reporter: RichReporter, sid: str, description: str) -> None:
        self._r = reporter
        self._sid = sid
        self._description = description
        self._task: Any = None

    def start(self, total: float | None, description: str = "") -> None:
        if self._r.live is None:
            return
        from rich.markup import escape

        label = escape(description or self._description)
        with self._r.lock:
            if self._task is None:
                self._task = self._r.live.add_task(label, total=total)
            else:
                self._r.live.update(self._task, total=total, completed=0, description=label)

    def advance(self, amount: float = 1.0) -> None:
        if self._r.live is not None and self._task is not None:
            self._r.live.advance(self._task, amount)

    def log(self, message: str) -> None:
        from rich.markup import escape

        self._r.console.print(f"  [dim]{escape(self._sid)}: {escape(message)}[/dim]")

    def finish(self) -> None:
        if self._r.live is not None and self._task is not None:
            with self._r.lock:
                self._r.live.remove_task(self._task)


class RichReporter:
    def __init__(self, console: Any, *, verbose: bool = False) -> None:
        self.console = console
        self.verbose = verbose
        self.lock = threading.Lock()
        self.live: Any = None
        self._tasks: dict[str, _Task] = {}

    def __enter__(self) -> RichReporter:
        if self.console.is_terminal and not self.console.quiet:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
            )

            self.live = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
            )
            self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.stop()

    def stage_started(self, sid: str, description: str) -> Progress:
        task = _Task(self, sid, description)
        self._tasks[sid] = task
        task.start(None)
        return task

    def stage_finished(self, outcome: Outcome) -> None:
        from rich.markup import escape

        sid, reason = escape(outcome.sid), escape(outcome.reason)
        task = self._tasks.pop(outcome.sid, None)
        if task is not None:
            task.finish()
        if outcome.status == "cached":
            line = f"[green]cached[/green]  {sid}"
        elif outcome.status == "ran":
            line = f"[cyan]ran[/cyan]     {sid}  [dim]{outcome.seconds:.1f}s — {reason}[/dim]"
        elif outcome.status == "failed":
            line = f"[red]FAILED[/red]  {sid}  [dim]{outcome.seconds:.1f}s[/dim]"
        elif outcome.status == "skipped":
            line = f"[yellow]skipped[/yellow] {sid}  [dim]{reason}[/dim]"
        else:
            line = f"[dim]-       {sid}  {reason}[/dim]"
        self.console.print(line)
