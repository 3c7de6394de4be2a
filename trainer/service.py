"""The trainer service for compose: `POST /jobs`, `GET /jobs/{id}`, `GET /health` over a job runner.

The request body is exactly `TrainConfig`'s fields (generated from the dataclass, unknown keys rejected).
Relative paths are taken relative to the service's dirs: `dataset` to the data dir; `output_dir`,
`init_adapter` and `checkpoint_dir` to the adapters dir. Absolute ones must lie inside them; `output_dir`
is one adapter folder directly under the adapters dir, and `overwrite` of an existing one is refused (409). The dataset
is validated (file:line errors) before the job is accepted, so a bad dataset never queues a job.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, create_model

from selfspec.adapters import validate_adapter_name, validate_adapter_path
from selfspec.auth import BearerAuthMiddleware, ServiceTokens, bind_refusal
from selfspec.errors import AdapterConflict, AdapterError, ConfigError, InputFileError, SelfSpecError
from selfspec.hosts import add_host_allowlist
from selfspec.settings import REPO_ROOT
from trainer.config import TrainConfig, field_help
from trainer.data import load_sft_records
from trainer.jobs import JobNotFound, LocalSubprocessRunner, TrainingJobRunner
from trainer.protocol import JobCreated, JobStatus

log = logging.getLogger(__name__)

DEFAULT_PORT = 8300


# The status of each error, answered as {"detail": message}; an error not listed takes its nearest listed
# base class's (an AdapterConflict is an AdapterError, but 409).
ERROR_STATUS: dict[type[SelfSpecError], int] = {
    JobNotFound: status.HTTP_404_NOT_FOUND,
    AdapterConflict: status.HTTP_409_CONFLICT,
    ConfigError: status.HTTP_422_UNPROCESSABLE_CONTENT,
    InputFileError: status.HTTP_422_UNPROCESSABLE_CONTENT,
    AdapterError: status.HTTP_422_UNPROCESSABLE_CONTENT,
    SelfSpecError: status.HTTP_500_INTERNAL_SERVER_ERROR,
}


async def _selfspec_error(request: Request, exc: Exception) -> JSONResponse:
    code = next(ERROR_STATUS[cls] for cls in type(exc).__mro__ if cls in ERROR_STATUS)
    return JSONResponse({"detail": str(exc)}, status_code=code)


def _request_model() -> type[BaseModel]:
    fields: dict[str, Any] = {
        name: (hint, Field(default, description=help_text))
        for name, (hint, default, help_text) in field_help().items()
    }
    return create_model("TrainJobRequest", __config__=ConfigDict(extra="forbid"), **fields)


TrainJobRequest = _request_model()


def _inside(path: Path, root: Path, *, field: str) -> Path:
    root = root.resolve()
    resolved = (path if path.is_absolute() else root / path).resolve()
    if resolved != root and root not in resolved.parents:
        raise ConfigError(f"{field}: {str(path)!r} lies outside {str(root)!r}")
    return resolved


def _strict_child(path: Path, root: Path, *, field: str) -> Path:
    """`path` inside `root` and not `root` itself: a job owns one folder, never the whole tree."""
    resolved = _inside(path, root, field=field)
    if resolved == root.resolve():
        raise ConfigError(f"{field}: {str(path)!r} is the root {str(root.resolve())!r} itself; name a folder in it")
    return resolved


def confine_config(body: dict[str, Any], *, data_dir: Path, adapters_dir: Path) -> TrainConfig:
    """A `TrainConfig` whose paths are resolved inside the service's dirs, or a `SelfSpecError`.

    The output dir is one adapter folder directly under the adapters dir, named like an adapter. `overwrite`
    is refused while that folder exists: a job replaces nothing it did not create (its own output appears
    only when it succeeds), and the job is queued without it, so an adapter that appears meanwhile is a
    conflict at training time too."""
    data = dict(body)
    data["dataset"] = _inside(Path(data["dataset"]), data_dir, field="dataset")
    output = validate_adapter_path(data["output_dir"], adapters_dir)
    if output.parent != adapters_dir.resolve():
        raise ConfigError(f"output_dir: {str(data['output_dir'])!r} must be a folder directly under the adapters "
                          f"dir {str(adapters_dir.resolve())!r}")
    validate_adapter_name(output.name)
    data["output_dir"] = output
    if data.get("init_adapter") is not None:
        data["init_adapter"] = validate_adapter_path(data["init_adapter"], adapters_dir)
    if data.get("checkpoint_dir") is not None:
        data["checkpoint_dir"] = _strict_child(Path(data["checkpoint_dir"]), adapters_dir, field="checkpoint_dir")
    if data.get("overwrite") and output.exists():
        raise AdapterConflict(f"overwrite: {output} exists and was not created by this job; the trainer service "
                              "replaces no adapter (choose a new adapter name)")
    data["overwrite"] = False
    return TrainConfig.from_dict(data)


def create_app(*, data_dir: Path, adapters_dir: Path, runner: TrainingJobRunner | None = None,
               token: str | None = None, allowed_hosts: Sequence[str] | None = None) -> FastAPI:
    """The app; `runner` defaults to a `LocalSubprocessRunner` keeping jobs under `<data_dir>/trainer-jobs`.
    With `token` (`SELFSPEC_SERVICE_TOKEN`) every route but /health needs it as a bearer token. Only
    `allowed_hosts` (default `SELFSPEC_SERVICE_ALLOWED_HOSTS`: loopback names) are answered (selfspec.hosts)."""
    owned = runner is None
    jobs: TrainingJobRunner = runner or LocalSubprocessRunner(Path(data_dir) / "trainer-jobs")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The service owns its jobs dir: trainings it was running when it stopped (or died) go on.
        if owned and isinstance(jobs, LocalSubprocessRunner):
            jobs.resume_interrupted()
        yield
        if owned and isinstance(jobs, LocalSubprocessRunner):
            await jobs.aclose()

    app = FastAPI(title="selfspec trainer", lifespan=lifespan)

    for error in ERROR_STATUS:
        app.add_exception_handler(error, _selfspec_error)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/jobs", status_code=status.HTTP_202_ACCEPTED)
    async def create_job(body: TrainJobRequest) -> JobCreated:  # type: ignore[valid-type]
        payload: dict[str, Any] = body.model_dump()  # type: ignore[attr-defined]
        config = confine_config(payload, data_dir=data_dir, adapters_dir=adapters_dir)
        await asyncio.to_thread(load_sft_records, config.dataset)
        job_id = await jobs.submit(config)
        return JobCreated(id=job_id, state=(await jobs.status(job_id)).state)

    @app.get("/jobs/{job_id}")
    async def get_job(job_id: str) -> JobStatus:
        return await jobs.status(job_id)

    if token:
        app.add_middleware(BearerAuthMiddleware, tokens=[token])
    add_host_allowlist(app, allowed_hosts)
    return app


def serve_trainer_command(
    host: Annotated[str, typer.Option(help="Interface to bind; non-loopback needs SELFSPEC_SERVICE_TOKEN.")] = (
        "127.0.0.1"),
    port: Annotated[int, typer.Option(help="Port to listen on.")] = DEFAULT_PORT,
    data_dir: Annotated[Path, typer.Option(help="Datasets must lie here; jobs are kept here.")] = (
        REPO_ROOT / ".selfspec"
    ),
    adapters_dir: Annotated[Path, typer.Option(help="Adapters are written only here.")] = (
        REPO_ROOT / ".selfspec" / "adapters"
    ),
) -> None:
    """Serve training jobs over HTTP (POST /jobs, GET /jobs/{id}, GET /health)."""
    import uvicorn

    token = ServiceTokens().service
    refusal = bind_refusal(host, has_token=token is not None, token_env="SELFSPEC_SERVICE_TOKEN")
    if refusal is not None:
        raise typer.BadParameter(refusal, param_hint="--host")
    data_dir.mkdir(parents=True, exist_ok=True)
    adapters_dir.mkdir(parents=True, exist_ok=True)
    log.info("trainer service on %s:%d (data %s, adapters %s; token %s)", host, port, data_dir, adapters_dir,
             "required" if token else "off")
    uvicorn.run(create_app(data_dir=data_dir, adapters_dir=adapters_dir, token=token), host=host, port=port)
