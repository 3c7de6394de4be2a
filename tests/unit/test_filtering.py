from __future__ import annotations

import random

import pytest
from rouge_score import rouge_scorer

from orchestrator.pipeline import filtering
from orchestrator.pipeline.filtering import (
    Candidate,
    InstructionFilter,
    NearDuplicateIndex,
    rouge_l,
    tokenize,
)
from selfspec.settings import FiltersSection

STRINGS = [
    ("Identify all disease names in the following sentence.", "List the disease names in the sentence below."),
    ("the cat sat on the mat", "the the the cat"),
    ("Classify the drug review as positive or negative.", "Summarize the abstract in one sentence."),
    ("a b c d e f", "f e d c b a"),
]


@pytest.mark.parametrize(("a", "b"), STRINGS)
def test_rouge_l_equals_rouge_score_package(a: str, b: str) -> None:
    expected = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False).score(a, b)["rougeL"].fmeasure
    assert rouge_l(tokenize(a), tokenize(b)) == pytest.approx(expected)


def _filter() -> InstructionFilter:
    return InstructionFilter(FiltersSection())


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ("Too short", "too_short"),
        ("word " * 151, "too_long"),
        ("Draw a diagram of the heart chambers and valves.", "blacklisted"),
        ("Write a program that parses gene names from text.", "blacklisted"),
        ("- List the symptoms of measles in children.", "bad_start"),
        ("\u00c9valuez the dose of insulin for this patient.", "bad_start"),
        ("List the symptoms of measles in young children.", "kept"),
    ],
)
def test_rules(text: str, verdict: str) -> None:
    assert _filter().check(Candidate(text))[0] == verdict


def test_duplicates_against_kept_and_reasons() -> None:
    f = _filter()
    assert f.check(Candidate("Explain how beta blockers lower blood pressure.", "")) == ("kept", "")
    assert f.check(Candidate("Explain how beta blockers lower blood pressure.", ""))[0] == "exact_duplicate"
    verdict, reason = f.check(Candidate("Explain how beta blockers lower the blood pressure.", "x"))
    assert verdict == "near_duplicate" and "ROUGE-L" in reason
    # Same instruction with a different input is a near-duplicate instruction too.
    assert f.check(Candidate("Name three side effects of statins.", "a"))[0] == "kept"


def _instruction_pool(n: int, seed: int, max_pairs: int = 9) -> list[str]:
    rng = random.Random(seed)
    verbs = ["Identify", "List", "Explain", "Classify", "Summarize", "Describe", "Extract", "Compare", "Name"]
    stems = ["disease", "gene", "protein", "drug", "symptom", "dose", "trial", "organ", "cell", "pathway",
             "receptor", "enzyme", "mutation", "biomarker", "therapy", "infection", "tumor", "vaccine"]
    objects = [f"{prefix}{stem}" for stem in stems for prefix in ("", "micro", "neuro", "cardio", "immuno", "onco")]
    fillers = ["in the", "of the", "for a", "with the", "from this", "given", "and its", "related to"]
    pool = []
    for _ in range(n):
        words = [rng.choice(verbs)]
        for _ in range(rng.randint(1, max_pairs)):
            words += [rng.choice(fillers), rng.choice(objects)]
        pool.append(" ".join(words) + ".")
    return pool


def test_all_pairs_reference_matches_rouge_score_package() -> None:
    """The exhaustive mode (every kept pair, exact bounds before LCS) equals plain rouge-score."""
    texts = _instruction_pool(250, seed=3, max_pairs=3)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    kept: list[str] = []
    expected = []
    for text in texts:
        dup = any(scorer.score(other, text)["rougeL"].fmeasure > 0.7 for other in kept)
        expected.append(dup)
        if not dup:
            kept.append(text)
    index = InstructionFilter(FiltersSection(), exhaustive=True).near
    actual = []
    for text in texts:
        dup = index.find(text) is not None
        actual.append(dup)
        if not dup:
            index.add(text)
    assert actual == expected and any(expected)


def test_indexed_filter_decides_exactly_like_all_pairs() -> None:
    texts = _instruction_pool(2000, seed=7)
    fast, naive = InstructionFilter(FiltersSection()), InstructionFilter(FiltersSection(), exhaustive=True)
    fast_verdicts = [fast.check(Candidate(t))[0] for t in texts]
    naive_verdicts = [naive.check(Candidate(t))[0] for t in texts]
    assert fast_verdicts == naive_verdicts
    assert 0 < fast_verdicts.count("near_duplicate") < len(texts)  # the set exercises both outcomes
    assert fast.near.candidates < naive.near.candidates


@pytest.mark.parametrize("shared", [2, 3])
@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7, 0.9])
def test_index_finds_what_all_pairs_finds_for_short_texts_and_any_threshold(
        threshold: float, shared: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """One- to three-word texts are the pairs one shared word can make near-duplicates: the index must
    not need `shared` occurrences in common for them (any k of the pkwise prefix)."""
    monkeypatch.setattr(filtering, "SHARED", shared)
    rng = random.Random(11)
    texts = _instruction_pool(600, seed=5, max_pairs=4)
    texts += [" ".join(t.split()[: rng.randint(1, 3)]) for t in rng.sample(texts, 200)]
    rng.shuffle(texts)
    fast, naive = NearDuplicateIndex(threshold), NearDuplicateIndex(threshold, exhaustive=True)
    found = []
    for text in texts:
        hit = naive.find(text)
        assert (fast.find(text) is None) == (hit is None), text
        found.append(hit is not None)
        if hit is None:
            fast.add(text)
            naive.add(text)
    assert any(found) and not all(found)
