from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.execution.round_card import write_round_card
from orchestrator.pipeline.records import export_round
from orchestrator.store import RunStore
from selfspec.cards import (
    ReviewCounts,
    adapter_card,
    check_adapter_card,
    check_dataset_card,
    config_toml,
    write_adapter_evaluation,
)
from selfspec.settings import RunConfig, config_from_dict, load_config
from selfspec.types import AdapterRef, DocRef, EvalResult, Instruction, Sample

REPO = Path(__file__).resolve().parents[2]


def _export(tmp_path: Path, config: RunConfig, *, review: ReviewCounts | None = None) -> Path:
    store = RunStore(f"sqlite:///{tmp_path}/db.sqlite")
    store.create_run("r", "test", {})
    items = [Instruction(id=f"r:r1:p0:{i}", run_id="r", round=1, text=f"Task {i}", seed_ids=("s1",)) for i in range(3)]
    items.append(Instruction(id="r:r1:p0:9", run_id="r", round=1, text="Draw a map", verdict="blacklisted"))
    store.commit_prompt("r", 1, 0, items)
    for i in range(3):
        store.commit_sample(Sample(id=f"r:r1:p0:{i}:s", run_id="r", round=1, instruction_id=f"r:r1:p0:{i}",
                                   instruction=f"Task {i}", response=f"Answer {i}",
                                   retrieved=(DocRef(doc_id="d1", score=1.5),), model="m", prompt_name="response",
                                   prompt_hash="h"), status="ok" if i < 2 else "repetitive", error="")
    out = tmp_path / "round1"
    export_round(store.iter_samples("r", 1), out)
    write_round_card(store, out, run_id="r", round=1, config=config, instruction_model="gemma3-270m",
                     response_model="gemma3-270m", adapter=None, review=review)
    return out


def test_exported_round_loads_with_datasets_and_its_card_validates(tmp_path: Path) -> None:
    import datasets

    out = _export(tmp_path, load_config(REPO / "configs/demo.toml"))
    (out / "train.jsonl").write_text('{"other": "schema"}\n')  # written beside the export by training
    alpaca = datasets.load_dataset(str(out), split="train")
    assert alpaca.num_rows == 2 and set(alpaca.column_names) == {"instruction", "input", "output"}
    messages = datasets.load_dataset(str(out), "messages", split="train")
    assert messages[0]["messages"][1] == {"role": "assistant", "content": "Answer 0"}
    assert datasets.load_dataset(str(out), "provenance", split="train")[0]["documents"][0]["doc_id"] == "d1"

    card = check_dataset_card(out)
    assert card.data.size_categories == ["n<1K"] and card.data.license == "apache-2.0"
    text = card.text
    for fact in ("instruction prompts | 1", "instruction: blacklisted | 1", "response gate: repetitive | 1",
                 "samples exported | 2", "`response.jinja`", "selfspec run -c run.toml", "0 rejected",
                 "top-5 passages", "sha256"):
        assert fact in text, fact


def test_card_config_round_trips_to_the_same_run_config(tmp_path: Path) -> None:
    config = load_config(REPO / "configs/demo.toml")
    out = _export(tmp_path, config, review=ReviewCounts(rejected=2, edited=1))
    text = (out / "README.md").read_text()
    assert "2 rejected, 0 restored, 1 edited" in text
    block = text.split("```toml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "run.toml"
    path.write_text(block)
    again = load_config(path)
    assert again.model_dump(exclude={"storage"}) == config.model_dump(exclude={"storage"})


def test_config_toml_escapes_strings() -> None:
    import tomllib

    text = config_toml({"run": {"name": 'a"b\\c', "xs": ["x", 1, 2.5, True]}, "rounds": {"round2": {"target": 3}}})
    assert tomllib.loads(text) == {"run": {"name": 'a"b\\c', "xs": ["x", 1, 2.5, True]},
                                   "rounds": {"round2": {"target": 3}}}


def test_adapter_card_is_a_peft_model_card_with_an_evaluation_table(tmp_path: Path) -> None:
    from huggingface_hub import ModelCard

    dataset = _export(tmp_path, config_from_dict({})) / "sft.jsonl"
    adapter_dir = tmp_path / "adapters/run-r1"
    adapter_dir.mkdir(parents=True)
    ref = AdapterRef(name="run-r1", path=str(adapter_dir), base_model="gemma3-270m", round=1, run_id="run",
                     dataset_sha256="ab" * 32, steps=28, final_loss=1.25, wall_s=301.0)
    text = adapter_card(ref, settings={"r": 8, "alpha": 16, "lr": 3e-4}, dataset=dataset)
    (adapter_dir / "README.md").write_text(text)
    card = check_adapter_card(adapter_dir)
    assert card.data.base_model == "google/gemma-3-270m" and card.data.library_name == "peft"
    assert "Not evaluated yet." in card.text and "`ab" in card.text and "dataset card" in card.text

    results = [EvalResult(model="run-r1", task="macro", metric="f1", value=23.0, n=96, ci_low=18.0, ci_high=28.0),
               EvalResult(model="run-r1", task="macro", metric="f1", value=18.5, n=96, baseline="gemma3-270m"),
               EvalResult(model="gemma3-270m", task="macro", metric="f1", value=4.5, n=96)]
    assert write_adapter_evaluation(adapter_dir, results)
    card = ModelCard.load(adapter_dir / "README.md")
    assert "| macro | f1 | generate | 0 | 23.0 | [18.0, 28.0] | 96 |" in card.text
    assert "macro − gemma3-270m" in card.text and "| 4.5 |" not in card.text
    assert card.data.library_name == "peft"


def test_check_dataset_card_names_what_is_wrong(tmp_path: Path) -> None:
    out = _export(tmp_path, config_from_dict({}))
    (out / "README.md").write_text((out / "README.md").read_text().replace("- n<1K", "- tiny"))
    with pytest.raises(ValueError, match="size_categories 'tiny'"):
        check_dataset_card(out)


def test_published_adapter_dir_carries_its_model_card(tmp_path: Path) -> None:
    from trainer.artifacts import publish_adapter
    from trainer.config import TrainConfig

    dataset = _export(tmp_path, config_from_dict({})) / "sft.jsonl"
    config = TrainConfig(base_model="smollm2-135m", dataset=dataset, output_dir=tmp_path / "adapters/a1")
    ref = AdapterRef(name="a1", path=str(config.output_dir), base_model="smollm2-135m", dataset_sha256="cd" * 32)

    def save(path: Path) -> None:
        for name in ("adapter_config.json", "adapter_model.safetensors"):
            (path / name).write_text("{}")
        (path / "README.md").write_text("PEFT's own card\n")

    publish_adapter(save, config, ref)
    card = check_adapter_card(config.output_dir)
    assert card.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct" and card.data.license == "apache-2.0"
    assert "| alpha | `16` |" in card.text and "PEFT's own card" not in card.text
