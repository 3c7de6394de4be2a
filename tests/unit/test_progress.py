"""The CLI progress bars show a rate (items per second) next to the counts."""

from __future__ import annotations

import io
import re
import time

from rich.console import Console
from rich.progress import Progress

from selfspec.progress import RateColumn, RichProgress


def test_rate_column_renders_items_per_second_and_blank_before_a_speed() -> None:
    clock = [0.0]
    progress = Progress(get_time=lambda: clock[0], console=Console(file=io.StringIO()))
    task_id = progress.add_task("samples", total=100)
    assert RateColumn().render(progress.tasks[0]).plain == ""  # no speed yet: no misleading 0/s
    for done in (4, 8, 12):
        clock[0] += 2.0
        progress.update(task_id, completed=done)
    assert RateColumn().render(progress.tasks[0]).plain == "2.00/s"
    assert RateColumn(" docs/s", decimals=0).render(progress.tasks[0]).plain == "2 docs/s"


def test_rich_progress_shows_a_rate_per_stage() -> None:
    out = io.StringIO()
    with RichProgress(Console(file=out, width=200, color_system=None)) as bars:
        for done in range(1, 6):
            bars.update("samples", done=done, total=10)
            time.sleep(0.02)
    last = [line for line in out.getvalue().splitlines() if "samples" in line][-1]
    assert re.search(r"5/10 .* \d+\.\d\d/s ", last), last
