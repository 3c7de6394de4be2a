from __future__ import annotations

from pathlib import Path

import pytest

from selfspec.errors import ConfigError
from selfspec.settings import load_config

REPO = Path(__file__).resolve().parents[2]


def test_shipped_configs_validate() -> None:
    for path in sorted((REPO / "configs").glob("*.toml")):
        if path.name.startswith("sweep-"):
            continue
        config = load_config(path)
        assert config.run.name


def test_unknown_key_in_file_names_its_path(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[generation]\ntemprature = 0.5\n")
    with pytest.raises(ConfigError, match=r"bad.toml: \[generation.temprature\] Extra inputs"):
        load_config(path)


def test_bad_value_names_its_path(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[retrieval]\nk = -1\n")
    with pytest.raises(ConfigError, match=r"\[retrieval.k\]"):
        load_config(path)


def test_invalid_toml_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[run\nname='x'\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(path)


def test_env_overrides_file_key_by_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[generation]\ntemperature = 0.9\ntop_p = 0.5\n")
    monkeypatch.setenv("SELFSPEC_GENERATION__TEMPERATURE", "0.3")
    monkeypatch.setenv("SELFSPEC_SERVICES__GENERATOR_URLS", "http://a:1,http://b:2")
    config = load_config(path)
    assert config.generation.temperature == 0.3
    assert config.generation.top_p == 0.5
    assert config.services.generator_urls == ("http://a:1", "http://b:2")


def test_unknown_env_key_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SELFSPEC_RETRIEVAL__KAY", "3")
    with pytest.raises(ConfigError, match=r"retrieval.kay"):
        load_config(None)


def test_cross_field_validation() -> None:
    with pytest.raises(ConfigError, match="min_words"):
        load_config(None, {"filters.min_words": 10, "filters.max_words": 5})


def test_paper_defaults() -> None:
    config = load_config(None)
    assert (config.generation.seeds_per_prompt, config.generation.temperature, config.generation.top_p) == (3, 1.0, 0.98)
    assert config.retrieval.k == 5 and config.filters.rouge_l_threshold == 0.7
    assert (config.training.r, config.training.alpha, config.training.lr) == (8, 16, 3e-4)
    assert config.training.effective_batch == 32 and config.rounds.count == 2
