"""The run store's schema: one SQLAlchemy `Table` each, and `open_engine`, which creates them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Engine,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
)

metadata = MetaData()

runs = Table(
    "runs", metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("config", JSON, nullable=False),
    # pending|running|paused|awaiting_review|completed|failed|cancelled
    Column("status", String(16), nullable=False),
    Column("phase", String(32), nullable=False),
    Column("round", Integer, nullable=False, default=1),
    Column("reason", Text, nullable=False, default=""),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

prompts = Table(
    "prompts", metadata,
    Column("run_id", String(64), ForeignKey("runs.id"), primary_key=True),
    Column("round", Integer, primary_key=True),
    Column("idx", Integer, primary_key=True),
    Column("n_candidates", Integer, nullable=False),
    Column("completion_tokens", Integer, nullable=False, default=0),
)

instructions = Table(
    "instructions", metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", String(128), nullable=False, unique=True),
    Column("run_id", String(64), ForeignKey("runs.id"), nullable=False),
    Column("round", Integer, nullable=False),
    Column("text", Text, nullable=False),
    Column("input", Text, nullable=False),
    Column("seed_ids", JSON, nullable=False),
    Column("prompt_name", String(64), nullable=False),
    Column("verdict", String(32), nullable=False),
    Column("reason", Text, nullable=False),
    Index("ix_instructions_run_round_verdict", "run_id", "round", "verdict"),
)

samples = Table(
    "samples", metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", String(160), nullable=False, unique=True),
    Column("run_id", String(64), ForeignKey("runs.id"), nullable=False),
    Column("round", Integer, nullable=False),
    Column("instruction_id", String(128), nullable=False, unique=True),
    Column("instruction", Text, nullable=False),
    Column("input", Text, nullable=False),
    Column("response", Text, nullable=False),
    # ok | failed | a response gate's name (orchestrator/pipeline/gates.py GATES); error holds the reason
    Column("status", String(16), nullable=False),
    Column("error", Text, nullable=False, default=""),
    Column("retrieved", JSON, nullable=False),
    Column("model", String(128), nullable=False),
    Column("prompt_name", String(64), nullable=False),
    Column("prompt_hash", String(32), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_samples_run_round_status", "run_id", "round", "status"),
)

events = Table(
    "events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(64), nullable=False, index=True),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("type", String(32), nullable=False),
    Column("data", JSON, nullable=False),
)

adapters = Table(
    "adapters", metadata,
    Column("name", String(128), primary_key=True),
    Column("run_id", String(64), nullable=False),
    Column("round", Integer, nullable=False),
    Column("path", Text, nullable=False),
    Column("manifest", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# Review (orchestrator/execution/review.py): a reviewed sample's current state, one row per sample. Every change is
# also a `review` event (who, when, what), so this table is the latest state and the events its history.
sample_reviews = Table(
    "sample_reviews", metadata,
    Column("sample_id", String(160), primary_key=True),
    Column("run_id", String(64), nullable=False),
    Column("round", Integer, nullable=False),
    Column("decision", String(16), nullable=True),  # rejected | restored | NULL: the gates decide
    Column("response", Text, nullable=True),  # an edited response; NULL: the response as generated
    Column("updated_by", String(128), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_sample_reviews_run_round", "run_id", "round"),
)

# A round a reviewer approved (`rounds.review`): the run goes on to export and train it.
review_approvals = Table(
    "review_approvals", metadata,
    Column("run_id", String(64), primary_key=True),
    Column("round", Integer, primary_key=True),
    Column("approved_by", String(128), nullable=False),
    Column("approved_at", DateTime(timezone=True), nullable=False),
)

# `Idempotency-Key` of POST /v1/runs: a retried request returns the run the first one created.
idempotency_keys = Table(
    "idempotency_keys", metadata,
    Column("key", String(255), primary_key=True),
    Column("run_id", String(64), nullable=False),
    Column("request_sha256", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

evaluations = Table(
    "evaluations", metadata,
    Column("id", String(64), primary_key=True),
    Column("run_id", String(64), nullable=True),
    Column("status", String(16), nullable=False),
    Column("request", JSON, nullable=False),
    Column("results", JSON, nullable=False),
    Column("report_path", Text, nullable=False, default=""),
    Column("error", Text, nullable=False, default=""),
    Column("created_at", DateTime(timezone=True), nullable=False),
)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL mode survives a process kill (only an OS crash can lose the last commits).
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def open_engine(url: str) -> Engine:
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, future=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    metadata.create_all(engine)
    return engine
