"""The retriever service app: backend opened in the lifespan, selfspec errors mapped to HTTP once."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from selfspec.auth import BearerAuthMiddleware
from selfspec.errors import BackendError, BackendTimeout, BackendUnavailable, SelfSpecError
from selfspec.hosts import add_host_allowlist
from services.retriever.app.api import router
from services.retriever.app.backends import IndexNotFound, InvalidIndexName, build_backend
from services.retriever.app.config import RetrieverSettings

# Most specific first; Starlette picks the handler by the exception's class hierarchy.
ERROR_STATUS: dict[type[SelfSpecError], int] = {
    IndexNotFound: 404,
    InvalidIndexName: 422,
    BackendTimeout: 504,
    BackendUnavailable: 503,
    BackendError: 502,
    SelfSpecError: 500,
}


async def _selfspec_error(request: Request, exc: Exception) -> JSONResponse:
    code = next(code for cls, code in ERROR_STATUS.items() if isinstance(exc, cls))
    return JSONResponse({"detail": str(exc)}, status_code=code)


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    # FastAPI's shape without "input": a rejected 1 MB query must not be echoed back.
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    detail = [{"loc": e["loc"], "msg": e["msg"], "type": e["type"]} for e in errors]
    return JSONResponse({"detail": detail}, status_code=422)


def create_app(settings: RetrieverSettings | None = None, *, token: str | None = None,
               allowed_hosts: Sequence[str] | None = None) -> FastAPI:
    """The app; with `token` (`SELFSPEC_SERVICE_TOKEN`) every route but /health needs it as a bearer token.
    Only `allowed_hosts` (default `SELFSPEC_SERVICE_ALLOWED_HOSTS`: loopback names) are answered (selfspec.hosts)."""
    settings = settings or RetrieverSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.backend = build_backend(settings)
        try:
            yield
        finally:
            await app.state.backend.aclose()

    app = FastAPI(title="selfspec retriever", version="1", lifespan=lifespan)
    app.state.settings = settings
    app.include_router(router)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    for error in ERROR_STATUS:
        app.add_exception_handler(error, _selfspec_error)
    if token:
        app.add_middleware(BearerAuthMiddleware, tokens=[token])
    add_host_allowlist(app, allowed_hosts)
    return app
