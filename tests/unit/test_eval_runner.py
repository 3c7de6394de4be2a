"""The evaluation runner, report and commands with a scripted fake Generator (no network, no model)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from evaluation.commands import convert_command, eval_command
from evaluation.prompting import STOP
from evaluation.report import write_report
from evaluation.runner import (
    MACRO_METRIC,
    MACRO_TASK,
    TARGET_DELIMITER,
    continuation_logprob,
    evaluate,
    load_results,
)
from evaluation.schema import EvalItem, load_task_file
from selfspec.errors import BackendResponseError, BackendUnavailable, ConfigError, StageError
from selfspec.prompts import render
from selfspec.types import Completion, SamplingParams, TokenLogprobs

Answer = Callable[[str, str], str]  # (model, item input) -> text


def _final_input(prompt: str) -> str:
    return prompt.rsplit("### Input:\n", 1)[1].split("\n\n### Response:", 1)[0]


class FakeGenerator:
    """Implements the Generator protocol; answers by model name from the item's input."""

    def __init__(self, answer: Answer, *, models: tuple[str, ...] = ("base", "r1", "r2"), delay: float = 0.0) -> None:
        self.answer = answer
        self.models = models
        self.delay = delay
        self.calls: list[tuple[str, str, SamplingParams]] = []
        self.in_flight = 0
        self.max_in_flight = 0

    async def complete(self, prompt: str, *, model: str, params: SamplingParams) -> Completion:
        self.calls.append((prompt, model, params))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            return Completion(text=self.answer(model, _final_input(prompt)), finish_reason="stop", model=model)
        finally:
            self.in_flight -= 1

    async def chat(self, messages: list[dict[str, str]], *, model: str, params: SamplingParams) -> Completion:
        raise NotImplementedError

    async def list_models(self) -> list[str]:
        return list(self.models)

    async def health(self) -> bool:
        return True

    async def aclose(self) -> None:
        return None


SENTIMENT = ["positive", "negative", "neutral"]


def _write(path: Path, items: Sequence[Mapping[str, object]]) -> Path:
    path.write_text("".join(json.dumps(item) + "\n" for item in items), encoding="utf-8")
    return path


@pytest.fixture
def task_files(tmp_path: Path) -> list[Path]:
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    sentiment = [{"id": f"s{i}", "task": "sentiment", "instruction": "Classify the sentiment.",
                  "input": f"review number {i}", "output": SENTIMENT[i % 3], "metric": "label_f1",
                  "labels": SENTIMENT} for i in range(9)]
    ner = [{"id": f"n{i}", "task": "ner", "instruction": "List the drugs.", "input": f"sentence {i} with drug{i}",
            "output": [f"drug{i}"] if i % 4 else [], "metric": "entity_f1"} for i in range(8)]
    qa = [{"id": f"q{i}", "task": "qa", "instruction": "Answer yes, no or maybe.", "input": f"question {i}?",
           "output": ["yes", "no", "maybe"][i % 3], "metric": "yes_no"} for i in range(6)]
    summary = [{"id": f"m{i}", "task": "summary", "instruction": "Summarize.", "input": f"passage {i} text",
                "output": f"the passage {i} says something important", "metric": "rouge_l"} for i in range(5)]
    return [_write(tasks / "sentiment.jsonl", sentiment), _write(tasks / "ner.jsonl", ner),
            _write(tasks / "qa.jsonl", qa), _write(tasks / "summary.jsonl", summary)]


def _gold_by_input(task_files: list[Path]) -> dict[str, EvalItem]:
    return {item.input: item for path in task_files for item in load_task_file(path)}


def _oracle(task_files: list[Path]) -> Answer:
    """base answers nonsense, r1 answers the gold, r2 answers the gold with chatter around it."""
    gold = _gold_by_input(task_files)

    def answer(model: str, item_input: str) -> str:
        item = gold[item_input]
        if model == "base":
            return "I am not sure what you mean."
        text = item.answer_text()
        return text if model == "r1" else f"{text}.\nThis is because of the evidence."
    return answer


async def test_runner_scores_models_and_writes_outputs(task_files: list[Path], tmp_path: Path) -> None:
    generator = FakeGenerator(_oracle(task_files))
    out = tmp_path / "out"
    results = await evaluate(generator, models=["base", "r1", "r2"], task_files=task_files, shots=[0],
                             out_dir=out, resamples=100)
    main = {(r.model, r.task): r for r in results
            if r.metric in ("macro_f1", "entity_f1", "rouge_l") and r.baseline is None}
    for task in ("sentiment", "ner", "qa", "summary"):
        assert main[("r1", task)].value == pytest.approx(100.0)
    assert main[("base", "sentiment")].value == 0.0
    macro = {r.model: r for r in results if r.task == MACRO_TASK and r.baseline is None}
    assert macro["r1"].value == pytest.approx(100.0) and macro["r1"].metric == MACRO_METRIC
    assert macro["r1"].n == 4
    assert macro["base"].value < macro["r2"].value <= macro["r1"].value
    for result in results:
        assert result.ci_low is not None and result.ci_high is not None
        assert result.ci_low <= result.value + 1e-9 and result.value <= result.ci_high + 1e-9
        assert result.scoring == "generate"
    differences = {(r.model, r.baseline) for r in results if r.task == MACRO_TASK and r.baseline is not None}
    assert differences == {("r1", "base"), ("r2", "base"), ("r2", "r1")}
    assert load_results(out / "results.json") == results
    config = json.loads((out / "results.json").read_text())["config"]
    assert config["value_unit"] == "percent"
    predictions = out / "predictions" / "r1" / "ner.0shot.jsonl"
    rows = [json.loads(line) for line in predictions.read_text().splitlines()]
    assert len(rows) == 8 and {"id", "prediction", "parsed", "gold", "prompt_sha"} <= set(rows[0])
    assert main[("r1", "ner")].details_path == str(predictions)
    assert len(generator.calls) == 3 * (9 + 8 + 6 + 5)


async def test_zero_shot_prompt_is_alpaca_and_decoding_is_greedy(task_files: list[Path], tmp_path: Path) -> None:
    generator = FakeGenerator(_oracle(task_files))
    await evaluate(generator, models=["r1"], task_files=task_files[:2], shots=[0], out_dir=tmp_path, resamples=10)
    gold = _gold_by_input(task_files)
    for prompt, _, params in generator.calls:
        item = gold[_final_input(prompt)]
        assert prompt == render("alpaca", instruction=item.instruction, input=item.input)
        assert params.temperature == 0.0 and params.stop == STOP
        assert params.max_tokens == (16 if item.metric == "label_f1" else 96)


async def test_k_shot_prompts_hold_k_demos_and_never_the_item(task_files: list[Path], tmp_path: Path) -> None:
    generator = FakeGenerator(_oracle(task_files))
    await evaluate(generator, models=["base", "r1"], task_files=task_files, shots=[3], out_dir=tmp_path,
                   resamples=10)
    gold = _gold_by_input(task_files)
    prompts_by_model: dict[str, dict[str, str]] = {"base": {}, "r1": {}}
    for prompt, model, _ in generator.calls:
        item = gold[_final_input(prompt)]
        prompts_by_model[model][item.id] = prompt
        assert prompt.count("### Response:") == 4  # 3 demos + the item
        assert prompt.count(item.input) == 1  # the item is not among its demos
        demo_inputs = [part.split("\n\n", 1)[0] for part in prompt.split("### Input:\n")[1:-1]]
        assert len(demo_inputs) == 3
        assert all(gold[d].task == item.task and gold[d].id != item.id for d in demo_inputs)
        assert prompt.count("### Instruction:") == 1
        assert prompt.endswith(f"### Input:\n{item.input}\n\n### Response:\n")
    assert prompts_by_model["base"] == prompts_by_model["r1"]  # same demos for every model


async def test_concurrency_is_bounded(task_files: list[Path], tmp_path: Path) -> None:
    generator = FakeGenerator(_oracle(task_files), delay=0.005)
    await evaluate(generator, models=["r1"], task_files=task_files, shots=[0], out_dir=tmp_path,
                   concurrency=3, resamples=10)
    assert generator.max_in_flight == 3


async def test_resume_skips_items_already_predicted(task_files: list[Path], tmp_path: Path) -> None:
    first = FakeGenerator(_oracle(task_files))
    await evaluate(first, models=["r1"], task_files=task_files, shots=[0], out_dir=tmp_path, max_items=2,
                   resamples=10)
    assert len(first.calls) == 4 * 2
    second = FakeGenerator(_oracle(task_files))
    results = await evaluate(second, models=["r1"], task_files=task_files, shots=[0], out_dir=tmp_path,
                             resamples=10)
    assert len(second.calls) == (9 + 8 + 6 + 5) - 4 * 2
    assert next(r for r in results if r.task == MACRO_TASK).value == pytest.approx(100.0)
    third = FakeGenerator(_oracle(task_files))
    await evaluate(third, models=["r1"], task_files=task_files, shots=[0], out_dir=tmp_path, resamples=10)
    assert third.calls == []
    # a torn last line (killed mid-write) is redone, and only that item
    path = tmp_path / "predictions" / "r1" / "qa.0shot.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:25])
    fourth = FakeGenerator(_oracle(task_files))
    await evaluate(fourth, models=["r1"], task_files=task_files, shots=[0], out_dir=tmp_path, resamples=10)
    assert len(fourth.calls) == 1
    assert len(path.read_text().splitlines()) == 6


async def test_backend_down_stops_and_keeps_answers(task_files: list[Path], tmp_path: Path) -> None:
    oracle = _oracle(task_files)

    def flaky(model: str, item_input: str) -> str:
        if item_input == "question 3?":
            raise BackendUnavailable("connection refused", backend="fake")
        return oracle(model, item_input)

    with pytest.raises(StageError, match="rerun the same command to resume"):
        await evaluate(FakeGenerator(flaky), models=["r1"], task_files=task_files[2:3], shots=[0],
                       out_dir=tmp_path, concurrency=1, resamples=10)
    saved = (tmp_path / "predictions" / "r1" / "qa.0shot.jsonl").read_text().splitlines()
    assert len(saved) == 3  # items before the failure; nothing scheduled after it
    healthy = FakeGenerator(oracle)
    await evaluate(healthy, models=["r1"], task_files=task_files[2:3], shots=[0], out_dir=tmp_path, resamples=10)
    assert len(healthy.calls) == 3


async def test_rejected_request_is_scored_wrong_and_retried_next_run(task_files: list[Path], tmp_path: Path) -> None:
    oracle = _oracle(task_files)

    def rejecting(model: str, item_input: str) -> str:
        if item_input == "question 0?":
            raise BackendResponseError(400, "prompt too long", backend="fake")
        return oracle(model, item_input)

    results = await evaluate(FakeGenerator(rejecting), models=["r1"], task_files=task_files[2:3], shots=[0],
                             out_dir=tmp_path, resamples=10)
    accuracy = next(r for r in results if r.metric == "accuracy")
    assert accuracy.value == pytest.approx(100 * 5 / 6)
    again = FakeGenerator(oracle)
    await evaluate(again, models=["r1"], task_files=task_files[2:3], shots=[0], out_dir=tmp_path, resamples=10)
    assert [_final_input(p) for p, _, _ in again.calls] == ["question 0?"]


async def test_unknown_model_fails_before_any_request(task_files: list[Path], tmp_path: Path) -> None:
    generator = FakeGenerator(_oracle(task_files))
    with pytest.raises(ConfigError, match="r9"):
        await evaluate(generator, models=["base", "r9"], task_files=task_files, shots=[0], out_dir=tmp_path)
    assert generator.calls == []


async def test_duplicate_task_names_are_refused(task_files: list[Path], tmp_path: Path) -> None:
    copy = tmp_path / "copy.jsonl"
    copy.write_text(task_files[0].read_text())
    with pytest.raises(ConfigError, match="defined twice"):
        await evaluate(FakeGenerator(_oracle(task_files)), models=["r1"], task_files=[task_files[0], copy],
                       shots=[0], out_dir=tmp_path)


async def test_report_markdown_and_png(task_files: list[Path], tmp_path: Path) -> None:
    from evaluation.contamination import check_contamination

    results = await evaluate(FakeGenerator(_oracle(task_files)), models=["base", "r1", "r2"],
                             task_files=task_files, shots=[0, 2], out_dir=tmp_path, resamples=50)
    items = [item for path in task_files for item in load_task_file(path)]
    contamination = check_contamination(["a passage 2 text that leaked"], items, n=3, dataset="sft.jsonl")
    path = write_report(results, tmp_path, contamination=contamination)
    text = path.read_text()
    assert path.name == "report.md"
    assert "| task | measure | n | base | r1 | r2 |" in text
    assert "## 0-shot" in text and "## 2-shot" in text
    assert "**macro average**" in text and "4 tasks" in text
    assert "100.0 [100.0, 100.0]" in text
    assert "secondary measures" in text and "entity_token_f1" in text
    assert "Contamination (3-gram overlap with sft.jsonl): 1/28" in text
    png = (tmp_path / "report.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def _cli() -> typer.Typer:
    app = typer.Typer()
    app.command("eval")(eval_command)
    app.command("eval-convert")(convert_command)
    return app


def test_eval_command_end_to_end_with_fake_generator(task_files: list[Path], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import selfspec.clients.openai_compat as openai_compat

    created: list[tuple[list[str], int]] = []
    oracle = _oracle(task_files)

    def fake_client(urls: list[str], *, in_flight: int = 16, **_: object) -> FakeGenerator:
        created.append((urls, in_flight))
        return FakeGenerator(oracle)

    monkeypatch.setattr(openai_compat, "OpenAICompatGenerator", fake_client)
    dataset = _write(tmp_path / "sft.jsonl", [{"instruction": "x", "input": "", "output": "y"}])
    out = tmp_path / "out"
    result = CliRunner().invoke(_cli(), [
        "eval", str(task_files[0].parent), "-m", "base,r1", "--shots", "0,1", "-o", str(out),
        "--generator-url", "http://gen-a:8001", "--generator-url", "http://gen-b:8001", "--concurrency", "4",
        "--contamination-dataset", str(dataset),
    ])
    assert result.exit_code == 0, result.output
    assert created == [(["http://gen-a:8001", "http://gen-b:8001"], 4)]
    assert (out / "report.md").is_file() and (out / "report.png").is_file()
    assert "Macro average" in result.output and "Contamination" in result.output
    bad = CliRunner().invoke(_cli(), ["eval", str(task_files[0]), "-m", "base", "--shots", "x", "-o", str(out)])
    assert bad.exit_code == 2 and "--shots" in bad.output


def test_convert_command_writes_task_files(tmp_path: Path) -> None:
    src = tmp_path / "toy.tsv"
    src.write_text("Aspirin\tB-Chemical\nhelps\tO\n\nNothing\tO\n")
    result = CliRunner().invoke(_cli(), ["eval-convert", "iob_ner", str(src), str(tmp_path / "toy.jsonl")])
    assert result.exit_code == 0, result.output
    assert "2 items" in " ".join(result.output.split())  # rich wraps long tmp paths
    assert [i.output for i in load_task_file(tmp_path / "toy.jsonl")] == [("Aspirin",), ()]
    bad = CliRunner().invoke(_cli(), ["eval-convert", "nope", str(src), str(tmp_path / "x")])
    assert bad.exit_code == 2 and "unknown converter" in bad.output


def test_choose_demos_is_deterministic_and_excludes_item_and_copies() -> None:
    from evaluation.prompting import choose_demos

    def item(i: int, text: str) -> EvalItem:
        return EvalItem(id=f"i{i}", task="t", instruction="Do.", input=text, output="x", metric="rouge_l")

    pool = [item(0, "same"), item(1, "same"), item(2, "other"), item(3, "third")]
    demos = choose_demos(pool[0], pool, 5, seed=1)
    assert sorted(d.id for d in demos) == ["i2", "i3"]  # not itself, not the copy of its input
    assert choose_demos(pool[2], pool, 2, seed=1) == choose_demos(pool[2], pool, 2, seed=1)
    assert choose_demos(pool[2], pool, 0, seed=1) == []
    big = [item(i, f"text {i}") for i in range(50)]
    picks = {tuple(d.id for d in choose_demos(big[0], big, 3, seed=s)) for s in range(5)}
    assert len(picks) > 1 and all(len(p) == 3 and "i0" not in p for p in picks)


# ---- scoring modes: choice (log-likelihood of each option) and constrained (decoding limited to labels) ----

class FakeScorer(FakeGenerator):
    """Also implements Scorer: r1 puts its probability on the gold label, base and r2 on the first label.

    Prompt "tokens" are whitespace-separated words; every prompt word costs -1, an option word
    -0.1 for a favoured label and -3 otherwise."""

    def __init__(self, task_files: list[Path]) -> None:
        super().__init__(_oracle(task_files))
        self.gold = _gold_by_input(task_files)
        self.scoring_calls: list[tuple[str, list[str], str]] = []  # (method, prompts or choices, model)

    def _favoured(self, model: str, prompt: str) -> str:
        item = self.gold[_final_input(prompt)]
        return item.gold_label if model == "r1" else item.label_set[0]

    async def prompt_logprobs(self, prompts: Sequence[str], *, model: str) -> list[TokenLogprobs]:
        self.scoring_calls.append(("prompt_logprobs", list(prompts), model))
        context = prompts[0]
        favoured = self._favoured(model, context)
        words = context.split(" ")
        context_tokens = [words[0], *(" " + w for w in words[1:])]
        context_values: list[float | None] = [None, *(-1.0 for _ in words[1:])]
        out = []
        for prompt in prompts:
            option = prompt[len(context) + len(TARGET_DELIMITER):]
            cost = -0.1 if option == favoured else -3.0
            tokens = context_tokens + ([TARGET_DELIMITER + option] if option else [])  # the option: one token
            values = context_values + ([cost] if option else [])
            out.append(TokenLogprobs(tokens=tuple(tokens), token_logprobs=tuple(values)))
        return out

    async def choose(self, prompt: str, choices: Sequence[str], *, model: str, params: SamplingParams) -> Completion:
        self.scoring_calls.append(("choose", list(choices), model))
        return Completion(text=self._favoured(model, prompt), finish_reason="stop", model=model)


async def test_choice_and_constrained_scoring_of_label_tasks(task_files: list[Path], tmp_path: Path) -> None:
    scorer = FakeScorer(task_files)
    out = tmp_path / "out"
    results = await evaluate(scorer, models=["base", "r1", "r2"], task_files=task_files, shots=[0], out_dir=out,
                             resamples=100, scoring=["generate", "choice", "constrained"])
    scores = {(r.scoring, r.model, r.task, r.metric): r for r in results if r.baseline is None}
    # Label tasks (sentiment: 9 items, qa: 6) in all three modes; the others by generation only.
    assert {t for (mode, _, t, _) in scores if mode == "choice"} == {"sentiment", "qa", MACRO_TASK}
    assert {t for (mode, _, t, _) in scores if mode == "generate"} == {"sentiment", "qa", "ner", "summary", MACRO_TASK}
    for task in ("sentiment", "qa"):
        assert scores[("choice", "r1", task, "acc")].value == pytest.approx(100.0)
        assert scores[("choice", "r1", task, "macro_f1")].value == pytest.approx(100.0)
        # base always picks the first label: right on a third of the items.
        assert scores[("choice", "base", task, "acc")].value == pytest.approx(100.0 / 3, abs=1e-3)
        for model in ("base", "r1", "r2"):
            assert scores[("constrained", model, task, "invalid_rate")].value == 0.0
    assert scores[("choice", "r1", MACRO_TASK, MACRO_METRIC)].n == 2
    # One request per item and model in choice mode: the bare prompt, then prompt + " " + each option.
    calls = [c for c in scorer.scoring_calls if c[0] == "prompt_logprobs"]
    assert len(calls) == (9 + 6) * 3
    for _, prompts, _ in calls:
        assert prompts[0].endswith("### Response:\n")
        assert prompts[1:] == [prompts[0] + TARGET_DELIMITER + label for label in load_labels(prompts[0], scorer)]
    predictions = out / "predictions" / "r1" / "sentiment.0shot.choice.jsonl"
    rows = [json.loads(line) for line in predictions.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 9 and all(len(r["option_logprobs"]) == 3 and r["prediction"] == r["gold"] for r in rows)
    # Paired differences per mode, task and macro average.
    diffs = {(r.scoring, r.task, r.model, r.baseline): r for r in results if r.baseline is not None}
    delta = diffs[("choice", "sentiment", "r1", "base")]
    assert delta.value == pytest.approx(100.0 - scores[("choice", "base", "sentiment", "macro_f1")].value, abs=1e-3)
    assert delta.ci_low is not None and delta.ci_low > 0
    assert ("choice", "ner", "r1", "base") not in diffs and ("generate", "ner", "r2", "r1") in diffs

    # Resume works per mode: nothing is asked again.
    before = (len(scorer.calls), len(scorer.scoring_calls))
    again = await evaluate(scorer, models=["base", "r1", "r2"], task_files=task_files, shots=[0], out_dir=out,
                           resamples=100, scoring=["generate", "choice", "constrained"])
    assert (len(scorer.calls), len(scorer.scoring_calls)) == before
    assert again == results

    text = write_report(results, out).read_text()
    assert "### 0-shot, choice" in text and "### 0-shot, constrained" in text
    assert "| task | measure | n | r1 − base | r2 − base | r2 − r1 |" in text
    assert "Invalid answers" in text and "acc_norm" in text


def load_labels(prompt: str, scorer: FakeScorer) -> tuple[str, ...]:
    return scorer.gold[_final_input(prompt)].label_set


async def test_scoring_modes_need_a_scorer(task_files: list[Path], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="choice"):
        await evaluate(FakeGenerator(_oracle(task_files)), models=["base"], task_files=task_files, shots=[0],
                       out_dir=tmp_path, scoring=["choice"])
    with pytest.raises(ConfigError, match="scoring"):
        await evaluate(FakeScorer(task_files), models=["base"], task_files=task_files, shots=[0],
                       out_dir=tmp_path, scoring=["loglik"])


def test_continuation_logprob_starts_where_the_prompt_ends() -> None:
    context = TokenLogprobs(tokens=("A", " cat", ":"), token_logprobs=(None, -1.0, -2.0))
    full = TokenLogprobs(tokens=("A", " cat", ":", " yes", "!"), token_logprobs=(None, -1.0, -2.0, -0.5, -0.25))
    assert continuation_logprob(context, full) == pytest.approx(-0.75)
    # A tokenizer that merges across the boundary: the merged token counts as continuation.
    merged = TokenLogprobs(tokens=("A", " cat", ": yes"), token_logprobs=(None, -1.0, -4.0))
    assert continuation_logprob(context, merged) == pytest.approx(-4.0)
