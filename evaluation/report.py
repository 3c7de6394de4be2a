"""report.md (+ report.png): per shots and scoring mode, scores per task x model with 95% CIs, the
macro average, generation's invalid-answer rate and the paired differences between models."""

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


def format_delta(result: EvalResult | None) -> str:
    """'+3.1 [-0.5, 6.8]', bold when the paired CI excludes 0; '–' when there is no result."""
    if result is None or result.ci_low is None or result.ci_high is None:
        return "–"
    text = f"{result.value:+.1f} [{result.ci_low:+.1f}, {result.ci_high:+.1f}]"
    return f"**{text}**" if result.ci_low > 0 or result.ci_high < 0 else text


def _table(results: Sequence[EvalResult], models: Sequence[str], *, main: bool) -> list[str]:
    by_key = {(r.model, r.task, r.metric): r for r in results}
    rows = list(dict.fromkeys((r.task, r.metric) for r in results
                              if r.task != MACRO_TASK and (r.metric in MAIN_MEASURES) == main
                              and r.metric != "invalid_rate"))
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


def _invalid(results: Sequence[EvalResult], models: Sequence[str]) -> list[str]:
    by_key = {(r.model, r.task): r for r in results if r.metric == "invalid_rate"}
    tasks = _ordered([r.task for r in results if r.metric == "invalid_rate"])
    if not tasks:
        return []
    lines = [_row(["task", *models]), _row(["---", *(["---:"] * len(models))])]
    lines += [_row([task, *(format_score(by_key.get((m, task))) for m in models)]) for task in tasks]
    return lines


def _differences(results: Sequence[EvalResult], models: Sequence[str]) -> list[str]:
    pairs = _ordered([f"{r.model} − {r.baseline}" for r in results])
    if not pairs:
        return []
    by_key = {(r.task, f"{r.model} − {r.baseline}"): r for r in results}
    tasks = _ordered([r.task for r in results if r.task != MACRO_TASK]) + [MACRO_TASK]
    lines = [_row(["task", "measure", "n", *pairs]), _row(["---", "---", "---:", *(["---:"] * len(pairs))])]
    for task in tasks:
        first = next((r for r in results if r.task == task), None)
        if first is None:
            continue
        label = "**macro average**" if task == MACRO_TASK else task
        n = f"{first.n} tasks" if task == MACRO_TASK else str(first.n)
        lines.append(_row([label, first.metric, n, *(format_delta(by_key.get((task, p))) for p in pairs)]))
    return lines


def _mode_section(results: Sequence[EvalResult], models: Sequence[str], *, shots: int, mode: str) -> list[str]:
    scores = [r for r in results if r.baseline is None]
    lines = ["", f"### {shots}-shot, {mode}", "", *_table(scores, models, main=True)]
    invalid = _invalid(scores, models)
    if invalid:
        lines += ["", "Invalid answers (% of items that name no valid label; scored wrong):", "", *invalid]
    differences = _differences([r for r in results if r.baseline is not None], models)
    if differences:
        lines += ["", "Paired differences (same items, same bootstrap resamples; bold: the 95% CI excludes 0):",
                  "", *differences]
    secondary = _table(scores, models, main=False)
    if len(secondary) > 2:
        lines += ["", f"#### {shots}-shot, {mode}: secondary measures", "", *secondary]
    return lines


def render_markdown(results: Sequence[EvalResult], *,
                    contamination: Sequence[ContaminationReport] = ()) -> str:
    models = _ordered([r.model for r in results if r.baseline is None])
    lines = ["# Evaluation report", ""]
    lines.append(
        "Scores are percentages with 95% percentile-bootstrap confidence intervals "
        f"({RESAMPLES} resamples of the items, fixed seed, the same resamples for every model, so the "
        "differences between models are paired). "
        "Main measure per task: entity_f1 = exact-match micro F1 over normalised spans; macro_f1 = label "
        "macro-F1 over the task's label set (answers that name no valid label count as wrong); rouge_l = "
        "mean ROUGE-L F. The macro average is the mean of the tasks' main measures."
    )
    lines += ["", "Scoring modes: **generate** parses the greedy answer; **choice** picks the label whose "
              "text after the prompt has the highest summed log-probability (lm-evaluation-harness; `acc`, "
              "`acc_norm` = per character), so no answer is invalid; **constrained** decodes with the output "
              "limited to the labels. Label tasks are scored in every mode asked for, the others by "
              "generation only."]
    for k in sorted({r.shots for r in results}):
        lines += ["", f"## {k}-shot"]
        for mode in _ordered([r.scoring for r in results]):
            subset = [r for r in results if r.shots == k and r.scoring == mode]
            if subset:
                lines += _mode_section(subset, models, shots=k, mode=mode)
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
