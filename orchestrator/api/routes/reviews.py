"""Review of a run's rounds: browse items, reject/restore/edit samples, read the log, approve the run.

The dashboard's review panel calls exactly these. Who acted is the authenticated caller: the API
token's fingerprint (never the token), or `local` when the API runs without one (loopback only).
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request

from orchestrator.api.deps import State, Store, require_token
from orchestrator.api.protocol import ReviewEdit, ReviewEvent, ReviewNote, ReviewPage, ReviewState, RunAction
from orchestrator.api.routes.runs import MAX_ID, MAX_ROUND
from orchestrator.api.settings import ApiSettings
from orchestrator.execution.review import (
    Action,
    ReviewConflict,
    ReviewFilter,
    review_items,
    review_log,
    review_sample,
)
from orchestrator.store import RunStore
from selfspec.errors import RunStateConflict

router = APIRouter(prefix="/v1/runs", tags=["review"], dependencies=[Depends(require_token)])

FILTER_NAME = r"^[a-z_]{1,32}$"  # verdict and gate names


async def reviewer(request: Request) -> str:
    """Who makes a review change (after `require_token` let the request in)."""
    settings: ApiSettings = request.app.state.settings
    token = settings.token_value
    if token is None:
        return "local"
    return "token:" + hashlib.sha256(token.encode("utf-8")).hexdigest()[:12]


Reviewer = Annotated[str, Depends(reviewer)]


@router.get("/{run_id}/review/items", response_model=ReviewPage)
def list_review_items(
    run_id: str,
    store: Store,
    round: Annotated[int | None, Query(ge=1, le=MAX_ROUND)] = None,
    verdict: Annotated[str | None, Query(pattern=FILTER_NAME, description="instruction verdict: kept, "
                                         "near_duplicate, exact_duplicate, too_short, ... (filtering.py)")] = None,
    status: Annotated[str | None, Query(pattern=FILTER_NAME, description="sample status: ok, failed, a response "
                                        "gate (copied, truncated, repetitive, ...; gates.py), or gated (any)")] = None,
    review: Annotated[ReviewFilter | None, Query(description="the reviewer's doing, or whether the item is in "
                                                 "the dataset (included/excluded)")] = None,
    q: Annotated[str, Query(max_length=200, description="case-insensitive text search: instruction, input, "
                            "response (generated or edited), drop reason")] = "",
    cursor: Annotated[int, Query(ge=0, le=MAX_ID, description="next_cursor of the previous page; 0 = from the "
                                 "start")] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Any:
    """The run's instructions in order, each with its verdict and drop reason, its sample (response,
    retrieved doc ids and scores, model, gate status and reason) and its review state."""
    rows = review_items(store, run_id, round=round, verdict=verdict, status=status, review=review, q=q.strip(),
                        after_seq=cursor, limit=limit)
    if not rows:
        store.get_run(run_id)  # an empty page of an unknown run is a 404
    return {"items": rows, "next_cursor": rows[-1]["seq"] if rows else cursor, "has_more": len(rows) == limit}


@router.get("/{run_id}/review/log", response_model=list[ReviewEvent])
def list_review_events(
    run_id: str,
    store: Store,
    after: Annotated[int, Query(ge=0, le=MAX_ID, description="events after this event id")] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 200,
) -> Any:
    """Every review change and approval, oldest first (they are in GET /v1/runs/{id}/events too, as `review`)."""
    rows = review_log(store, run_id, after_id=after, limit=limit)
    if not rows:
        store.get_run(run_id)
    return [{"id": row["id"], "ts": row["ts"], "action": row["data"].get("action", ""),
             "by": row["data"].get("by", ""), "round": row["data"].get("round"),
             "sample_id": row["data"].get("sample_id"), "note": row["data"].get("note", ""),
             "before": row["data"].get("before"), "after": row["data"].get("after")} for row in rows]


def _act(store: RunStore, run_id: str, sample_id: str, action: Action, by: str, *, note: str = "",
         response: str | None = None) -> dict[str, Any]:
    try:
        state, changed = review_sample(store, run_id, sample_id, action=action, by=by, response=response, note=note)
    except ReviewConflict as err:
        raise RunStateConflict(str(err)) from err
    return {**state, "changed": changed}


@router.post("/{run_id}/samples/{sample_id}/reject", response_model=ReviewState)
def reject_sample(run_id: str, sample_id: str, store: Store, by: Reviewer,
                  body: Annotated[ReviewNote | None, Body()] = None) -> Any:
    """Leave the sample out of its round's dataset, whatever its gate said."""
    return _act(store, run_id, sample_id, "reject", by, note=body.note if body else "")


@router.post("/{run_id}/samples/{sample_id}/restore", response_model=ReviewState)
def restore_sample(run_id: str, sample_id: str, store: Store, by: Reviewer,
                   body: Annotated[ReviewNote | None, Body()] = None) -> Any:
    """Undo a reject; a gated sample goes into the dataset despite its gate (409 if it has no response)."""
    return _act(store, run_id, sample_id, "restore", by, note=body.note if body else "")


@router.post("/{run_id}/samples/{sample_id}/edit", response_model=ReviewState)
def edit_sample(run_id: str, sample_id: str, store: Store, by: Reviewer, body: ReviewEdit) -> Any:
    """The dataset gets this response instead of the generated one (kept in the store as provenance)."""
    return _act(store, run_id, sample_id, "edit", by, note=body.note, response=body.response)


@router.post("/{run_id}/approve", response_model=RunAction)
async def approve_run(run_id: str, state: State, by: Reviewer,
                      body: Annotated[ReviewNote | None, Body()] = None) -> Any:
    """A run `awaiting_review` goes on: its round is exported as reviewed, then trained. A completed run
    gets its rounds' dataset files exported again as reviewed (its adapters are not retrained). 409 otherwise."""
    run = await state.runs.approve(run_id, by=by, note=body.note if body else "")
    return {"id": run_id, "status": run.status, "phase": run.phase, "active": state.runs.is_active(run_id)}
