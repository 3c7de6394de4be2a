"""The embedded generator's HTTP app: vLLM's OpenAI-compatible routes over `GenerationEngine`."""

from __future__ import annotations

import asyncio
import functools
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

from selfspec.auth import BearerAuthMiddleware, vllm_guarded
from selfspec.body_limit import BodyLimitMiddleware
from selfspec.errors import (
    AdapterConflict,
    AdapterInvalid,
    AdapterNotFound,
    BackendOverloaded,
    ContextLengthExceeded,
    SelfSpecError,
)
from selfspec.hosts import add_host_allowlist
from services.generator.engine import GenerationEngine, GenerationParams, GenerationResult
from services.generator.protocol import (
    MAX_BODY_BYTES,
    MAX_LOGPROBS,
    MAX_ROWS,
    MAX_SCORED_ROWS,
    ChatCompletionRequest,
    CompletionRequest,
    LoadLoRAAdapterRequest,
    ModelCard,
    ModelList,
    UnloadLoRAAdapterRequest,
    completion_logprobs,
    error_body,
    prompt_logprobs_field,
    stop_list,
)

T = TypeVar("T")


def _error(status: int, message: str, err_type: str, param: str | None = None) -> JSONResponse:
    return JSONResponse(error_body(message, err_type, status, param), status_code=status)


def _unknown_model(name: str) -> JSONResponse:
    return _error(404, f"The model `{name}` does not exist.", "NotFoundError", "model")


def _bad_request(message: str, param: str | None = None) -> JSONResponse:
    return _error(400, message, "BadRequestError", param)


def _context_problem(prompt_ids: list[list[int]], max_model_len: int, *,
                     generates: bool) -> JSONResponse | None:
    """vLLM's 400 for a prompt over the context, or one that leaves no room for output when the request
    generates (scoring alone may fill the context). Checked for every prompt before any work starts."""
    for ids in prompt_ids:
        if len(ids) > max_model_len or (generates and len(ids) >= max_model_len):
            return _bad_request(str(ContextLengthExceeded(max_model_len, len(ids))), "input_tokens")
    return None


def _size_problem(prompts: int, n: int, *, scored: bool) -> JSONResponse | None:
    """A 400 for more rows than one request may ask for (each is a queued generation or a scoring row)."""
    rows, limit = prompts * n, MAX_SCORED_ROWS if scored else MAX_ROWS
    if rows <= limit:
        return None
    what = "completions with echo or logprobs" if scored else "completions"
    return _bad_request(f"prompt: at most {limit} {what} per request (prompts x n), got {rows}", "prompt")


def _completion_problem(body: CompletionRequest, prompt_ids: list[list[int]], max_model_len: int, *,
                        generates: bool) -> JSONResponse | None:
    """What vLLM would refuse (or what this server cannot do) about a completion request, as a 400."""
    problem = _context_problem(prompt_ids, max_model_len, generates=generates)
    if problem is not None:
        return problem
    for name in ("logprobs", "prompt_logprobs"):
        value = getattr(body, name)
        if value is not None and value > MAX_LOGPROBS:
            return _bad_request(f"Requested {name} of {value}, which is greater than max allowed: {MAX_LOGPROBS}",
                                name)
    if body.max_tokens == 0 and not body.echo:
        return _bad_request("max_tokens: must be at least 1 unless echo is true", "max_tokens")
    if body.stream and (body.echo or body.logprobs is not None or body.prompt_logprobs is not None):
        return _bad_request("echo and logprobs are not supported with stream=true by the embedded server", "stream")
    return None


# Threads tokenizing at once: a few, so one huge prompt does not hold up the others' (encoding only reads
# the fast tokenizer, which the engine thread already shares for decoding).
TOKENIZER_THREADS = 4


class _Tokenizer:
    """The engine's tokenizer off the event loop: tokenizing a large prompt (bodies reach megabytes) takes
    a while, and meanwhile the loop keeps answering other requests (/health, streams, other prompts)."""

    def __init__(self, engine: GenerationEngine) -> None:
        self._engine = engine
        self._pool = ThreadPoolExecutor(max_workers=TOKENIZER_THREADS, thread_name_prefix="tokenizer")

    async def prompts(self, prompts: Sequence[str], *, add_special_tokens: bool = True) -> list[list[int]]:
        def work() -> list[list[int]]:
            return [self._engine.tokenize_prompt(p, add_special_tokens=add_special_tokens) for p in prompts]
        return await asyncio.get_running_loop().run_in_executor(self._pool, work)

    async def chat(self, messages: list[dict[str, str]]) -> list[int]:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._engine.tokenize_chat, messages)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _usage(results: list[GenerationResult]) -> dict[str, int]:
    prompt = results[0].prompt_tokens if results else 0
    completion = sum(r.completion_tokens for r in results)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def create_app(engine: GenerationEngine, *, api_keys: Sequence[str] = (), max_body_bytes: int = MAX_BODY_BYTES,
               allowed_hosts: Sequence[str] | None = None) -> FastAPI:
    """The app; with `api_keys` (vLLM's `--api-key` / `VLLM_API_KEY`) every /v1 route needs one as a bearer
    token, answered like vLLM (401 `{"error": "Unauthorized"}`); /health stays open. Bodies over
    `max_body_bytes` are a 413; protocol.py bounds the lists of one request. Only `allowed_hosts` (default
    `SELFSPEC_SERVICE_ALLOWED_HOSTS`: loopback names) are answered, others 400 (selfspec.hosts)."""

    tokenizer = _Tokenizer(engine)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        tokenizer.close()
        engine.close()

    app = FastAPI(title="selfspec embedded generator (vLLM-compatible)", lifespan=lifespan)

    @app.exception_handler(RequestValidationError)
    async def _bad_body(request: Request, exc: RequestValidationError) -> JSONResponse:
        first: dict[str, Any] = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        param = ".".join(str(p) for p in first["loc"][1:]) or None
        return _error(400, f"{param}: {first['msg']}" if param else first["msg"], "BadRequestError", param)

    @app.exception_handler(BackendOverloaded)
    async def _overloaded(request: Request, exc: BackendOverloaded) -> JSONResponse:
        return _error(429, exc.body, "TooManyRequests")

    @app.exception_handler(ContextLengthExceeded)
    async def _too_long(request: Request, exc: ContextLengthExceeded) -> JSONResponse:
        return _bad_request(str(exc), "input_tokens")

    @app.exception_handler(AdapterNotFound)
    async def _not_found(request: Request, exc: AdapterNotFound) -> JSONResponse:
        return _error(404, str(exc), "NotFoundError")

    @app.exception_handler(AdapterConflict)
    @app.exception_handler(AdapterInvalid)
    async def _invalid(request: Request, exc: AdapterConflict | AdapterInvalid) -> JSONResponse:
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
        if not prompts or not all(prompts):
            return _bad_request("prompt: must not be empty", "prompt")
        scored = body.logprobs is not None or body.prompt_logprobs is not None
        too_many = _size_problem(len(prompts), body.n, scored=scored)
        if too_many is not None:
            return too_many
        try:
            constraint = body.choice_constraint()
        except ValueError as err:
            return _bad_request(str(err), "structured_outputs")
        prompt_ids = await tokenizer.prompts(prompts)
        problem = _completion_problem(body, prompt_ids, engine.max_model_len,
                                      generates=body.max_tokens > 0 or constraint is not None)
        if problem is None and constraint is not None and (body.echo or body.logprobs is not None or body.stream):
            problem = _bad_request("a choice constraint cannot be combined with echo, logprobs or stream here",
                                   "structured_outputs")
        if problem is not None:
            return problem
        params = GenerationParams(max(body.max_tokens, 1), body.temperature, body.top_p, stop_list(body.stop),
                                  body.seed, body.ignore_eos)
        if body.stream:
            return _stream(engine, body.model, prompt_ids, body.n, params, chat=False)
        if constraint is not None:
            choice_ids = await tokenizer.prompts(constraint, add_special_tokens=False)
            work = _choose_all(engine, body.model, prompt_ids, constraint, choice_ids, body.n, params)
        elif body.max_tokens == 0:
            work = _nothing(prompt_ids, body.n)
        else:
            work = _run_all(engine, body.model, prompt_ids, body.n, params)
        results = await _until_disconnected(request, work)
        per_choice = await _until_disconnected(request, _logprobs_per_choice(engine, body, prompt_ids, results))
        choices = []
        for i, r in enumerate(results):
            choice: dict[str, Any] = {"index": i, "text": prompts[i // body.n] + r.text if body.echo else r.text,
                                      "logprobs": None, "finish_reason": r.finish_reason, "stop_reason": None}
            choice.update(per_choice[i])
            choices.append(choice)
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
        if body.logprobs:
            return _bad_request("logprobs are not supported by the embedded server's chat endpoint; use "
                                "/v1/completions with echo and logprobs", "logprobs")
        try:
            constraint = body.choice_constraint()
        except ValueError as err:
            return _bad_request(str(err), "structured_outputs")
        prompt_ids = [await tokenizer.chat([m.model_dump() for m in body.messages])]
        problem = _context_problem(prompt_ids, engine.max_model_len, generates=True)
        if problem is not None:
            return problem
        if body.stream:
            if constraint is not None:
                return _bad_request("a choice constraint cannot be combined with stream here", "stream")
            return _stream(engine, body.model, prompt_ids, body.n, params, chat=True)
        if constraint is not None:
            choice_ids = await tokenizer.prompts(constraint, add_special_tokens=False)
            work = _choose_all(engine, body.model, prompt_ids, constraint, choice_ids, body.n, params)
        else:
            work = _run_all(engine, body.model, prompt_ids, body.n, params)
        results = await _until_disconnected(request, work)
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

    app.add_middleware(BodyLimitMiddleware, max_bytes=max_body_bytes,
                       error_body=lambda limit: error_body(f"request body exceeds {limit} bytes",
                                                           "RequestEntityTooLarge", 413))
    if api_keys:
        app.add_middleware(BearerAuthMiddleware, tokens=list(api_keys), guarded=vllm_guarded,
                           body={"error": "Unauthorized"})
    add_host_allowlist(app, allowed_hosts)
    return app


DISCONNECT_POLL_S = 1.0


async def _until_disconnected(request: Request, work: Awaitable[T]) -> T:
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


async def _nothing(prompt_ids: list[list[int]], n: int) -> list[GenerationResult]:
    """echo with max_tokens=0: the prompt only (vLLM answers finish_reason "length")."""
    return [GenerationResult("", "length", len(ids), 0) for ids in prompt_ids for _ in range(n)]


async def _choose_all(engine: GenerationEngine, model: str, prompt_ids: list[list[int]], choices: list[str],
                      choice_ids: list[list[int]], n: int, params: GenerationParams) -> list[GenerationResult]:
    """Constrained decoding to one of `choices` (tokenized as `choice_ids`); the output is the choice, then
    end-of-sequence."""

    async def one(ids: list[int], draw: int) -> GenerationResult:
        seed = None if params.seed is None else params.seed + draw
        index = await engine.choose(ids, choice_ids, model=model, temperature=params.temperature, seed=seed)
        return GenerationResult(choices[index], "stop", len(ids), len(choice_ids[index]) + 1, choice_ids[index])

    return list(await asyncio.gather(*(one(ids, draw) for ids in prompt_ids for draw in range(n))))


async def _logprobs_per_choice(engine: GenerationEngine, body: CompletionRequest, prompt_ids: list[list[int]],
                               results: list[GenerationResult]) -> list[dict[str, Any]]:
    """`logprobs` (and vLLM's `prompt_logprobs`) of every choice, from one scoring call over all of them.

    A choice's row is its prompt followed by its completion, so one forward pass gives both the
    prompt's log-probabilities (echo) and the completion's; vLLM's values are those of the raw model
    distribution (before temperature or top_p), which is what the scoring pass computes."""
    want_prompt = body.prompt_logprobs is not None or (body.echo and body.logprobs is not None)
    if body.logprobs is None and body.prompt_logprobs is None:
        return [{} for _ in results]
    generated = body.logprobs is not None and body.max_tokens > 0
    rows = [prompt_ids[i // body.n] + (r.token_ids if generated else []) for i, r in enumerate(results)]
    prompt_k = body.prompt_logprobs if body.prompt_logprobs is not None else (body.logprobs or 0)
    top_k = max(prompt_k, body.logprobs or 0) if want_prompt else (body.logprobs or 0)
    scored = await engine.prompt_logprobs(rows, model=body.model, top_k=top_k)
    decode = functools.lru_cache(maxsize=None)(_token_text(engine))
    out = []
    for i, score in enumerate(scored):
        cut = len(prompt_ids[i // body.n])
        extra: dict[str, Any] = {}
        if body.logprobs is not None:
            start = 0 if body.echo else cut
            extra["logprobs"] = completion_logprobs(score.token_ids[start:], score.logprobs[start:], score.top[start:],
                                                    k=body.logprobs, decode=decode)
        if body.prompt_logprobs is not None:
            extra["prompt_logprobs"] = prompt_logprobs_field(
                score.token_ids[:cut], score.logprobs[:cut], score.ranks[:cut], score.top[:cut],
                k=body.prompt_logprobs, decode=decode)
        out.append(extra)
    return out


def _token_text(engine: GenerationEngine) -> Callable[[int], str]:
    def decode(token: int) -> str:
        return str(engine.tokenizer.decode([token]))
    return decode


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
