"""The review tables' queries: a sample's review state, round approvals, and what a round's dataset holds.

The rules (what an action does, what may not be done) are orchestrator/execution/review.py's; here they are read
and written. Every change is one transaction that updates `sample_reviews` (the latest state) and adds
a `review` event (who, when, what: the history).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, Connection, Engine, and_, func, or_, select

from orchestrator.store.records import ReviewChange, SampleReview, sample_from_row, utc_now
from orchestrator.store.tables import events, instructions, review_approvals, sample_reviews, samples
from selfspec.errors import RunNotFound
from selfspec.types import Sample

ReviewFilter = Literal["rejected", "restored", "edited", "reviewed", "included", "excluded"]
REVIEW_EVENT = "review"  # the event type of every review change and approval
PAGE = 500  # samples per read while iterating a round's dataset


def _included() -> ColumnElement[bool]:
    """SQL: the sample (joined with its review row, if any) is in the round's dataset. Never NULL (a
    missing review row is no decision), so its negation selects the samples left out."""
    decision = func.coalesce(sample_reviews.c.decision, "")
    return or_(decision == "restored", and_(decision == "", samples.c.status == "ok"))


def _search(q: str) -> ColumnElement[bool]:
    """Case-insensitive substring search over the texts a reviewer reads (LIKE, wildcards escaped)."""
    pattern = "%" + q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    fields = (instructions.c.text, instructions.c.input, instructions.c.reason, samples.c.response,
              samples.c.error, sample_reviews.c.response)
    return or_(*(func.lower(f).like(pattern, escape="\\") for f in fields))


def _review_event(conn: Connection, run_id: str, ts: datetime, data: dict[str, Any]) -> None:
    conn.execute(events.insert().values(run_id=run_id, ts=ts, type=REVIEW_EVENT, data=data))


class ReviewQueries:
    """The review part of `RunStore` (which provides `engine`)."""

    engine: Engine

    def change_review(self, run_id: str, sample_id: str, decide: Callable[[SampleReview], ReviewChange | None],
                      *, by: str) -> tuple[SampleReview, bool]:
        """Read the sample's review state, let `decide` say what changes (None: nothing) and record the
        change with its event, in one transaction; (the state now, whether anything changed). What
        `decide` raises rolls the transaction back and propagates."""
        with self.engine.begin() as conn:
            sample = conn.execute(select(samples.c.round, samples.c.status, samples.c.response)
                                  .where(samples.c.run_id == run_id, samples.c.id == sample_id)).mappings().first()
            if sample is None:
                raise RunNotFound(f"sample {sample_id!r} not found in run {run_id!r}")
            row = conn.execute(select(sample_reviews)
                               .where(sample_reviews.c.sample_id == sample_id)).mappings().first()
            current = SampleReview(
                sample_id=sample_id, round=sample["round"], status=sample["status"], response=sample["response"],
                decision=row["decision"] if row else None, edited=row["response"] if row else None,
                updated_by=row["updated_by"] if row else None, updated_at=row["updated_at"] if row else None,
            )
            change = decide(current)
            if change is None:
                return current, False
            ts = utc_now()
            values = {"decision": change.decision, "response": change.edited, "updated_by": by, "updated_at": ts}
            if row is None:
                conn.execute(sample_reviews.insert().values(sample_id=sample_id, run_id=run_id,
                                                            round=sample["round"], **values))
            else:
                conn.execute(sample_reviews.update().where(sample_reviews.c.sample_id == sample_id)
                             .values(**values))
            _review_event(conn, run_id, ts, change.event)
        return current.model_copy(update={"decision": change.decision, "edited": change.edited,
                                          "updated_by": by, "updated_at": ts}), True

    def record_approval(self, run_id: str, round: int, *, by: str, event: dict[str, Any]) -> bool:
        """Record a round's approval with its `review` event; False when it was approved before."""
        with self.engine.begin() as conn:
            known = conn.execute(select(review_approvals.c.round).where(
                review_approvals.c.run_id == run_id, review_approvals.c.round == round)).first()
            if known is not None:
                return False
            ts = utc_now()
            conn.execute(review_approvals.insert().values(run_id=run_id, round=round, approved_by=by,
                                                          approved_at=ts))
            _review_event(conn, run_id, ts, event)
        return True

    def round_approved(self, run_id: str, round: int) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(select(review_approvals.c.round).where(
                review_approvals.c.run_id == run_id, review_approvals.c.round == round)).first() is not None

    def dataset_samples(self, run_id: str, round: int) -> Iterator[Sample]:
        """The round's dataset in commit order: samples the review leaves in, with edited responses."""
        after = 0
        query = (select(samples, sample_reviews.c.response.label("edited"))
                 .join(sample_reviews, sample_reviews.c.sample_id == samples.c.id, isouter=True)
                 .where(samples.c.run_id == run_id, samples.c.round == round, _included())
                 .order_by(samples.c.seq).limit(PAGE))
        while True:
            with self.engine.connect() as conn:
                page = conn.execute(query.where(samples.c.seq > after)).mappings().all()
            for row in page:
                yield sample_from_row(row, response=row["edited"])
            if len(page) < PAGE:
                return
            after = page[-1]["seq"]

    def review_counts(self, run_id: str, round: int) -> dict[str, int]:
        """How many of the round's samples a reviewer rejected, restored and edited."""
        query = (select(func.count(sample_reviews.c.decision).filter(sample_reviews.c.decision == "rejected"),
                        func.count(sample_reviews.c.decision).filter(sample_reviews.c.decision == "restored"),
                        func.count(sample_reviews.c.response))
                 .where(sample_reviews.c.run_id == run_id, sample_reviews.c.round == round))
        with self.engine.connect() as conn:
            rejected, restored, edited = conn.execute(query).one()
        return {"rejected": int(rejected), "restored": int(restored), "edited": int(edited)}

    def sample_rounds(self, run_id: str) -> list[int]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(samples.c.round).where(samples.c.run_id == run_id).distinct())
            return sorted(r[0] for r in rows)

    def review_rows(self, run_id: str, *, round: int | None = None, verdict: str | None = None,
                    status: str | None = None, review: ReviewFilter | None = None, q: str = "",
                    after_seq: int = 0, limit: int = 50) -> list[dict[str, Any]]:
        """Instructions (dropped ones too) joined with their sample and its review row, in instruction
        order; the filters are orchestrator.execution.review.review_items's."""
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
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query.order_by(instructions.c.seq).limit(limit)).mappings()]
