"""`selfspec train`: the typer command (registered by the CLI). Heavy imports happen inside the command.

Its options are generated from `TrainConfig`'s fields (type, default, help), so they cannot drift from the
trainer's config or from the run config's `[training]` section it takes its knobs from.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
from typing import TYPE_CHECKING, Annotated, Any, get_type_hints

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from selfspec.console import print_error
from selfspec.errors import SelfSpecError
from trainer.config import TrainConfig
from trainer.data import load_sft_records

if TYPE_CHECKING:
    from trainer.progress import TrainProgress

log = logging.getLogger(__name__)


class _ProgressBar:
    """Rich bar fed by `TrainProgress`: steps, rate, loss and ETA."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._task: TaskID | None = None

    def __call__(self, update: TrainProgress) -> None:
        if self._task is None:
            self._task = self._progress.add_task("training", total=update.total_steps or None,
                                                 completed=update.step, loss="-", rate="-")
        loss = f"{update.loss:.4f}" if update.loss is not None else "-"
        rate = f"{1 / update.steps_per_s:.1f}s/step" if update.steps_per_s else "-"
        self._progress.update(self._task, total=update.total_steps or None, completed=update.step,
                              loss=loss, rate=rate)


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[rate]}"),
        TextColumn("ETA"), TimeRemainingColumn(), console=Console(stderr=True),
    )


def _options() -> list[inspect.Parameter]:
    """One `selfspec train` option per `TrainConfig` field: its type, default and help, its aliases as the
    flag (`--base` for base_model) plus the field's own name; booleans get an `--x/--no-x` pair."""
    hints = get_type_hints(TrainConfig)
    options = []
    for f in dataclasses.fields(TrainConfig):
        flags = [*f.metadata.get("aliases", []), "--" + f.name.replace("_", "-")]
        hint = hints[f.name]
        if hint in (bool, bool | None):
            flags = [f"{flag}/--no-{flag.removeprefix('--')}" for flag in flags]
        option = typer.Option(*flags, help=f.metadata.get("help", ""))
        default = inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default
        options.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                         annotation=Annotated[hint, option]))
    return options


def train_command(**fields: Any) -> None:
    """Fine-tune a LoRA (CPU) / NF4 QLoRA (CUDA) adapter on an SFT dataset; resumable and idempotent."""
    console = Console(stderr=True)
    try:
        config = TrainConfig(**fields)
        load_sft_records(config.dataset)  # fail fast on a bad line, before the slow torch import
        from trainer.train import train

        with _progress() as progress:
            ref = train(config, progress_callback=_ProgressBar(progress))
    except SelfSpecError as err:
        print_error(console, err)
        raise typer.Exit(code=2) from err
    loss = f"{ref.final_loss:.4f}" if ref.final_loss is not None else "-"
    console.print(f"adapter [bold]{ref.name}[/bold] at {ref.path}: {ref.steps} steps, final loss {loss}, "
                  f"{ref.wall_s:.0f}s, quantization {ref.quantization}")


train_command.__signature__ = inspect.Signature(_options())  # type: ignore[attr-defined]  # read by typer
