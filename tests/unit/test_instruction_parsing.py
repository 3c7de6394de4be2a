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


def test_block_without_input_line_is_a_parse_failure() -> None:
    candidates, failures = parse_candidates(" Just prose with no structure.", first_number=4, truncated=False)
    assert candidates == [] and failures == 1


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
