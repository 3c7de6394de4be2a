"""The embedded generator's HTTP app: vLLM's OpenAI-compatible routes over `GenerationEngine`."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

from selfspec.errors import AdapterConflict, AdapterInvalid, AdapterNotFound, BackendOverloaded, SelfSpecError
from services.generator.engine import GenerationEngine, GenerationParams, GenerationResult
from services.generator.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    LoadLoRAAdapterRequest,
    ModelCard,
    ModelList,
    UnloadLoRAAdapterRequest,
    error_body,
    stop_list,
)


def _error(status: int, message: str, err_type: str, param: str | None = None) -> JSONResponse:
    return JSONResponse(error_body(message, err_type, status, param), status_code=status)


def _unknown_model(name: str) -> JSONResponse:
    return _error(404, f"The model `{name}` does not exist.", "NotFoundError", "model")


def _usage(results: list[GenerationResult]) -> dict[str, int]:
    prompt = results[0].prompt_tokens if results else 0
    completion = sum(r.completion_tokens for r in results)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def create_app(engine: GenerationEngine) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        engine.close()

    app = FastAPI(title="selfspec embedded generator (vLLM-compatible)", lifespan=lifespan)

    @app.exception_handler(RequestValidationError)
    async def _bad_body(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        param = ".".join(str(p) for p in first["loc"][1:]) or None
        return _error(400, f"{param}: {first['msg']}" if param else first["msg"], "BadRequestError", param)

    @app.exception_handler(BackendOverloaded)
    async def _overloaded(request: Request, exc: BackendOverloaded) -> JSONResponse:
        return _error(429, exc.body, "TooManyRequests")

    @app.exception_handler(AdapterNotFound)
    async def _not_found(request: Request, exc: AdapterNotFound) -> JSONResponse:
        return _error(404, str(exc), "NotFoundError")

    @app.exception_handler(AdapterConflict)
    async def _conflict(request: Request, exc: AdapterConflict) -> JSONResponse:
        return _error(400, str(exc), "InvalidUserInput")

    @app.exception_handler(AdapterInvalid)
    async def _invalid(request: Request, exc: AdapterInvalid) -> JSONResponse:
        return _error(400, str(exc), "InvalidUserInput")

    @app.exception_handler(SelfSpecError)
    async def _internal(request: Request, exc: SelfSpecError) -> JSONResponse:
        return _error(500, str(exc), "InternalServerError")

    @app.get("/health")
    async def health() -> PlainTextResponse:
        return PlainTextResponse("")

    @app.get("/v1/models")
    async def models() -> ModelList:
        cards = [ModelCard(id=engine.served_name, created=engine.created, root=engine.model_path)]
        cards += [
            ModelCard(id=name, created=engine.created, root=path, parent=engine.served_name)
            for name, path in engine.adapters.items()
        ]
        return ModelList(data=cards)

    @app.post("/v1/completions", response_model=None)
    async def completions(body: CompletionRequest, request: Request) -> Any:
        if not engine.knows_model(body.model):
            return _unknown_model(body.model)
        prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        if not prompts:
            return _error(400, "prompt: must not be empty", "BadRequestError", "prompt")
        params = GenerationParams(body.max_tokens, body.temperature, body.top_p, stop_list(body.stop), body.seed,
                                  body.ignore_eos)
        prompt_ids = [engine.tokenize_prompt(p) for p in prompts]
        if body.stream:
            return _stream(engine, body.model, prompt_ids, body.n, params, chat=False)
        results = await _until_disconnected(request, _run_all(engine, body.model, prompt_ids, body.n, params))
        choices = [
            {"index": i, "text": r.text, "logprobs": None, "finish_reason": r.finish_reason, "stop_reason": None}
            for i, r in enumerate(results)
        ]
        usage = {
            "prompt_tokens": sum(len(ids) for ids in prompt_ids),
            "completion_tokens": sum(r.completion_tokens for r in results),
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        return {
            "id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
            "model": body.model, "choices": choices, "usage": usage,
        }

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
        if not engine.knows_model(body.model):
            return _unknown_model(body.model)
        max_tokens = body.max_completion_tokens or body.max_tokens or 256
        params = GenerationParams(max_tokens, body.temperature, body.top_p, stop_list(body.stop), body.seed,
                                  body.ignore_eos)
        prompt_ids = [engine.tokenize_chat([m.model_dump() for m in body.messages])]
        if body.stream:
            return _stream(engine, body.model, prompt_ids, body.n, params, chat=True)
        results = await _until_disconnected(request, _run_all(engine, body.model, prompt_ids, body.n, params))
        choices = [
            {"index": i, "message": {"role": "assistant", "content": r.text}, "logprobs": None,
             "finish_reason": r.finish_reason, "stop_reason": None}
            for i, r in enumerate(results)
        ]
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": body.model, "choices": choices, "usage": _usage(results),
        }

    @app.post("/v1/load_lora_adapter")
    async def load_lora_adapter(body: LoadLoRAAdapterRequest) -> PlainTextResponse:
        if body.load_inplace and body.lora_name in engine.adapters:
            await engine.unload_adapter(body.lora_name)
        await engine.load_adapter(body.lora_name, body.lora_path)
        return PlainTextResponse(f"Success: LoRA adapter '{body.lora_name}' added successfully.")

    @app.post("/v1/unload_lora_adapter")
    async def unload_lora_adapter(body: UnloadLoRAAdapterRequest) -> PlainTextResponse:
        await engine.unload_adapter(body.lora_name)
        return PlainTextResponse(f"Success: LoRA adapter '{body.lora_name}' removed successfully.")

    return app


DISCONNECT_POLL_S = 1.0


async def _until_disconnected(request: Request, work: Awaitable[list[GenerationResult]]) -> list[GenerationResult]:
    """Await the generation, cancelling it when the client goes away (its rows stop being computed)."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=DISCONNECT_POLL_S)
            if done:
                return task.result()
            if await request.is_disconnected():
                raise ClientGone("client disconnected")
    finally:
        task.cancel()


class ClientGone(SelfSpecError):
    """The HTTP client left before its generation finished."""


async def _run_all(
    engine: GenerationEngine, model: str, prompt_ids: list[list[int]], n: int, params: GenerationParams
) -> list[GenerationResult]:
    calls = [engine.generate(ids, model=model, params=params) for ids in prompt_ids for _ in range(n)]
    return list(await asyncio.gather(*calls))


def _stream(
    engine: GenerationEngine,
    model: str,
    prompt_ids: list[list[int]],
    n: int,
    params: GenerationParams,
    *,
    chat: bool,
) -> StreamingResponse:
    request_id = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
    created = int(time.time())
    obj = "chat.completion.chunk" if chat else "text_completion"
    events: asyncio.Queue[tuple[int, str | None, GenerationResult | None]] = asyncio.Queue()

    def chunk(index: int, text: str | None, finish: str | None) -> str:
        if chat:
            delta: dict[str, Any] = {} if text is None else {"content": text}
            choice: dict[str, Any] = {"index": index, "delta": delta, "finish_reason": finish}
        else:
            choice = {"index": index, "text": text or "", "logprobs": None, "finish_reason": finish}
        payload = {"id": request_id, "object": obj, "created": created, "model": model, "choices": [choice]}
        return f"data: {json.dumps(payload)}\n\n"

    async def one(index: int, ids: list[int]) -> None:
        try:
            result = await engine.generate(
                ids, model=model, params=params, on_delta=lambda d: events.put_nowait((index, d, None))
            )
        except SelfSpecError:
            # Headers are already sent: end this choice with an error reason instead of hanging.
            result = GenerationResult("", "error", len(ids), 0)
        events.put_nowait((index, None, result))

    async def body() -> AsyncIterator[str]:
        jobs = [ids for ids in prompt_ids for _ in range(n)]
        tasks = [asyncio.create_task(one(i, ids)) for i, ids in enumerate(jobs)]
        if chat:
            for i in range(len(jobs)):
                yield chunk(i, None, None).replace('"delta": {}', '"delta": {"role": "assistant", "content": ""}')
        finished = 0
        try:
            while finished < len(jobs):
                index, delta, result = await events.get()
                if result is not None:
                    finished += 1
                    yield chunk(index, None if chat else "", result.finish_reason)
                elif delta:
                    yield chunk(index, delta, None)
            yield "data: [DONE]\n\n"
        finally:
            for task in tasks:
                task.cancel()

    return StreamingResponse(body(), media_type="text/event-stream")
