"""Training progress: a small pydantic snapshot (step, loss, rate, ETA) and its ETA bookkeeping.

Pure Python: the job API and the CLI read it without importing torch. `train.py` feeds it from a
`transformers.TrainerCallback`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from selfspec.files import write_text_atomic


class TrainProgress(BaseModel):
    """A snapshot after an optimizer step; `eta_s` is None until a step of this session has finished."""

    model_config = ConfigDict(frozen=True)

    step: int = 0
    total_steps: int = 0
    epoch: float = 0.0
    loss: float | None = None
    tokens_seen: int = 0
    elapsed_s: float = 0.0
    steps_per_s: float | None = None
    eta_s: float | None = None
    resumed_from_step: int = 0

    @property
    def fraction(self) -> float:
        return self.step / self.total_steps if self.total_steps else 0.0


class ProgressTracker:
    """Turns step events into `TrainProgress`; the rate counts only steps run in this process (resume-safe)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._start = 0.0
        self._first_step = 0
        self._total = 0
        self.last = TrainProgress()

    def begin(self, *, step: int, total_steps: int) -> TrainProgress:
        self._start = self._now()
        self._first_step = step
        self._total = total_steps
        self.last = TrainProgress(step=step, total_steps=total_steps, resumed_from_step=step)
        return self.last

    def update(self, *, step: int, epoch: float, tokens_seen: int, loss: float | None = None) -> TrainProgress:
        elapsed = self._now() - self._start
        done = step - self._first_step
        rate = done / elapsed if done > 0 and elapsed > 0 else None
        eta = (self._total - step) / rate if rate else None
        self.last = TrainProgress(
            step=step,
            total_steps=self._total,
            epoch=epoch,
            loss=loss if loss is not None else self.last.loss,
            tokens_seen=tokens_seen,
            elapsed_s=round(elapsed, 3),
            steps_per_s=rate,
            eta_s=round(eta, 1) if eta is not None else None,
            resumed_from_step=self._first_step,
        )
        return self.last

    def _now(self) -> float:
        return self._clock()


def write_progress_file(path: Path, progress: TrainProgress) -> None:
    """Atomic write: a reader (the job runner) never sees half a JSON document."""
    write_text_atomic(path, progress.model_dump_json())


def read_progress_file(path: Path) -> TrainProgress | None:
    try:
        return TrainProgress.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
