"""The sweep report: one table (metric with CI and cost per variant), one plot, a sentence per paper finding.

A variant is scored by its final model (the adapter of its last round) on the macro average of the
main measures, at the first shot setting. "Agrees" needs the difference in the paper's direction
and non-overlapping 95% bootstrap CIs; same direction with overlapping CIs is reported as such,
because on tiny models and small eval sets that is the usual outcome and it is not evidence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from evaluation.report import format_score
from evaluation.runner import MACRO_TASK
from selfspec.types import EvalResult

if TYPE_CHECKING:
    from orchestrator.execution.sweep import Sweep, VariantOutcome

REPORT_MD = "report.md"
REPORT_PNG = "report.png"


@dataclass(frozen=True)
class Claim:
    """A finding of the paper, phrased as 'variant with `better` beats variant with `worse` on `key`'."""

    key: str
    better: object
    worse: object
    text: str


PAPER_CLAIMS = (
    Claim("retrieval.k", 5, 1, "top-5 retrieved documents beat top-1"),
    Claim("retrieval.k", 0, 1, "top-1 retrieval hurts (no retrieval beats it)"),
    Claim("rounds.round2.instructions", "distinct", "reuse", "a distinct round-2 instruction set beats reusing round 1's"),
)
OPEN_QUESTIONS = {
    "retrieval.method": "BM25 vs dense vs hybrid retrieval (left open by the paper)",
    "run.seeds_limit": "how results move with fewer seed tasks",
    "generation.target_per_round": "how results move with more synthetic data",
}


def _macro(results: Sequence[EvalResult], model: str, shots: int) -> EvalResult | None:
    return next((r for r in results if r.task == MACRO_TASK and r.model == model and r.shots == shots), None)


def compare(better: EvalResult, worse: EvalResult) -> str:
    """'agrees' | 'same direction, CIs overlap' | 'disagrees' for the claim better > worse."""
    if better.value <= worse.value:
        return "disagrees"
    if better.ci_low is not None and worse.ci_high is not None and better.ci_low > worse.ci_high:
        return "agrees"
    return "same direction, CIs overlap (not significant)"


def _groups(sweep: Sweep, outcomes: Sequence[VariantOutcome], key: str) -> list[dict[object, VariantOutcome]]:
    """Variants that differ only in `key`, as {value of key: outcome}, one dict per setting of the others."""
    groups: dict[tuple[tuple[str, object], ...], dict[object, VariantOutcome]] = {}
    for outcome in outcomes:
        rest = tuple((k, v) for k, v in outcome.variant.values.items() if k != key)
        groups.setdefault(rest, {})[outcome.variant.values[key]] = outcome
    return list(groups.values())


def findings(sweep: Sweep, outcomes: Sequence[VariantOutcome], results: Sequence[EvalResult],
             shots: int) -> list[str]:
    lines = []
    for claim in PAPER_CLAIMS:
        if claim.key not in sweep.grid:
            continue
        for group in _groups(sweep, outcomes, claim.key):
            if claim.better not in group or claim.worse not in group:
                continue
            good, bad = group[claim.better], group[claim.worse]
            a, b = _macro(results, good.final_model, shots), _macro(results, bad.final_model, shots)
            if a is None or b is None:
                continue
            lines.append(f"- Paper: {claim.text}. Ours ({good.variant.label} {format_score(a)} vs {bad.variant.label} "
                         f"{format_score(b)}): **{compare(a, b)}**.")
    for key, question in OPEN_QUESTIONS.items():
        if key not in sweep.grid:
            continue
        for group in _groups(sweep, outcomes, key):
            scored = [(value, r) for value, o in group.items()
                      if (r := _macro(results, o.final_model, shots)) is not None]
            if len(scored) < 2:
                continue
            best_value, best = max(scored, key=lambda item: item[1].value)
            others = [r for value, r in scored if value != best_value]
            verdict = ("ahead of every other setting beyond the CIs"
                       if all(compare(best, r) == "agrees" for r in others) else "but the CIs overlap")
            listing = ", ".join(f"{value}: {format_score(r)}" for value, r in scored)
            lines.append(f"- Open question, {question}: best is {key.split('.')[-1]}={best_value}, {verdict} "
                         f"({listing}).")
    return lines or ["- This grid tests none of the paper's findings directly; see the table."]


def render(sweep: Sweep, outcomes: Sequence[VariantOutcome], results: Sequence[EvalResult]) -> str:
    shots = min((r.shots for r in results), default=0)
    base_model = sweep.base.generation.model
    base = _macro(results, base_model, shots)
    lines = [f"# Sweep `{sweep.name}`", "",
             f"Grid: {', '.join(f'`{k}` = {v}' for k, v in sweep.grid.items())}. Base config: `{sweep.base_path}`.",
             f"Score: macro average of the main measures over the eval tasks, {shots}-shot, in percent, "
             "with 95% bootstrap CIs; each variant is scored by its final adapter.", "",
             "| variant | run | shares | final model | macro [95% CI] | Δ vs base | samples | instruction tokens "
             "| training s | run wall s |",
             "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
             f"| base | – | – | {base_model} | {format_score(base)} | – | – | – | – | – |"]
    for o in outcomes:
        score = _macro(results, o.final_model, shots)
        delta = f"{score.value - base.value:+.1f}" if score is not None and base is not None else "–"
        shares = f"{o.variant.shares[0]} of {o.variant.shares[1]}" if o.variant.shares else "–"
        lines.append(f"| {o.variant.label} | `{o.run_id}` | {shares} | `{o.final_model}` | {format_score(score)} | {delta} "
                     f"| {o.samples} | {o.instruction_tokens} | {o.training_s:.0f} | {o.wall_s:.0f} |")
    lines += ["", "Cost: instruction tokens are the generator's completion tokens for instruction prompts "
              "(a variant that shares instructions spends none); wall time is the run's own, from creation "
              "to its last status change.", "", "## Findings", "", *findings(sweep, outcomes, results, shots),
              "", f"![sweep]({REPORT_PNG})", ""]
    return "\n".join(lines)


def plot(sweep: Sweep, outcomes: Sequence[VariantOutcome], results: Sequence[EvalResult], path: Path) -> None:
    shots = min((r.shots for r in results), default=0)
    labels = ["base", *(o.variant.label for o in outcomes)]
    scores = [_macro(results, sweep.base.generation.model, shots), *(_macro(results, o.final_model, shots)
                                                                   for o in outcomes)]
    values = [s.value if s else 0.0 for s in scores]
    low = [s.value - s.ci_low if s and s.ci_low is not None else 0.0 for s in scores]
    high = [s.ci_high - s.value if s and s.ci_high is not None else 0.0 for s in scores]
    figure = Figure(figsize=(max(5.0, 1.2 * len(labels) + 1.5), 3.8), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    colors = ["#999999", *(["#3b6ea8"] * len(outcomes))]
    axes.bar(range(len(labels)), values, yerr=[low, high], capsize=4, color=colors)
    axes.set_xticks(range(len(labels)), labels, rotation=20, ha="right")
    axes.set_ylabel(f"macro average, % ({shots}-shot)")
    axes.set_title(f"sweep {sweep.name}: final model per variant, 95% CI")
    figure.savefig(path, dpi=110)


def write_sweep_report(sweep: Sweep, outcomes: Sequence[VariantOutcome], results: Sequence[EvalResult],
                       out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / REPORT_MD
    path.write_text(render(sweep, outcomes, results), encoding="utf-8")
    if results:
        plot(sweep, outcomes, results, out_dir / REPORT_PNG)
    return path
