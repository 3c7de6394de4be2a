"""`/healthz` (no token: for load balancers and compose) and `/metrics` (Prometheus, token-protected)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST

from orchestrator.api.deps import State, require_token
from orchestrator.api.protocol import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def healthz(state: State) -> Health:
    return Health(active_runs=len(state.runs.active()))


@router.get("/metrics", dependencies=[Depends(require_token)], response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
async def metrics(state: State) -> Response:
    body = await asyncio.to_thread(state.metrics.render)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
