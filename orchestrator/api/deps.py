"""FastAPI dependencies: what the lifespan opened (as `Annotated` aliases) and the bearer-token check.

They are `async def` although they do no I/O: FastAPI runs plain `def` dependencies in its thread
pool, a thread hop per dependency per request.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Query, Request, status

from orchestrator.api.cache import TTLCache
from orchestrator.api.metrics import ApiMetrics
from orchestrator.api.settings import ApiSettings
from orchestrator.api.tickets import StreamTickets
from orchestrator.execution.evaluation_jobs import EvaluationJobs
from orchestrator.execution.loop_thread import LoopThread
from orchestrator.execution.run_manager import RunManager
from orchestrator.execution.services import Services
from orchestrator.store import RunStore
from selfspec.clients.openai_compat import OpenAICompatGenerator
from selfspec.settings import RunConfig


@dataclass
class ApiState:
    """Everything the routes use; built in the lifespan, handed out per request.

    Service clients belong to the loop thread: call them through `loop_thread.call(...)`.
    """

    config: RunConfig
    settings: ApiSettings
    loop_thread: LoopThread
    metrics: ApiMetrics
    services: Services
    runs: RunManager
    evaluations: EvaluationJobs
    progress: TTLCache[dict[str, Any]]


async def get_state(request: Request) -> ApiState:
    state: ApiState | None = getattr(request.app.state, "api", None)
    if state is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the API is starting or stopping")
    return state


async def get_store(state: Annotated[ApiState, Depends(get_state)]) -> RunStore:
    return state.services.store


async def get_runs(state: Annotated[ApiState, Depends(get_state)]) -> RunManager:
    return state.runs


async def get_evaluations(state: Annotated[ApiState, Depends(get_state)]) -> EvaluationJobs:
    return state.evaluations


async def get_config(state: Annotated[ApiState, Depends(get_state)]) -> RunConfig:
    return state.config


async def get_loop_thread(state: Annotated[ApiState, Depends(get_state)]) -> LoopThread:
    return state.loop_thread


async def get_generator(state: Annotated[ApiState, Depends(get_state)]) -> OpenAICompatGenerator:
    return state.services.generator


State = Annotated[ApiState, Depends(get_state)]
Store = Annotated[RunStore, Depends(get_store)]
Runs = Annotated[RunManager, Depends(get_runs)]
Evaluations = Annotated[EvaluationJobs, Depends(get_evaluations)]
Config = Annotated[RunConfig, Depends(get_config)]
LoopThreadDep = Annotated[LoopThread, Depends(get_loop_thread)]
GeneratorClient = Annotated[OpenAICompatGenerator, Depends(get_generator)]


# ---- auth ----

def _unauthorized() -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, "missing or wrong bearer token",
                         headers={"WWW-Authenticate": "Bearer"})


def token_matches(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _expected(request: Request) -> str | None:
    settings: ApiSettings = request.app.state.settings
    return settings.token_value


async def require_token(request: Request) -> None:
    """Every route but /healthz: `Authorization: Bearer <SELFSPEC_API_TOKEN>` when a token is set."""
    expected = _expected(request)
    if expected is not None and not token_matches(_bearer(request), expected):
        raise _unauthorized()


async def require_token_or_ticket(
    request: Request,
    ticket: Annotated[str | None, Query(description="a ticket from POST /v1/runs/{run_id}/events/ticket, for "
                                                      "EventSource (which cannot send headers); never the token "
                                                      "itself, which would land in access logs")] = None,
) -> None:
    expected = _expected(request)
    if expected is None or token_matches(_bearer(request), expected):
        return
    tickets: StreamTickets = request.app.state.tickets
    if not tickets.admits(ticket, request.path_params.get("run_id", "")):
        raise _unauthorized()
