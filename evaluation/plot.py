"""report.png: one row of panels per (shots, scoring mode). Left: grouped bars of the main measure per
task plus the macro average, one bar per model, 95% CIs. Right: the paired differences (each model
minus the base, each later model minus the one before), 95% paired-bootstrap CIs around a zero line."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from evaluation.metrics import MAIN_MEASURES
from evaluation.runner import MACRO_TASK
from selfspec.types import EvalResult

_MACRO_LABEL = "macro avg"


def _ordered(values: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _bars(axes: Any, rows: Sequence[EvalResult], *, series: list[str], tasks: list[str],
          key: Any) -> None:
    """Grouped bars: one group per task, one bar per series (a model, or a model pair) with its CI."""
    width = 0.8 / max(len(series), 1)
    by_key = {(key(r), r.task): r for r in rows}
    for s, name in enumerate(series):
        xs: list[float] = []
        heights: list[float] = []
        errors: tuple[list[float], list[float]] = ([], [])
        for t, task in enumerate(tasks):
            result = by_key.get((name, task))
            if result is None:
                continue
            xs.append(t + (s - (len(series) - 1) / 2) * width)
            heights.append(result.value)
            low = result.ci_low if result.ci_low is not None else result.value
            high = result.ci_high if result.ci_high is not None else result.value
            errors[0].append(max(result.value - low, 0.0))
            errors[1].append(max(high - result.value, 0.0))
        axes.bar(xs, heights, width, yerr=errors, capsize=2, label=name)
    axes.set_xticks(range(len(tasks)))
    axes.set_xticklabels([_MACRO_LABEL if t == MACRO_TASK else t for t in tasks], rotation=30, ha="right")
    axes.axvline(len(tasks) - 1.5, color="grey", linewidth=0.8, linestyle=":")
    axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))


def plot_results(results: Sequence[EvalResult], path: Path) -> Path:
    """Never touches pyplot's global state (Agg canvas only)."""
    mains = [r for r in results if r.task == MACRO_TASK or r.metric in MAIN_MEASURES]
    panels = [(k, mode) for k in sorted({r.shots for r in mains}) for mode in _ordered([r.scoring for r in mains])
              if any(r.shots == k and r.scoring == mode for r in mains)]
    models = _ordered([r.model for r in mains if r.baseline is None])
    pairs = _ordered([f"{r.model} − {r.baseline}" for r in mains if r.baseline is not None])
    columns = 2 if pairs else 1
    tasks_all = _ordered([r.task for r in mains if r.task != MACRO_TASK])
    width = max(6.0, 1.1 * (len(tasks_all) + 1) * max(1, len(models)) ** 0.5 + 2)
    figure = Figure(figsize=(width * columns, 3.6 * len(panels)), layout="constrained")
    FigureCanvasAgg(figure)
    grid = figure.subplots(len(panels), columns, squeeze=False)
    for row, (k, mode) in enumerate(panels):
        subset = [r for r in mains if r.shots == k and r.scoring == mode]
        tasks = _ordered([r.task for r in subset if r.task != MACRO_TASK]) + [MACRO_TASK]
        scores = grid[row, 0]
        _bars(scores, [r for r in subset if r.baseline is None], series=models, tasks=tasks, key=lambda r: r.model)
        scores.set_ylim(0, 100)
        scores.set_ylabel("score (%)")
        scores.set_title(f"{k}-shot, {mode}: main measure per task, 95% bootstrap CI")
        if columns == 2:
            deltas = grid[row, 1]
            _bars(deltas, [r for r in subset if r.baseline is not None], series=pairs, tasks=tasks,
                  key=lambda r: f"{r.model} − {r.baseline}")
            deltas.axhline(0.0, color="black", linewidth=0.8)
            deltas.set_ylabel("difference (points)")
            deltas.set_title(f"{k}-shot, {mode}: paired differences, 95% CI")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return path
