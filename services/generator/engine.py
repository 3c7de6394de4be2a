"""Embedded generation engine: dynamic batching over transformers + peft, LoRA adapters by name.

One worker thread owns the model. Requests from the event loop land in a bounded queue; the worker
groups compatible ones (same sampling parameters) into one batched, left-padded `generate` call.
Rows may use different adapters in the same batch (peft's `adapter_names`). Each row stops on its
own `max_tokens` (as in vLLM, at most what its own prompt leaves of the context) or stop strings; rows
share a batch only when the longest prompt plus the largest budget fits the context, so a long prompt
never shortens another request's completion. Adapter loads/unloads run on the same thread between batches, so
they are serialised and never race a forward pass.

Scoring jobs (prompt log-probabilities for `echo` + `logprobs`, constrained choice) are batched
with each other, never with generation: the prefix a job's rows share (an eval item's prompt) runs
once, keeping its KV cache, then only the rows' own tokens (the options) run over that cache; the
output layer is applied in chunks (scoring.py), so no [batch, seq, vocab] tensor is ever built.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
)

from selfspec.adapters import validate_adapter_name, validate_adapter_path
from selfspec.errors import (
    AdapterConflict,
    AdapterNotFound,
    BackendOverloaded,
    ContextLengthExceeded,
    SelfSpecError,
)
from services.generator import scoring
from services.generator.scoring import Head, PromptLogprobs

log = logging.getLogger(__name__)

BASE_ADAPTER = "__base__"  # peft's name for "no adapter" in a mixed batch
BATCH_WINDOW_S = 0.01  # wait this long for more requests before starting a batch
SCORE_MAX_ROWS = 64  # rows of one scoring forward pass (an item's options are several rows)
SCORE_MAX_TOKENS = 8192  # rows x longest row of one scoring forward pass: bounds activation memory


@dataclass
class GenerationParams:
    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    ignore_eos: bool = False  # vLLM's benchmarking knob: always produce max_tokens

    def batch_key(self) -> tuple[Any, ...]:
        # Temperature and top_p are applied per row (_PerRowSampling), so greedy and sampled requests
        # share batches; an explicit seed or ignore_eos applies to a whole generate call.
        return (self.seed, self.ignore_eos)


@dataclass
class GenerationResult:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    token_ids: list[int] = field(default_factory=list)  # the completion's tokens (up to a stop string)


@dataclass
class _Job:
    prompt_ids: list[int]
    adapter: str | None
    params: GenerationParams
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[GenerationResult]
    on_delta: Callable[[str], None] | None = None
    streamed: int = 0  # characters already streamed


@dataclass
class _ScoreJob:
    """Rows scored in one forward pass; `work` turns their hidden states into the answer."""

    rows: list[list[int]]
    adapter: str | None
    work: Callable[[torch.Tensor, Head], Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]


@dataclass
class _AdminOp:
    fn: Callable[[], Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]


def _cut_at_stop(text: str, stops: tuple[str, ...]) -> tuple[str, bool]:
    cut = len(text)
    for stop in stops:
        pos = text.find(stop)
        if pos != -1:
            cut = min(cut, pos)
    return text[:cut], cut < len(text)


# Nucleus sampling looks at the best candidates only: sorting Gemma 3's 262k-token vocabulary for every
# row at every step was 18% of a sampled batch's time. The candidates' probabilities are still
# normalised over the whole vocabulary, so the nucleus is exact whenever it fits in the candidates
# (for top_p <= 0.98 it takes a few dozen tokens on these models); when it does not, the step sorts all.
TOP_CANDIDATES = 1024


class _PerRowSampling(LogitsProcessor):
    """Each row's own temperature and top_p; greedy rows keep only their argmax (so sampling = argmax)."""

    def __init__(self, jobs: list[_Job]) -> None:
        temps = [job.params.temperature for job in jobs]
        self.greedy = torch.tensor([t <= 0 for t in temps])
        self.temperature = torch.tensor([t if t > 0 else 1.0 for t in temps], dtype=torch.float32)[:, None]
        self.top_p = torch.tensor([job.params.top_p for job in jobs], dtype=torch.float32)[:, None]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        scores = scores / self.temperature.to(scores.dtype)
        ordered, indices = torch.topk(scores, min(TOP_CANDIDATES, scores.shape[-1]), dim=-1)  # sorted
        probs = torch.exp(ordered - torch.logsumexp(scores, dim=-1, keepdim=True))
        if bool(((probs.sum(dim=-1, keepdim=True) < self.top_p) & ~self.greedy[:, None]).any()):
            ordered, indices = torch.sort(scores, descending=True, dim=-1)
            probs = torch.softmax(ordered, dim=-1)
        drop = (probs.cumsum(dim=-1) - probs) >= self.top_p  # keep the token that crosses top_p
        drop[self.greedy, 1:] = True  # greedy: only the best token survives
        masked = ordered.masked_fill(drop, float("-inf"))
        return torch.full_like(scores, float("-inf")).scatter(-1, indices, masked)


class _RowStopper(StoppingCriteria):
    """Marks each row done on its own max_tokens / stop strings; also streams deltas."""

    def __init__(self, jobs: list[_Job], prompt_len: int, tokenizer: Any) -> None:
        self.jobs, self.prompt_len, self.tokenizer = jobs, prompt_len, tokenizer
        self.done = [False] * len(jobs)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        flags = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        for row, job in enumerate(self.jobs):
            if self.done[row] or job.future.cancelled():
                # A caller that went away (timeout, disconnect) frees its row for the rest of the batch.
                self.done[row] = True
                flags[row] = True
                continue
            new_ids = input_ids[row, self.prompt_len :]
            produced = int(new_ids.shape[0])
            need_text = bool(job.params.stop) or job.on_delta is not None
            text = self.tokenizer.decode(new_ids, skip_special_tokens=True) if need_text else ""
            text, stopped = _cut_at_stop(text, job.params.stop)
            if job.on_delta is not None and len(text) > job.streamed:
                # Hold back a partial stop string and incomplete UTF-8 until it resolves.
                hold = max((len(s) for s in job.params.stop), default=1) - 1
                safe = len(text) if stopped else max(job.streamed, len(text) - hold)
                if text[:safe].endswith("\ufffd"):
                    safe -= 1
                if safe > job.streamed:
                    delta = text[job.streamed : safe]
                    job.streamed = safe
                    job.loop.call_soon_threadsafe(job.on_delta, delta)
            if stopped or produced >= job.params.max_tokens:
                self.done[row] = True
                flags[row] = True
        return flags


class GenerationEngine:
    """Owns the model; thread-safe entry points for the async server."""

    def __init__(
        self,
        model_path: Path,
        *,
        served_name: str,
        adapters_dir: Path,
        max_batch: int = 16,
        max_queue: int = 512,
        threads: int | None = None,
        max_model_len: int = 4096,
    ) -> None:
        if threads:
            torch.set_num_threads(threads)
        self.served_name = served_name
        self.model_path = str(model_path)
        self.adapters_dir = Path(adapters_dir).resolve()
        self.max_batch, self.max_queue, self.max_model_len = max_batch, max_queue, max_model_len
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        # transformers' PreTrainedModel.eval() has no annotations
        self.model: Any = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()  # type: ignore[no-untyped-call]
        self.adapters: dict[str, str] = {}  # name -> path
        self.created = int(time.time())
        self._queue: queue.Queue[_Job | _ScoreJob | _AdminOp | None] = queue.Queue()
        self._pending = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._worker, name="generation-engine", daemon=True)
        self._thread.start()
        self.batches = 0

    # ---- public API (called from the event loop) ----

    def tokenize_prompt(self, prompt: str, *, add_special_tokens: bool = True) -> list[int]:
        """Like vLLM: a completion prompt gets the tokenizer's special tokens (Gemma's <bos>, without
        which a Gemma model degrades badly); a rendered chat template already carries them."""
        return list(self.tokenizer(prompt, add_special_tokens=add_special_tokens)["input_ids"])

    def tokenize_chat(self, messages: list[dict[str, str]]) -> list[int]:
        # tokenize=False: the rendered text (transformers types the result as every return kind)
        text = cast(str, self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
        return self.tokenize_prompt(text, add_special_tokens=False)

    def knows_model(self, name: str) -> bool:
        return name == self.served_name or name in self.adapters

    async def generate(
        self,
        prompt_ids: list[int],
        *,
        model: str,
        params: GenerationParams,
        on_delta: Callable[[str], None] | None = None,
    ) -> GenerationResult:
        """Complete one prompt. Like vLLM, a prompt that leaves no room in the context is refused
        (ContextLengthExceeded) and `max_tokens` is cut to what this prompt leaves (finish "length")."""
        room = self.max_model_len - len(prompt_ids)
        if room < 1:
            raise ContextLengthExceeded(self.max_model_len, len(prompt_ids))
        params = dataclasses.replace(params, max_tokens=min(params.max_tokens, room))
        loop = asyncio.get_running_loop()
        adapter = None if model == self.served_name else model
        result: GenerationResult = await self._submit(
            _Job(prompt_ids, adapter, params, loop, loop.create_future(), on_delta))
        return result

    async def prompt_logprobs(self, prompts: list[list[int]], *, model: str, top_k: int) -> list[PromptLogprobs]:
        """Log-probability, rank and top-k of every prompt token after the first, as vLLM's
        `prompt_logprobs`; the prompts of one call are scored in one forward pass."""
        def work(hidden: torch.Tensor, head: Head) -> list[PromptLogprobs]:
            return scoring.prompt_logprobs(prompts, hidden, head, top_k=top_k)

        result: list[PromptLogprobs] = await self._submit_scoring(prompts, model, work)
        return result

    async def choose(self, prompt: list[int], choices: list[list[int]], *, model: str, temperature: float = 0.0,
                     seed: int | None = None) -> int:
        """Index of the choice constrained decoding produces after `prompt` (vLLM's `structured_outputs.
        choice`): greedy over the trie of the choices' tokens at temperature 0, else sampled."""
        eos_id = min(self._eos_ids()) if self._eos_ids() else 0
        generator = torch.Generator().manual_seed(seed) if seed is not None else None

        def work(hidden: torch.Tensor, head: Head) -> int:
            return scoring.choose_greedy(len(prompt), choices, hidden, head, eos_id=eos_id, temperature=temperature,
                                 generator=generator)

        result: int = await self._submit_scoring([prompt + c for c in choices], model, work)
        return result

    async def _submit_scoring(self, rows: list[list[int]], model: str,
                              work: Callable[[torch.Tensor, Head], Any]) -> Any:
        loop = asyncio.get_running_loop()
        adapter = None if model == self.served_name else model
        return await self._submit(_ScoreJob(rows, adapter, work, loop, loop.create_future()))

    async def _submit(self, job: _Job | _ScoreJob) -> Any:
        """Queue `job` for the engine thread and await its answer; BackendOverloaded (429) when
        `max_queue` requests are already waiting or running."""
        with self._lock:
            if self._pending >= self.max_queue:
                raise BackendOverloaded(429, f"generation queue is full ({self.max_queue} requests)")
            self._pending += 1
        self._queue.put(job)
        try:
            return await job.future
        finally:
            with self._lock:
                self._pending -= 1

    async def load_adapter(self, name: str, path: str) -> None:
        validate_adapter_name(name)
        resolved = validate_adapter_path(path, self.adapters_dir)
        await self._admin(lambda: self._load_adapter(name, resolved))

    async def unload_adapter(self, name: str) -> None:
        validate_adapter_name(name)
        await self._admin(lambda: self._unload_adapter(name))

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)

    @property
    def queue_depth(self) -> int:
        return self._pending

    # ---- worker thread ----

    async def _admin(self, fn: Callable[[], Any]) -> Any:
        loop = asyncio.get_running_loop()
        op = _AdminOp(fn, loop, loop.create_future())
        self._queue.put(op)
        return await op.future

    def _load_adapter(self, name: str, path: Path) -> None:
        from peft import PeftModel

        if name in self.adapters:
            raise AdapterConflict(f"The lora adapter '{name}' has already been loaded.")
        if not (path / "adapter_config.json").is_file():
            raise AdapterNotFound(f"No adapter found at '{path}' (no adapter_config.json).")
        try:
            if isinstance(self.model, PeftModel):
                self.model.load_adapter(str(path), adapter_name=name)
            else:
                self.model = PeftModel.from_pretrained(self.model, str(path), adapter_name=name).eval()
        except Exception as err:  # boundary: a failed load must leave the base model serving
            log.warning("adapter %s failed to load from %s: %s", name, path, err)
            self._drop_adapter_layers(name)
            raise AdapterNotFound(f"Loading lora adapter '{name}' failed: {err}") from err
        self.adapters[name] = str(path)
        log.info("adapter %s loaded from %s", name, path)

    def _drop_adapter_layers(self, name: str) -> None:
        from peft import PeftModel

        if not isinstance(self.model, PeftModel):
            return
        if name in self.model.peft_config:
            if len(self.model.peft_config) == 1:
                self.model = self.model.unload()
                return
            self.model.delete_adapter(name)

    def _unload_adapter(self, name: str) -> None:
        if name not in self.adapters:
            raise AdapterNotFound(f"The lora adapter '{name}' cannot be found.")
        self._drop_adapter_layers(name)
        del self.adapters[name]
        log.info("adapter %s unloaded", name)

    def _worker(self) -> None:
        carry: list[_Job | _ScoreJob] = []
        while True:
            first = carry.pop(0) if carry else self._queue.get()
            if first is None:
                return
            if isinstance(first, _AdminOp):
                self._run_admin(first)
                continue
            batch: list[_Job | _ScoreJob] = [first]
            rest: list[_Job | _ScoreJob] = []
            deadline = time.monotonic() + BATCH_WINDOW_S
            for job in carry:
                (batch if self._compatible(batch, job) else rest).append(job)
            carry = rest
            while len(batch) < self.max_batch:
                timeout = deadline - time.monotonic()
                try:
                    item = self._queue.get(timeout=max(timeout, 0.0)) if timeout > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None or isinstance(item, _AdminOp):
                    self._run_batch(batch)
                    batch = []
                    if item is None:
                        return
                    self._run_admin(item)
                    break
                (batch if self._compatible(batch, item) else carry).append(item)
            if batch:
                self._run_batch(batch)

    def _compatible(self, batch: list[_Job | _ScoreJob], job: _Job | _ScoreJob) -> bool:
        first = batch[0]
        if isinstance(first, _ScoreJob) and isinstance(job, _ScoreJob):
            rows = [row for other in (*batch, job) for row in other.rows]  # type: ignore[union-attr]
            return len(rows) <= SCORE_MAX_ROWS and len(rows) * max(map(len, rows)) <= SCORE_MAX_TOKENS
        if isinstance(first, _Job) and isinstance(job, _Job):
            jobs = [j for j in (*batch, job) if isinstance(j, _Job)]
            # One generate call runs to the longest prompt plus the largest budget: it must fit the context.
            length = max(len(j.prompt_ids) for j in jobs) + max(j.params.max_tokens for j in jobs)
            return (len(batch) < self.max_batch and job.params.batch_key() == first.params.batch_key()
                    and length <= self.max_model_len)
        return False

    def _run_admin(self, op: _AdminOp) -> None:
        try:
            result = op.fn()
        except Exception as err:  # boundary: hand the error to the awaiting coroutine
            op.loop.call_soon_threadsafe(_set_exception, op.future, err)
        else:
            op.loop.call_soon_threadsafe(_set_result, op.future, result)

    def _run_batch(self, batch: list[_Job | _ScoreJob]) -> None:
        live = [job for job in batch if not job.future.cancelled()]
        for job in live:
            if job.adapter is not None and job.adapter not in self.adapters:
                # Unloaded while queued: answer like vLLM does for an unknown model.
                job.loop.call_soon_threadsafe(
                    _set_exception, job.future, AdapterNotFound(f"The model `{job.adapter}` does not exist.")
                )
        live = [job for job in live if job.adapter is None or job.adapter in self.adapters]
        if not live:
            return
        try:
            if isinstance(live[0], _ScoreJob):
                results: list[Any] = self._score(live)  # type: ignore[arg-type]
            else:
                results = self._generate(live)  # type: ignore[arg-type]
        except Exception as err:  # boundary: fail this batch's requests, keep serving
            log.exception("batch of %d failed", len(live))
            wrapped = err if isinstance(err, SelfSpecError) else SelfSpecError(f"generation failed: {err}")
            for job in live:
                job.loop.call_soon_threadsafe(_set_exception, job.future, wrapped)
            return
        self.batches += 1
        for job, result in zip(live, results, strict=True):
            job.loop.call_soon_threadsafe(_set_result, job.future, result)

    @torch.inference_mode()
    def _generate(self, jobs: list[_Job]) -> list[GenerationResult]:
        params = jobs[0].params
        # Each row's budget already fits the context beside its own prompt, and the batch beside the
        # longest prompt (_compatible): no row's max_tokens is cut for another's prompt.
        budget = max(job.params.max_tokens for job in jobs)
        longest = max(len(job.prompt_ids) for job in jobs)
        pad_id = self.tokenizer.pad_token_id
        input_ids = torch.full((len(jobs), longest), pad_id, dtype=torch.long)
        attention = torch.zeros((len(jobs), longest), dtype=torch.long)
        for row, job in enumerate(jobs):
            ids = job.prompt_ids[-longest:]
            input_ids[row, longest - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            attention[row, longest - len(ids) :] = 1
        kwargs: dict[str, Any] = {
            "input_ids": input_ids,
            "attention_mask": attention,
            "max_new_tokens": budget,
            "pad_token_id": pad_id,
            "stopping_criteria": StoppingCriteriaList([_RowStopper(jobs, longest, self.tokenizer)]),
        }
        if all(job.params.temperature <= 0 for job in jobs):
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(do_sample=True, temperature=None, top_p=None, top_k=None,
                          logits_processor=LogitsProcessorList([_PerRowSampling(jobs)]))
        if params.seed is not None:
            torch.manual_seed(params.seed)
        if self.adapters:
            kwargs["adapter_names"] = [job.adapter or BASE_ADAPTER for job in jobs]
        eos_ids = set() if params.ignore_eos else self._eos_ids()
        if params.ignore_eos:
            kwargs["eos_token_id"] = None
        output = self.model.generate(**kwargs)
        results = []
        for row, job in enumerate(jobs):
            new_ids = output[row, longest:].tolist()[: job.params.max_tokens]
            finish = "length"
            for pos, token in enumerate(new_ids):
                if token in eos_ids:
                    new_ids, finish = new_ids[:pos], "stop"
                    break
            text = cast(str, self.tokenizer.decode(new_ids, skip_special_tokens=True))  # one sequence: one str
            text, stopped = _cut_at_stop(text, job.params.stop)
            if stopped:
                finish = "stop"
                new_ids = self._through_stop(new_ids, job.params.stop)
            if job.on_delta is not None and len(text) > job.streamed:
                job.loop.call_soon_threadsafe(job.on_delta, text[job.streamed :])
                job.streamed = len(text)
            results.append(GenerationResult(text, finish, len(job.prompt_ids), len(new_ids), new_ids))
        return results

    def _through_stop(self, ids: list[int], stops: tuple[str, ...]) -> list[int]:
        """The tokens up to and including the one that completed a stop string (as vLLM counts them)."""
        for end in range(1, len(ids) + 1):
            if _cut_at_stop(str(self.tokenizer.decode(ids[:end], skip_special_tokens=True)), stops)[1]:
                return ids[:end]
        return ids

    @torch.inference_mode()
    def _score(self, jobs: list[_ScoreJob]) -> list[Any]:
        """One batch of scoring jobs. The rows of a job usually share a long prefix (an eval item's prompt,
        then one option per row): the prefixes run once, in one pass that keeps the KV cache, and only
        the rows' remaining tokens run in a second pass over that cache, so k options of a 300-token
        prompt cost about one prompt, not k."""
        shared = [_common_prefix(job.rows) for job in jobs]
        tail = max(len(row) - p for job, p in zip(jobs, shared, strict=True) for row in job.rows)
        window = getattr(self._base_model().config.get_text_config(), "sliding_window", None)
        if min(shared) == 0 or (window and max(shared) + tail > window):
            # No shared prefix to reuse (or a sliding-window cache could drop part of a padded prefix).
            hidden, _ = self._forward([(job.adapter, row) for job in jobs for row in job.rows])
            per_job, cursor = [], 0
            for job in jobs:
                per_job.append(hidden[cursor : cursor + len(job.rows)])
                cursor += len(job.rows)
        else:
            per_job = self._hidden_with_shared_prefixes(jobs, shared)
        head = scoring.output_head(self._base_model(), scoring.final_softcap(self.model.config))
        return [job.work(hidden, head) for job, hidden in zip(jobs, per_job, strict=True)]

    def _hidden_with_shared_prefixes(self, jobs: list[_ScoreJob], shared: list[int]) -> list[torch.Tensor]:
        prefixes = [(job.adapter, job.rows[0][:p]) for job, p in zip(jobs, shared, strict=True)]
        prefix_hidden, cache = self._forward(prefixes, keep_cache=True)
        owners = [j for j, job in enumerate(jobs) for _ in job.rows]
        tails = [(job.adapter, row[p:]) for job, p in zip(jobs, shared, strict=True) for row in job.rows]
        tail_hidden = None
        if any(ids for _, ids in tails):
            cache.reorder_cache(torch.tensor(owners))  # one copy of its job's prefix per row
            tail_hidden, _ = self._forward(tails, past=cache, past_lens=[shared[j] for j in owners])
        per_job, cursor = [], 0
        for j, job in enumerate(jobs):
            width = max(len(row) for row in job.rows) - shared[j]
            prefix = prefix_hidden[j : j + 1, : shared[j]].expand(len(job.rows), -1, -1)
            if tail_hidden is not None and width > 0:
                prefix = torch.cat([prefix, tail_hidden[cursor : cursor + len(job.rows), :width]], dim=1)
            per_job.append(prefix)
            cursor += len(job.rows)
        return per_job

    def _base_model(self) -> Any:
        from peft import PeftModel

        return self.model.get_base_model() if isinstance(self.model, PeftModel) else self.model

    def _forward(self, rows: list[tuple[str | None, list[int]]], *, keep_cache: bool = False, past: Any = None,
                 past_lens: list[int] | None = None) -> tuple[torch.Tensor, Any]:
        """Last hidden states [rows, longest, d] of right-padded rows, and the KV cache if asked; with
        `past`, row i continues a cached prefix of `past_lens[i]` real tokens (the cache is padded to the
        longest). Positions are those of each row run alone; the output layer runs on one position per row."""
        longest = max(1, max(len(ids) for _, ids in rows))
        input_ids = torch.full((len(rows), longest), self.tokenizer.pad_token_id, dtype=torch.long)
        attention = torch.zeros((len(rows), longest), dtype=torch.long)
        for row, (_, ids) in enumerate(rows):
            input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            attention[row, : len(ids)] = 1
        kwargs: dict[str, Any] = {"input_ids": input_ids, "logits_to_keep": 1,
                                  "use_cache": keep_cache or past is not None}
        if past is not None and past_lens is not None:
            cached = torch.arange(past.get_seq_length())[None, :] < torch.tensor(past_lens)[:, None]
            kwargs.update(cache=past, attention_mask=torch.cat([cached.long(), attention], dim=1),
                          position_ids=torch.tensor(past_lens)[:, None] + torch.arange(longest)[None, :])
        else:
            kwargs["attention_mask"] = attention
        if self.adapters:
            kwargs["adapter_names"] = [adapter or BASE_ADAPTER for adapter, _ in rows]
        captured: list[torch.Tensor] = []

        def keep(module: Any, args: Any, output: Any) -> None:
            captured.append(output[0] if isinstance(output, tuple) else output.last_hidden_state)

        handle = self._base_model().get_decoder().register_forward_hook(keep)
        try:
            output = self.model(**kwargs)
        finally:
            handle.remove()
        return captured[-1], output.cache if keep_cache else None

    def _eos_ids(self) -> set[int]:
        eos = self.model.generation_config.eos_token_id
        ids = set(eos if isinstance(eos, list) else [eos]) if eos is not None else set()
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        return ids


def _common_prefix(rows: list[list[int]]) -> int:
    """Length of the longest token prefix all rows share."""
    first, shortest = rows[0], min(len(row) for row in rows)
    for i in range(shortest):
        if any(row[i] != first[i] for row in rows):
            return i
    return shortest


def _set_result(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _set_exception(future: asyncio.Future[Any], err: BaseException) -> None:
    if not future.done():
        future.set_exception(err)
