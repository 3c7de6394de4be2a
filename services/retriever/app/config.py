"""Settings of the retriever service: env vars `SELFSPEC_RETRIEVER__<FIELD>`, read once at startup.

The ranking knobs (`method`, `dense_model`, `rrf_k`) and their rule are `[retrieval]`'s own
(`selfspec.settings.RetrievalMethodKnobs`), so the service and a run config agree on defaults and bounds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from selfspec.settings import REPO_ROOT, RetrievalMethodKnobs

# Same place `selfspec run` keeps its embedded indexes (<data_dir>/indexes/<name>), so they are shared.
DEFAULT_DATA_DIR = REPO_ROOT / ".selfspec"


class RetrieverSettings(RetrievalMethodKnobs, BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SELFSPEC_RETRIEVER__", extra="forbid", frozen=True)

    backend: Literal["embedded", "elasticsearch"] = "embedded"
    data_dir: Path = Field(default=DEFAULT_DATA_DIR, description="embedded indexes live under data_dir/indexes/")
    es_url: str = Field(default="", description="Elasticsearch URL; required for the elasticsearch backend")
    es_timeout_s: float = Field(default=30.0, gt=0)
    max_body_bytes: int = Field(default=64 * 1024 * 1024, ge=1024, description="limit for one documents request")
    batch_size: int = Field(default=1000, ge=1, description="documents per bulk write to the backend")

    @model_validator(mode="after")
    def _es_needs_url(self) -> RetrieverSettings:
        if self.backend == "elasticsearch" and not self.es_url:
            raise ValueError("backend 'elasticsearch' needs es_url (SELFSPEC_RETRIEVER__ES_URL)")
        return self
