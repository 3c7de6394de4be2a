"""Human review of a round: reject, restore or edit samples, approve the round; what the export honours.

A sample is in its round's dataset when a reviewer restored it, or when nobody rejected it and no gate
dropped it (status `ok`); an edited response replaces the generated one there (the generated text stays
in `samples`, the provenance). Each change is one transaction that updates `sample_reviews` (the
latest state) and adds a `review` event (who, when, what: the history). Dropped instructions are
listed for review but cannot be restored: they have no response to train on.

    reject   the sample leaves the dataset (whatever its gate said)
    restore  undoes a reject; on a gated or failed sample, puts it in the dataset despite the gate
    edit     the dataset gets this response instead of the generated one
    approve  a round paused in `awaiting_review` (`rounds.review = true`) goes on to export and training
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import ColumnElement, and_, func, or_, select

from orchestrator.pipeline.records import export_round
from orchestrator.store import RunStore, events, instructions, review_approvals, sample_reviews, samples
from selfspec.cards import ReviewCounts
from selfspec.errors import RunNotFound, SelfSpecError
from selfspec.types import DocRef, Sample

Action = Literal["reject", "restore", "edit"]
ReviewFilter = Literal["rejected", "restored", "edited", "reviewed", "included", "excluded"]
EVENT_TYPE = "review"
PAGE = 500  # samples per store read while exporting


class ReviewConflict(SelfSpecError):
    """A review action the sample's state does not allow (restoring a sample with no response)."""


def _now() -> datetime:
    return datetime.now(UTC)


def _included() -> ColumnElement[bool]:
    """SQL: the sample (joined with its review row, if any) is in the round's dataset. Never NULL (a
    missing review row is no decision), so its negation selects the samples left out."""
    decision = func.coalesce(sample_reviews.c.decision, "")
    return or_(decision == "restored", and_(decision == "", samples.c.status == "ok"))


def review_sample(store: RunStore, run_id: str, sample_id: str, *, action: Action, by: str,
                  response: str | None = None, note: str = "") -> tuple[dict[str, Any], bool]:
    """Apply one review action; (the sample's review state, whether anything changed). A change is
    recorded with its event in one transaction; an action that changes nothing records nothing."""
    with store.engine.begin() as conn:
        sample = conn.execute(select(samples.c.round, samples.c.status, samples.c.response)
                              .where(samples.c.run_id == run_id, samples.c.id == sample_id)).mappings().first()
        if sample is None:
            raise RunNotFound(f"sample {sample_id!r} not found in run {run_id!r}")
        row = conn.execute(select(sample_reviews).where(sample_reviews.c.sample_id == sample_id)).mappings().first()
        decision: str | None = row["decision"] if row else None
        edited: str | None = row["response"] if row else None
        data: dict[str, Any] = {"action": action, "sample_id": sample_id, "round": sample["round"], "by": by}
        new_decision: str | None
        new_edited: str | None
        if action == "reject":
            new_decision, new_edited = "rejected", edited
        elif action == "restore":
            new_decision, new_edited = (None if sample["status"] == "ok" else "restored"), edited
            if new_decision == "restored" and not (edited if edited is not None else sample["response"]).strip():
                raise ReviewConflict(f"sample {sample_id!r} has no response ({sample['status']}): edit one in "
                                     "before restoring it")
        else:
            if response is None or not response.strip():
                raise ReviewConflict("an edit needs a non-empty response")
            new_decision = decision
            new_edited = None if response == sample["response"] else response  # back to the generated text
            data["before"] = edited if edited is not None else sample["response"]
            data["after"] = response
        if (new_decision, new_edited) == (decision, edited):
            return _state(sample_id, sample["status"], decision, edited, row), False
        if note:
            data["note"] = note
        now = _now()
        values = {"decision": new_decision, "response": new_edited, "updated_by": by, "updated_at": now}
        if row is None:
            conn.execute(sample_reviews.insert().values(sample_id=sample_id, run_id=run_id, round=sample["round"],
                                                        **values))
        else:
            conn.execute(sample_reviews.update().where(sample_reviews.c.sample_id == sample_id).values(**values))
        conn.execute(events.insert().values(run_id=run_id, ts=now, type=EVENT_TYPE, data=data))
        return _state(sample_id, sample["status"], new_decision, new_edited, values), True


def _state(sample_id: str, status: str, decision: str | None, edited: str | None,
           row: Any) -> dict[str, Any]:
    return {
        "sample_id": sample_id, "decision": decision, "edited": edited is not None,
        "included": decision == "restored" or (decision is None and status == "ok"),
        "reviewed_by": row["updated_by"] if row else None, "reviewed_at": row["updated_at"] if row else None,
    }


# ---- approval ----

def approve_round(store: RunStore, run_id: str, round: int, *, by: str, note: str = "") -> bool:
    """Record the approval of a round (with its event); False when it was approved before."""
    with store.engine.begin() as conn:
        known = conn.execute(select(review_approvals.c.round).where(
            review_approvals.c.run_id == run_id, review_approvals.c.round == round)).first()
        if known is not None:
            return False
        now = _now()
        conn.execute(review_approvals.insert().values(run_id=run_id, round=round, approved_by=by, approved_at=now))
        data: dict[str, Any] = {"action": "approve", "round": round, "by": by}
        if note:
            data["note"] = note
        conn.execute(events.insert().values(run_id=run_id, ts=now, type=EVENT_TYPE, data=data))
    return True


def round_approved(store: RunStore, run_id: str, round: int) -> bool:
    with store.engine.connect() as conn:
        return conn.execute(select(review_approvals.c.round).where(
            review_approvals.c.run_id == run_id, review_approvals.c.round == round)).first() is not None


# ---- what the export honours ----

def dataset_samples(store: RunStore, run_id: str, round: int) -> Iterator[Sample]:
    """The round's dataset in commit order: samples the review leaves in, with edited responses."""
    after = 0
    query = (select(samples, sample_reviews.c.response.label("edited"))
             .join(sample_reviews, sample_reviews.c.sample_id == samples.c.id, isouter=True)
             .where(samples.c.run_id == run_id, samples.c.round == round, _included())
             .order_by(samples.c.seq).limit(PAGE))
    while True:
        with store.engine.connect() as conn:
            page = conn.execute(query.where(samples.c.seq > after)).mappings().all()
        for row in page:
            yield Sample(
                id=row["id"], run_id=row["run_id"], round=row["round"], instruction_id=row["instruction_id"],
                instruction=row["instruction"], input=row["input"],
                response=row["edited"] if row["edited"] is not None else row["response"],
                retrieved=tuple(DocRef(**d) for d in row["retrieved"]), model=row["model"],
                prompt_name=row["prompt_name"], prompt_hash=row["prompt_hash"], created_at=row["created_at"],
            )
        if len(page) < PAGE:
            return
        after = page[-1]["seq"]


def export_reviewed_round(store: RunStore, run_id: str, round: int, out_dir: Path) -> dict[str, Path]:
    """Export a round's dataset files as the review leaves it (the driver's export, and re-exports)."""
    return export_round(dataset_samples(store, run_id, round), out_dir)


def review_counts(store: RunStore, run_id: str, round: int) -> ReviewCounts:
    """How many of the round's samples a reviewer rejected, restored and edited (its dataset card says so)."""
    query = (select(func.count(sample_reviews.c.decision).filter(sample_reviews.c.decision == "rejected"),
                    func.count(sample_reviews.c.decision).filter(sample_reviews.c.decision == "restored"),
                    func.count(sample_reviews.c.response))
             .where(sample_reviews.c.run_id == run_id, sample_reviews.c.round == round))
    with store.engine.connect() as conn:
        rejected, restored, edited = conn.execute(query).one()
    return ReviewCounts(rejected=int(rejected), restored=int(restored), edited=int(edited))


def sample_rounds(store: RunStore, run_id: str) -> list[int]:
    with store.engine.connect() as conn:
        rows = conn.execute(select(samples.c.round).where(samples.c.run_id == run_id).distinct())
        return sorted(r[0] for r in rows)


# ---- what a reviewer browses ----

def _search(q: str) -> ColumnElement[bool]:
    """Case-insensitive substring search over the texts a reviewer reads (LIKE, wildcards escaped)."""
    pattern = "%" + q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    fields = (instructions.c.text, instructions.c.input, instructions.c.reason, samples.c.response,
              samples.c.error, sample_reviews.c.response)
    return or_(*(func.lower(f).like(pattern, escape="\\") for f in fields))


def review_items(store: RunStore, run_id: str, *, round: int | None = None, verdict: str | None = None,
                 status: str | None = None, review: ReviewFilter | None = None, q: str = "",
                 after_seq: int = 0, limit: int = 50) -> list[dict[str, Any]]:
    """Every instruction of the run (dropped ones too, with their verdict and reason) with its sample and
    review state, in instruction order. `status`: a sample status (`ok`, `failed`, a gate name) or
    `gated` (any gate); `review`: the reviewer's doing, or whether the item is in the dataset."""
    query = (select(instructions.c.seq, instructions.c.id.label("instruction_id"), instructions.c.round,
                    instructions.c.text, instructions.c.input, instructions.c.verdict, instructions.c.reason,
                    samples.c.id.label("sample_id"), samples.c.response, samples.c.status, samples.c.error,
                    samples.c.retrieved, samples.c.model, samples.c.prompt_hash, samples.c.created_at,
                    sample_reviews.c.decision, sample_reviews.c.response.label("edited"),
                    sample_reviews.c.updated_by, sample_reviews.c.updated_at)
             .select_from(instructions)
             .join(samples, samples.c.instruction_id == instructions.c.id, isouter=True)
             .join(sample_reviews, sample_reviews.c.sample_id == samples.c.id, isouter=True)
             .where(instructions.c.run_id == run_id, instructions.c.seq > after_seq))
    if round is not None:
        query = query.where(instructions.c.round == round)
    if verdict:
        query = query.where(instructions.c.verdict == verdict)
    if status == "gated":
        query = query.where(samples.c.status.notin_(("ok", "failed")))
    elif status:
        query = query.where(samples.c.status == status)
    if review == "rejected" or review == "restored":
        query = query.where(sample_reviews.c.decision == review)
    elif review == "edited":
        query = query.where(sample_reviews.c.response.is_not(None))
    elif review == "reviewed":
        query = query.where(sample_reviews.c.sample_id.is_not(None))
    elif review == "included":
        query = query.where(samples.c.id.is_not(None), _included())
    elif review == "excluded":
        query = query.where(or_(samples.c.id.is_(None), ~_included()))
    if q:
        query = query.where(_search(q))
    with store.engine.connect() as conn:
        rows = conn.execute(query.order_by(instructions.c.seq).limit(limit)).mappings().all()
    return [_item(row) for row in rows]


def _item(row: Any) -> dict[str, Any]:
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
        "included": sample is not None and (decision == "restored" or (decision is None and row["status"] == "ok")),
        "reviewed_by": row["updated_by"], "reviewed_at": row["updated_at"],
    }


def review_log(store: RunStore, run_id: str, *, after_id: int = 0, limit: int = 200) -> list[dict[str, Any]]:
    """The run's review events, oldest first: who did what to which sample, and when."""
    query = (select(events).where(events.c.run_id == run_id, events.c.type == EVENT_TYPE, events.c.id > after_id)
             .order_by(events.c.id).limit(limit))
    with store.engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]
