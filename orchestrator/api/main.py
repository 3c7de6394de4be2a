"""The orchestrator API app: services opened in the lifespan, run tasks owned here, errors mapped once.

    app = create_app(load_config(Path("configs/demo.toml")))   # served by `selfspec serve orchestrator`

On startup the lifespan starts the loop thread (a thread with its own event loop for the tasks that own
runs, each in a worker process by default, and evaluations; see orchestrator/execution/loop_thread.py and
run_manager.py), opens the services there (store, generator, retriever, trainer), then resumes every run
(and evaluation) the store shows as still in progress, e.g. after the previous process was killed.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from orchestrator.api.cache import TTLCache
from orchestrator.api.deps import ApiState
from orchestrator.api.errors import install_error_handlers
from orchestrator.api.events import StreamSlots
from orchestrator.api.metrics import ApiMetrics
from orchestrator.api.middleware import (
    CrossSiteGuardMiddleware,
    RequestMetricsMiddleware,
    TokenFirstMiddleware,
)
from orchestrator.api.routes import adapters, evaluations, health, reviews, runs, ui
from orchestrator.api.settings import ApiSettings
from orchestrator.api.tickets import StreamTickets
from orchestrator.execution.data_dir_lock import DataDirLock
from orchestrator.execution.evaluation_jobs import EvaluationJobs
from orchestrator.execution.loop_thread import LoopThread
from orchestrator.execution.run_manager import RunManager
from orchestrator.execution.services import Services, open_services
from selfspec.body_limit import BodyLimitMiddleware
from selfspec.hosts import add_host_allowlist
from selfspec.processes import lower_thread_priority
from selfspec.settings import RunConfig
from selfspec.urls import redact_url

log = logging.getLogger(__name__)

ServicesFactory = Callable[[RunConfig], AbstractAsyncContextManager[Services]]


def create_app(config: RunConfig, *, services_factory: ServicesFactory | None = None,
               settings: ApiSettings | None = None) -> FastAPI:
    settings = settings or ApiSettings()
    open_all = services_factory or open_services
    metrics = ApiMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The HTTP loop's thread pool serves the blocking store reads of `def` routes.
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.worker_threads
        lock = DataDirLock(config.data_dir).acquire()
        loop_thread = LoopThread(own_thread=settings.loop_thread).start()
        # After the loop thread exists: it (and the run workers it starts) keep their priority. Without
        # one, the HTTP loop starts the run workers, and they would inherit a lowered priority.
        if settings.loop_thread and lower_thread_priority(settings.read_nice):
            log.info("HTTP threads run %d nice steps below the runs", settings.read_nice)
        try:
            services = await loop_thread.hold(open_all(config))
            try:
                # A custom services factory (a test's fake trainer, say) cannot be rebuilt in a worker process.
                isolate = settings.run_workers == "process" and services_factory is None
                run_manager = RunManager(services, server=config, loop_thread=loop_thread,
                                         grace_s=settings.shutdown_grace_s, isolate=isolate,
                                         max_active=settings.max_active_runs)
                jobs = EvaluationJobs(store=services.store, generator=services.generator, config=config,
                                      loop_thread=loop_thread)
                collector = metrics.watch_runs(services.store, run_manager.active, run_manager.counters)
                app.state.api = ApiState(config, settings, loop_thread, metrics, services, run_manager, jobs,
                                         TTLCache(settings.progress_ttl_s))
                resumed = await run_manager.resume_interrupted()
                await jobs.resume_interrupted()
                log.info("orchestrator API ready (store %s; %d runs resumed)", redact_url(config.database_url),
                         len(resumed))
                try:
                    yield
                finally:
                    app.state.api = None
                    await jobs.aclose()
                    await run_manager.aclose()
                    metrics.unwatch(collector)
            finally:
                await loop_thread.release()
        finally:
            loop_thread.stop()
            lock.release()

    app = FastAPI(title="selfspec orchestrator", version="1", lifespan=lifespan,
                  description="Runs, samples, datasets, adapters and evaluations of Self-Specialization.")
    app.state.settings = settings
    app.state.tickets = StreamTickets(ttl_s=settings.sse_ticket_ttl_s)
    app.state.stream_slots = StreamSlots(per_client=settings.sse_max_streams_per_client)
    app.state.api = None
    install_error_handlers(app)
    for router in (runs.router, runs.stream_router, reviews.router, adapters.router, evaluations.router,
                   health.router):
        app.include_router(router)
    app.add_api_route("/", ui.home_redirect, include_in_schema=False)
    app.mount("/ui", ui.dashboard(), name="ui")
    app.add_middleware(TokenFirstMiddleware, token=settings.token_value)  # inside CORS: its 401 is readable
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type", "Last-Event-ID"])
    app.add_middleware(CrossSiteGuardMiddleware, allowed_origins=settings.cors_origins)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics)
    add_host_allowlist(app, settings.allowed_hosts)
    return app
