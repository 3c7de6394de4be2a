"""Response-quality gates on crafted responses, and the judge's reply parsing."""

from __future__ import annotations

import pytest

from orchestrator.pipeline.filtering import tokenize
from orchestrator.pipeline.gates import (
    GATES,
    GateVerdict,
    answers_an_option,
    check_response,
    listed_options,
    repeated_ngram_share,
)
from orchestrator.pipeline.judging import judge_verdict, parse_score
from selfspec.settings import GatesSection

DEFAULT = GatesSection()
INSTRUCTION = "Explain how statins lower LDL cholesterol."


def _check(response: str, instruction: str = INSTRUCTION, input_text: str = "", **kwargs: object) -> GateVerdict:
    config = kwargs.pop("config", DEFAULT)
    assert isinstance(config, GatesSection)
    return check_response(response, instruction=instruction, input_text=input_text, config=config, **kwargs)  # type: ignore[arg-type]


def test_a_good_answer_passes_every_gate() -> None:
    assert _check("Statins inhibit HMG-CoA reductase, so the liver makes less cholesterol and takes up more "
                  "LDL from the blood.").ok


# ---- empty / too short ----

@pytest.mark.parametrize("response", ["", "   ", "...", "- *"])
def test_empty_response_is_gated(response: str) -> None:
    assert _check(response).status == "empty"


@pytest.mark.parametrize("response", ["Answer:", "Output", "### Response:"])
def test_a_bare_label_is_too_short(response: str) -> None:
    assert _check(response).status == "too_short"


def test_one_word_labels_pass_by_default_and_min_words_is_configurable() -> None:
    assert _check("yes", "Do the drugs interact? Answer yes or no.").ok
    assert _check("None", "Identify chemical entities. If there are none, write None.").ok
    strict = GatesSection(min_words=3)
    assert _check("Statins work.", config=strict).status == "too_short"
    assert _check("Statins block HMG-CoA.", config=strict).ok
    assert _check("Answer:", config=GatesSection(too_short=False)).ok


# ---- truncated ----

def test_a_response_cut_off_by_the_token_limit_is_gated() -> None:
    response = "Statins inhibit HMG-CoA reductase, the rate-limiting enzyme of cholesterol synthesis, which"
    assert _check(response, truncated=True) == GateVerdict("truncated", "cut off by the token limit")
    assert _check(response, truncated=False).ok
    assert _check(response, truncated=True, config=GatesSection(truncated=False)).ok


# ---- repetitive: the measure on crafted cases, and the threshold between them ----

FLUENT = [
    # an explanation, a semicolon list, a templated multi-part answer, an answer with a repeated term
    "Statins inhibit HMG-CoA reductase, the rate-limiting enzyme of cholesterol synthesis. Liver cells respond "
    "by making more LDL receptors, which clear LDL particles from the blood, so plasma LDL falls by 30 to 50 percent.",
    "breast cancer; ovarian cancer; prostate cancer; pancreatic cancer; melanoma; colorectal cancer; lung cancer",
    "Drug 1: warfarin, an anticoagulant. Drug 2: amiodarone, an antiarrhythmic. The interaction: amiodarone inhibits "
    "CYP2C9, raising warfarin levels. The advice: monitor the INR closely and lower the warfarin dose.",
    "The risk of bleeding rises with the dose; the risk of bleeding also rises with age, kidney disease and "
    "concurrent antiplatelet therapy, so the dose should be adjusted for each patient.",
    "Patients with type 1 diabetes need insulin from diagnosis. Patients with type 2 diabetes need insulin when "
    "oral drugs fail. Patients with gestational diabetes need insulin when diet and exercise fail.",
]
DEGENERATE = [
    # the demo's measured case: a phrase looping to the token limit
    "Risk factors include: " + "sleep-disrupting medications; mental health; " * 12,
    # an answer said twice
    "Insulin lowers blood glucose by promoting uptake into muscle and fat. " * 2,
    # a loop after a fluent start
    "Asthma is a chronic inflammatory disease of the airways. " + "The airways narrow and the airways swell. " * 6,
    "the the the the the the the the the the the the",
]


@pytest.mark.parametrize("response", FLUENT)
def test_fluent_answers_repeat_few_trigrams(response: str) -> None:
    assert repeated_ngram_share(tokenize(response)) < 0.2
    assert _check(response).ok


@pytest.mark.parametrize("response", DEGENERATE)
def test_degenerate_repetition_repeats_many_trigrams(response: str) -> None:
    assert repeated_ngram_share(tokenize(response)) >= 0.4
    verdict = _check(response)
    assert verdict.status == "repetitive" and "3-grams repeat" in verdict.reason


def test_the_repetition_threshold_sits_between_the_crafted_cases() -> None:
    fluent = max(repeated_ngram_share(tokenize(r)) for r in FLUENT)
    degenerate = min(repeated_ngram_share(tokenize(r)) for r in DEGENERATE)
    assert fluent < DEFAULT.max_repeated_ngrams < degenerate


def test_a_short_response_is_too_short_to_judge_repetition() -> None:
    assert _check("yes yes yes", "Answer yes or no: is aspirin an NSAID?").ok


def test_repetition_is_checked_before_truncation() -> None:
    assert _check(DEGENERATE[0], truncated=True).status == "repetitive"  # the cause, not the symptom


# ---- copies ----

def test_a_response_repeating_the_instruction_is_a_copy() -> None:
    verdict = _check("Explain how statins lower LDL cholesterol.")
    assert verdict.status == "copied" and "instruction" in verdict.reason
    assert _check("Task: explain how statins lower LDL cholesterol").status == "copied"


def test_a_response_repeating_the_input_is_a_copy() -> None:
    input_text = "Coadministration of sildenafil with nitroglycerin may cause profound hypotension."
    verdict = _check(input_text, "Summarize the sentence for a patient.", input_text)
    assert verdict.status == "copied" and "input" in verdict.reason


def test_an_answer_sharing_words_with_the_instruction_is_not_a_copy() -> None:
    assert _check("Statins lower LDL cholesterol by inhibiting HMG-CoA reductase in the liver.").ok


PASSAGE = ("Statins are competitive inhibitors of HMG-CoA reductase. By lowering hepatic cholesterol synthesis they "
           "up-regulate LDL receptors on hepatocytes, which increases the clearance of circulating LDL and lowers "
           "plasma LDL cholesterol by 30 to 50 percent in most patients. Myopathy is the most common adverse effect.")


def test_a_response_lifted_from_a_passage_is_a_copy() -> None:
    lifted = ("By lowering hepatic cholesterol synthesis they up-regulate LDL receptors on hepatocytes, which increases "
              "the clearance of circulating LDL and lowers plasma LDL cholesterol")
    verdict = _check(lifted, passages=["Unrelated passage about asthma.", PASSAGE])
    assert verdict.status == "copied" and "passage [2]" in verdict.reason


def test_a_short_extraction_from_a_passage_is_an_answer() -> None:
    assert _check("HMG-CoA reductase", "Which enzyme do statins inhibit?", passages=[PASSAGE]).ok


def test_copy_gate_can_be_switched_off() -> None:
    assert _check(INSTRUCTION, config=GatesSection(copied=False)).ok


# ---- answers outside the options the instruction lists ----

@pytest.mark.parametrize(("instruction", "options"), [
    ("Do the two drugs below interact according to the sentence? Answer yes or no.", ("yes", "no")),
    ("Read the passage and answer the question with yes, no, or maybe.", ("yes", "no", "maybe")),
    ("Is the statement true or false?", ("true", "false")),
    ("Classify the sentiment of this patient drug review as positive, negative, or neutral.",
     ("positive", "negative", "neutral")),
    ("What is the relation? Choose from: upregulator, downregulator, agonist, antagonist, substrate, none.",
     ("upregulator", "downregulator", "agonist", "antagonist", "substrate", "none")),
    ("Label the chemical-protein relation (agonist, antagonist, or none).", ("agonist", "antagonist", "none")),
    ("Does the premise support the hypothesis? Reply with entailment, contradiction, or neutral.",
     ("entailment", "contradiction", "neutral")),
    ("Which clinical trial phase fits? Answer Phase 1, Phase 2, Phase 3, or Phase 4.",
     ("Phase 1", "Phase 2", "Phase 3", "Phase 4")),
    ("Classify the study design as one of: randomized controlled trial, cohort study, case report.",
     ("randomized controlled trial", "cohort study", "case report")),
])
def test_options_listed_by_the_instruction(instruction: str, options: tuple[str, ...]) -> None:
    found = listed_options(instruction)
    assert found is not None and found.texts == options


@pytest.mark.parametrize("instruction", [
    "Explain how statins work and why they cause myalgia or weakness.",
    "Answer in one sentence or less.",
    "Answer the question with a single word or phrase.",
    "Determine whether the sentence describes an interaction. Answer with an interaction type or none.",
    "Assign the hallmark of cancer (e.g., resisting cell death, inducing angiogenesis, avoiding immune destruction).",
    "Treat patients with asthma or COPD.",
    "Describe the difference between type 1 and type 2 diabetes.",
])
def test_no_options_when_the_instruction_is_not_unambiguous(instruction: str) -> None:
    assert listed_options(instruction) is None


def test_lettered_choices_in_the_input() -> None:
    options = listed_options("Answer the multiple-choice question.",
                             "Which vitamin deficiency causes scurvy? A) Vitamin A B) Vitamin B12 C) Vitamin C")
    assert options is not None and options.letters == ("A", "B", "C")
    assert options.texts == ("Vitamin A", "Vitamin B12", "Vitamin C")
    for answer in ("C) Vitamin C", "(C)", "C.", "C", "The answer is C: Vitamin C", "Vitamin C"):
        assert answers_an_option(answer, options), answer
    assert not answers_an_option("A patient with scurvy needs citrus fruit.", options)


YES_NO = "Do the two drugs interact according to the sentence? Answer yes or no."
SENTIMENT = "Classify the sentiment of this drug review as positive, negative, or neutral."


@pytest.mark.parametrize(("instruction", "response"), [
    (YES_NO, "yes"), (YES_NO, "No."), (YES_NO, "Yes, sildenafil potentiates the hypotensive effect of nitrates."),
    (SENTIMENT, "negative"), (SENTIMENT, "The review is positive."),
    ("Classify the drugs as safe or unsafe for pregnancy.", "Unsafe."),
])
def test_an_answer_among_the_options_passes(instruction: str, response: str) -> None:
    assert _check(response, instruction).ok


@pytest.mark.parametrize(("instruction", "response"), [
    (YES_NO, "The two drugs interact because sildenafil potentiates nitrates. There is no safe dose."),
    (SENTIMENT, "The reviewer had stomach cramps and stopped after three weeks."),
    ("Answer the multiple-choice question. A) Naloxone B) Flumazenil C) Atropine D) N-acetylcysteine",
     "Activated charcoal should be given first."),
])
def test_an_answer_outside_the_options_is_gated(instruction: str, response: str) -> None:
    verdict = _check(response, instruction)
    assert verdict.status == "off_options" and "none of" in verdict.reason
    assert _check(response, instruction, config=GatesSection(off_options=False)).ok


def test_seed_outputs_pass_every_gate() -> None:
    from pathlib import Path

    from selfspec.seeds import load_seeds

    repo = Path(__file__).resolve().parents[2]
    for name in ("biomedical", "sports"):
        for seed in load_seeds(repo / f"seeds/{name}.jsonl"):
            verdict = _check(seed.output, seed.instruction, seed.input)
            assert verdict.ok, (seed.id, verdict)


def test_gate_names_fit_the_status_column() -> None:
    assert all(len(gate) <= 16 for gate in GATES) and len(set(GATES)) == len(GATES)


# ---- the judge's replies ----

@pytest.mark.parametrize(("reply", "score"), [
    ("8", 8.0), (" 7\n", 7.0), ("Score: 9/10", 9.0), ("I would rate it 6 out of 10.", 6.0), ("10", 10.0),
    ("Rating: 3.5", 3.5), ("Out of 10, I give it 4/10", 4.0), ("1", 1.0),
])
def test_judge_score_is_parsed_defensively(reply: str, score: float) -> None:
    assert parse_score(reply) == score


@pytest.mark.parametrize("reply", ["", "Good answer.", "0", "11", "-3", "A solid ten."])
def test_judge_reply_without_a_1_to_10_score_is_unparsed(reply: str) -> None:
    assert parse_score(reply) is None


def test_judge_verdicts() -> None:
    assert judge_verdict("8", GatesSection(judge_threshold=6)).ok
    assert judge_verdict("5", GatesSection(judge_threshold=6)) == GateVerdict("judge_low", "judge score 5 < 6")
    kept = judge_verdict("Looks fine", GatesSection(judge_unparsed="keep"))
    assert kept.ok and kept.reason.startswith("judge_unparsed_kept:")
    assert judge_verdict("Looks fine", GatesSection(judge_unparsed="drop")).status == "judge_unparsed"
