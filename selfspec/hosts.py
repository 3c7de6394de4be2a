"""The Host allowlist of every selfspec HTTP service: a guard against DNS rebinding.

A page on another site can make the user's browser resolve its own name to 127.0.0.1 and then talk to a
service on loopback as if same-origin; the request still carries the attacker's name in `Host`. So each
service answers only the names it is meant to be reached by (others get 400):

    SELFSPEC_API_ALLOWED_HOSTS        the orchestrator API (orchestrator/api/settings.py)
    SELFSPEC_SERVICE_ALLOWED_HOSTS    the embedded generator, the retriever and the trainer services

Loopback names by default; comma-separated or a JSON array; '*.example.com' wildcards, '*' = any. In
compose each service adds its own service name (docker-compose.yml).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from starlette.applications import Starlette
from starlette.middleware.trustedhost import TrustedHostMiddleware

from selfspec.settings import split_list_setting

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")


class ServiceHosts(BaseSettings):
    """The Host names the services answer, read once from `SELFSPEC_SERVICE_ALLOWED_HOSTS`."""

    model_config = SettingsConfigDict(env_prefix="SELFSPEC_SERVICE_", extra="ignore", frozen=True)

    allowed_hosts: Annotated[tuple[str, ...], NoDecode] = Field(
        LOOPBACK_HOSTS, description="Host header values served; add the names clients use beyond loopback")

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return split_list_setting(value)


def add_host_allowlist(app: Starlette, hosts: Sequence[str] | None = None) -> None:
    """Answer only requests whose Host is one of `hosts` (default: `SELFSPEC_SERVICE_ALLOWED_HOSTS`); add
    it last, so it runs before anything else (auth, body limits) looks at the request."""
    allowed = list(ServiceHosts().allowed_hosts if hosts is None else hosts)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed, www_redirect=False)
