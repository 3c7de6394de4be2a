"""The trainer on the real tiny model (SmolLM2-135M, CPU), with a few steps each.

Covers: adapter dir + manifest, PEFT reload changing greedy output, idempotence, strict dataset errors
writing nothing, kill -9 of the trainer subprocess and resume from its checkpoint, NF4 on CPU.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from selfspec.errors import AdapterConflict, InputFileError
from selfspec.types import AdapterRef, ChatMessage, SFTRecord
from trainer.config import MANIFEST_NAME, TrainConfig
from trainer.data import render_prompt
from trainer.jobs import LocalSubprocessRunner, TrainingJobFailed
from trainer.progress import TrainProgress
from trainer.train import train

pytestmark = pytest.mark.integration

PROMPT = render_prompt("Name organ 3.")


def _write_dataset(path: Path, n: int = 16, *, output: str = "BANANA BANANA BANANA.") -> Path:
    lines = []
    for i in range(n):
        instruction = f"Name organ {i}."
        record = SFTRecord(
            id=f"r{i}", run_id="it", round=1, source_sample_id=f"s{i}", instruction=instruction,
            input="Short." if i % 2 else "", output=output,
            messages=(ChatMessage(role="user", content=instruction), ChatMessage(role="assistant", content=output)),
        )
        lines.append(record.model_dump_json() + "\n")
    path.write_text("".join(lines), encoding="utf-8")
    return path


def _config(base: Path, dataset: Path, out: Path, **overrides: object) -> TrainConfig:
    values: dict[str, object] = {
        "base_model": str(base), "dataset": dataset, "output_dir": out, "max_steps": 3,
        "effective_batch": 2, "micro_batch": 2, "lr": 1e-2, "save_steps": 2, "logging_steps": 1, "max_length": 128,
        "cpu_threads": 1,  # far faster than 2 threads on a busy 2-core host
    }
    values.update(overrides)
    return TrainConfig(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("trainer")


@pytest.fixture(scope="module")
def trained(workspace: Path, tiny_model_dir: Path) -> tuple[TrainConfig, AdapterRef, list[TrainProgress]]:
    dataset = _write_dataset(workspace / "sft.jsonl")
    config = _config(tiny_model_dir, dataset, workspace / "adapters" / "it-r1", round=1, run_id="run-1")
    seen: list[TrainProgress] = []
    return config, train(config, progress_callback=seen.append), seen


def test_trainer_cpu_writes_adapter_dir_and_manifest(trained: tuple[TrainConfig, AdapterRef, list]) -> None:
    config, ref, seen = trained
    out = config.output_dir
    for name in ("adapter_config.json", "adapter_model.safetensors", MANIFEST_NAME):
        assert (out / name).is_file(), name
    manifest = AdapterRef.model_validate_json((out / MANIFEST_NAME).read_text(encoding="utf-8"))
    assert manifest == ref
    assert (ref.name, ref.round, ref.run_id, ref.steps, ref.quantization) == ("it-r1", 1, "run-1", 3, "none")
    assert len(ref.dataset_sha256) == 64 and ref.final_loss is not None and ref.wall_s > 0
    assert sorted(p.name for p in out.parent.iterdir()) == ["it-r1"]  # no work dir or temp dir left
    assert seen[-1].step == 3 and seen[-1].total_steps == 3 and seen[-1].tokens_seen > 0


def test_trainer_cpu_adapter_changes_greedy_output(trained: tuple[TrainConfig, AdapterRef, list],
                                                   tiny_model_dir: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    inputs = tokenizer(PROMPT, return_tensors="pt")

    def greedy(m: torch.nn.Module) -> str:
        with torch.no_grad():
            ids = m.generate(**inputs, max_new_tokens=12, do_sample=False, pad_token_id=tokenizer.eos_token_id)
        return tokenizer.decode(ids[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        before = greedy(model)
        adapted = PeftModel.from_pretrained(model, trained[0].output_dir)
        after = greedy(adapted)
    finally:
        torch.set_num_threads(threads)
    assert after != before
    assert "BANANA" in after


def test_trainer_cpu_is_idempotent_for_same_dataset(trained: tuple[TrainConfig, AdapterRef, list],
                                                    workspace: Path) -> None:
    config, ref, _ = trained

    def must_not_train(progress: TrainProgress) -> None:
        raise AssertionError("retrained an existing adapter")

    started = time.monotonic()
    assert train(config, progress_callback=must_not_train) == ref
    assert time.monotonic() - started < 5
    other = _write_dataset(workspace / "other.jsonl", n=4, output="Something else.")
    with pytest.raises(AdapterConflict, match="new adapter name"):
        train(_config(Path(config.base_model), other, config.output_dir))


def test_trainer_cpu_round2_starts_from_round1_weights(trained: tuple[TrainConfig, AdapterRef, list],
                                                      workspace: Path, tiny_model_dir: Path) -> None:
    import torch
    from safetensors.torch import load_file

    config, _, _ = trained
    round2 = _config(tiny_model_dir, config.dataset, workspace / "adapters-r2" / "it-r2", round=2, max_steps=1,
                     lr=1e-9, init_adapter=config.output_dir)
    ref = train(round2)
    assert (ref.round, ref.steps) == (2, 1)
    first = load_file(config.output_dir / "adapter_model.safetensors")
    second = load_file(round2.output_dir / "adapter_model.safetensors")
    assert first.keys() == second.keys()
    # A fresh LoRA starts with B = 0; with lr ~ 0 round 2 must still hold round 1's (non-zero) B.
    assert max(float(t.abs().max()) for k, t in first.items() if "lora_B" in k) > 0
    assert all(torch.allclose(first[k], second[k], atol=1e-6) for k in first)


def test_trainer_cpu_malformed_dataset_names_line_and_writes_nothing(workspace: Path,
                                                                    tiny_model_dir: Path) -> None:
    dataset = _write_dataset(workspace / "broken.jsonl", n=3)
    with open(dataset, "a", encoding="utf-8") as handle:
        handle.write('{"id": "r9", "instruction": "truncated"\n')
    out = workspace / "broken-adapters" / "b1"
    with pytest.raises(InputFileError) as caught:
        train(_config(tiny_model_dir, dataset, out))
    assert f"{dataset}:4" in str(caught.value)
    assert not out.parent.exists()


async def test_trainer_cpu_resumes_after_kill_9(workspace: Path, tiny_model_dir: Path) -> None:
    dataset = _write_dataset(workspace / "resume.jsonl")
    config = _config(tiny_model_dir, dataset, workspace / "adapters-resume" / "it-resume", save_steps=1)
    runner = LocalSubprocessRunner(workspace / "jobs")
    try:
        first = await runner.submit(config)
        await _wait_for_checkpoint(runner, first, config)
        assert not (await runner.status(first)).finished
        pid = runner.pid(first)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(TrainingJobFailed, match="SIGKILL"):
            await runner.wait(first, poll_s=0.2, timeout_s=60)
        assert not config.output_dir.exists()

        second = await runner.submit(config)
        ref = await runner.wait(second, poll_s=0.5, timeout_s=240)
        status = await runner.status(second)
    finally:
        await runner.aclose()
    assert ref.steps == 3
    assert status.progress is not None and status.progress.resumed_from_step >= 1
    assert "resumed at step" in runner.log_path(second).read_text(encoding="utf-8")
    assert (config.output_dir / "adapter_model.safetensors").is_file()


async def _wait_for_checkpoint(runner: LocalSubprocessRunner, job_id: str, config: TrainConfig) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if any(config.checkpoints_path.glob("checkpoint-*/trainer_state.json")):
            return
        status = await runner.status(job_id)
        assert not status.finished, f"job ended before its first checkpoint: {status.error}"
        await asyncio.sleep(0.1)
    raise AssertionError("no checkpoint within 180 s")


def test_trainer_cpu_nf4_trains_one_step(workspace: Path, tiny_model_dir: Path) -> None:
    pytest.importorskip("bitsandbytes")
    dataset = _write_dataset(workspace / "nf4.jsonl", n=2)
    config = _config(tiny_model_dir, dataset, workspace / "adapters-nf4" / "it-nf4", quantization="nf4",
                     max_steps=1)
    ref = train(config)
    assert (ref.steps, ref.quantization) == (1, "nf4")
    assert ref.final_loss is not None
    assert (config.output_dir / "adapter_model.safetensors").is_file()


def test_completion_loss_equals_the_models_own_loss(tiny_model_dir: Path) -> None:
    """Logits only from the first completion token on give the full-logits loss (and its gradient)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainer.train import completion_loss

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    rows = [(render_prompt("Name organ 1."), " Liver."), (render_prompt("List two drugs.", "Longer input here."),
                                                          " Aspirin; ibuprofen.")]
    ids, labels = [], []
    for prompt, completion in rows:
        p, c = tokenizer(prompt)["input_ids"], tokenizer(completion + tokenizer.eos_token)["input_ids"]
        ids.append(p + c)
        labels.append([-100] * len(p) + c)
    width = max(len(i) for i in ids)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    inputs = {
        "input_ids": torch.tensor([i + [pad] * (width - len(i)) for i in ids]),
        "attention_mask": torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i in ids]),
        "labels": torch.tensor([lab + [-100] * (width - len(lab)) for lab in labels]),
    }
    expected = model(**inputs).loss
    got = completion_loss(model, inputs)
    assert torch.allclose(got, expected, atol=1e-5)
    items = int((inputs["labels"][:, 1:] != -100).sum())
    # With gradient accumulation the trainer passes the token count of the whole accumulated batch.
    assert torch.allclose(completion_loss(model, inputs, num_items_in_batch=2 * items), expected / 2, atol=1e-5)
