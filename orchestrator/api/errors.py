"""The one place `SelfSpecError`s become JSON responses.

Bodies are `{"detail": ...}` like FastAPI's own; 422s carry a list of `{"loc", "msg", "type"}`
so a client can point at the offending field (`loc` is the field path).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from orchestrator.api.events import TooManyStreams
from orchestrator.store import RunIdConflict
from selfspec.errors import (
    AdapterConflict,
    AdapterInvalid,
    AdapterNotFound,
    BackendError,
    ConfigError,
    EvaluationNotFound,
    InputFileError,
    RequestFieldError,
    RunNotFound,
    RunStateConflict,
    SelfSpecError,
    TooManyRuns,
)

log = logging.getLogger(__name__)


RETRY_AFTER_S = 30  # what a 429 suggests: runs take minutes, so polling faster gains nothing

# Most specific first: the first matching class decides the status.
ERROR_STATUS: dict[type[SelfSpecError], int] = {
    RunNotFound: 404,
    EvaluationNotFound: 404,
    RunStateConflict: 409,
    RunIdConflict: 409,
    TooManyRuns: 429,
    TooManyStreams: 429,
    ConfigError: 422,
    InputFileError: 422,
    AdapterInvalid: 400,
    AdapterNotFound: 404,
    AdapterConflict: 409,
    BackendError: 502,
    SelfSpecError: 500,
}


def status_for(exc: BaseException) -> int:
    return next(code for cls, code in ERROR_STATUS.items() if isinstance(exc, cls))


async def _selfspec_error(request: Request, exc: Exception) -> JSONResponse:
    code = status_for(exc)
    if code >= 500:
        log.warning("%s %s failed: %s", request.method, request.url.path, exc)
    if isinstance(exc, RequestFieldError):
        return JSONResponse({"detail": exc.errors}, status_code=code)
    if code == 422:  # one shape for every 422, as documented (FastAPI's HTTPValidationError): a list
        detail = [{"loc": [], "msg": str(exc), "type": type(exc).__name__}]
        return JSONResponse({"detail": detail, "error": type(exc).__name__}, status_code=code)
    headers = {"Retry-After": str(RETRY_AFTER_S)} if code == 429 else None
    return JSONResponse({"detail": str(exc), "error": type(exc).__name__}, status_code=code, headers=headers)


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    # FastAPI's shape without "input": a rejected body is never echoed back.
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    detail = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors]
    return JSONResponse({"detail": detail}, status_code=422)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _invalid_request)
    for error in ERROR_STATUS:
        app.add_exception_handler(error, _selfspec_error)
