"""`/v1/runs`: create, list, inspect, page samples, stream events, cancel, resume, download datasets."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from sse_starlette import EventSourceResponse

from orchestrator.api.datasets import iter_dataset
from orchestrator.api.deps import Config, Runs, State, Store, require_token, require_token_or_ticket
from orchestrator.api.events import (
    HeldStreamResponse,
    StreamSlots,
    bounded_stream,
    parse_last_event_id,
    run_events,
)
from orchestrator.api.pages import DEFAULT_LIMIT, Limit, Offset, link_next
from orchestrator.api.protocol import (
    DatasetFormat,
    Passage,
    RunAction,
    RunCreated,
    RunDetail,
    RunSummary,
    SamplePage,
    SamplePassages,
    SampleStatus,
    StreamTicket,
)
from orchestrator.api.queries import run_progress
from orchestrator.api.run_configs import build_run_config, public_config
from orchestrator.api.tickets import StreamTickets
from orchestrator.pipeline.grounding import retrieval_query
from orchestrator.store import RunRecord

router = APIRouter(prefix="/v1/runs", tags=["runs"], dependencies=[Depends(require_token)])
stream_router = APIRouter(prefix="/v1/runs", tags=["runs"], dependencies=[Depends(require_token_or_ticket)])

MAX_ROUND = 64  # runs have at most 2 rounds; beyond this a round number is a 422, not a database error
MAX_ID = 2**63 - 1  # the store's integer keys (SQLite INTEGER): a larger cursor could not be compared

RUN_CONFIG_EXAMPLE = {"run": {"name": "api-demo"}, "generation": {"target_per_round": 20},
                      "rounds": {"count": 1}, "training": {"enabled": False}}


def _summary(run: RunRecord, active: bool) -> dict[str, Any]:
    return {**run.model_dump(exclude={"config"}), "active": active}


@router.post("", status_code=status.HTTP_201_CREATED, response_model=RunCreated)
async def create_run(
    runs: Runs,
    config: Config,
    response: Response,
    body: Annotated[dict[str, Any], Body(description="a run config: the TOML's sections as JSON; omitted keys "
                                         "come from the server's config",
                                         openapi_examples={"small": {"value": RUN_CONFIG_EXAMPLE}})],
    idempotency_key: Annotated[str | None, Header(
        min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$",
        description="makes the POST safe to retry: the same key and body replay the first response (the run "
                    "it created; header Idempotent-Replayed: true); the same key with another body is a 422")] = None,
    dry_run: Annotated[bool, Query(description="validate the config, probe the generator and retriever once and "
                                               "answer 200 with requests, tokens, seconds (and cost) per stage; "
                                               "creates nothing (orchestrator/execution/estimate.py)")] = False,
) -> Any:
    run_config = build_run_config(body, config)
    if dry_run:  # issue 19: the estimate only, from one probe of the server's services
        from fastapi.responses import JSONResponse

        from orchestrator.execution.estimate import dry_run_estimate

        estimate = await dry_run_estimate(run_config, generator=runs.services.generator,
                                          retriever=runs.services.retriever)
        return JSONResponse(estimate.to_dict())
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    run_id, created = await runs.create(run_config, idempotency_key=idempotency_key, request_sha256=digest)
    response.headers["Location"] = f"/v1/runs/{run_id}"
    if not created:  # the first response again, marked as a replay
        response.headers["Idempotent-Replayed"] = "true"
    return RunCreated(id=run_id, status="pending", url=f"/v1/runs/{run_id}")


@router.get("", response_model=list[RunSummary])
def list_runs(store: Store, runs: Runs, request: Request, response: Response,
              status_: Annotated[str | None, Query(alias="status", max_length=32)] = None,
              limit: Limit = DEFAULT_LIMIT, offset: Offset = 0) -> Any:
    """Newest first, one page (`Link: rel="next"` when more follow)."""
    rows = store.list_runs(status=status_, limit=limit + 1, offset=offset)
    link_next(request, response, limit=limit, offset=offset, more=len(rows) > limit)
    return [_summary(run, runs.is_active(run.id)) for run in rows[:limit]]


@router.get("/{run_id}", response_model=RunDetail)
def get_run(run_id: str, state: State) -> Any:
    store, runs = state.services.store, state.runs

    run = store.get_run(run_id)  # one row by key: cheap; the progress aggregates are what the cache saves
    active = runs.is_active(run_id)

    def compute() -> dict[str, Any]:
        return {**_summary(run, active), **run_progress(store, run, active=active),
                "config": public_config(run.config)}

    # A status or phase change is a new key: a client refreshing on the final event never sees the old status.
    return state.progress.get(f"{run_id}|{run.status}|{run.phase}|{active}", compute)


@router.get("/{run_id}/samples", response_model=SamplePage)
def list_samples(
    run_id: str,
    store: Store,
    round: Annotated[int | None, Query(ge=1, le=MAX_ROUND)] = None,
    status_: Annotated[SampleStatus, Query(alias="status")] = "ok",
    cursor: Annotated[int, Query(ge=0, le=MAX_ID, description="samples.seq of the last item seen; 0 = from the "
                                 "start")] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Any:
    rows = store.samples_page(run_id, round=round, status=None if status_ == "all" else status_,
                              after_seq=cursor, limit=limit)
    if not rows:
        store.get_run(run_id)  # an empty page of an unknown run is a 404
    return {"items": rows, "next_cursor": rows[-1]["seq"] if rows else cursor, "has_more": len(rows) == limit}


@router.get("/{run_id}/samples/{sample_id}/passages", response_model=SamplePassages)
async def sample_passages(run_id: str, sample_id: str, state: State) -> SamplePassages:
    """The documents a sample was grounded on, with their text from the run's retriever.

    The sample keeps (doc id, score); the text is looked up by repeating its retrieval query. A
    document the index no longer returns is listed with `found: false`.
    """
    store = state.services.store
    run = await asyncio.to_thread(store.get_run, run_id)
    sample = await asyncio.to_thread(store.get_sample, run_id, sample_id)
    refs = sample["retrieved"]
    texts: dict[str, Any] = {}
    retriever = state.services.retriever
    if refs and retriever is not None:
        k = max(len(refs), int((run.config or {}).get("retrieval", {}).get("k", len(refs))))
        query = retrieval_query(sample["instruction"], sample["input"])
        hits = await state.loop_thread.call(retriever.search(query, k))
        texts = {hit.id: hit for hit in hits}
    passages = [
        Passage(doc_id=ref["doc_id"], score=ref["score"], title=texts[ref["doc_id"]].title,
                text=texts[ref["doc_id"]].text, found=True) if ref["doc_id"] in texts
        else Passage(doc_id=ref["doc_id"], score=ref["score"], found=False)
        for ref in refs
    ]
    return SamplePassages(sample_id=sample_id, passages=passages)


@stream_router.get("/{run_id}/events", response_class=EventSourceResponse,
                   responses={200: {"content": {"text/event-stream": {}},
                                    "description": "SSE: id = events.id; resumable with Last-Event-ID"}})
async def stream_events(
    run_id: str,
    state: State,
    request: Request,
    last_event_id: Annotated[str | None, Header()] = None,
    after: Annotated[int | None, Query(ge=0, le=MAX_ID, description="start after this event id (if no "
                                       "Last-Event-ID)")] = None,
) -> EventSourceResponse:
    """The run's events; a client holds at most `sse_max_streams_per_client` streams (429 beyond), each
    closed after `sse_max_lifetime_s` (EventSource reconnects from its Last-Event-ID)."""
    store, settings = state.services.store, state.settings
    await asyncio.to_thread(store.get_run, run_id)
    start = parse_last_event_id(last_event_id) if last_event_id is not None else (after or 0)
    slots: StreamSlots = request.app.state.stream_slots
    client = request.client.host if request.client else "unknown"
    events = run_events(store, run_id, after=start, poll_s=settings.sse_poll_s, is_active=state.runs.is_active)
    stream = bounded_stream(events, lifetime_s=settings.sse_max_lifetime_s)
    slots.take(client)  # given back by the response when the stream ends
    return HeldStreamResponse(stream, release=lambda: slots.give_back(client), ping=settings.sse_ping_s,
                              headers={"Cache-Control": "no-store"})


@router.post("/{run_id}/events/ticket", status_code=status.HTTP_201_CREATED, response_model=StreamTicket)
async def issue_stream_ticket(run_id: str, store: Store, request: Request) -> StreamTicket:
    """A short-lived ticket that opens this run's event stream (`?ticket=`) for EventSource, which cannot
    send the bearer header; the token itself never goes in a URL."""
    await asyncio.to_thread(store.get_run, run_id)
    tickets: StreamTickets = request.app.state.tickets
    return StreamTicket(ticket=tickets.issue(run_id), expires_in=tickets.ttl_s)


@router.post("/{run_id}/cancel", response_model=RunAction)
async def cancel_run(run_id: str, state: State) -> Any:
    runs, store = state.runs, state.services.store
    await runs.cancel(run_id)
    run = await asyncio.to_thread(store.get_run, run_id)
    return {"id": run_id, "status": run.status, "phase": run.phase, "active": runs.is_active(run_id)}


@router.post("/{run_id}/resume", response_model=RunAction)
async def resume_run(run_id: str, state: State) -> Any:
    run = await state.runs.resume(run_id)
    return {"id": run_id, "status": run.status, "phase": run.phase, "active": True}


@router.get("/{run_id}/dataset", response_class=StreamingResponse,
            responses={200: {"content": {"application/x-ndjson": {}}, "description": "the round's dataset"}})
def download_dataset(
    run_id: str,
    store: Store,
    round: Annotated[int, Query(ge=1, le=MAX_ROUND)] = 1,
    format: Annotated[DatasetFormat, Query(description="sft (SFTRecord), alpaca or messages")] = "sft",
) -> StreamingResponse:
    store.get_run(run_id)
    return StreamingResponse(
        iter_dataset(store, run_id, round, format), media_type="application/x-ndjson",
        headers={"Content-Disposition": f'attachment; filename="{run_id}-round{round}-{format}.jsonl"'},
    )
