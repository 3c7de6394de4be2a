from __future__ import annotations

import pytest

from orchestrator.pipeline.instructions import (
    build_prompt,
    clean_input,
    clean_instruction,
    parse_candidates,
    pick_seeds,
)
from selfspec.types import SeedTask


def test_parses_numbered_list_with_inputs() -> None:
    text = (" Name the gene in the sentence.\n4. Input: TP53 is mutated in many tumours.\n\n"
            "5. Instruction: Explain what asthma is.\n5. Input: <noinput>\n\n6. Instruction: Cut off")
    candidates, dropped = parse_candidates(text, first_number=4, truncated=True)
    assert [(c.text, c.input) for c in candidates] == [
        ("Name the gene in the sentence.", "TP53 is mutated in many tumours."),
        ("Explain what asthma is.", ""),
    ]
    assert [(d.verdict, d.reason) for d in dropped] == [("parse_failure", "cut off by the token limit")]


def test_unstructured_prose_is_an_instruction_without_input() -> None:
    candidates, dropped = parse_candidates(" Describe the causes of anaemia.\n\nSome rambling after.",
                                           first_number=4, truncated=False)
    assert [(c.text, c.input) for c in candidates] == [("Describe the causes of anaemia.", "")]
    assert dropped == []


def test_empty_instruction_line_takes_the_task_from_the_input_line() -> None:
    text = "\n4. Input: Which organ stores bile?\n4. Output: The gallbladder.\n\n5. Instruction:\n5. Input: x\n"
    candidates, dropped = parse_candidates(text, first_number=4, truncated=False)
    assert [(c.text, c.input) for c in candidates] == [("Which organ stores bile?", ""), ("x", "")]
    assert dropped == []


def test_empty_item_is_a_parse_failure() -> None:
    candidates, dropped = parse_candidates("\n\n5. Instruction: Name a vitamin.\n5. Input: <noinput>",
                                           first_number=4, truncated=False)
    assert [(c.text, c.input) for c in candidates] == [("Name a vitamin.", "")]
    assert [(d.verdict, d.reason) for d in dropped] == [("parse_failure", "empty item")]


def test_last_complete_block_is_kept_when_not_truncated() -> None:
    candidates, dropped = parse_candidates(" Do X.\n4. Input: y", first_number=4, truncated=False)
    assert [(c.text, c.input) for c in candidates] == [("Do X.", "y")] and dropped == []


def test_prompt_lists_seeds_and_asks_for_the_next_number() -> None:
    seeds = [SeedTask(id=str(i), domain="biomedical", task="t", instruction=f"Task {i}.", input="", output="o")
             for i in range(10)]
    chosen = pick_seeds(seeds, count=3, key="run:1:0")
    assert chosen == pick_seeds(seeds, count=3, key="run:1:0")  # deterministic per prompt key
    prompt = build_prompt(chosen, domain="biomedical")
    # No newline after the label: a prompt ending in one reads as an empty instruction, and models
    # then write '4. Input:' (Gemma did so in 4 of 4 completions).
    assert prompt.endswith("4. Instruction:")
    assert all(f"Instruction: {s.instruction}" in prompt for s in chosen)
    assert "Input: <noinput>" in prompt


def test_label_in_the_middle_of_a_line_starts_a_field() -> None:
    candidates, _ = parse_candidates(" 1. Input: Name the enzyme that digests starch.", first_number=4, truncated=False)
    assert [(c.text, c.input) for c in candidates] == [("Name the enzyme that digests starch.", "")]


# ---- list debris: each case seen in real completions (SmolLM2-135M, Gemma 3 270M) ----

def _pairs(completion: str, *, first_number: int = 4) -> list[tuple[str, str]]:
    candidates, _ = parse_candidates(completion, first_number=first_number, truncated=False)
    return [(c.text, c.input) for c in candidates]


def test_input_label_right_after_the_prompt_is_a_label_not_the_instruction() -> None:
    """Gemma, prompt ending in '4. Instruction:\n': the completion opens with '4. Input:' glued to the
    label the parser puts back ('4. Instruction:4. Input: ...')."""
    completion = "4. Input: You are to create a summary of the abstract below.\n4. Output: Summary.\n\n"
    assert _pairs(completion) == [("You are to create a summary of the abstract below.", "")]


def test_a_restarted_list_number_is_not_part_of_the_instruction() -> None:
    completion = " 1. What is the probability that a child of two carriers has cystic fibrosis?\n4. Input: <noinput>"
    assert _pairs(completion) == [("What is the probability that a child of two carriers has cystic fibrosis?", "")]


@pytest.mark.parametrize("number", ["1.", "2)", "(3)", "12.", "- ", "* "])
def test_leading_numbering_and_bullets_are_removed(number: str) -> None:
    assert clean_instruction(f"{number} Name the enzyme that digests starch.") == "Name the enzyme that digests starch."


def test_a_decimal_number_at_the_start_is_content() -> None:
    assert clean_instruction("2.5 mg of warfarin was given; explain the risk.") == (
        "2.5 mg of warfarin was given; explain the risk.")


def test_a_bare_numbered_list_is_one_task_per_number() -> None:
    completion = "\n1. What is the function of insulin?\n2) Name a beta blocker.\n3. Explain what asthma is.\n"
    assert _pairs(completion) == [("What is the function of insulin?", ""), ("Name a beta blocker.", ""),
                                  ("Explain what asthma is.", "")]


def test_stray_instruction_label_is_removed() -> None:
    assert _pairs(" Instruction: Classify the review as positive or negative.\n4. Input: Great drug.") == [
        ("Classify the review as positive or negative.", "Great drug.")]
    assert _pairs(" **Task:** Name the vector of malaria.") == [("Name the vector of malaria.", "")]


def test_unnumbered_labels_start_fields() -> None:
    completion = (" Name the gene in the sentence.\nInput: TP53 is mutated in many tumours.\nOutput: TP53\n\n"
                  "Instruction: Explain what a biopsy is.\nInput: <noinput>\n### Response: A biopsy is ...")
    assert _pairs(completion) == [("Name the gene in the sentence.", "TP53 is mutated in many tumours."),
                                  ("Explain what a biopsy is.", "")]


def test_inline_input_and_output_labels_split_the_line() -> None:
    completion = " Classify the sentence as adverse or not. Input: The drug caused nausea. Output: adverse"
    assert _pairs(completion) == [("Classify the sentence as adverse or not.", "The drug caused nausea.")]


@pytest.mark.parametrize("mark", ["<noinput>", "<no input>", "<No Input>", "<noinput>.", "(noinput)", "[no input]",
                                  "No input.", "None", "N/A", "<none>", "noinput"])
def test_no_input_variants_mean_no_input(mark: str) -> None:
    assert clean_input(mark) == ""
    assert _pairs(f" Explain what asthma is.\n4. Input: {mark}") == [("Explain what asthma is.", "")]


def test_no_input_mark_inside_the_instruction_is_removed() -> None:
    assert _pairs(" Explain what asthma is. <noinput>") == [("Explain what asthma is.", "")]


@pytest.mark.parametrize("tail", ["\n5.", "\n5", "\n5. Instr", " 5.", " 5"])
def test_the_next_items_number_at_the_end_is_removed(tail: str) -> None:
    assert _pairs(f" Explain what asthma is.{tail}") == [("Explain what asthma is.", "")]


def test_a_number_ending_a_sentence_is_content() -> None:
    assert _pairs(" Describe the genes on chromosome 5.\n4. Input: <noinput>") == [
        ("Describe the genes on chromosome 5.", "")]


def test_an_input_keeps_its_own_list() -> None:
    completion = " Which drug is an NSAID?\n4. Input: 1. aspirin\n2. metoprolol\n3. insulin"
    assert _pairs(completion) == [("Which drug is an NSAID?", "1. aspirin\n2. metoprolol\n3. insulin")]


def test_a_repeated_number_with_a_new_instruction_is_the_next_task() -> None:
    completion = " Name a vitamin.\n4. Input: <noinput>\n\n4. Instruction: Name a mineral.\n4. Input: <noinput>"
    assert _pairs(completion) == [("Name a vitamin.", ""), ("Name a mineral.", "")]


def test_debris_that_cannot_be_cleaned_is_dropped_with_its_reason() -> None:
    completion = " Explain the Input: field of a lab form.\n4. Input: Output: none given"
    candidates, dropped = parse_candidates(completion, first_number=4, truncated=False)
    assert candidates == []
    assert [(d.verdict, d.text) for d in dropped] == [("list_debris", "Explain the Input: field of a lab form.")]
    assert "Input:" in dropped[0].reason
