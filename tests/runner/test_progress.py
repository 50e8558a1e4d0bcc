"""Progress that moves: a phase of unknown length shows its name, a spinner and its own elapsed time, never
"0/?"; a counted phase shows n/total; a new phase starts its clock at 0."""

from __future__ import annotations

import io

from rich.console import Console

from layerscope.runner.progress import RichReporter, _count_text


def test_count_text_is_empty_for_an_uncountable_phase() -> None:
    assert _count_text(0, None) == ""
    assert _count_text(3, 8.0) == "3/8"


def test_phases_replace_each_other_with_their_own_clock() -> None:
    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    with RichReporter(console) as reporter:
        task = reporter.stage_started("calibrate", "calibrate")
        live = reporter.live
        (first,) = live.tasks
        assert first.total is None and first.description == "calibrate"
        task.start(None, "calibrate (entropy): preparing the model")
        task.start(4, "calibrate (entropy): samples")
        (bar,) = live.tasks  # one task per stage: the phases replace each other
        for _ in range(4):
            task.advance()
        assert bar.completed == 4 and bar.total == 4 and bar.id != first.id
        task.start(None, "calibrate (entropy): computing the ranges")
        (spin,) = live.tasks
        assert spin.total is None and spin.completed == 0 and spin.id != bar.id  # not a frozen "4/4"
        assert spin.description.endswith("computing the ranges")
        rendered = live.get_renderable()
        text = Console(file=io.StringIO(), width=120, record=True)
        text.print(rendered)
        shown = text.export_text()
        assert "0/?" not in shown and "computing the ranges" in shown
