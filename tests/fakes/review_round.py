"""A synthesised round written straight into a store, for review tests: no generator, deterministic.

Round 1 of `run_id`: six kept instructions (four answered `ok`, one gated `copied`, one `failed`)
and three dropped ones (two `near_duplicate`, one `too_short`), with the filter's and the gates' own
reasons; every sample grounded on two documents of the shipped corpus.
"""

from __future__ import annotations

from orchestrator.store import RunStore
from selfspec.types import DocRef, Instruction, Sample

KEPT = [
    "Summarize how {} changes cell signalling.",
    "Explain the role of {} in lung inflammation.",
    "Describe the mechanism by which {} binds its receptor.",
    "List the known side effects of {} in adults.",
    "Compare {} with standard therapy for bone loss.",
    "Classify {} as an agonist or an antagonist.",
]
TERMS = ["interleukin-2", "TNF-alpha", "cyclosporin A", "dexamethasone", "calcitonin", "tamoxifen"]
DROPPED = [
    ("Summarize how interleukin-2 changes the cell signalling.", "near_duplicate", "ROUGE-L 0.92 > 0.7"),
    ("Explain the role of TNF-alpha in the lung inflammation.", "near_duplicate", "ROUGE-L 0.90 > 0.7"),
    ("Define it.", "too_short", "2 words < 3"),
]
GATED = {4: ("copied", "copied: 0.93 of the words appear in order in passage 1")}
FAILED = {5: "the generator returned no text"}
DOC_IDS = (("bm-0001", 7.25), ("bm-0042", 5.5))


def instruction_id(run_id: str, i: int) -> str:
    return f"{run_id}:r1:p0:{i}"


def sample_id(run_id: str, i: int) -> str:
    return f"{instruction_id(run_id, i)}:s"


def populate_review_round(store: RunStore, run_id: str, *, model: str = "fake-base") -> None:
    """Commit the round (the run must exist); ok samples are those of kept instructions 0-3."""
    rows = [Instruction(id=instruction_id(run_id, i), run_id=run_id, round=1, text=text.format(TERMS[i]),
                        seed_ids=("s1", "s2", "s3"), verdict="kept") for i, text in enumerate(KEPT)]
    rows += [Instruction(id=f"{run_id}:r1:p0:{len(KEPT) + j}", run_id=run_id, round=1, text=text,
                         seed_ids=("s1", "s2", "s3"), verdict=verdict, reason=reason)  # type: ignore[arg-type]
             for j, (text, verdict, reason) in enumerate(DROPPED)]
    store.commit_prompt(run_id, 1, 0, rows, completion_tokens=300)
    for i, item in enumerate(rows[:len(KEPT)]):
        status, error = GATED.get(i, ("ok", ""))
        if i in FAILED:
            status, error = "failed", FAILED[i]
        response = "" if status == "failed" else f"Answer {i}: {TERMS[i]} acts through its receptor on T cells."
        store.commit_sample(Sample(
            id=sample_id(run_id, i), run_id=run_id, round=1, instruction_id=item.id, instruction=item.text,
            response=response, retrieved=tuple(DocRef(doc_id=d, score=s) for d, s in DOC_IDS), model=model,
            prompt_name="response", prompt_hash="h"), status=status, error=error)
