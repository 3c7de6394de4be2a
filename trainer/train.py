r"""Train one LoRA / QLoRA adapter on an SFT dataset with TRL's `SFTTrainer` (thin glue à la trl/scripts/sft.py).

# Plain LoRA on CPU with the tiny model (what `--quantization auto` picks without CUDA)
```bash
python -m trainer.train \
    --base_model smollm2-135m \
    --dataset .selfspec/runs/demo/sft-round1.jsonl \
    --output_dir .selfspec/adapters/demo-r1 \
    --round 1 --max_steps 20 --effective_batch 8 --micro_batch 4
```

# NF4 QLoRA on a GPU, the paper's recipe (r=8, alpha=16, all linear layers, lr 3e-4, 3 epochs, batch 32)
```bash
python -m trainer.train \
    --base_model /models/mpt-30b \
    --dataset data/sft-round1.jsonl \
    --output_dir adapters/bio-r1 \
    --quantization nf4
```

# A job file written by the job runner (`TrainConfig.to_json()`)
```bash
python -m trainer.train --config-json jobs/ID/config.json \
    --progress-file jobs/ID/progress.json --result-file jobs/ID/result.json
```

Checkpoints land in `<adapters>/.<name>.work/checkpoints` every `--save_steps`; running the same command
again after a crash resumes from the newest complete one. A finished adapter for the same dataset sha256 is
returned as is (idempotent).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformers import PrinterCallback, TrainerCallback
from trl import SFTTrainer

from selfspec.errors import AdapterNotFound, SelfSpecError
from selfspec.files import write_text_atomic
from selfspec.models import resolve_model_path
from selfspec.processes import exit_with_parent
from selfspec.settings import resolve_cache_dir
from selfspec.types import AdapterRef, SFTRecord
from trainer.artifacts import WorkState, existing_adapter, publish_adapter, remove_work_dir, training_lock
from trainer.config import TrainConfig, cuda_available
from trainer.data import build_dataset, dataset_sha256, load_sft_records
from trainer.progress import ProgressTracker, TrainProgress, write_progress_file
from trainer.protocol import JobResult

if TYPE_CHECKING:
    from peft import LoraConfig
    from transformers import PreTrainedModel, TrainerControl, TrainerState, TrainingArguments

log = logging.getLogger(__name__)

ProgressSink = Callable[[TrainProgress], None]


class ProgressCallback(TrainerCallback):
    """Feeds `TrainProgress` (rate, ETA) to a sink, logs it, records wall time at each checkpoint."""

    def __init__(self, sink: ProgressSink | None, *, on_save: Callable[[float], None] | None = None) -> None:
        self._sink, self._on_save = sink, on_save
        self.tracker = ProgressTracker()

    def _emit(self, progress: TrainProgress) -> None:
        if self._sink is not None:
            self._sink(progress)

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                       **kwargs: Any) -> None:
        progress = self.tracker.begin(step=state.global_step, total_steps=state.max_steps)
        if state.global_step:
            log.info("resumed at step %d of %d", state.global_step, state.max_steps)
        else:
            log.info("training %d steps", state.max_steps)
        self._emit(progress)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    **kwargs: Any) -> None:
        if state.global_step >= state.max_steps:
            control.should_log = True  # so the manifest's final loss is the last step's
        self._emit(self._update(state))

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
               logs: dict[str, float] | None = None, **kwargs: Any) -> None:
        if not logs or "loss" not in logs:
            return
        progress = self._update(state, loss=float(logs["loss"]))
        eta = f"{progress.eta_s:.0f}s" if progress.eta_s is not None else "?"
        log.info("step %d/%d loss %.4f (%.3f steps/s, ETA %s)", progress.step, progress.total_steps,
                 progress.loss, progress.steps_per_s or 0.0, eta)
        self._emit(progress)

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                **kwargs: Any) -> None:
        if self._on_save is not None:
            self._on_save(self.tracker.last.elapsed_s)

    def _update(self, state: TrainerState, loss: float | None = None) -> TrainProgress:
        return self.tracker.update(step=state.global_step, epoch=float(state.epoch or 0.0),
                                   tokens_seen=int(state.num_input_tokens_seen or 0), loss=loss)


class CompletionLogitsSFTTrainer(SFTTrainer):
    """SFTTrainer that runs the output layer only where the loss is taken (CPU).

    The loss is over completion tokens only (the prompt is masked), yet a plain forward computes logits
    for every position: with Gemma 3's 262k-token vocabulary that projection (forward and backward) is
    most of a CPU training step. Here the model computes logits for the positions from the batch's first
    completion token on (`logits_to_keep`), and the loss is taken from those: the same token-mean over
    completion tokens, normalised across gradient accumulation like the model's own loss
    (tests/integration/test_trainer_cpu.py checks the two agree). TRL's fused head is skipped as well:
    off CUDA it scored every position in tiles, adding entropy/accuracy metrics (lost here) and
    recomputing the projection in backward. On CUDA the fused head (memory) is kept.
    """

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        return completion_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)


def completion_loss(model: Any, inputs: dict[str, Any], *, return_outputs: bool = False,
                    num_items_in_batch: Any = None) -> Any:
    """Causal-LM loss over the labelled positions, with logits only from the first labelled one on."""
    import torch.nn.functional as F  # noqa: N812

    labels = inputs["labels"]
    targets = labels[:, 1:]  # position t predicts token t + 1
    scored = (targets != -100).any(dim=0).nonzero()
    first = int(scored[0]) if len(scored) else targets.shape[1] - 1
    keep = labels.shape[1] - first  # positions first .. T-1
    outputs = model(**{k: v for k, v in inputs.items() if k != "labels"}, logits_to_keep=keep)
    logits = outputs.logits[:, :-1]  # positions first .. T-2, whose targets exist
    wanted = targets[:, first:]
    loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), wanted.reshape(-1), ignore_index=-100,
                           reduction="sum")
    count = num_items_in_batch if num_items_in_batch is not None else (wanted != -100).sum()
    loss = loss / count
    return (loss, outputs) if return_outputs else loss


def load_model(base_path: Path, config: TrainConfig, *, cuda: bool) -> PreTrainedModel:
    """fp32 on CPU, bf16 on CUDA; NF4 4-bit (bitsandbytes) when the resolved quantization says so."""
    import torch
    from transformers import AutoModelForCausalLM

    quantization = config.to_quantization_config(cuda=cuda)
    kwargs: dict[str, Any] = {"dtype": torch.bfloat16 if cuda else torch.float32}
    if quantization is not None:
        kwargs["quantization_config"] = quantization
        kwargs["device_map"] = {"": torch.cuda.current_device() if cuda else "cpu"}
    model = AutoModelForCausalLM.from_pretrained(base_path, **kwargs)
    if quantization is not None:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(  # type: ignore[no-untyped-call]  # unannotated in peft
            model, use_gradient_checkpointing=config.use_gradient_checkpointing(cuda=cuda)
        )
    return model


def _from_adapter(model: Any, config: TrainConfig) -> Any:
    """Wrap the base model with an existing adapter, trainable: round 2 continues from round 1's weights."""
    from peft import PeftConfig, PeftModel

    assert config.init_adapter is not None
    found = PeftConfig.from_pretrained(str(config.init_adapter))
    if (getattr(found, "r", None), getattr(found, "lora_alpha", None)) != (config.r, config.alpha):
        log.warning("init adapter %s has r=%s alpha=%s; those win over the config's r=%d alpha=%d",
                    config.init_adapter, getattr(found, "r", None), getattr(found, "lora_alpha", None),
                    config.r, config.alpha)
    log.info("initialising LoRA weights from %s", config.init_adapter)
    return PeftModel.from_pretrained(model, str(config.init_adapter), is_trainable=True)


def _save_adapter(model: Any, path: Path) -> None:
    """A PEFT model saves only the adapter: adapter_config.json + adapter_model.safetensors."""
    model.save_pretrained(path)


def _final_loss(log_history: list[dict[str, float]], fallback: float | None) -> float | None:
    for entry in reversed(log_history):
        if "loss" in entry:
            return float(entry["loss"])
    return fallback


@contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """Set torch's intra-op threads for the job and restore them after (train() may run in-process)."""
    if threads is None:
        yield
        return
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def train(config: TrainConfig, *, progress_callback: ProgressSink | None = None) -> AdapterRef:
    """Train (or resume, or reuse) the adapter described by `config`; return its manifest."""
    started = time.monotonic()
    records = load_sft_records(config.dataset)  # every line validated before anything is written
    sha = dataset_sha256(config.dataset)
    if config.init_adapter is not None and not (config.init_adapter / "adapter_config.json").is_file():
        raise AdapterNotFound(f"init adapter {config.init_adapter} has no adapter_config.json")
    done = existing_adapter(config, sha)
    if done is not None:
        log.info("adapter %s already trained on dataset %s: reusing %s", done.name, sha[:12], config.output_dir)
        return done
    with training_lock(config), _torch_threads(config.cpu_threads):
        done = existing_adapter(config, sha)  # another process may have finished it while we waited
        if done is not None:
            return done
        return _train(config, records=records, sha=sha, started=started, progress_callback=progress_callback)


def _train(config: TrainConfig, *, records: list[SFTRecord], sha: str, started: float,
           progress_callback: ProgressSink | None) -> AdapterRef:
    cuda = cuda_available()
    quantization = config.resolve_quantization(cuda=cuda)
    log.info("quantization %s -> %s (%s)", config.quantization, quantization,
             "CUDA: NF4 QLoRA" if quantization == "nf4" and cuda else
             "CPU: NF4 via the bitsandbytes CPU backend" if quantization == "nf4" else
             "plain LoRA on CUDA" if cuda else "CPU: plain LoRA, fp32")
    base_path = resolve_model_path(config.base_model, resolve_cache_dir(config.cache_dir))

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_path)
    dataset = build_dataset(records, eos_token=tokenizer.eos_token, expected_round=config.round)
    model = load_model(base_path, config, cuda=cuda)
    peft_config: LoraConfig | None = config.to_lora_config()
    if config.init_adapter is not None:
        model = _from_adapter(model, config)
        peft_config = None  # the init adapter brings its own LoRA config

    work = WorkState(config, dataset_sha256=sha, quantization=quantization)
    resume = work.prepare()
    callback = ProgressCallback(progress_callback, on_save=lambda s: work.save(work.prior_elapsed_s + s))
    trainer_class = SFTTrainer if cuda else CompletionLogitsSFTTrainer
    trainer = trainer_class(
        model=model,
        args=config.to_sft_config(cuda=cuda),
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[callback],
    )
    trainer.remove_callback(PrinterCallback)  # our callback logs; the printer would print() raw dicts
    log.info("%d examples, micro batch %d x accumulation %d, %s", len(dataset), config.micro_batch,
             config.gradient_accumulation_steps, f"resuming from {resume.name}" if resume else "from scratch")
    output = trainer.train(resume_from_checkpoint=str(resume) if resume else None)

    ref = AdapterRef(
        name=config.name,
        path=str(config.output_dir.resolve()),
        base_model=config.base_model,
        round=config.round,
        run_id=config.run_id,
        dataset_sha256=sha,
        steps=trainer.state.global_step,
        final_loss=_final_loss(trainer.state.log_history, output.training_loss),
        wall_s=round(work.prior_elapsed_s + time.monotonic() - started, 2),
        quantization=quantization,
    )
    publish_adapter(lambda path: _save_adapter(trainer.model, path), config, ref)
    remove_work_dir(config)
    log.info("adapter %s written to %s (%d steps, final loss %s, %.1fs)", ref.name, ref.path, ref.steps,
             ref.final_loss, ref.wall_s)
    return ref


# ---- command line ----

def _parse(argv: list[str] | None) -> tuple[TrainConfig, argparse.Namespace]:
    from transformers import HfArgumentParser

    extra = argparse.ArgumentParser(add_help=False, allow_abbrev=False)  # else `--r 8` is `--result-file 8`
    extra.add_argument("--config-json", type=Path, help="TrainConfig as a JSON file (replaces the flags)")
    extra.add_argument("--progress-file", type=Path, help="write TrainProgress JSON here after every step")
    extra.add_argument("--result-file", type=Path, help="write the JobResult JSON here when done")
    extra.add_argument("--parent-pid", type=int, help="exit when this process is gone (job runner's child)")
    known, rest = extra.parse_known_args(argv)
    if known.config_json is not None:
        return TrainConfig.from_json_file(known.config_json), known
    parser = HfArgumentParser(
        TrainConfig,  # type: ignore[arg-type]
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    (config,) = parser.parse_args_into_dataclasses(args=rest)
    return config, known


def _write_result(path: Path | None, result: JobResult) -> None:
    if path is None:
        return
    write_text_atomic(path, result.model_dump_json())


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # unannotated in transformers
    try:
        config, known = _parse(argv)
    except SelfSpecError as err:
        log.error("%s", err)
        return 2
    if known.parent_pid is not None:
        # A run killed with -9 must not leave its trainer holding the output dir: the resumed run's
        # trainer waits for the lock, then continues from the last checkpoint.
        exit_with_parent(known.parent_pid)
    sink = (lambda p: write_progress_file(known.progress_file, p)) if known.progress_file else None
    try:
        ref = train(config, progress_callback=sink)
    except SelfSpecError as err:
        log.error("%s", err)
        _write_result(known.result_file, JobResult(state="failed", error=str(err)))
        return 2
    except Exception as err:  # boundary: record the failure for the job runner, then re-raise
        _write_result(known.result_file, JobResult(state="failed", error=f"{type(err).__name__}: {err}"))
        raise
    _write_result(known.result_file, JobResult(state="succeeded", adapter=ref))
    return 0


if __name__ == "__main__":
    sys.exit(main())
