"""The run store: runs, prompts, instructions, samples, events and adapters in SQL (SQLite WAL by default).

Every item is committed before it counts, and every item has an idempotent key, so a retried or
resumed write can never create a second row (INSERT ... ON CONFLICT DO NOTHING).

    tables.py   the schema (one `Table` each) and `open_engine`, which creates it
    records.py  rows as read back (`RunRecord`, `AdapterRecord`, ...) and row <-> type conversions
    runs.py     `RunStore`: runs, prompts, instructions, samples, events, adapters, evaluations
    review.py   `RunStore`'s review queries (sample reviews, approvals, a round's reviewed dataset)
"""

from __future__ import annotations

from orchestrator.store.records import (
    TERMINAL,
    AdapterRecord,
    EvaluationRecord,
    ReviewChange,
    RunIdConflict,
    RunRecord,
    SampleReview,
)
from orchestrator.store.runs import RunStore
from orchestrator.store.tables import (
    adapters,
    evaluations,
    events,
    idempotency_keys,
    instructions,
    metadata,
    open_engine,
    prompts,
    review_approvals,
    runs,
    sample_reviews,
    samples,
)

__all__ = [
    "AdapterRecord",
    "EvaluationRecord",
    "ReviewChange",
    "RunIdConflict",
    "RunRecord",
    "RunStore",
    "SampleReview",
    "TERMINAL",
    "adapters",
    "evaluations",
    "events",
    "idempotency_keys",
    "instructions",
    "metadata",
    "open_engine",
    "prompts",
    "review_approvals",
    "runs",
    "sample_reviews",
    "samples",
]
