"""API settings: the bearer token and the HTTP hardening knobs, read once from `SELFSPEC_API_*` env vars."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from selfspec.hosts import LOOPBACK_HOSTS
from selfspec.settings import split_list_setting


class ApiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SELFSPEC_API_", extra="ignore", frozen=True)

    token: SecretStr | None = Field(None, description="bearer token required on every route but /healthz")
    max_body_bytes: int = Field(1_000_000, ge=1024, description="larger request bodies get 413")
    cors_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="allowed CORS origins (comma-separated or a JSON array); empty = CORS off. Other sites' "
        "pages cannot change state (POST with their Origin is a 403)")
    allowed_hosts: Annotated[tuple[str, ...], NoDecode] = Field(
        LOOPBACK_HOSTS, description="Host header values served (comma-separated or a JSON array; '*.example.com' "
        "wildcards, '*' = any); others get 400, so a DNS-rebound name cannot reach a loopback API. Add the "
        "names clients use when serving beyond loopback")
    sse_poll_s: float = Field(0.25, gt=0, description="how often an SSE stream looks for new events")
    sse_ping_s: float = Field(15.0, gt=0, description="keep-alive comment interval on SSE streams")
    sse_max_streams_per_client: int = Field(8, ge=1, le=1024, description="event streams one client address may "
                                            "hold open at once; one more is a 429")
    sse_max_lifetime_s: float = Field(3600.0, gt=0, le=86_400, description="an event stream is closed after "
                                      "this long; EventSource reconnects with Last-Event-ID (and its credential is "
                                      "checked again)")
    sse_ticket_ttl_s: float = Field(60.0, gt=0, le=3600, description="lifetime of an event-stream ticket "
                                    "(POST /v1/runs/{id}/events/ticket), the URL credential of EventSource")
    progress_ttl_s: float = Field(0.5, ge=0, description="GET /v1/runs/{id} is recomputed at most this often "
                                  "(0 = every request); actions through this API refresh it at once")
    worker_threads: int = Field(2, ge=1, description="threads serving blocking store reads. SQLite reads are "
                                "CPU-bound, so more threads only fight over the GIL (bench_api: 2 threads served "
                                "~1.5x the reads of 6 at half the p99); raise it for a networked database")
    run_workers: Literal["process", "inline"] = Field(
        "process", description="`process`: each run in a worker process of its own, so request handlers never "
        "slow it down (bench_api); `inline`: runs share the API process (one process to debug)")
    loop_thread: bool = Field(
        True, description="run evaluations, the runs' owning tasks and the service clients on a thread of their "
        "own (with its own event loop), apart from the HTTP loop; false: all on the HTTP loop "
        "(bench/bench_loop_thread.py: the same with CPU to spare; with the cores busy the thread halves p99 "
        "read latency and keeps runs 1.4x faster)")
    read_nice: int = Field(
        5, ge=0, le=19, description="nice steps the threads serving HTTP run below the runs' worker processes "
        "(Linux): when CPU is short, the run keeps its pace and reads wait; 0 = equal priority")
    max_active_runs: int = Field(8, ge=1, le=1024, description="runs driven at once; creating or resuming one "
                                 "more is a 429 (runs interrupted by a restart are all resumed)")
    shutdown_grace_s: float = Field(10.0, ge=0, description="wait this long for runs to stop on shutdown")

    @field_validator("cors_origins", "allowed_hosts", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return split_list_setting(value)

    @property
    def token_value(self) -> str | None:
        if self.token is None or not self.token.get_secret_value():
            return None
        return self.token.get_secret_value()
