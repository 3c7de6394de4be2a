"""Commands that live in other parts are registered, and a broken import fails loudly instead of hiding them."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from selfspec import cli


def _module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, source: str) -> str:
    (tmp_path / f"{name}.py").write_text(source + "\n\ndef command() -> None:\n    pass\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def _spec(module: str, group: typer.Typer) -> cli.CommandSpec:
    return cli.CommandSpec(module, "command", group, "extra-cmd", "a command from another part")


def test_cli_commands_of_every_part_are_registered() -> None:
    result = CliRunner().invoke(cli.app, ["--help"])
    assert result.exit_code == 0, result.output
    for spec in cli.COMMANDS:
        group = [] if spec.group is cli.app else ["serve"]
        sub = CliRunner().invoke(cli.app, [*group, spec.name, "--help"])
        assert sub.exit_code == 0, (spec.name, sub.output)


@pytest.mark.parametrize(("name", "source"), [
    ("cmds_broken", "from selfspec.errors import NoSuchError"),  # a broken import inside the project
    ("cmds_missing", "import selfspec_no_such_module"),  # a missing module that no extra provides
])
def test_cli_broken_command_import_fails_loudly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, source: str
) -> None:
    group = typer.Typer()
    module = _module(tmp_path, monkeypatch, name, source)
    with pytest.raises(ImportError):
        cli.register_commands([_spec(module, group)])


def test_cli_command_needing_a_missing_extra_is_skipped_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(cli.OPTIONAL_EXTRAS, "selfspec_fake_extra_pkg", "dense")
    group = typer.Typer()
    module = _module(tmp_path, monkeypatch, "cmds_extra", "import selfspec_fake_extra_pkg.sub")
    with caplog.at_level(logging.WARNING, logger="selfspec"):
        cli.register_commands([_spec(module, group)])
    assert group.registered_commands == []
    assert "`extra-cmd` is not available" in caplog.text and "'dense'" in caplog.text and ".[dense]" in caplog.text



def test_cli_model_cache_dir_follows_the_environment_like_runs_do(tmp_path: Path) -> None:
    """Before: `selfspec models list/pull` and `serve generator` ignored $SELFSPEC_CACHE_DIR, which runs and
    the trainer honour, so a model pulled by the CLI was not where a run looked for it."""
    from selfspec import models

    done = models.model_dir(tmp_path, "gemma3-270m") / models._DONE_MARKER
    done.parent.mkdir(parents=True)
    done.touch()
    env = {"COLUMNS": "400"}
    listed = CliRunner().invoke(cli.app, ["models", "list"], env={**env, "SELFSPEC_CACHE_DIR": str(tmp_path)})
    assert listed.exit_code == 0, listed.output
    assert str(done.parent) in listed.output
    flag_wins = CliRunner().invoke(cli.app, ["models", "list", "--cache-dir", str(tmp_path / "other")],
                                   env={**env, "SELFSPEC_CACHE_DIR": str(tmp_path)})
    assert flag_wins.exit_code == 0 and str(done.parent) not in flag_wins.output
