"""`/v1/adapters`: adapters trained by runs (the store) and what the generator has loaded.

Names are validated before anything else (no separators, no '..'); a path given in a load request
must lie under the configured adapters dir and exist, or nothing is sent to the generator.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends

from orchestrator.api.deps import Config, GeneratorClient, LoopThreadDep, Store, require_token
from orchestrator.api.protocol import AdapterAction, AdapterLoadRequest, AdapterOut
from selfspec.adapters import validate_adapter_name, validate_adapter_path
from selfspec.errors import AdapterNotFound, BackendError

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/adapters", tags=["adapters"], dependencies=[Depends(require_token)])


@router.get("", response_model=list[AdapterOut])
async def list_adapters(store: Store, generator: GeneratorClient, loop_thread: LoopThreadDep) -> Any:
    try:
        loaded: set[str] | None = set(await loop_thread.call(generator.list()))
    except BackendError as err:  # the list still shows what the store knows
        log.warning("cannot list the generator's adapters: %s", err)
        loaded = None
    known = await asyncio.to_thread(store.list_adapters)
    rows = [
        {"name": a.name, "loaded": None if loaded is None else a.name in loaded, "run_id": a.run_id, "round": a.round,
         "path": a.path, "base_model": (a.manifest or {}).get("base_model"), "created_at": a.created_at}
        for a in known
    ]
    rows += [{"name": name, "loaded": True} for name in sorted((loaded or set()) - {a.name for a in known})]
    return rows


@router.post("/{name}/load", response_model=AdapterAction)
async def load_adapter(
    name: str,
    store: Store,
    config: Config,
    generator: GeneratorClient,
    loop_thread: LoopThreadDep,
    body: Annotated[AdapterLoadRequest | None, Body()] = None,
) -> AdapterAction:
    validate_adapter_name(name)
    if body is not None and body.path is not None:
        path = validate_adapter_path(body.path, config.adapters_dir)
    else:
        known = await asyncio.to_thread(store.get_adapter, name)
        if known is None:
            raise AdapterNotFound(f"adapter {name!r} is not in the store; give its path under the adapters dir")
        path = validate_adapter_path(known.path, config.adapters_dir)
    if not await asyncio.to_thread(path.is_dir):
        raise AdapterNotFound(f"no adapter directory at {path}")
    await loop_thread.call(generator.load_adapter(name, str(path)))
    return AdapterAction(name=name, loaded=True, path=str(path))


@router.post("/{name}/unload", response_model=AdapterAction)
async def unload_adapter(name: str, generator: GeneratorClient, loop_thread: LoopThreadDep) -> AdapterAction:
    validate_adapter_name(name)
    await loop_thread.call(generator.unload_adapter(name))
    return AdapterAction(name=name, loaded=False)
