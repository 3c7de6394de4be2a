"""Typed async client for the OpenAI-compatible generator contract (vLLM or the embedded server).

Several base URLs are replicas (`ServiceClient` balances calls and retries across them); adapter
loads are applied to every replica, naming the one that failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from selfspec.adapters import validate_adapter_name
from selfspec.clients.base import ClientOptions, Endpoint, ServiceClient
from selfspec.errors import (
    AdapterConflict,
    AdapterNotFound,
    BackendError,
    BackendResponseError,
    ParseError,
)
from selfspec.types import AdapterRef, Completion, SamplingParams, TokenLogprobs


class OpenAICompatGenerator(ServiceClient):
    """Generator + AdapterRegistry over one or more OpenAI-compatible replicas."""

    service = "generator"
    defaults = ClientOptions(timeout_s=300.0, in_flight=16)

    # ---- Generator protocol ----

    async def complete(self, prompt: str, *, model: str, params: SamplingParams) -> Completion:
        body = {"model": model, "prompt": prompt, **_sampling_fields(params)}
        payload = (await self._request("POST", "/v1/completions", json=body)).json()
        choice = payload["choices"][0]
        return _completion(choice["text"], choice, payload, model)

    async def chat(self, messages: list[dict[str, str]], *, model: str, params: SamplingParams) -> Completion:
        body = {"model": model, "messages": messages, **_sampling_fields(params)}
        payload = (await self._request("POST", "/v1/chat/completions", json=body)).json()
        choice = payload["choices"][0]
        return _completion(choice["message"]["content"] or "", choice, payload, model)

    async def prompt_logprobs(self, prompts: Sequence[str], *, model: str) -> list[TokenLogprobs]:
        """Each prompt's token log-probabilities, all prompts in one request (`echo`, `logprobs: 1`,
        `max_tokens: 0`: vLLM scores the prompts and generates nothing)."""
        body = {"model": model, "prompt": list(prompts), "echo": True, "logprobs": 1, "max_tokens": 0,
                "temperature": 0.0}
        payload = (await self._request("POST", "/v1/completions", json=body)).json()
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
        payload = (await self._request("POST", "/v1/completions", json=body)).json()
        choice = payload["choices"][0]
        return _completion(choice["text"], choice, payload, model)

    async def list_models(self) -> list[str]:
        payload = (await self._request("GET", "/v1/models")).json()
        return [card["id"] for card in payload["data"]]

    # ---- AdapterRegistry ----

    async def load_adapter(self, name: str, path: str) -> None:
        """Load into every replica; a replica that already has it (400) is fine only if all agree."""
        validate_adapter_name(name)
        body = {"lora_name": name, "lora_path": path}
        for replica in self._endpoints:
            await self._adapter_call(replica, "/v1/load_lora_adapter", body, name)

    async def unload_adapter(self, name: str) -> None:
        validate_adapter_name(name)
        for replica in self._endpoints:
            await self._adapter_call(replica, "/v1/unload_lora_adapter", {"lora_name": name}, name)

    async def _adapter_call(self, replica: Endpoint, path: str, body: dict[str, str], name: str) -> None:
        try:
            await self._send(replica, "POST", path, json=body)
        except BackendResponseError as err:
            message = f"replica {replica.label}: {err.body}"
            if err.status == 404:
                raise AdapterNotFound(message) from err
            if err.status == 400:
                raise AdapterConflict(message) from err
            raise type(err)(err.status, message, backend=replica.url) from err
        except BackendError as err:
            raise type(err)(f"adapter {name!r}: {err}", backend=replica.url) from err

    async def adapters_per_replica(self) -> dict[str, list[str]]:
        result = {}
        for replica in self._endpoints:
            response = await self._send(replica, "GET", "/v1/models")
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
