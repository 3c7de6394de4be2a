"""Sweep files: validation with file/variant/key in errors, grid expansion, and the work-sharing plan."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.execution.sweep import load_sweep
from selfspec.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, grid: str, overrides: str = "", base: str = "") -> Path:
    (tmp_path / "base.toml").write_text(base or '[run]\nname = "b"\n[rounds]\ncount = 2\n')
    path = tmp_path / "sweep.toml"
    path.write_text(f'[sweep]\nname = "t"\nbase = "base.toml"\n[sweep.overrides]\n{overrides}\n[grid]\n{grid}\n')
    return path


def test_grid_expands_to_every_combination_with_readable_labels(tmp_path: Path) -> None:
    sweep = load_sweep(write(tmp_path, '"retrieval.k" = [0, 5]\n"generation.temperature" = [0.5, 1.0]'))
    assert [v.label for v in sweep.variants] == [
        "k=0,temperature=0.5", "k=0,temperature=1.0", "k=5,temperature=0.5", "k=5,temperature=1.0"]
    assert sweep.variants[3].config.retrieval.k == 5 and sweep.variants[3].config.generation.temperature == 1.0
    assert len({v.config.run.name for v in sweep.variants}) == 4


def test_k_variants_share_instructions_and_temperature_variants_do_not(tmp_path: Path) -> None:
    sweep = load_sweep(write(tmp_path, '"retrieval.k" = [0, 5]\n"generation.temperature" = [0.5, 1.0]'))
    shares = {v.label: v.shares for v in sweep.variants}
    assert shares["k=0,temperature=0.5"] is None and shares["k=0,temperature=1.0"] is None
    assert shares["k=5,temperature=0.5"] == ("instructions", "k=0,temperature=0.5")
    assert shares["k=5,temperature=1.0"] == ("instructions", "k=0,temperature=1.0")


def test_round2_variants_share_all_of_round1(tmp_path: Path) -> None:
    sweep = load_sweep(write(tmp_path, '"rounds.round2.instructions" = ["distinct", "reuse"]'))
    assert [v.shares for v in sweep.variants] == [None, ("round1", "instructions=distinct")]
    one_round = load_sweep(write(tmp_path, '"rounds.round2.instructions" = ["distinct", "reuse"]',
                                 base='[run]\nname = "b"\n[rounds]\ncount = 1\n'))
    assert one_round.variants[1].shares == ("instructions", "instructions=distinct")


def test_share_false_runs_everything(tmp_path: Path) -> None:
    path = write(tmp_path, '"retrieval.k" = [0, 5]')
    path.write_text(path.read_text().replace('base = "base.toml"', 'base = "base.toml"\nshare = false'))
    assert [v.shares for v in load_sweep(path).variants] == [None, None]


@pytest.mark.parametrize(("grid", "overrides", "expected"), [
    ('"retrieval.kay" = [1]', "", r"sweep.toml: variant kay=1: .*retrieval.kay"),
    ('"retrieval.k" = [1, 500]', "", r"variant k=500: .*retrieval.k"),
    ('"retrieval.k" = []', "", r"\[grid.retrieval.k\] needs at least one value"),
    ('"retrieval.k" = [1, 1]', "", r"repeats a value"),
    ('"retrieval.k" = [1]', '"retrieval.k" = 2', r"both in \[sweep.overrides\] and \[grid\]"),
    ('"retrieval.method" = ["dense"]', '"retrieval.backend" = "http"', r"variant method=dense: .*retrieval"),
])
def test_bad_sweeps_name_file_variant_and_key(tmp_path: Path, grid: str, overrides: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_sweep(write(tmp_path, grid, overrides))


def test_unknown_sweep_field_and_missing_file(tmp_path: Path) -> None:
    path = write(tmp_path, '"retrieval.k" = [1]')
    path.write_text(path.read_text().replace('name = "t"', 'name = "t"\ncolour = "red"'))
    with pytest.raises(ConfigError, match=r"sweep.toml: .*sweep.colour"):
        load_sweep(path)
    with pytest.raises(ConfigError, match="file not found"):
        load_sweep(tmp_path / "missing.toml")


@pytest.mark.parametrize("name", ["sweep-topk.toml", "sweep-iteration.toml", "sweep-retriever.toml",
                                  "sweep-topk-gpu.toml", "sweep-iteration-gpu.toml", "sweep-retriever-gpu.toml"])
def test_shipped_sweeps_are_valid_and_share_work(name: str) -> None:
    sweep = load_sweep(REPO / "configs" / name)
    assert len(sweep.variants) >= 2
    assert all(v.shares is not None for v in sweep.variants[1:])
