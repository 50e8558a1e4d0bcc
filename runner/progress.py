"""Progress on the terminal: a rich progress bar per running stage and one line per finished stage.

A stage reports real progress (per sample, per tensor, per try) where it can count, and otherwise a phase of
unknown length: a spinner with the phase's name and elapsed time, never a frozen "0/?" or a finished-looking
"4/4" while the slow part still runs.

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
        """A new phase of the stage: a bar of ``total`` steps, or (``None``) a spinner with the phase's elapsed
        time, never a "0/?" that looks stuck. Each phase gets a task of its own, so its clock starts at 0."""
        if self._r.live is None:
            return
        from rich.markup import escape

        label = escape(description or self._description)
        with self._r.lock:
            if self._task is not None:
                self._r.live.remove_task(self._task)
            self._task = self._r.live.add_task(label, total=total)

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


def _count_text(completed: float, total: float | None) -> str:
    """ "3/8" for a bar of known length; nothing for a phase of unknown length (its spinner and clock say it
    is working)."""
    return "" if total is None else f"{int(completed)}/{int(total)}"


def _count_column() -> Any:
    from rich.progress import ProgressColumn
    from rich.text import Text

    class Count(ProgressColumn):
        def render(self, task: Any) -> Text:
            return Text(_count_text(task.completed, task.total), style="progress.download")

    return Count()


class RichReporter:
    def __init__(self, console: Any, *, verbose: bool = False) -> None:
        self.console = console
        self.verbose = verbose
        self.lock = threading.Lock()
        self.live: Any = None
        self._tasks: dict[str, _Task] = {}

    def __enter__(self) -> RichReporter:
        if self.console.is_terminal and not self.console.quiet:
            from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self.live = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                _count_column(),
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
