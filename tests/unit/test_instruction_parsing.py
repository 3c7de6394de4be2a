from __future__ import annotations

from orchestrator.pipeline.instructions import build_prompt, parse_candidates, pick_seeds
from selfspec.types import SeedTask


def test_parses_numbered_list_with_inputs() -> None:
    text = (" Name the gene in the sentence.\n4. Input: TP53 is mutated in many tumours.\n\n"
            "5. Instruction: Explain what asthma is.\n5. Input: <noinput>\n\n6. Instruction: Cut off")
    candidates, failures = parse_candidates(text, first_number=4, truncated=True)
    assert [(c.text, c.input) for c in candidates] == [
        ("Name the gene in the sentence.", "TP53 is mutated in many tumours."),
        ("Explain what asthma is.", ""),
    ]
    assert failures == 1


def test_unstructured_prose_is_an_instruction_without_input() -> None:
    candidates, failures = parse_candidates(" Describe the causes of anaemia.\n\nSome rambling after.",
                                            first_number=4, truncated=False)
    assert [(c.text, c.input) for c in candidates] == [("Describe the causes of anaemia.", "")]
    assert failures == 0


def test_empty_instruction_line_takes_the_task_from_the_input_line() -> None:
    text = "\n4. Input: Which organ stores bile?\n4. Output: The gallbladder.\n\n5. Instruction:\n5. Input: x\n"
    candidates, failures = parse_candidates(text, first_number=4, truncated=False)
    assert [(c.text, c.input) for c in candidates] == [("Which organ stores bile?", ""), ("x", "")]
    assert failures == 0


def test_empty_item_is_a_parse_failure() -> None:
    candidates, failures = parse_candidates("\n\n5. Instruction: Name a vitamin.\n5. Input: <noinput>",
                                            first_number=4, truncated=False)
    assert [(c.text, c.input) for c in candidates] == [("Name a vitamin.", "")]
    assert failures == 1


def test_last_complete_block_is_kept_when_not_truncated() -> None:
    candidates, failures = parse_candidates(" Do X.\n4. Input: y", first_number=4, truncated=False)
    assert [(c.text, c.input) for c in candidates] == [("Do X.", "y")] and failures == 0


def test_prompt_lists_seeds_and_asks_for_the_next_number() -> None:
    seeds = [SeedTask(id=str(i), domain="biomedical", task="t", instruction=f"Task {i}.", input="", output="o")
             for i in range(10)]
    chosen = pick_seeds(seeds, count=3, key="run:1:0")
    assert chosen == pick_seeds(seeds, count=3, key="run:1:0")  # deterministic per prompt key
    prompt = build_prompt(chosen, domain="biomedical")
    assert prompt.rstrip().endswith("4. Instruction:")
    assert all(f"Instruction: {s.instruction}" in prompt for s in chosen)
    assert "Input: <noinput>" in prompt


def test_label_in_the_middle_of_a_line_starts_a_field() -> None:
    candidates, _ = parse_candidates(" 1. Input: Name the enzyme that digests starch.", first_number=4, truncated=False)
    assert [(c.text, c.input) for c in candidates] == [("Name the enzyme that digests starch.", "")]
