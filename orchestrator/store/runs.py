"""`RunStore`: typed access to the run store (orchestrator/store/__init__.py says what it keeps)."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Table, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from orchestrator.pipeline.gates import JUDGE_UNPARSED_KEPT
from orchestrator.store.records import (
    AdapterRecord,
    EvaluationRecord,
    RunIdConflict,
    RunRecord,
    jsonable,
    sample_from_row,
    utc_now,
)
from orchestrator.store.review import ReviewQueries
from orchestrator.store.tables import (
    adapters,
    evaluations,
    events,
    idempotency_keys,
    instructions,
    open_engine,
    prompts,
    runs,
    samples,
)
from selfspec.errors import RunNotFound
from selfspec.types import Instruction, Sample

log = logging.getLogger(__name__)


class RunStore(ReviewQueries):
    """Typed access to the run store; all writes are single transactions."""

    def __init__(self, url: str) -> None:
        self.engine = open_engine(url)
        self._insert = pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert
        # Built once, executed with parameters: rebuilding `.values(...)` per row cost a run's worker
        # ~10% of its CPU (cache keys and generative copies) at a few hundred samples/s.
        self._insert_prompt = self._insert(prompts).on_conflict_do_nothing()
        self._insert_instruction = self._insert(instructions).on_conflict_do_nothing()
        self._insert_sample = self._insert(samples).on_conflict_do_nothing()
        self._insert_event = events.insert()

    def close(self) -> None:
        self.engine.dispose()

    # ---- runs ----

    def create_run(self, run_id: str, name: str, config: dict[str, Any]) -> None:
        """Register a new run; `RunIdConflict` when the id is taken (never silently the old run)."""
        now = utc_now()
        with self.engine.begin() as conn:
            inserted = conn.execute(self._insert(runs).values(
                id=run_id, name=name, config=config, status="pending", phase="created", round=1,
                reason="", created_at=now, updated_at=now,
            ).on_conflict_do_nothing())
            if inserted.rowcount == 0:
                raise RunIdConflict(f"run id {run_id!r} already exists")
            self._event(conn, run_id, "run_created", {"name": name})

    def idempotent_run(self, key: str) -> tuple[str, str] | None:
        """(run id, request sha256) recorded for an `Idempotency-Key`, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(select(idempotency_keys).where(idempotency_keys.c.key == key)).mappings().first()
        return (row["run_id"], row["request_sha256"]) if row is not None else None

    def record_idempotency_key(self, key: str, run_id: str, request_sha256: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(idempotency_keys.insert().values(key=key, run_id=run_id, request_sha256=request_sha256,
                                                          created_at=utc_now()))

    def get_run(self, run_id: str) -> RunRecord:
        with self.engine.connect() as conn:
            row = conn.execute(select(runs).where(runs.c.id == run_id)).mappings().first()
        if row is None:
            raise RunNotFound(f"run {run_id!r} not found")
        return RunRecord.model_validate(dict(row))

    def list_runs(self, *, status: str | None = None, limit: int | None = None,
                  offset: int = 0) -> list[RunRecord]:
        """Newest first; `limit`/`offset` select a page (all runs without a limit)."""
        query = select(runs).order_by(runs.c.created_at.desc(), runs.c.id)
        if status:
            query = query.where(runs.c.status == status)
        if limit is not None:
            query = query.limit(limit).offset(offset)
        with self.engine.connect() as conn:
            return [RunRecord.model_validate(dict(r)) for r in conn.execute(query).mappings()]

    def set_status(self, run_id: str, status: str, *, phase: str | None = None, round: int | None = None,
                   reason: str = "") -> None:
        values: dict[str, Any] = {"status": status, "reason": reason, "updated_at": utc_now()}
        if phase is not None:
            values["phase"] = phase
        if round is not None:
            values["round"] = round
        with self.engine.begin() as conn:
            result = conn.execute(update(runs).where(runs.c.id == run_id).values(**values))
            if result.rowcount == 0:
                raise RunNotFound(f"run {run_id!r} not found")
            self._event(conn, run_id, "status", {k: v for k, v in values.items() if k != "updated_at"})

    # ---- instruction prompts ----

    def done_prompt_indexes(self, run_id: str, round: int) -> set[int]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(prompts.c.idx).where(prompts.c.run_id == run_id, prompts.c.round == round))
            return {r[0] for r in rows}

    def commit_prompt(self, run_id: str, round: int, idx: int, items: Sequence[Instruction],
                      completion_tokens: int = 0) -> int:
        """Record one generation prompt and all instructions parsed from it, atomically.

        Returns how many instruction rows were new (0 when this prompt was already committed).
        """
        with self.engine.begin() as conn:
            done = conn.execute(self._insert_prompt, {
                "run_id": run_id, "round": round, "idx": idx, "n_candidates": len(items),
                "completion_tokens": completion_tokens,
            })
            if done.rowcount == 0:
                return 0
            if items:
                conn.execute(self._insert_instruction, [_instruction_row(item, run_id, round) for item in items])
            verdicts: dict[str, int] = {}
            for item in items:
                verdicts[item.verdict] = verdicts.get(item.verdict, 0) + 1
            self._event(conn, run_id, "instructions", {"round": round, "prompt": idx, "verdicts": verdicts})
        return len(items)

    def add_instructions(self, run_id: str, round: int, items: Sequence[Instruction]) -> None:
        """Insert instructions not tied to a generation prompt (e.g. round-2 'reuse')."""
        if not items:
            return
        with self.engine.begin() as conn:
            conn.execute(self._insert_instruction, [_instruction_row(item, run_id, round) for item in items])

    def instructions(self, run_id: str, round: int, *, verdict: str | None = "kept") -> list[Instruction]:
        query = select(instructions).where(instructions.c.run_id == run_id, instructions.c.round == round)
        if verdict is not None:
            query = query.where(instructions.c.verdict == verdict)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(instructions.c.seq)).mappings().all()
        return [
            Instruction(id=r["id"], run_id=r["run_id"], round=r["round"], text=r["text"], input=r["input"],
                        seed_ids=tuple(r["seed_ids"]), prompt_name=r["prompt_name"], verdict=r["verdict"],
                        reason=r["reason"])
            for r in rows
        ]

    def set_instruction_verdict(self, instruction_id: str, verdict: str, reason: str) -> None:
        """Change one instruction's verdict (a surplus one promoted to kept, or found a duplicate later)."""
        with self.engine.begin() as conn:
            result = conn.execute(update(instructions).where(instructions.c.id == instruction_id)
                                  .values(verdict=verdict, reason=reason))
            if result.rowcount == 0:
                raise KeyError(f"instruction {instruction_id!r} not found")

    def verdict_counts(self, run_id: str, round: int | None = None) -> dict[str, int]:
        return self._count_by(instructions, "verdict", run_id, round)

    # ---- samples ----

    def commit_sample(self, sample: Sample, *, status: str = "ok", error: str = "") -> bool:
        """Insert a sample; False when one already exists for its instruction (idempotent)."""
        with self.engine.begin() as conn:
            result = conn.execute(self._insert_sample, {
                "id": sample.id, "run_id": sample.run_id, "round": sample.round,
                "instruction_id": sample.instruction_id, "instruction": sample.instruction, "input": sample.input,
                "response": sample.response, "status": status, "error": error,
                "retrieved": [d.model_dump() for d in sample.retrieved], "model": sample.model,
                "prompt_name": sample.prompt_name, "prompt_hash": sample.prompt_hash, "created_at": sample.created_at,
            })
            if result.rowcount:
                self._event(conn, sample.run_id, "sample", {
                    "round": sample.round, "sample_id": sample.id, "status": status,
                })
            return bool(result.rowcount)

    def sampled_instruction_ids(self, run_id: str, round: int) -> set[str]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(samples.c.instruction_id).where(
                samples.c.run_id == run_id, samples.c.round == round))
            return {r[0] for r in rows}

    def sample_counts(self, run_id: str, round: int | None = None) -> dict[str, int]:
        return self._count_by(samples, "status", run_id, round)

    def _count_by(self, table: Table, column: str, run_id: str, round: int | None) -> dict[str, int]:
        """The run's rows of `table` (one round's, with `round`) counted by their value of `column`."""
        query = select(table.c[column], func.count()).where(table.c.run_id == run_id)
        if round is not None:
            query = query.where(table.c.round == round)
        with self.engine.connect() as conn:
            return {value: n for value, n in conn.execute(query.group_by(table.c[column]))}

    def gate_counts(self, run_id: str, round: int | None = None) -> dict[str, int]:
        """Gated responses by gate name, plus kept samples whose judge reply had no score."""
        counts = {status: n for status, n in self.sample_counts(run_id, round).items() if status not in ("ok", "failed")}
        query = select(func.count()).where(samples.c.run_id == run_id, samples.c.status == "ok",
                                           samples.c.error.startswith(f"{JUDGE_UNPARSED_KEPT}:"))
        if round is not None:
            query = query.where(samples.c.round == round)
        with self.engine.connect() as conn:
            kept_unparsed = int(conn.execute(query).scalar_one())
        if kept_unparsed:
            counts[JUDGE_UNPARSED_KEPT] = kept_unparsed
        return counts

    def samples_page(self, run_id: str, *, round: int | None = None, status: str | None = "ok",
                     after_seq: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        query = select(samples).where(samples.c.run_id == run_id, samples.c.seq > after_seq)
        if round is not None:
            query = query.where(samples.c.round == round)
        if status == "gated":  # any response gate
            query = query.where(samples.c.status.notin_(("ok", "failed")))
        elif status is not None:
            query = query.where(samples.c.status == status)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query.order_by(samples.c.seq).limit(limit)).mappings()]

    def get_sample(self, run_id: str, sample_id: str) -> dict[str, Any]:
        """One sample's row (as `samples_page` gives it); `RunNotFound` when the run has no such sample."""
        query = select(samples).where(samples.c.run_id == run_id, samples.c.id == sample_id)
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        if row is None:
            raise RunNotFound(f"sample {sample_id!r} not found in run {run_id!r}")
        return dict(row)

    def samples_since(self, run_id: str, round: int, since: datetime) -> tuple[int, datetime | None]:
        """How many samples of the round were committed after `since`, and when the first of them was."""
        query = (select(func.count(), func.min(samples.c.created_at))
                 .where(samples.c.run_id == run_id, samples.c.round == round, samples.c.created_at > since))
        with self.engine.connect() as conn:
            count, first = conn.execute(query).one()
        return int(count), first

    def iter_samples(self, run_id: str, round: int, *, status: str = "ok") -> Iterator[Sample]:
        after = 0
        while True:
            page = self.samples_page(run_id, round=round, status=status, after_seq=after, limit=500)
            if not page:
                return
            for row in page:
                yield sample_from_row(row)
            after = page[-1]["seq"]

    # ---- events ----

    def _event(self, conn: Any, run_id: str, kind: str, data: dict[str, Any]) -> None:
        conn.execute(self._insert_event, {"run_id": run_id, "ts": utc_now(), "type": kind, "data": jsonable(data)})

    def add_event(self, run_id: str, kind: str, data: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            self._event(conn, run_id, kind, data)

    def events_after(self, run_id: str, after_id: int = 0, limit: int = 500, *,
                     kind: str | None = None) -> list[dict[str, Any]]:
        """The run's events after `after_id`, oldest first; with `kind`, that type's only."""
        query = select(events).where(events.c.run_id == run_id, events.c.id > after_id)
        if kind is not None:
            query = query.where(events.c.type == kind)
        query = query.order_by(events.c.id).limit(limit)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    # ---- adapters ----

    def record_adapter(self, run_id: str, round: int, name: str, path: str, manifest: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            conn.execute(self._insert(adapters).values(
                name=name, run_id=run_id, round=round, path=path, manifest=jsonable(manifest),
                created_at=utc_now(),
            ).on_conflict_do_nothing())
            self._event(conn, run_id, "adapter", {"name": name, "round": round, "path": path})

    def get_adapter(self, name: str) -> AdapterRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(adapters).where(adapters.c.name == name)).mappings().first()
        return AdapterRecord.model_validate(dict(row)) if row else None

    def list_adapters(self, *, run_id: str | None = None) -> list[AdapterRecord]:
        """Oldest first; with `run_id`, that run's adapters only."""
        query = select(adapters).order_by(adapters.c.created_at)
        if run_id is not None:
            query = query.where(adapters.c.run_id == run_id)
        with self.engine.connect() as conn:
            return [AdapterRecord.model_validate(dict(r)) for r in conn.execute(query).mappings()]

    # ---- evaluations (requested over the API; orchestrator/execution/evaluation_jobs.py runs them) ----

    def create_evaluation(self, eval_id: str, *, run_id: str | None, request: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            conn.execute(evaluations.insert().values(
                id=eval_id, run_id=run_id, status="pending", request=request, results=[], report_path="",
                error="", created_at=utc_now()))

    def get_evaluation(self, eval_id: str) -> EvaluationRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(evaluations).where(evaluations.c.id == eval_id)).mappings().first()
        return EvaluationRecord.model_validate(dict(row)) if row else None

    def list_evaluations(self, *, limit: int | None = None, offset: int = 0) -> list[EvaluationRecord]:
        """Newest first; `limit`/`offset` select a page."""
        query = select(evaluations).order_by(evaluations.c.created_at.desc(), evaluations.c.id)
        if limit is not None:
            query = query.limit(limit).offset(offset)
        with self.engine.connect() as conn:
            return [EvaluationRecord.model_validate(dict(r)) for r in conn.execute(query).mappings()]

    def set_evaluation(self, eval_id: str, *, status: str, results: list[dict[str, Any]] | None = None,
                       report_path: str | None = None, error: str | None = None) -> None:
        values: dict[str, Any] = {"status": status}
        for key, value in (("results", results), ("report_path", report_path), ("error", error)):
            if value is not None:
                values[key] = value
        with self.engine.begin() as conn:
            conn.execute(update(evaluations).where(evaluations.c.id == eval_id).values(**values))

    def stats(self, run_id: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            prompt_rows = conn.execute(
                select(prompts.c.round, func.count(), func.coalesce(func.sum(prompts.c.completion_tokens), 0))
                .where(prompts.c.run_id == run_id).group_by(prompts.c.round)).all()
        rounds: dict[int, dict[str, Any]] = {}
        for rnd, n, tokens in prompt_rows:
            rounds.setdefault(rnd, {})["prompts"] = n
            rounds[rnd]["instruction_tokens"] = int(tokens)
        for rnd in {*rounds, *self._rounds_with_items(run_id)}:
            entry = rounds.setdefault(rnd, {"prompts": 0, "instruction_tokens": 0})
            entry["verdicts"] = self.verdict_counts(run_id, rnd)
            entry["samples"] = self.sample_counts(run_id, rnd)
            entry["gates"] = self.gate_counts(run_id, rnd)
        return {"rounds": {str(k): v for k, v in sorted(rounds.items())}}

    def _rounds_with_items(self, run_id: str) -> set[int]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(instructions.c.round).where(instructions.c.run_id == run_id).distinct())
            return {r[0] for r in rows}


def _instruction_row(item: Instruction, run_id: str, round: int) -> dict[str, Any]:
    return {"id": item.id, "run_id": run_id, "round": round, "text": item.text, "input": item.input,
            "seed_ids": list(item.seed_ids), "prompt_name": item.prompt_name, "verdict": item.verdict,
            "reason": item.reason}
