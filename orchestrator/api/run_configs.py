"""Run configs from API requests: merged over the server's config, validated with field paths, confined.

A request body has the TOML's sections; anything it leaves out comes from the server's config (which
already carries the `SELFSPEC_*` env overrides). The request's own values win over env here, because
the env shaped the server, not this run. What the server owns (storage, services, the retriever's
index and corpus) must not differ, and the seeds file must lie in the repo's seeds dir or the data dir:
no filesystem path from a request reaches outside the configured dirs. Models likewise: `generation.model`
(the trainer's base, a path it would load) is a registered model, the server's own or one of
`services.allowed_models`; `retrieval.dense_model` the packaged one, the server's or an allowed one;
`retrieval.method` the server's or one of `services.allowed_retrieval_methods`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from orchestrator.execution.stored_config import SERVER_SECTIONS, RequestedRunConfig, merge
from selfspec.errors import RequestFieldError
from selfspec.models import REGISTRY
from selfspec.settings import REPO_ROOT, RunConfig
from selfspec.urls import redact_url

SERVER_FIELDS = (("run", "index"), ("run", "corpus"), ("retrieval", "backend"))


def _error(loc: tuple[str, ...], msg: str, kind: str) -> dict[str, Any]:
    return {"loc": ["body", *loc], "msg": msg, "type": kind}


def allowed_seed_roots(server: RunConfig) -> tuple[Path, ...]:
    return ((REPO_ROOT / "seeds").resolve(), server.data_dir.resolve())


def _inside(path: Path, roots: tuple[Path, ...]) -> bool:
    resolved = path.resolve()
    return any(resolved == root or root in resolved.parents for root in roots)


def registered_models() -> tuple[str, ...]:
    return tuple(sorted({name for spec in REGISTRY.values() for name in (spec.name, spec.dir_name)}))


def _unlisted_choices(config: RunConfig, server: RunConfig) -> list[dict[str, Any]]:
    """Model and retrieval choices that are neither the server's, nor registered, nor allowlisted: a request
    must not point the trainer or the dense encoder at an arbitrary local path."""
    allowed = server.services
    checks: list[tuple[tuple[str, str], Any, tuple[Any, ...], str]] = [
        (("generation", "model"), config.generation.model,
         (server.generation.model, *registered_models(), *allowed.allowed_models),
         "a registered model or one of the server's services.allowed_models"),
        (("retrieval", "dense_model"), config.retrieval.dense_model,
         ("", server.retrieval.dense_model, *allowed.allowed_dense_models),
         "empty (the packaged model) or one of the server's services.allowed_dense_models"),
        (("retrieval", "method"), config.retrieval.method,
         (server.retrieval.method, *allowed.allowed_retrieval_methods),
         "the server's method or one of its services.allowed_retrieval_methods"),
    ]
    errors = []
    for loc, value, choices, what in checks:
        if value not in choices:
            listed = ", ".join(repr(c) for c in dict.fromkeys(choices))
            errors.append(_error(loc, f"{value!r} is not allowed here: must be {what} ({listed})", "not_allowed"))
    return errors


def build_run_config(body: Any, server: RunConfig) -> RunConfig:
    """Validate a request body into a run config, or raise `RequestFieldError` naming every bad field."""
    if not isinstance(body, dict):
        raise RequestFieldError([_error((), "expected a JSON object with run config sections", "dict_type")])
    try:
        config = RequestedRunConfig(**merge(server.model_dump(mode="json"), body))
    except ValidationError as err:
        raise RequestFieldError([
            _error(tuple(str(p) for p in e["loc"]), e["msg"], e["type"]) for e in err.errors()
        ]) from err
    errors = [
        _error((section,), "is set by the server's config and cannot differ in a run request", "server_owned")
        for section in SERVER_SECTIONS if getattr(config, section) != getattr(server, section)
    ]
    for section, field in SERVER_FIELDS:
        if getattr(getattr(config, section), field) != getattr(getattr(server, section), field):
            wanted = getattr(getattr(server, section), field)
            errors.append(_error((section, field), f"this server serves {wanted!r}; start a server with "
                                 "another config for a different index", "server_owned"))
    errors += _unlisted_choices(config, server)
    seeds = config.resolve(config.run.seeds)
    if not _inside(seeds, allowed_seed_roots(server)):
        roots = ", ".join(str(r) for r in allowed_seed_roots(server))
        errors.append(_error(("run", "seeds"), f"must lie under one of: {roots}", "path_outside"))
    elif not seeds.is_file():
        errors.append(_error(("run", "seeds"), f"no such file: {config.run.seeds}", "path_missing"))
    if errors:
        raise RequestFieldError(errors)
    return config


def public_config(data: dict[str, Any] | None) -> dict[str, Any]:
    """A stored run config as the API shows it: without the server-owned sections (storage holds the
    database URL, services the replica URLs, either may carry credentials), the judge URL without a password."""
    shown = {key: value for key, value in (data or {}).items() if key not in SERVER_SECTIONS}
    gates = shown.get("gates")
    if isinstance(gates, dict) and isinstance(gates.get("judge_url"), str):
        shown["gates"] = {**gates, "judge_url": redact_url(gates["judge_url"])}
    return shown
