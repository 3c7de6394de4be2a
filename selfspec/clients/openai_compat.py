"""Typed async client for the OpenAI-compatible generator contract (vLLM or the embedded server).

Several base URLs are replicas: each request goes to the replica with the fewest outstanding
requests (a replica that just failed sits out a short cooldown), retries move to another replica,
and adapter loads are applied to every replica, naming the one that failed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from selfspec.adapters import validate_adapter_name
from selfspec.clients.pool import failure_name, pooled_transport, timed_out
from selfspec.errors import (
    AdapterConflict,
    AdapterNotFound,
    BackendError,
    BackendOverloaded,
    BackendResponseError,
    BackendTimeout,
    BackendUnavailable,
    ParseError,
)
from selfspec.types import AdapterRef, Completion, SamplingParams, TokenLogprobs
from selfspec.urls import redact_url

log = logging.getLogger(__name__)

RETRYABLE = (BackendUnavailable, BackendTimeout, BackendOverloaded)
COOLDOWN_S = 2.0  # a replica that failed is skipped this long while others are healthy


@dataclass
class _Replica:
    url: str
    client: httpx.AsyncClient
    outstanding: int = 0
    failed_at: float = field(default=-1e9)

    def cooling(self, now: float) -> bool:
        return now - self.failed_at < COOLDOWN_S

    @property
    def label(self) -> str:
        """The URL as errors, logs and /metrics show it: without a password."""
        return redact_url(self.url)


def translate_error(exc: httpx.HTTPError, replica: str) -> BackendError:
    """The one place httpx failures become selfspec errors."""
    if timed_out(exc):
        return BackendTimeout(f"timed out ({type(exc).__name__})", backend=replica)
    if isinstance(exc, httpx.TransportError):
        return BackendUnavailable(f"unreachable ({failure_name(exc)})", backend=replica)
    return BackendError(str(exc), backend=replica)


def error_for_status(response: httpx.Response, replica: str) -> BackendError:
    status, body = response.status_code, response.text
    if status in (429, 503):
        return BackendOverloaded(status, body, backend=replica)
    if status in (502, 504) or status >= 500:
        # 5xx is treated as transient: the replica may be restarting or overloaded.
        return BackendOverloaded(status, body, backend=replica)
    return BackendResponseError(status, body, backend=replica)


def _error_message(response: httpx.Response) -> str:
    try:
        payload = response.json()
    except ValueError:
        return response.text
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        return str(payload["error"].get("message", response.text))
    return response.text


class OpenAICompatGenerator:
    """Generator + AdapterRegistry over one or more OpenAI-compatible replicas."""

    def __init__(
        self,
        base_urls: list[str] | tuple[str, ...],
        *,
        timeout_s: float = 300.0,
        connect_timeout_s: float = 5.0,
        retries: int = 4,
        backoff_s: float = 0.5,
        in_flight: int = 16,
        api_key: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not base_urls:
            raise ValueError("at least one generator URL is required")
        timeout = httpx.Timeout(timeout_s, connect=connect_timeout_s)
        limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._replicas = [
            _Replica(url.rstrip("/"), httpx.AsyncClient(
                base_url=url.rstrip("/"), timeout=timeout, limits=limits, headers=headers,
                transport=transport or pooled_transport(in_flight),
            ))
            for url in base_urls
        ]
        self._retries, self._backoff = retries, backoff_s
        self._slots = asyncio.Semaphore(in_flight)
        self.retry_count = 0  # observable: total retries performed

    @property
    def urls(self) -> list[str]:
        return [r.url for r in self._replicas]

    def outstanding(self) -> dict[str, int]:
        """Calls in flight per replica, keyed by its redacted URL (a /metrics label)."""
        return {r.label: r.outstanding for r in self._replicas}

    async def __aenter__(self) -> OpenAICompatGenerator:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for replica in self._replicas:
            await replica.client.aclose()

    # ---- transport ----

    def _pick(self) -> _Replica:
        now = time.monotonic()
        healthy = [r for r in self._replicas if not r.cooling(now)] or self._replicas
        return min(healthy, key=lambda r: (r.outstanding, r.failed_at))

    async def _send_once(self, replica: _Replica, method: str, path: str, body: Any) -> httpx.Response:
        replica.outstanding += 1
        try:
            response = await replica.client.request(method, path, json=body)
        except httpx.HTTPError as exc:
            replica.failed_at = time.monotonic()
            raise translate_error(exc, replica.url) from exc
        finally:
            replica.outstanding -= 1
        if response.status_code >= 400:
            err = error_for_status(response, replica.url)
            if isinstance(err, RETRYABLE):
                replica.failed_at = time.monotonic()
            raise err
        return response

    async def _request(self, method: str, path: str, body: Any = None) -> httpx.Response:
        """Balanced request with bounded retries; each retry may land on another replica."""
        async with self._slots:
            retrying = AsyncRetrying(
                retry=retry_if_exception_type(RETRYABLE),
                stop=stop_after_attempt(self._retries + 1),
                wait=wait_exponential_jitter(initial=self._backoff, max=max(self._backoff * 16, 0.01)),
                reraise=True,
                before_sleep=self._note_retry,
            )
            async for attempt in retrying:
                with attempt:
                    return await self._send_once(self._pick(), method, path, body)
        raise AssertionError("unreachable")  # pragma: no cover

    def _note_retry(self, state: Any) -> None:
        self.retry_count += 1
        log.warning("generator call failed, retry %d: %s", state.attempt_number, state.outcome.exception())

    # ---- Generator protocol ----

    async def complete(self, prompt: str, *, model: str, params: SamplingParams) -> Completion:
        body = {"model": model, "prompt": prompt, **_sampling_fields(params)}
        payload = (await self._request("POST", "/v1/completions", body)).json()
        choice = payload["choices"][0]
        return _completion(choice["text"], choice, payload, model)

    async def chat(self, messages: list[dict[str, str]], *, model: str, params: SamplingParams) -> Completion:
        body = {"model": model, "messages": messages, **_sampling_fields(params)}
        payload = (await self._request("POST", "/v1/chat/completions", body)).json()
        choice = payload["choices"][0]
        return _completion(choice["message"]["content"] or "", choice, payload, model)

    async def prompt_logprobs(self, prompts: Sequence[str], *, model: str) -> list[TokenLogprobs]:
        """Each prompt's token log-probabilities, all prompts in one request (`echo`, `logprobs: 1`,
        `max_tokens: 0`: vLLM scores the prompts and generates nothing)."""
        body = {"model": model, "prompt": list(prompts), "echo": True, "logprobs": 1, "max_tokens": 0,
                "temperature": 0.0}
        payload = (await self._request("POST", "/v1/completions", body)).json()
        choices = sorted(payload["choices"], key=lambda c: c["index"])
        if len(choices) != len(prompts) or any(not c.get("logprobs") for c in choices):
            raise ParseError(f"expected log-probabilities for {len(prompts)} prompts, got {len(choices)} choices "
                             "(does the server honour echo + logprobs?)")
        return [TokenLogprobs(tokens=tuple(c["logprobs"]["tokens"]),
                              token_logprobs=tuple(c["logprobs"]["token_logprobs"])) for c in choices]

    async def choose(self, prompt: str, choices: Sequence[str], *, model: str, params: SamplingParams) -> Completion:
        """Constrained decoding: the answer is one of `choices` (vLLM's `structured_outputs.choice`)."""
        body = {"model": model, "prompt": prompt, **_sampling_fields(params),
                "structured_outputs": {"choice": list(choices)}}
        body.pop("stop", None)  # the constraint ends the answer; a stop string could only cut a choice short
        payload = (await self._request("POST", "/v1/completions", body)).json()
        choice = payload["choices"][0]
        return _completion(choice["text"], choice, payload, model)

    async def list_models(self) -> list[str]:
        payload = (await self._request("GET", "/v1/models")).json()
        return [card["id"] for card in payload["data"]]

    async def health(self) -> bool:
        """True when at least one replica answers /health."""
        for replica in self._replicas:
            try:
                response = await replica.client.get("/health", timeout=5.0)
            except httpx.HTTPError:
                continue
            if response.status_code == 200:
                return True
        return False

    # ---- AdapterRegistry ----

    async def load_adapter(self, name: str, path: str) -> None:
        """Load into every replica; a replica that already has it (400) is fine only if all agree."""
        validate_adapter_name(name)
        body = {"lora_name": name, "lora_path": path}
        for replica in self._replicas:
            await self._adapter_call(replica, "/v1/load_lora_adapter", body, name)

    async def unload_adapter(self, name: str) -> None:
        validate_adapter_name(name)
        for replica in self._replicas:
            await self._adapter_call(replica, "/v1/unload_lora_adapter", {"lora_name": name}, name)

    async def _adapter_call(self, replica: _Replica, path: str, body: dict[str, str], name: str) -> None:
        try:
            await self._send_once(replica, "POST", path, body)
        except BackendResponseError as err:
            message = f"replica {replica.label}: {_error_message_from(err)}"
            if err.status == 404:
                raise AdapterNotFound(message) from err
            if err.status == 400:
                raise AdapterConflict(message) from err
            raise BackendResponseError(err.status, message, backend=replica.url) from err
        except BackendError as err:
            raise type(err)(f"adapter {name!r}: {err}", backend=replica.url) from err

    async def adapters_per_replica(self) -> dict[str, list[str]]:
        result = {}
        for replica in self._replicas:
            response = await self._send_once(replica, "GET", "/v1/models", None)
            result[replica.label] = [c["id"] for c in response.json()["data"] if c.get("parent")]
        return result

    async def load(self, adapter: AdapterRef) -> None:
        await self.load_adapter(adapter.name, adapter.path)

    async def unload(self, name: str) -> None:
        await self.unload_adapter(name)

    async def list(self) -> list[str]:
        per_replica = await self.adapters_per_replica()
        names: set[str] = set()
        for adapters in per_replica.values():
            names.update(adapters)
        return sorted(names)


def _error_message_from(err: BackendResponseError) -> str:
    return _error_message(httpx.Response(err.status, text=err.body))


def _sampling_fields(params: SamplingParams) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "max_tokens": params.max_tokens, "temperature": params.temperature, "top_p": params.top_p,
    }
    if params.stop:
        fields["stop"] = list(params.stop)
    if params.seed is not None:
        fields["seed"] = params.seed
    return fields


def _completion(text: str, choice: dict[str, Any], payload: dict[str, Any], model: str) -> Completion:
    usage = payload.get("usage") or {}
    return Completion(
        text=text,
        finish_reason=choice.get("finish_reason") or "stop",
        prompt_tokens=int(usage.get("prompt_tokens", 0)),
        completion_tokens=int(usage.get("completion_tokens", 0)),
        model=payload.get("model", model),
    )
