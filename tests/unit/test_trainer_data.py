"""Trainer data and config: Alpaca prompt/completion records, strict reading, loss masking, SFTConfig mapping."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from selfspec.errors import AdapterInvalid, ConfigError, InputFileError
from selfspec.types import ChatMessage, SFTRecord
from trainer.config import TrainConfig
from trainer.data import build_dataset, dataset_sha256, load_sft_records, render_prompt
from trainer.progress import ProgressTracker


def _record(i: int, *, input_text: str = "", output: str = "The liver.") -> SFTRecord:
    instruction = f"Which organ does item {i} describe?"
    return SFTRecord(
        id=f"r{i}", run_id="run", round=1, source_sample_id=f"s{i}", instruction=instruction,
        input=input_text, output=output,
        messages=(ChatMessage(role="user", content=instruction), ChatMessage(role="assistant", content=output)),
    )


def _write(path: Path, records: list[SFTRecord]) -> Path:
    path.write_text("".join(r.model_dump_json() + "\n" for r in records), encoding="utf-8")
    return path


def _config(tmp_path: Path, **overrides: object) -> TrainConfig:
    values: dict[str, object] = {
        "base_model": "smollm2-135m", "dataset": tmp_path / "d.jsonl", "output_dir": tmp_path / "adapters" / "a1",
    }
    values.update(overrides)
    return TrainConfig(**values)  # type: ignore[arg-type]


def test_trainer_data_prompt_is_alpaca_with_optional_input() -> None:
    bare = render_prompt("Name the organ.")
    with_input = render_prompt("Name the organ.", "It filters blood.")
    assert bare.startswith("Below is an instruction that describes a task. Write a response")
    assert "### Input:" not in bare and bare.endswith("### Response:\n")
    assert "paired with an input" in with_input
    assert "### Input:\nIt filters blood.\n" in with_input and with_input.endswith("### Response:\n")


def test_trainer_data_builds_prompt_completion_dataset_with_eos() -> None:
    records = [_record(0), _record(1, input_text="ctx", output="Kidney.<eos>")]
    dataset = build_dataset(records, eos_token="<eos>")
    assert dataset.column_names == ["prompt", "completion"]
    assert dataset[0]["prompt"] == render_prompt(records[0].instruction)
    assert dataset[0]["completion"] == "The liver.<eos>"
    assert dataset[1]["completion"] == "Kidney.<eos>"  # not doubled
    assert "### Input:\nctx" in dataset[1]["prompt"]


def test_trainer_data_malformed_line_names_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.jsonl", [_record(0), _record(1)])
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("\n" + json.dumps({"id": "x", "instruction": "no output"}) + "\n")
    with pytest.raises(InputFileError) as caught:
        load_sft_records(path)
    assert caught.value.line == 4 and caught.value.path == str(path)
    assert f"{path}:4" in str(caught.value)


def test_trainer_data_blank_output_is_rejected_with_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.jsonl", [_record(0), _record(1, output="   ")])
    with pytest.raises(InputFileError, match=r"d\.jsonl:2: field 'output'"):
        load_sft_records(path)


def test_trainer_data_sha256_is_of_file_bytes(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.jsonl", [_record(0)])
    import hashlib

    assert dataset_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_trainer_data_prompt_tokens_are_masked_in_collated_labels(tmp_path: Path, tiny_model_dir: Path) -> None:
    """SFTTrainer's labels are -100 over the prompt (and padding) and equal the ids over response + EOS."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
    from trl import SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tiny = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1,
    ))
    records = [_record(0, output="The liver filters blood."), _record(1, input_text="A long context " * 5)]
    dataset = build_dataset(records, eos_token=tokenizer.eos_token)
    args = _config(tmp_path).to_sft_config(cuda=False, output_dir=tmp_path / "ckpt")
    trainer = SFTTrainer(model=tiny, args=args, train_dataset=dataset, processing_class=tokenizer)

    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    for row, record in enumerate(records):
        prompt_ids = tokenizer(render_prompt(record.instruction, record.input))["input_ids"]
        full_ids = tokenizer(render_prompt(record.instruction, record.input) + record.output
                             + tokenizer.eos_token)["input_ids"]
        labels = batch["labels"][row].tolist()
        input_ids = batch["input_ids"][row].tolist()
        n_prompt, n_full = len(prompt_ids), len(full_ids)
        assert input_ids[:n_full] == full_ids
        assert labels[:n_prompt] == [-100] * n_prompt
        assert labels[n_prompt:n_full] == full_ids[n_prompt:]
        assert labels[n_full - 1] == tokenizer.eos_token_id
        assert all(label == -100 for label in labels[n_full:])  # padding


def test_trainer_config_maps_onto_sft_config(tmp_path: Path) -> None:
    config = _config(tmp_path, effective_batch=32, micro_batch=4, lr=3e-4, epochs=3.0, max_length=512,
                     save_steps=7, logging_steps=3)
    args = config.to_sft_config(cuda=False)
    assert args.per_device_train_batch_size == 4
    assert args.gradient_accumulation_steps == 8
    assert args.learning_rate == pytest.approx(3e-4)
    assert args.num_train_epochs == 3.0 and args.max_steps == -1
    assert args.max_length == 512 and args.completion_only_loss is True and args.packing is False
    assert args.use_cpu is True and args.bf16 is False and args.gradient_checkpointing is False
    assert args.save_steps == 7 and args.logging_steps == 3 and args.save_strategy == "steps"
    assert Path(args.output_dir) == tmp_path / "adapters" / ".a1.work" / "checkpoints"


def test_trainer_config_lora_is_paper_default(tmp_path: Path) -> None:
    lora = _config(tmp_path).to_lora_config()
    assert (lora.r, lora.lora_alpha, lora.lora_dropout) == (8, 16, 0.05)
    assert lora.target_modules == "all-linear" and lora.task_type == "CAUSAL_LM"
    assert _config(tmp_path, target_modules="q_proj, v_proj").to_lora_config().target_modules == {"q_proj", "v_proj"}


def test_trainer_config_auto_quantization_is_none_on_cpu_and_nf4_on_cuda(tmp_path: Path) -> None:
    import torch

    auto = _config(tmp_path)
    assert auto.resolve_quantization(cuda=False) == "none"
    assert auto.to_quantization_config(cuda=False) is None
    assert auto.resolve_quantization(cuda=True) == "nf4"
    on_gpu = auto.to_quantization_config(cuda=True)
    assert on_gpu is not None and on_gpu.bnb_4bit_quant_type == "nf4" and on_gpu.bnb_4bit_use_double_quant
    assert on_gpu.bnb_4bit_compute_dtype == torch.bfloat16
    forced = _config(tmp_path, quantization="nf4").to_quantization_config(cuda=False)
    assert forced is not None and forced.load_in_4bit and forced.bnb_4bit_compute_dtype == torch.float32
    assert _config(tmp_path, quantization="none").resolve_quantization(cuda=True) == "none"


def test_trainer_config_rejects_bad_values(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="multiple of micro_batch"):
        _config(tmp_path, effective_batch=30, micro_batch=4)
    with pytest.raises(ConfigError, match="quantization"):
        _config(tmp_path, quantization="int8")
    with pytest.raises(ConfigError, match="unknown key"):
        TrainConfig.from_dict({**_config(tmp_path).to_dict(), "lora_rank": 8})
    with pytest.raises(AdapterInvalid):
        _config(tmp_path, adapter_name="../evil")


def test_trainer_config_json_round_trip(tmp_path: Path) -> None:
    config = _config(tmp_path, round=2, run_id="abc", max_steps=5)
    path = tmp_path / "c.json"
    path.write_text(config.to_json(), encoding="utf-8")
    assert TrainConfig.from_json_file(path) == config


def test_trainer_progress_eta_counts_only_this_session() -> None:
    now = [100.0]
    tracker = ProgressTracker(clock=lambda: now[0])
    assert tracker.begin(step=10, total_steps=30).resumed_from_step == 10
    now[0] = 110.0
    progress = tracker.update(step=12, epoch=0.5, tokens_seen=900, loss=1.5)
    assert progress.steps_per_s == pytest.approx(0.2)
    assert progress.eta_s == pytest.approx(90.0)
    assert tracker.update(step=13, epoch=0.6, tokens_seen=950).loss == 1.5  # keeps the last loss
