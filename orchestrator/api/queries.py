"""What the API shows of a run's progress, computed from the store's counts (rate window, ETA)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from orchestrator.pipeline.gates import JUDGE_UNPARSED_KEPT
from orchestrator.store import RunRecord, RunStore

RATE_WINDOW_S = 60.0  # samples/s is measured over this trailing window


def as_utc(value: datetime) -> datetime:
    """SQLite hands datetimes back naive; they were written in UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def sample_rate(store: RunStore, run_id: str, round: int, *, now: datetime | None = None) -> float | None:
    """Samples per second committed over the trailing window (None before two samples)."""
    now = now or datetime.now(UTC)
    count, first = store.samples_since(run_id, round, now - timedelta(seconds=RATE_WINDOW_S))
    if count < 2 or first is None:
        return None
    elapsed = max((now - as_utc(first)).total_seconds(), 1.0)
    return float(count) / elapsed


def run_progress(store: RunStore, run: RunRecord, *, active: bool) -> dict[str, Any]:
    """Counts per round and stage, filter reasons, queue depth, rate and ETA of the current round."""
    config = run.config or {}
    target = int(config.get("generation", {}).get("target_per_round", 0))
    later_target = int(config.get("rounds", {}).get("round2", {}).get("target", 0)) or target
    rounds_total = int(config.get("rounds", {}).get("count", 1))
    stats = store.stats(run.id)["rounds"]
    rounds: dict[str, dict[str, Any]] = {}
    reasons: dict[str, int] = {}
    gate_reasons: dict[str, int] = {}
    for rnd, entry in stats.items():
        verdicts: dict[str, int] = entry.get("verdicts", {})
        gates: dict[str, int] = entry.get("gates", {})
        ok = entry.get("samples", {}).get("ok", 0)
        failed = entry.get("samples", {}).get("failed", 0)
        gated = sum(n for gate, n in gates.items() if gate != JUDGE_UNPARSED_KEPT)
        kept = verdicts.get("kept", 0)
        rounds[rnd] = {
            "target": target if rnd == "1" else later_target, "prompts": entry.get("prompts", 0), "instructions_kept": kept,
            "instructions_total": sum(verdicts.values()), "samples_ok": ok, "samples_failed": failed,
            "samples_gated": gated, "queue_depth": max(kept - ok - failed - gated, 0), "verdicts": verdicts,
            "gates": gates,
        }
        for verdict, n in verdicts.items():
            if verdict != "kept":
                reasons[verdict] = reasons.get(verdict, 0) + n
        for gate, n in gates.items():
            gate_reasons[gate] = gate_reasons.get(gate, 0) + n
    current = rounds.get(str(run.round), {})
    rate = sample_rate(store, run.id, run.round) if active else None
    remaining = max(current.get("target", target) - current.get("samples_ok", 0), 0)
    eta = remaining / rate if (rate and run.status == "running" and remaining) else None
    return {
        "target_per_round": target, "rounds_total": rounds_total, "rounds": rounds,
        "filter_reasons": dict(sorted(reasons.items(), key=lambda kv: -kv[1])),
        "gate_reasons": dict(sorted(gate_reasons.items(), key=lambda kv: -kv[1])),
        "queue_depth": current.get("queue_depth", 0), "rate_per_s": rate, "eta_s": eta,
        "samples_ok": sum(r["samples_ok"] for r in rounds.values()),
    }
