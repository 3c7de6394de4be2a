"""One definition per knob: the run config's sections are the source of the trainer's config, the
`selfspec train` flags, the trainer job API and the retriever service's settings."""

from __future__ import annotations

import dataclasses
import inspect
import os
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from typer.testing import CliRunner

from orchestrator.execution.services import LocalAdapterTrainer
from selfspec.errors import ConfigError
from selfspec.settings import (
    INDEX_NAME_PATTERN,
    REPO_ROOT,
    TRAINING_RUN_ONLY,
    RetrievalMethodKnobs,
    RetrievalSection,
    RunConfig,
    RunSection,
    TrainingSection,
    config_from_dict,
    resolve_cache_dir,
)
from selfspec.types import AdapterRef
from services.retriever.app.backends import base as retriever_base
from services.retriever.app.config import RetrieverSettings
from trainer import commands
from trainer.config import LOCAL_ONLY, SECTION_KNOBS, TrainConfig, field_help
from trainer.protocol import JobStatus
from trainer.service import create_app

REPO = Path(__file__).resolve().parents[2]


def _train_app() -> typer.Typer:
    app = typer.Typer()
    app.command("train")(commands.train_command)
    return app


def _non_default(name: str) -> Any:
    """A valid value other than the section's default, derived from the field's type and default."""
    info = TrainingSection.model_fields[name]
    default = info.default
    if typing.get_origin(info.annotation) is typing.Literal:
        return next(choice for choice in typing.get_args(info.annotation) if choice != default)
    if isinstance(default, bool):
        return not default
    if isinstance(default, int):
        return 7 if default == -1 else default * 2
    if isinstance(default, float):
        return default / 2
    raise AssertionError(f"no non-default value for [training] {name} ({info.annotation})")


class CapturingRunner:
    """A job runner that records the submitted config and finishes at once."""

    def __init__(self) -> None:
        self.configs: list[TrainConfig] = []

    async def submit(self, config: TrainConfig) -> str:
        self.configs.append(config)
        return "0" * 32

    async def status(self, job_id: str) -> JobStatus:
        config = self.configs[-1]
        adapter = AdapterRef(name=config.name, path=str(config.output_dir), base_model=config.base_model)
        return JobStatus(id=job_id, state="succeeded", adapter=adapter)


async def _submitted(config: RunConfig, tmp_path: Path) -> TrainConfig:
    runner = CapturingRunner()
    await LocalAdapterTrainer(config, runner=runner).train_adapter(
        dataset=tmp_path / "d.jsonl", name="run-r1", round=1, run_id="run", init_adapter=None)
    [submitted] = runner.configs
    return submitted


# ---- training ----

def test_knobs_section_is_split_into_trainer_knobs_and_run_only_keys() -> None:
    trainer_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(SECTION_KNOBS) | TRAINING_RUN_ONLY == set(TrainingSection.model_fields)
    assert set(SECTION_KNOBS) <= trainer_fields
    assert not TRAINING_RUN_ONLY & trainer_fields


def test_knobs_trainer_config_takes_default_help_and_type_from_section() -> None:
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    hints = typing.get_type_hints(TrainConfig)
    options = inspect.signature(commands.train_command).parameters
    for name in SECTION_KNOBS:
        info = TrainingSection.model_fields[name]
        assert info.description, f"[training] {name} has no help text"
        assert fields[name].default == info.default, name
        assert fields[name].metadata["help"] == info.description, name
        assert hints[name] == info.annotation, name
        assert options[name].default == info.default, name


def test_knobs_section_default_change_reaches_trainer_config_and_cli_flag() -> None:
    code = (
        "import inspect, dataclasses\n"
        "from selfspec.settings import TrainingSection\n"
        "TrainingSection.model_fields['lr'].default = 0.0123\n"
        "TrainingSection.model_fields['r'].default = 4\n"
        "from trainer.config import TrainConfig\n"
        "from trainer.commands import train_command\n"
        "defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}\n"
        "options = inspect.signature(train_command).parameters\n"
        "print(defaults['lr'], defaults['r'], options['lr'].default, options['r'].default)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert result.stdout.split() == ["0.0123", "4", "0.0123", "4"]


def test_knobs_trainer_config_is_checked_against_section_bounds(tmp_path: Path) -> None:
    job = {"base_model": "m", "dataset": tmp_path / "d.jsonl", "output_dir": tmp_path / "adapters/a"}
    for name, bad in [("max_length", 16), ("r", 2048), ("lr", 2.0), ("epochs", 1000.0), ("max_steps", 0),
                      ("quantization", "int8")]:
        with pytest.raises(ConfigError, match=name):
            TrainConfig(**job, **{name: bad})  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match=name):
            config_from_dict({"training": {name: bad}})
    with pytest.raises(ConfigError, match="r: Input should be a valid integer"):
        TrainConfig(**job, r=True)  # type: ignore[arg-type]  # strictly typed, as a JSON job file may not be


async def test_knobs_every_training_knob_reaches_the_trainer_job(tmp_path: Path) -> None:
    values = {name: _non_default(name) for name in SECTION_KNOBS}
    values["effective_batch"] = values["micro_batch"] * 3
    config = config_from_dict({"training": values})
    submitted = await _submitted(config, tmp_path)
    for name, value in values.items():
        assert getattr(submitted, name) == value, name
    assert submitted.base_model == config.generation.model and submitted.round == 1


async def test_knobs_storage_cache_dir_reaches_the_local_trainer(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SELFSPEC_CACHE_DIR", raising=False)
    config = config_from_dict({"storage": {"cache_dir": str(tmp_path / "models-cache")}})
    submitted = await _submitted(config, tmp_path)
    assert submitted.cache_dir == tmp_path / "models-cache" == config.cache_dir
    assert TrainConfig.from_dict(submitted.to_dict()).cache_dir == tmp_path / "models-cache"  # the job file
    assert resolve_cache_dir(submitted.cache_dir) == tmp_path / "models-cache"
    remote = config_from_dict({"storage": {"cache_dir": str(tmp_path / "models-cache")},
                               "services": {"trainer_url": "http://trainer:8300"}})
    assert (await _submitted(remote, tmp_path)).cache_dir is None  # the trainer service keeps its own


def test_knobs_trainer_provisions_the_model_in_the_job_cache_dir(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from trainer import train as train_module

    class Provisioned(Exception):
        pass

    seen: list[Path] = []

    def fake_resolve(model: str, cache_dir: Path) -> Path:
        seen.append(cache_dir)
        raise Provisioned

    monkeypatch.delenv("SELFSPEC_CACHE_DIR", raising=False)
    monkeypatch.setattr(train_module, "resolve_model_path", fake_resolve)
    config = TrainConfig(base_model="smollm2-135m", dataset=tmp_path / "d.jsonl", output_dir=tmp_path / "a/x",
                         cache_dir=tmp_path / "cache")
    with pytest.raises(Provisioned):
        train_module._train(config, records=[], sha="0", started=0.0, progress_callback=None)
    assert seen == [tmp_path / "cache"]


def test_knobs_cache_dir_has_one_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SELFSPEC_CACHE_DIR", raising=False)
    assert resolve_cache_dir() == REPO_ROOT / ".cache/selfspec" == RunConfig().cache_dir
    assert resolve_cache_dir(Path("elsewhere")) == REPO_ROOT / "elsewhere"
    monkeypatch.setenv("SELFSPEC_CACHE_DIR", str(tmp_path))
    assert resolve_cache_dir(Path("elsewhere")) == tmp_path == RunConfig().cache_dir


def test_knobs_train_flags_are_generated_from_trainer_config_fields() -> None:
    options = inspect.signature(commands.train_command).parameters
    assert list(options) == [f.name for f in dataclasses.fields(TrainConfig)]
    result = CliRunner().invoke(_train_app(), ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for flag in ("--base", "--out", "--name", "--micro-batch", "--lr", "--cache-dir", "--packing"):
        assert flag in result.output
    assert "Peak learning rate (AdamW)." in result.output and "[default: 0.0003]" in result.output


def test_knobs_train_flags_build_the_trainer_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[TrainConfig] = []

    def stop(path: Path) -> None:
        raise ConfigError("stop here")

    original = commands.TrainConfig

    def capture(**fields: Any) -> TrainConfig:
        built.append(original(**fields))
        return built[-1]

    monkeypatch.setattr(commands, "TrainConfig", capture)
    monkeypatch.setattr(commands, "load_sft_records", stop)
    args = ["--dataset", "d.jsonl", "--base", "m", "--out", str(tmp_path / "a1"), "--r", "16",
            "--effective-batch", "8", "--micro-batch", "2", "--packing", "--no-gradient-checkpointing",
            "--cache-dir", str(tmp_path / "cache"), "--name", "b1"]
    result = CliRunner().invoke(_train_app(), args)
    assert result.exit_code == 2 and "stop here" in result.output
    [config] = built
    assert (config.r, config.effective_batch, config.micro_batch, config.packing) == (16, 8, 2, True)
    assert config.gradient_checkpointing is False and config.cache_dir == tmp_path / "cache"
    assert (config.base_model, config.name, config.lr) == ("m", "b1", TrainingSection().lr)


async def test_knobs_job_api_refuses_a_cache_dir(tmp_path: Path) -> None:
    assert LOCAL_ONLY == {"cache_dir"} and field_help()["cache_dir"][0] is None
    data, adapters = tmp_path / "data", tmp_path / "adapters"
    data.mkdir()
    adapters.mkdir()
    app = create_app(data_dir=data, adapters_dir=adapters, runner=CapturingRunner())  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost") as client:
        body = {"base_model": "m", "dataset": "d.jsonl", "output_dir": "a1", "cache_dir": "/tmp/anywhere"}
        response = await client.post("/jobs", json=body)
    assert response.status_code == 422 and "cache_dir" in response.text


# ---- retrieval ----

def test_knobs_retrieval_method_fields_and_rule_are_shared() -> None:
    for name in RetrievalMethodKnobs.model_fields:
        section, service = RetrievalSection.model_fields[name], RetrieverSettings.model_fields[name]
        assert (section.default, section.metadata, section.description) == (
            service.default, service.metadata, service.description), name
    with pytest.raises(ValueError, match="rrf_k"):
        RetrieverSettings(rrf_k=10_001)
    with pytest.raises(ValueError, match="rrf_k"):
        RetrievalSection(rrf_k=10_001)
    rule = 'runs in-process: it needs backend = "embedded"'
    with pytest.raises(ValueError, match=rule):
        RetrieverSettings(backend="elasticsearch", es_url="http://es:9200", method="dense")
    with pytest.raises(ValueError, match=rule):
        RetrievalSection(backend="http", method="hybrid")


@pytest.mark.parametrize("name", ["biomedical", "a", "x_1-b", "Bio", "-x", "a" * 65, "a/b", ""])
def test_knobs_index_name_pattern_is_shared(name: str) -> None:
    assert retriever_base.INDEX_NAME_PATTERN is INDEX_NAME_PATTERN
    try:
        retriever_base.validate_index_name(name)
        service_ok = True
    except retriever_base.InvalidIndexName:
        service_ok = False
    try:
        RunSection(index=name)
        run_ok = True
    except ValueError:
        run_ok = False
    assert service_ok == run_ok


def test_knobs_train_script_flags_are_the_fields_and_their_aliases(tmp_path: Path) -> None:
    from trainer.train import _parse

    config, known = _parse(["--base", "m", "--dataset", "d.jsonl", "--out", str(tmp_path / "x"), "--r", "16",
                            "--cache-dir", str(tmp_path / "cache")])
    assert (config.base_model, config.output_dir, config.r) == ("m", tmp_path / "x", 16)
    assert config.cache_dir == tmp_path / "cache" and known.result_file is None  # `--r` is no abbreviation
