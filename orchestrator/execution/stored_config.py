"""The config a stored run is driven with: its own sections, under the server's current ones.

A run's config is stored as submitted. When a worker (or a resume after a restart) drives it again, the
sections the server owns (where its store, data and services are: `SERVER_SECTIONS`) come from the
server as it is now, not from the stored copy. Values are taken as given: no `SELFSPEC_*` env source.
"""

from __future__ import annotations

from typing import Any

from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from selfspec.settings import RunConfig

SERVER_SECTIONS = ("storage", "services")


class RequestedRunConfig(RunConfig):
    """A `RunConfig` built from explicit values only (no env source): what a request or the store says."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def server_sections(server: RunConfig) -> dict[str, Any]:
    """The sections the server owns (where its store, data and services are), as JSON."""
    dumped = server.model_dump(mode="json")
    return {section: dumped[section] for section in SERVER_SECTIONS}


def resumed_run_config(data: dict[str, Any], sections: dict[str, Any]) -> RunConfig:
    """The config a stored run is driven with: its own sections, but the server's current `sections`
    (`server_sections`). The stored copy of those is what the server had when the run was created; after
    a restart with moved services, other replicas or a new trainer, it would send the run to stale URLs."""
    return RequestedRunConfig(**{**data, **sections})
