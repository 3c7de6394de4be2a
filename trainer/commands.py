"""`selfspec train`: the typer command (registered by the CLI). Heavy imports happen inside the command."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from selfspec.console import print_error
from selfspec.errors import SelfSpecError
from trainer.config import QUANTIZATIONS, TrainConfig
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


def train_command(
    dataset: Annotated[Path, typer.Option(help="SFT dataset JSONL (selfspec SFTRecord lines).")],
    base: Annotated[str, typer.Option(help="Base model: HF dir or a served name such as 'smollm2-135m'.")],
    out: Annotated[Path, typer.Option(help="Adapter dir to write (its name is the adapter name).")],
    quantization: Annotated[str, typer.Option(help="auto (NF4 on CUDA, LoRA on CPU) | nf4 | none.")] = "auto",
    epochs: Annotated[float, typer.Option(help="Training epochs (ignored when --max-steps > 0).")] = 3.0,
    max_steps: Annotated[int, typer.Option(help="Optimizer steps; -1 derives them from epochs.")] = -1,
    round: Annotated[int, typer.Option(help="Self-specialization round of this adapter.")] = 1,
    name: Annotated[str | None, typer.Option(help="Adapter name (default: the --out dir name).")] = None,
    micro_batch: Annotated[int, typer.Option(help="Examples per forward/backward pass.")] = 4,
    effective_batch: Annotated[int, typer.Option(help="Examples per optimizer step.")] = 32,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 3e-4,
    max_length: Annotated[int, typer.Option(help="Max tokens per example.")] = 512,
    init_adapter: Annotated[Path | None, typer.Option(help="Continue from this adapter's weights.")] = None,
) -> None:
    """Fine-tune a LoRA (CPU) / NF4 QLoRA (CUDA) adapter on an SFT dataset; resumable and idempotent."""
    console = Console(stderr=True)
    if quantization not in QUANTIZATIONS:
        raise typer.BadParameter(f"must be one of {', '.join(QUANTIZATIONS)}", param_hint="--quantization")
    try:
        config = TrainConfig(
            base_model=base, dataset=dataset, output_dir=out, adapter_name=name, round=round,
            quantization=quantization,  # type: ignore[arg-type]
            epochs=epochs, max_steps=max_steps, micro_batch=micro_batch, effective_batch=effective_batch,
            lr=lr, max_length=max_length, init_adapter=init_adapter,
        )
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
