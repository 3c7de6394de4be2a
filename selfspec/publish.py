"""`selfspec publish dataset|adapter PATH --repo-id ORG/NAME`: push an exported round or an adapter to the
Hugging Face Hub with `huggingface_hub` (private unless asked otherwise).

The token comes from `HF_TOKEN` (or `huggingface-cli login`), the Hub from `HF_ENDPOINT` (default
huggingface.co), as everywhere in huggingface_hub. Before anything is sent the folder's card is checked
locally (selfspec/cards.py), and only the files the card describes are uploaded.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal

from selfspec.errors import ConfigError

log = logging.getLogger(__name__)

Kind = Literal["dataset", "adapter"]
DATASET_FILES = ["README.md", "sft.jsonl", "alpaca.jsonl", "messages.jsonl", "provenance.jsonl"]
ADAPTER_FILES = ["README.md", "adapter_config.json", "adapter_model.safetensors", "selfspec-adapter.json"]


def publish(kind: Kind, path: Path, *, repo_id: str, private: bool = True, token: str | None = None,
            endpoint: str | None = None, message: str | None = None) -> str:
    """Create the repo (if missing) and upload the folder's card and data files; the commit URL."""
    from huggingface_hub import HfApi

    from selfspec.cards import check_adapter_card, check_dataset_card

    if not path.is_dir():
        raise ConfigError(f"{path}: not a directory")
    if "/" not in repo_id or repo_id.count("/") != 1:
        raise ConfigError(f"--repo-id {repo_id!r}: expected ORG/NAME")
    try:
        check_dataset_card(path) if kind == "dataset" else check_adapter_card(path)
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path}: {kind} card missing or invalid: {err}") from err
    files = DATASET_FILES if kind == "dataset" else ADAPTER_FILES
    missing = [name for name in files if not (path / name).is_file() and name != "selfspec-adapter.json"]
    if missing:
        raise ConfigError(f"{path}: missing {', '.join(missing)}")
    repo_type = "dataset" if kind == "dataset" else "model"
    api = HfApi(endpoint=endpoint or os.environ.get("HF_ENDPOINT") or None, token=token)
    url = api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
    log.info("publishing %s to %s (%s)", path, url, "private" if private else "public")
    info = api.upload_folder(folder_path=path, repo_id=repo_id, repo_type=repo_type, allow_patterns=files,
                             commit_message=message or f"selfspec: {kind} {path.name}")
    return str(getattr(info, "commit_url", info))
