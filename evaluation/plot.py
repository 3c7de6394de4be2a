"""report.png: grouped bars (one group per task plus the macro average, one bar per model) with 95% CIs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from evaluation.metrics import MAIN_MEASURES
from evaluation.runner import MACRO_TASK
from selfspec.types import EvalResult

_MACRO_LABEL = "macro avg"


def _ordered(values: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(values))


def plot_results(results: Sequence[EvalResult], path: Path) -> Path:
    """One panel per shot count; never touches pyplot's global state (Agg canvas only)."""
    mains = [r for r in results if r.task == MACRO_TASK or r.metric in MAIN_MEASURES]
    shots = sorted({r.shots for r in mains})
    models = _ordered([r.model for r in mains])
    tasks = _ordered([r.task for r in mains if r.task != MACRO_TASK]) + [MACRO_TASK]
    width = 0.8 / max(len(models), 1)
    figure = Figure(figsize=(max(6.0, 1.1 * len(tasks) * max(1, len(models)) ** 0.5 + 2), 3.6 * len(shots)),
                    layout="constrained")
    FigureCanvasAgg(figure)
    axes_list = figure.subplots(len(shots), 1, squeeze=False)[:, 0]
    for axes, k in zip(axes_list, shots, strict=True):
        by_key = {(r.model, r.task): r for r in mains if r.shots == k}
        for m, model in enumerate(models):
            xs: list[float] = []
            heights: list[float] = []
            errors: tuple[list[float], list[float]] = ([], [])
            for t, task in enumerate(tasks):
                result = by_key.get((model, task))
                if result is None:
                    continue
                xs.append(t + (m - (len(models) - 1) / 2) * width)
                heights.append(result.value)
                low = result.ci_low if result.ci_low is not None else result.value
                high = result.ci_high if result.ci_high is not None else result.value
                errors[0].append(max(result.value - low, 0.0))
                errors[1].append(max(high - result.value, 0.0))
            axes.bar(xs, heights, width, yerr=errors, capsize=2, label=model)
        axes.set_xticks(range(len(tasks)))
        axes.set_xticklabels([_MACRO_LABEL if t == MACRO_TASK else t for t in tasks], rotation=30, ha="right")
        axes.axvline(len(tasks) - 1.5, color="grey", linewidth=0.8, linestyle=":")
        axes.set_ylim(0, 100)
        axes.set_ylabel("score (%)")
        axes.set_title(f"{k}-shot: main measure per task, 95% bootstrap CI")
        axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return path
