"""Bearer tokens between selfspec's services: the one check, the bind rule, and the ASGI guard.

    VLLM_API_KEY / --api-key     the generator (embedded or vLLM): required on /v1/*, as vLLM does
    SELFSPEC_SERVICE_TOKEN       the retriever and trainer services: required on every route but /health
    SELFSPEC_GENERATOR_API_KEY   what our clients send the generator (default: SELFSPEC_SERVICE_TOKEN)

A service started without a token serves loopback only: `check_bind` refuses any other interface,
as `selfspec serve orchestrator` does for `SELFSPEC_API_TOKEN`.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import secrets
from collections.abc import Callable, Sequence

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

# Env vars holding secrets: child processes that do not call a service must not inherit them.
SECRET_ENV = ("SELFSPEC_API_TOKEN", "SELFSPEC_SERVICE_TOKEN", "SELFSPEC_GENERATOR_API_KEY", "VLLM_API_KEY",
              "SELFSPEC_GATES__JUDGE_API_KEY")
# vLLM's guarded prefixes (vllm/entrypoints/serve/middleware/authenticate.py): /health stays open.
VLLM_GUARDED_PREFIXES = ("/v1", "/v2", "/inference", "/cohere")


class ServiceTokens(BaseSettings):
    """The tokens our clients send to the services, read once from the environment."""

    model_config = SettingsConfigDict(env_prefix="SELFSPEC_", extra="ignore", frozen=True)

    service_token: SecretStr | None = None
    generator_api_key: SecretStr | None = None

    @property
    def service(self) -> str | None:
        return _value(self.service_token)

    @property
    def generator(self) -> str | None:
        return _value(self.generator_api_key) or self.service


def _value(secret: SecretStr | None) -> str | None:
    return secret.get_secret_value() or None if secret is not None else None


def bearer(headers: Headers) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    scheme, _, value = headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def token_matches(given: str | None, expected: Sequence[str]) -> bool:
    """Constant-time comparison against each accepted token (hashed first, so lengths leak nothing)."""
    if given is None:
        return False
    digest = hashlib.sha256(given.encode("utf-8")).digest()
    matched = False
    for token in expected:
        matched |= secrets.compare_digest(digest, hashlib.sha256(token.encode("utf-8")).digest())
    return matched


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind_refusal(host: str, *, has_token: bool, token_env: str) -> str | None:
    """Why serving on `host` is refused (no token and not loopback), or None when it is fine."""
    if has_token or is_loopback(host):
        return None
    return f"refusing to serve on {host!r} without a token: set {token_env}, or bind 127.0.0.1"


def everything_but_health(path: str) -> bool:
    return path != "/health"


def vllm_guarded(path: str) -> bool:
    return path.startswith(VLLM_GUARDED_PREFIXES)


class BearerAuthMiddleware:
    """Pure ASGI: requests to guarded paths need `Authorization: Bearer <one of tokens>`, else 401.

    OPTIONS requests pass (CORS preflights carry no credentials), as in vLLM's middleware."""

    def __init__(self, app: ASGIApp, *, tokens: Sequence[str], guarded: Callable[[str], bool] = everything_but_health,
                 body: dict[str, object] | None = None) -> None:
        if not tokens or not all(tokens):
            raise ValueError("BearerAuthMiddleware needs at least one non-empty token")
        self.app, self.tokens, self.guarded = app, tuple(tokens), guarded
        self.body = json.dumps(body or {"detail": "missing or wrong bearer token"}).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope.get("method") == "OPTIONS":
            await self.app(scope, receive, send)
            return
        path = scope["path"].removeprefix(scope.get("root_path", ""))
        if self.guarded(path) and not token_matches(bearer(Headers(scope=scope)), self.tokens):
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            await send({"type": "http.response.start", "status": 401, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(self.body)).encode()),
                (b"www-authenticate", b"Bearer")]})
            await send({"type": "http.response.body", "body": self.body})
            return
        await self.app(scope, receive, send)
