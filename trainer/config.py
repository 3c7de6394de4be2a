"""`TrainConfig`: every knob of one SFT job in one dataclass (TRL style), mapped onto TRL/PEFT objects.

The dataclass itself is pure Python (no torch import), so the CLI, the job API and the orchestrator can
build and ship it cheaply; the `to_*` methods import TRL, PEFT and transformers lazily.

Packing (`packing`, default off): TRL's BFD packing keeps the completion mask of every packed example, so
it stays compatible with completion-only loss, and transformers derives block-diagonal attention from the
position ids (no cross-example attention, also with SDPA on CPU). We still leave it off by default because
with packing a "batch" counts packed rows of `max_length` tokens, not examples: the paper's recipe
(effective batch 32 examples, 3 epochs, lr 3e-4) would silently turn into far fewer, much larger steps.
Alpaca-style records of this project are short (~100-250 tokens), so padding waste with micro batch 4 is
small anyway. Turn it on for throughput on GPU when you retune batch size and learning rate.

The knobs shared with the run config's `[training]` section (`SECTION_KNOBS`) take their default and help
from `TrainingSection`, and a job's values are checked against its bounds: the section is their one
definition. The flags of `python -m trainer.train` (HfArgumentParser) and of `selfspec train`
(trainer/commands.py), and the trainer service's request model (`field_help`), are generated from these
fields. A field's metadata holds only argparse keywords (`help`, `aliases`), since HfArgumentParser passes
it to `add_argument`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args, get_type_hints

from pydantic import ValidationError

from selfspec.adapters import validate_adapter_name
from selfspec.errors import ConfigError
from selfspec.settings import TRAINING_RUN_ONLY, Quantization, TrainingSection

if TYPE_CHECKING:
    from peft import LoraConfig
    from transformers import BitsAndBytesConfig
    from trl import SFTConfig

QUANTIZATIONS: tuple[str, ...] = get_args(Quantization)

MANIFEST_NAME = "selfspec-adapter.json"

# The `[training]` keys that are also TrainConfig fields (all but the orchestrator's own).
SECTION_KNOBS: tuple[str, ...] = tuple(name for name in TrainingSection.model_fields if name not in TRAINING_RUN_ONLY)

# Fields naming a place on the machine that runs the trainer: the job API takes only null for them (a
# trainer service uses its own), so a request cannot point the trainer at a directory outside its dirs.
LOCAL_ONLY: frozenset[str] = frozenset({"cache_dir"})


def _knob(name: str) -> Any:
    """The field of a `[training]` knob: its default and help are `TrainingSection`'s."""
    if name not in SECTION_KNOBS:
        raise ValueError(f"{name!r} is not a [training] knob")
    info = TrainingSection.model_fields[name]
    return field(default=info.default, metadata={"help": info.description or ""})


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


@dataclass
class TrainConfig:
    """One LoRA/QLoRA SFT job: data, base model, output adapter, LoRA and optimisation knobs."""

    base_model: str = field(metadata={"help": "HF model dir, or a served model name such as 'smollm2-135m'.",
                                      "aliases": ["--base"]})
    dataset: Path = field(metadata={"help": "SFT dataset JSONL (one selfspec SFTRecord per line)."})
    output_dir: Path = field(metadata={"help": "Final PEFT adapter dir; written atomically at the end.",
                                       "aliases": ["--out"]})
    adapter_name: str | None = field(
        default=None, metadata={"help": "Adapter name (no path separators); defaults to output_dir's name.",
                                "aliases": ["--name"]}
    )
    round: int = field(default=1, metadata={"help": "Self-specialization round this adapter belongs to."})
    run_id: str = field(default="", metadata={"help": "Pipeline run id, kept in the adapter manifest."})
    init_adapter: Path | None = field(
        default=None,
        metadata={"help": "Start from this adapter's weights (round 2, init_from=r1); its r/alpha/targets apply."},
    )
    # LoRA
    r: int = _knob("r")
    alpha: int = _knob("alpha")
    dropout: float = _knob("dropout")
    target_modules: str = field(
        default="all-linear",
        metadata={"help": "'all-linear' or a comma-separated list of module names (e.g. 'q_proj,v_proj')."},
    )
    # Optimisation
    lr: float = _knob("lr")
    epochs: float = _knob("epochs")
    effective_batch: int = _knob("effective_batch")
    micro_batch: int = _knob("micro_batch")
    max_length: int = _knob("max_length")
    quantization: Quantization = _knob("quantization")
    max_steps: int = _knob("max_steps")
    seed: int = field(default=0, metadata={"help": "Random seed (LoRA init, shuffling)."})
    packing: bool = field(
        default=False,
        metadata={"help": "Pack examples into max_length rows (BFD). Off: keeps batch = examples (see module doc)."},
    )
    gradient_checkpointing: bool | None = field(
        default=None, metadata={"help": "Trade compute for memory; default: on with CUDA, off on CPU."}
    )
    cpu_threads: int | None = field(
        default=None,
        metadata={"help": "torch threads for CPU training (1 is fastest on a busy shared host); default: torch's."},
    )
    logging_steps: int = field(default=5, metadata={"help": "Log loss every N optimizer steps."})
    save_steps: int = field(default=10, metadata={"help": "Checkpoint every N optimizer steps (for resume)."})
    save_total_limit: int = field(default=2, metadata={"help": "Checkpoints kept on disk."})
    checkpoint_dir: Path | None = field(
        default=None,
        metadata={"help": "Checkpoints (for resume); default '<output_dir parent>/.<name>.work/checkpoints'."},
    )
    keep_checkpoints: bool = field(default=False, metadata={"help": "Keep checkpoints after success."})
    overwrite: bool = field(
        default=False, metadata={"help": "Replace an existing adapter trained on a different dataset."}
    )
    cache_dir: Path | None = field(
        default=None,
        metadata={"help": "Where named models are provisioned (a run's storage.cache_dir); default: "
                          "$SELFSPEC_CACHE_DIR, else <repo>/.cache/selfspec. Not settable through the trainer service."},
    )

    def __post_init__(self) -> None:
        self.dataset = Path(self.dataset)
        self.output_dir = Path(self.output_dir)
        for name in ("checkpoint_dir", "init_adapter", "cache_dir"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, Path(value))
        problems = _problems(self)
        if problems:
            raise ConfigError("invalid training config: " + "; ".join(problems))
        validate_adapter_name(self.name)

    @classmethod
    def from_section(cls, section: TrainingSection, **job: Any) -> TrainConfig:
        """A job with every `[training]` knob taken from `section`; `job` gives the other fields."""
        return cls(**{name: getattr(section, name) for name in SECTION_KNOBS}, **job)

    # ---- derived values ----

    @property
    def name(self) -> str:
        return self.adapter_name or self.output_dir.name

    @property
    def gradient_accumulation_steps(self) -> int:
        return self.effective_batch // self.micro_batch

    @property
    def work_dir(self) -> Path:
        """Scratch space next to the adapter: a dot name is never a valid adapter name, so never listed."""
        return self.output_dir.parent / f".{self.output_dir.name}.work"

    @property
    def checkpoints_path(self) -> Path:
        return self.checkpoint_dir if self.checkpoint_dir is not None else self.work_dir / "checkpoints"

    def resolve_quantization(self, *, cuda: bool | None = None) -> Literal["nf4", "none"]:
        """`auto` is NF4 exactly when CUDA is available."""
        if self.quantization == "auto":
            has_cuda = cuda_available() if cuda is None else cuda
            return "nf4" if has_cuda else "none"
        return self.quantization

    def use_gradient_checkpointing(self, *, cuda: bool) -> bool:
        return cuda if self.gradient_checkpointing is None else self.gradient_checkpointing

    # ---- TRL / PEFT / bitsandbytes objects ----

    def to_sft_config(self, *, cuda: bool | None = None, output_dir: Path | None = None) -> SFTConfig:
        """TRL `SFTConfig` for this job; checkpoints go to `output_dir` (default: `checkpoints_path`)."""
        from trl import SFTConfig

        has_cuda = cuda_available() if cuda is None else cuda
        return SFTConfig(
            output_dir=str(output_dir or self.checkpoints_path),
            per_device_train_batch_size=self.micro_batch,
            gradient_accumulation_steps=self.gradient_accumulation_steps,
            learning_rate=self.lr,
            num_train_epochs=self.epochs,
            max_steps=self.max_steps,
            max_length=self.max_length,
            packing=self.packing,
            completion_only_loss=True,
            seed=self.seed,
            logging_steps=self.logging_steps,
            logging_first_step=True,
            save_strategy="steps",
            save_steps=self.save_steps,
            save_total_limit=self.save_total_limit,
            gradient_checkpointing=self.use_gradient_checkpointing(cuda=has_cuda),
            use_cpu=not has_cuda,
            bf16=has_cuda,
            report_to="none",
            disable_tqdm=True,
            include_num_input_tokens_seen="non_padding",
            dataloader_num_workers=0,
        )

    def to_lora_config(self) -> LoraConfig:
        from peft import LoraConfig

        return LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=_target_modules(self.target_modules),
            bias="none",
            task_type="CAUSAL_LM",
        )

    def to_quantization_config(self, *, cuda: bool | None = None) -> BitsAndBytesConfig | None:
        """NF4 with double quantization; compute in bf16 on CUDA, fp32 on CPU (bf16 is slow on this CPU)."""
        has_cuda = cuda_available() if cuda is None else cuda
        if self.resolve_quantization(cuda=has_cuda) != "nf4":
            return None
        import torch
        from transformers import BitsAndBytesConfig

        return BitsAndBytesConfig(  # type: ignore[no-untyped-call]  # transformers leaves its __init__ unannotated
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16 if has_cuda else torch.float32,
        )

    # ---- serialisation (job files, HTTP bodies) ----

    def to_dict(self) -> dict[str, Any]:
        return {
            f.name: str(v) if isinstance(v, Path) else v
            for f in dataclasses.fields(self)
            for v in [getattr(self, f.name)]
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a plain mapping; unknown or missing keys are a `ConfigError` naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"invalid training config: unknown key(s) {', '.join(unknown)}")
        try:
            return cls(**data)
        except TypeError as err:
            raise ConfigError(f"invalid training config: {err}") from err

    @classmethod
    def from_json_file(cls, path: Path) -> TrainConfig:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise ConfigError(f"{path}: cannot read training config: {err}") from err
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: training config must be a JSON object")
        return cls.from_dict(data)


def field_help() -> dict[str, tuple[Any, Any, str]]:
    """(type, default, help) per field: lets the HTTP layer build its request model from the dataclass.
    `LOCAL_ONLY` fields are typed `None` there: a request may leave them out or send null, nothing else."""
    hints = get_type_hints(TrainConfig)
    out: dict[str, tuple[Any, Any, str]] = {}
    for f in dataclasses.fields(TrainConfig):
        default = ... if f.default is dataclasses.MISSING else f.default
        hint = None if f.name in LOCAL_ONLY else hints[f.name]
        out[f.name] = (hint, default, f.metadata.get("help", ""))
    return out


def _target_modules(spec: str) -> str | list[str]:
    if spec == "all-linear":
        return spec
    return [part.strip() for part in spec.split(",") if part.strip()]


def _section_problems(config: TrainConfig) -> list[str]:
    """The `[training]` knobs checked by `TrainingSection` itself (types strictly, bounds, combinations)."""
    try:
        TrainingSection.model_validate({name: getattr(config, name) for name in SECTION_KNOBS}, strict=True)
    except ValidationError as err:
        problems = []
        for item in err.errors():
            where = ".".join(str(part) for part in item["loc"])
            message = str(item["ctx"]["error"]) if item["type"] == "value_error" else item["msg"]
            problems.append(f"{where}: {message} (got {item['input']!r})" if where else message)
        return problems
    return []


def _problems(config: TrainConfig) -> list[str]:
    problems = _section_problems(config)
    for name in ("logging_steps", "save_steps"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            problems.append(f"{name} must be a positive integer (got {value!r})")
    if config.cpu_threads is not None and config.cpu_threads < 1:
        problems.append(f"cpu_threads must be >= 1 (got {config.cpu_threads!r})")
    if config.save_total_limit < 1:
        problems.append(f"save_total_limit must be >= 1 (got {config.save_total_limit!r})")
    if not _target_modules(config.target_modules):
        problems.append("target_modules must not be empty")
    if not str(config.base_model).strip():
        problems.append("base_model must not be empty")
    return problems
