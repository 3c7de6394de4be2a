"""Human review of a round: reject, restore or edit samples, approve the round; what the export honours.

A sample is in its round's dataset when a reviewer restored it, or when nobody rejected it and no gate
dropped it (status `ok`); an edited response replaces the generated one there (the generated text stays
in `samples`, the provenance). Each change is one transaction that updates `sample_reviews` (the
latest state) and adds a `review` event (who, when, what: the history); the SQL is the store's
(orchestrator/store/review.py), the rules are here. Dropped instructions are listed for review but
cannot be restored: they have no response to train on.

    reject   the sample leaves the dataset (whatever its gate said)
    restore  undoes a reject; on a gated or failed sample, puts it in the dataset despite the gate
    edit     the dataset gets this response instead of the generated one
    approve  a round paused in `awaiting_review` (`rounds.review = true`) goes on to export and training
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from orchestrator.pipeline.records import export_round
from orchestrator.store import ReviewChange, RunStore, SampleReview
from orchestrator.store.review import REVIEW_EVENT, ReviewFilter
from selfspec.cards import ReviewCounts
from selfspec.errors import SelfSpecError
from selfspec.types import Sample

__all__ = ["Action", "ReviewConflict", "ReviewFilter", "approve_round", "dataset_samples", "export_reviewed_round",
           "review_counts", "review_items", "review_log", "review_sample", "round_approved", "sample_rounds"]

Action = Literal["reject", "restore", "edit"]


class ReviewConflict(SelfSpecError):
    """A review action the sample's state does not allow (restoring a sample with no response)."""


def _included(decision: str | None, status: str | None) -> bool:
    """Whether a sample is in its round's dataset (as the store's SQL `_included` says)."""
    return decision == "restored" or (decision is None and status == "ok")


def review_sample(store: RunStore, run_id: str, sample_id: str, *, action: Action, by: str,
                  response: str | None = None, note: str = "") -> tuple[dict[str, Any], bool]:
    """Apply one review action; (the sample's review state, whether anything changed). A change is
    recorded with its event in one transaction; an action that changes nothing records nothing."""

    def decide(current: SampleReview) -> ReviewChange | None:
        decision, edited = current.decision, current.edited
        data: dict[str, Any] = {"action": action, "sample_id": sample_id, "round": current.round, "by": by}
        new_decision: str | None
        new_edited: str | None
        if action == "reject":
            new_decision, new_edited = "rejected", edited
        elif action == "restore":
            new_decision, new_edited = (None if current.status == "ok" else "restored"), edited
            if new_decision == "restored" and not (edited if edited is not None else current.response).strip():
                raise ReviewConflict(f"sample {sample_id!r} has no response ({current.status}): edit one in "
                                     "before restoring it")
        else:
            if response is None or not response.strip():
                raise ReviewConflict("an edit needs a non-empty response")
            new_decision = decision
            new_edited = None if response == current.response else response  # back to the generated text
            data["before"] = edited if edited is not None else current.response
            data["after"] = response
        if (new_decision, new_edited) == (decision, edited):
            return None
        if note:
            data["note"] = note
        return ReviewChange(decision=new_decision, edited=new_edited, event=data)

    state, changed = store.change_review(run_id, sample_id, decide, by=by)
    return _state(state), changed


def _state(review: SampleReview) -> dict[str, Any]:
    return {
        "sample_id": review.sample_id, "decision": review.decision, "edited": review.edited is not None,
        "included": _included(review.decision, review.status),
        "reviewed_by": review.updated_by, "reviewed_at": review.updated_at,
    }


# ---- approval ----

def approve_round(store: RunStore, run_id: str, round: int, *, by: str, note: str = "") -> bool:
    """Record the approval of a round (with its event); False when it was approved before."""
    data: dict[str, Any] = {"action": "approve", "round": round, "by": by}
    if note:
        data["note"] = note
    return store.record_approval(run_id, round, by=by, event=data)


def round_approved(store: RunStore, run_id: str, round: int) -> bool:
    return store.round_approved(run_id, round)


# ---- what the export honours ----

def dataset_samples(store: RunStore, run_id: str, round: int) -> Iterator[Sample]:
    """The round's dataset in commit order: samples the review leaves in, with edited responses."""
    return store.dataset_samples(run_id, round)


def export_reviewed_round(store: RunStore, run_id: str, round: int, out_dir: Path) -> dict[str, Path]:
    """Export a round's dataset files as the review leaves it (the driver's export, and re-exports)."""
    return export_round(store.dataset_samples(run_id, round), out_dir)


def review_counts(store: RunStore, run_id: str, round: int) -> ReviewCounts:
    """How many of the round's samples a reviewer rejected, restored and edited (its dataset card says so)."""
    return ReviewCounts(**store.review_counts(run_id, round))


def sample_rounds(store: RunStore, run_id: str) -> list[int]:
    return store.sample_rounds(run_id)


# ---- what a reviewer browses ----

def review_items(store: RunStore, run_id: str, *, round: int | None = None, verdict: str | None = None,
                 status: str | None = None, review: ReviewFilter | None = None, q: str = "",
                 after_seq: int = 0, limit: int = 50) -> list[dict[str, Any]]:
    """Every instruction of the run (dropped ones too, with their verdict and reason) with its sample and
    review state, in instruction order. `status`: a sample status (`ok`, `failed`, a gate name) or
    `gated` (any gate); `review`: the reviewer's doing, or whether the item is in the dataset; `q`: a
    case-insensitive substring of the instruction, input, reason, response or error."""
    rows = store.review_rows(run_id, round=round, verdict=verdict, status=status, review=review, q=q,
                             after_seq=after_seq, limit=limit)
    return [_item(row) for row in rows]


def _item(row: dict[str, Any]) -> dict[str, Any]:
    sample = None
    if row["sample_id"] is not None:
        sample = {
            "id": row["sample_id"], "response": row["edited"] if row["edited"] is not None else row["response"],
            "generated_response": row["response"], "status": row["status"], "error": row["error"],
            "retrieved": row["retrieved"], "model": row["model"], "prompt_hash": row["prompt_hash"],
            "created_at": row["created_at"],
        }
    decision = row["decision"]
    return {
        "seq": row["seq"], "instruction_id": row["instruction_id"], "round": row["round"],
        "instruction": row["text"], "input": row["input"], "verdict": row["verdict"], "reason": row["reason"],
        "sample": sample, "decision": decision, "edited": row["edited"] is not None,
        "included": sample is not None and _included(decision, row["status"]),
        "reviewed_by": row["updated_by"], "reviewed_at": row["updated_at"],
    }


def review_log(store: RunStore, run_id: str, *, after_id: int = 0, limit: int = 200) -> list[dict[str, Any]]:
    """The run's review events, oldest first: who did what to which sample, and when."""
    return store.events_after(run_id, after_id, limit, kind=REVIEW_EVENT)
