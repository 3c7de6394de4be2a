"""Rich progress bars with rate and ETA, fed by the pipeline's ProgressSink calls."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class RateColumn(ProgressColumn):
    """Items per second (rich only ships a bytes-per-second column)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:6.2f}/s" if speed else "   -  /s", style="cyan")


class RichProgress:
    """One bar per stage name; `update(stage, done=, total=)` creates bars on first use."""

    def __init__(self, console: Console | None = None, *, prefix: str = "") -> None:
        self.prefix = prefix
        self._progress = Progress(
            TextColumn("[bold]{task.description:<24}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
            TimeElapsedColumn(), TextColumn("eta"),
            TimeRemainingColumn(), console=console, transient=False,
        )
        self._tasks: dict[str, TaskID] = {}

    def __enter__(self) -> RichProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def update(self, stage: str, *, done: int, total: int) -> None:
        name = f"{self.prefix}{stage}"
        if name not in self._tasks:
            self._tasks[name] = self._progress.add_task(name, total=total, completed=done)
        self._progress.update(self._tasks[name], completed=done, total=total)
