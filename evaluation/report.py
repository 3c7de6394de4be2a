"""report.md (+ report.png): scores per task x model x shots with 95% CIs and the macro average."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from evaluation.contamination import ContaminationReport
from evaluation.metrics import MAIN_MEASURES, RESAMPLES
from evaluation.plot import plot_results
from evaluation.runner import MACRO_TASK
from selfspec.types import EvalResult

log = logging.getLogger(__name__)

REPORT_MD = "report.md"
REPORT_PNG = "report.png"


def _ordered(values: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(values))


def format_score(result: EvalResult | None) -> str:
    """'12.3 [8.0, 16.7]' (value and 95% CI), or '–' when there is no result."""
    if result is None:
        return "–"
    if result.ci_low is None or result.ci_high is None:
        return f"{result.value:.1f}"
    return f"{result.value:.1f} [{result.ci_low:.1f}, {result.ci_high:.1f}]"


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _table(results: Sequence[EvalResult], models: Sequence[str], *, main: bool) -> list[str]:
    by_key = {(r.model, r.task, r.metric): r for r in results}
    rows = list(dict.fromkeys((r.task, r.metric) for r in results
                              if r.task != MACRO_TASK and (r.metric in MAIN_MEASURES) == main))
    lines = [_row(["task", "measure", "n", *models]), _row(["---", "---", "---:", *(["---:"] * len(models))])]
    for task, metric in rows:
        first = next(r for r in results if r.task == task and r.metric == metric)
        cells = [format_score(by_key.get((m, task, metric))) for m in models]
        lines.append(_row([task, metric, str(first.n), *cells]))
    if main:
        macros = [next((r for r in results if r.task == MACRO_TASK and r.model == m), None) for m in models]
        tasks = next((r.n for r in macros if r is not None), 0)
        lines.append(_row(["**macro average**", "main", f"{tasks} tasks", *[f"**{format_score(r)}**" for r in macros]]))
    return lines


def _deltas(results: Sequence[EvalResult], models: Sequence[str]) -> str:
    macros = {r.model: r for r in results if r.task == MACRO_TASK}
    if len(models) < 2 or models[0] not in macros:
        return ""
    base = macros[models[0]]
    parts = [f"{models[0]} {base.value:.2f}"]
    parts += [f"{m} {macros[m].value:.2f} ({macros[m].value - base.value:+.2f})" for m in models[1:] if m in macros]
    return "Macro average: " + " → ".join(parts) + "."


def render_markdown(results: Sequence[EvalResult], *,
                    contamination: Sequence[ContaminationReport] = ()) -> str:
    models = _ordered([r.model for r in results])
    lines = ["# Evaluation report", ""]
    lines.append(
        "Scores are percentages with 95% percentile-bootstrap confidence intervals "
        f"({RESAMPLES} resamples of the items, fixed seed, the same resamples for every model). "
        "Main measure per task: entity_f1 = exact-match micro F1 over normalised spans; macro_f1 = label "
        "macro-F1 over the task's label set (answers that name no valid label count as wrong); rouge_l = "
        "mean ROUGE-L F. The macro average is the mean of the tasks' main measures."
    )
    for k in sorted({r.shots for r in results}):
        subset = [r for r in results if r.shots == k]
        lines += ["", f"## {k}-shot", "", *_table(subset, models, main=True)]
        delta = _deltas(subset, models)
        if delta:
            lines += ["", delta]
        secondary = _table(subset, models, main=False)
        if len(secondary) > 2:
            lines += ["", f"### {k}-shot: secondary measures", "", *secondary]
    if contamination:
        lines += ["", "## Contamination", ""]
        lines += [f"- {report.line()}" for report in contamination]
    lines += ["", f"![scores]({REPORT_PNG})", ""]
    return "\n".join(lines)


def write_report(results: Sequence[EvalResult], out_dir: Path, *,
                 contamination: ContaminationReport | Sequence[ContaminationReport] | None = None) -> Path:
    """Write `report.md` and `report.png` into out_dir; returns the markdown path."""
    if not results:
        raise ValueError("no results to report")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    reports: Sequence[ContaminationReport]
    if contamination is None:
        reports = ()
    elif isinstance(contamination, ContaminationReport):
        reports = (contamination,)
    else:
        reports = contamination
    path = out_dir / REPORT_MD
    path.write_text(render_markdown(results, contamination=reports), encoding="utf-8")
    plot_results(results, out_dir / REPORT_PNG)
    log.info("wrote %s and %s", path, out_dir / REPORT_PNG)
    return path
