from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from selfspec.errors import ConfigError
from selfspec.publish import publish
from selfspec.settings import config_from_dict
from selfspec.types import AdapterRef
from tests.fakes.hub import HubState, create_fake_hub
from tests.unit.test_cards import _export


@pytest.fixture
def hub() -> Iterator[tuple[str, HubState]]:
    """The fake Hub API on a 127.0.0.1 port this test binds (no network)."""
    state = HubState()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_fake_hub(state), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "fake hub did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", state
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def test_publish_dataset_uploads_card_and_files_privately(tmp_path: Path, hub: tuple[str, HubState]) -> None:
    url, state = hub
    out = _export(tmp_path, config_from_dict({}))
    (out / "train.jsonl").write_text("{}\n")  # not part of the published dataset
    publish("dataset", out, repo_id="org/bio-r1", token=state.token, endpoint=url)
    repo = state.repos["org/bio-r1"]
    assert repo.type == "dataset" and repo.private
    assert sorted(repo.files) == sorted(["README.md", "sft.jsonl", "alpaca.jsonl", "messages.jsonl",
                                         "provenance.jsonl"])
    assert repo.files["alpaca.jsonl"] == (out / "alpaca.jsonl").read_bytes()
    publish("dataset", out, repo_id="org/bio-r1", token=state.token, endpoint=url)  # an existing repo is fine
    assert len(repo.commits) == 2 and not state.unknown
    assert state.validated and state.validated[0] == (out / "README.md").read_text()  # the Hub checks the card


def test_publish_adapter_and_refusals(tmp_path: Path, hub: tuple[str, HubState]) -> None:
    from selfspec.cards import adapter_card

    url, state = hub
    adapter = tmp_path / "a1"
    adapter.mkdir()
    for name in ("adapter_config.json", "adapter_model.safetensors", "selfspec-adapter.json"):
        (adapter / name).write_text("{}")
    ref = AdapterRef(name="a1", path=str(adapter), base_model="gemma3-270m")
    (adapter / "README.md").write_text(adapter_card(ref, settings={"r": 8}, dataset=None))
    publish("adapter", adapter, repo_id="org/a1", token=state.token, endpoint=url, private=False)
    repo = state.repos["org/a1"]
    assert repo.type == "model" and not repo.private and "adapter_model.safetensors" in repo.files

    (adapter / "README.md").write_text("no card\n")
    with pytest.raises(ConfigError, match="adapter card"):
        publish("adapter", adapter, repo_id="org/a1", token=state.token, endpoint=url)
    with pytest.raises(ConfigError, match="ORG/NAME"):
        publish("adapter", adapter, repo_id="a1", token=state.token, endpoint=url)


def test_cli_publish_reads_hf_token_and_hf_endpoint(tmp_path: Path, hub: tuple[str, HubState],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from selfspec.cli import app

    url, state = hub
    out = _export(tmp_path, config_from_dict({}))
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setenv("HF_TOKEN", state.token)
    result = CliRunner().invoke(app, ["publish", "dataset", str(out), "--repo-id", "org/ds"])
    assert result.exit_code == 0, result.output
    assert "private" in result.output and state.repos["org/ds"].private
    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    result = CliRunner().invoke(app, ["publish", "dataset", str(out), "--repo-id", "org/ds2"])
    assert result.exit_code == 1 and "org/ds2" not in state.repos
