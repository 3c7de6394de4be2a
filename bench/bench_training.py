"""Training throughput on CPU: our `trainer.train.train()` (TRL SFTTrainer + LoRA) vs plain transformers `Trainer` + peft.

Same model, same prompt/completion data (loss on the response only), same LoRA, batch, lr, seed and step
count, measured in the same process run. Both loops are timed by the same callback (first step start ->
last step end) and count non-padding input tokens; end-to-end wall time (load + prep + train + save) is
reported too. Goal: ours / baseline >= 0.9 on tokens/s.

    .venv/bin/python bench/bench_training.py --steps 8
    .venv/bin/python bench/bench_training.py --steps 8 --repeats 2 --threads 1 --model /path/to/hf-dir
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from selfspec.models import resolve_model_path
from selfspec.settings import resolve_cache_dir
from selfspec.types import ChatMessage, SFTRecord
from trainer.config import TrainConfig
from trainer.data import build_dataset, load_sft_records
from trainer.progress import TrainProgress

log = logging.getLogger("bench_training")

_ORGANS = ["liver", "kidney", "spleen", "pancreas", "heart", "lung", "thyroid", "stomach"]


@dataclass
class Run:
    name: str
    tokens: int
    loop_s: float
    wall_s: float

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.loop_s if self.loop_s else 0.0


def write_dataset(path: Path, n: int) -> Path:
    """Alpaca-like records of varied length (so padding matters as in real data)."""
    lines = []
    for i in range(n):
        organ = _ORGANS[i % len(_ORGANS)]
        instruction = f"Explain in one or two sentences what the {organ} does in the human body (case {i})."
        output = f"The {organ} " + "supports the body's metabolism and homeostasis. " * (1 + i % 4)
        record = SFTRecord(
            id=f"b{i}", run_id="bench", round=1, source_sample_id=f"s{i}", instruction=instruction,
            input="Patient context: adult, no known conditions." if i % 3 == 0 else "", output=output.strip(),
            messages=(ChatMessage(role="user", content=instruction), ChatMessage(role="assistant", content=output)),
        )
        lines.append(record.model_dump_json() + "\n")
    path.write_text("".join(lines), encoding="utf-8")
    return path


def bench_ours(config: TrainConfig) -> Run:
    from trainer.train import train

    seen: list[TrainProgress] = []
    started = time.monotonic()
    train(config, progress_callback=seen.append)
    wall = time.monotonic() - started
    last = seen[-1]
    return Run("ours: train() / SFTTrainer", last.tokens_seen, last.elapsed_s, wall)


def bench_baseline(config: TrainConfig, model_path: Path, out: Path) -> Run:
    """The same job written directly against transformers.Trainer + peft (manual prompt masking)."""
    import torch
    from datasets import Dataset
    from peft import get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        Trainer,
        TrainingArguments,
    )

    from trainer.train import ProgressCallback

    started = time.monotonic()
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    pairs = build_dataset(load_sft_records(config.dataset), eos_token=tokenizer.eos_token)

    def tokenize(example: dict[str, str]) -> dict[str, list[int]]:
        prompt = tokenizer(example["prompt"])["input_ids"]
        full = tokenizer(example["prompt"] + example["completion"])["input_ids"][: config.max_length]
        return {"input_ids": full, "attention_mask": [1] * len(full),
                "labels": [-100] * len(prompt) + full[len(prompt):]}

    dataset: Dataset = pairs.map(tokenize, remove_columns=pairs.column_names)
    base_model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    model = get_peft_model(base_model, config.to_lora_config())
    args = TrainingArguments(
        output_dir=str(out / "baseline-checkpoints"), per_device_train_batch_size=config.micro_batch,
        gradient_accumulation_steps=config.gradient_accumulation_steps, learning_rate=config.lr,
        max_steps=config.max_steps, seed=config.seed, use_cpu=True, bf16=False, report_to="none",
        disable_tqdm=True, save_strategy="no", logging_steps=config.logging_steps,
        include_num_input_tokens_seen="non_padding", dataloader_num_workers=0,
    )
    seen: list[TrainProgress] = []
    trainer = Trainer(
        model=model, args=args, train_dataset=dataset,
        data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100),
        callbacks=[ProgressCallback(seen.append)],
    )
    trainer.train()
    model.save_pretrained(str(out / "baseline-adapter"))
    wall = time.monotonic() - started
    return Run("baseline: Trainer + peft", seen[-1].tokens_seen, seen[-1].elapsed_s, wall)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("trainer.train", "transformers", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m", help="HF dir or served model name")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--examples", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch threads for both sides (default: torch's)")
    options = parser.parse_args()
    if options.threads is not None:
        import torch

        torch.set_num_threads(options.threads)

    model_path = resolve_model_path(options.model, resolve_cache_dir())
    ours: list[Run] = []
    base: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="bench-training-") as tmp:
        root = Path(tmp)
        dataset = write_dataset(root / "sft.jsonl", options.examples)
        for repeat in range(options.repeats):
            out = root / f"r{repeat}"
            config = TrainConfig(
                base_model=str(model_path), dataset=dataset, output_dir=out / "adapters" / "bench",
                max_steps=options.steps, effective_batch=options.batch, micro_batch=options.batch,
                save_steps=options.steps + 1000, logging_steps=options.steps, max_length=512,
            )
            sides = [("ours", ours), ("baseline", base)]
            # Alternate the order so a warm cache or a busy neighbour does not favour one side.
            for side, runs in sides if repeat % 2 else sides[::-1]:
                run = bench_ours(config) if side == "ours" else bench_baseline(config, model_path, out)
                runs.append(run)
                log.info("%-28s %6d tokens  loop %6.1fs  %7.1f tok/s  wall %6.1fs",
                         run.name, run.tokens, run.loop_s, run.tokens_per_s, run.wall_s)
            shutil.rmtree(out, ignore_errors=True)

    pair_ratios = [o.tokens_per_s / b.tokens_per_s for o, b in zip(ours, base, strict=True)]
    best_ratio = max(r.tokens_per_s for r in ours) / max(r.tokens_per_s for r in base)
    log.info("tokens per run: ours %s, baseline %s (same data, same steps)",
             [r.tokens for r in ours], [r.tokens for r in base])
    log.info("training tokens/s  ours %.1f  baseline %.1f (medians)",
             statistics.median(r.tokens_per_s for r in ours), statistics.median(r.tokens_per_s for r in base))
    log.info("ratio ours/baseline per pair %s  median %.3f  best-vs-best %.3f (goal >= 0.9)",
             [round(r, 3) for r in pair_ratios], statistics.median(pair_ratios), best_ratio)
    log.info("end-to-end wall    ours %.1fs  baseline %.1fs (medians)",
             statistics.median(r.wall_s for r in ours), statistics.median(r.wall_s for r in base))

if __name__ == "__main__":
    main()
