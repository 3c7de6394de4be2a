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
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_type_hints

from selfspec.adapters import validate_adapter_name
from selfspec.errors import ConfigError
from selfspec.settings import REPO_ROOT

if TYPE_CHECKING:
    from peft import LoraConfig
    from transformers import BitsAndBytesConfig
    from trl import SFTConfig

Quantization = Literal["auto", "nf4", "none"]
QUANTIZATIONS: tuple[str, ...] = ("auto", "nf4", "none")

MANIFEST_NAME = "selfspec-adapter.json"


def default_cache_dir() -> Path:
    """Where named models are provisioned: `$SELFSPEC_CACHE_DIR`, else `<repo>/.cache/selfspec`."""
    env = os.environ.get("SELFSPEC_CACHE_DIR")
    return Path(env) if env else REPO_ROOT / ".cache" / "selfspec"


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


@dataclass
class TrainConfig:
    """One LoRA/QLoRA SFT job: data, base model, output adapter, LoRA and optimisation knobs."""

    base_model: str = field(metadata={"help": "HF model dir, or a served model name such as 'smollm2-135m'."})
    dataset: Path = field(metadata={"help": "SFT dataset JSONL (one selfspec SFTRecord per line)."})
    output_dir: Path = field(metadata={"help": "Final PEFT adapter dir; written atomically at the end."})
    adapter_name: str | None = field(
        default=None, metadata={"help": "Adapter name (no path separators); defaults to output_dir's name."}
    )
    round: int = field(default=1, metadata={"help": "Self-specialization round this adapter belongs to."})
    run_id: str = field(default="", metadata={"help": "Pipeline run id, kept in the adapter manifest."})
    init_adapter: Path | None = field(
        default=None,
        metadata={"help": "Start from this adapter's weights (round 2, init_from=r1); its r/alpha/targets apply."},
    )
    # LoRA
    r: int = field(default=8, metadata={"help": "LoRA rank."})
    alpha: int = field(default=16, metadata={"help": "LoRA alpha (scaling = alpha / r)."})
    dropout: float = field(default=0.05, metadata={"help": "LoRA dropout."})
    target_modules: str = field(
        default="all-linear",
        metadata={"help": "'all-linear' or a comma-separated list of module names (e.g. 'q_proj,v_proj')."},
    )
    # Optimisation
    lr: float = field(default=3e-4, metadata={"help": "Peak learning rate (AdamW)."})
    epochs: float = field(default=3.0, metadata={"help": "Training epochs (ignored when max_steps > 0)."})
    effective_batch: int = field(
        default=32, metadata={"help": "Examples per optimizer step = micro_batch x gradient accumulation."}
    )
    micro_batch: int = field(default=4, metadata={"help": "Examples per forward/backward pass."})
    max_length: int = field(default=512, metadata={"help": "Max tokens per example (prompt + response)."})
    quantization: Quantization = field(
        default="auto",
        metadata={"help": "auto = NF4 QLoRA on CUDA, plain LoRA on CPU; nf4 = force QLoRA; none = plain LoRA."},
    )
    max_steps: int = field(default=-1, metadata={"help": "Optimizer steps; -1 derives them from epochs."})
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

    def __post_init__(self) -> None:
        self.dataset = Path(self.dataset)
        self.output_dir = Path(self.output_dir)
        if self.checkpoint_dir is not None:
            self.checkpoint_dir = Path(self.checkpoint_dir)
        if self.init_adapter is not None:
            self.init_adapter = Path(self.init_adapter)
        problems = _problems(self)
        if problems:
            raise ConfigError("invalid training config: " + "; ".join(problems))
        validate_adapter_name(self.name)

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

        return BitsAndBytesConfig(
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
    """(type, default, help) per field: lets the HTTP layer build its request model from the dataclass."""
    hints = get_type_hints(TrainConfig)
    out: dict[str, tuple[Any, Any, str]] = {}
    for f in dataclasses.fields(TrainConfig):
        default = ... if f.default is dataclasses.MISSING else f.default
        out[f.name] = (hints[f.name], default, f.metadata.get("help", ""))
    return out


def _target_modules(spec: str) -> str | list[str]:
    if spec == "all-linear":
        return spec
    return [part.strip() for part in spec.split(",") if part.strip()]


def _problems(config: TrainConfig) -> list[str]:
    problems = []
    positive = ("r", "alpha", "effective_batch", "micro_batch", "max_length", "logging_steps", "save_steps")
    for name in positive:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            problems.append(f"{name} must be a positive integer (got {value!r})")
    if not problems and config.effective_batch % config.micro_batch:
        problems.append(
            f"effective_batch ({config.effective_batch}) must be a multiple of micro_batch ({config.micro_batch})"
        )
    if not 0.0 <= config.dropout < 1.0:
        problems.append(f"dropout must be in [0, 1) (got {config.dropout!r})")
    if not config.lr > 0:
        problems.append(f"lr must be > 0 (got {config.lr!r})")
    if config.max_steps == 0 or config.max_steps < -1:
        problems.append(f"max_steps must be -1 or positive (got {config.max_steps!r})")
    if config.max_steps == -1 and not config.epochs > 0:
        problems.append(f"epochs must be > 0 when max_steps is -1 (got {config.epochs!r})")
    if config.quantization not in QUANTIZATIONS:
        problems.append(f"quantization must be one of {', '.join(QUANTIZATIONS)} (got {config.quantization!r})")
    if config.cpu_threads is not None and config.cpu_threads < 1:
        problems.append(f"cpu_threads must be >= 1 (got {config.cpu_threads!r})")
    if config.save_total_limit < 1:
        problems.append(f"save_total_limit must be >= 1 (got {config.save_total_limit!r})")
    if not _target_modules(config.target_modules):
        problems.append("target_modules must not be empty")
    if not str(config.base_model).strip():
        problems.append("base_model must not be empty")
    return problems
