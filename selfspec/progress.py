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
    """Items per second (rich only ships a bytes-per-second column), e.g. `1.25/s` or `3,120 docs/s`.

    Blank until rich has a speed (a few updates in): better than a misleading `0/s`.
    """

    def __init__(self, unit: str = "/s", *, decimals: int = 2) -> None:
        super().__init__()
        self.unit, self.decimals = unit, decimals

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.{self.decimals}f}{self.unit}" if speed else "", style="progress.data.speed")


class RichProgress:
    """One bar per stage name; `update(stage, done=, total=)` creates bars on first use."""

    def __init__(self, console: Console | None = None, *, prefix: str = "") -> None:
        self.prefix = prefix
        self._progress = Progress(
            TextColumn("[bold]{task.description:<24}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
            RateColumn(), TimeElapsedColumn(), TextColumn("eta"),
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
