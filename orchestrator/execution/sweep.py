"""`selfspec sweep`: a grid over run-config keys, run as ordinary runs that share work, evaluated together.

A sweep file names a base run config, overrides for every variant, and a grid:

    [sweep]
    name = "topk"
    base = "demo.toml"                         # relative to the sweep file
    [sweep.overrides]
    "generation.target_per_round" = 24
    [grid]
    "retrieval.k" = [0, 1, 5]

Each grid point is a normal run (in the store, the API and the dashboard; resumable). Work is shared
where the config allows it, decided by comparing the variants' configs:
- variants whose round 1 would be identical (same config apart from `rounds.*`) run round 1 once:
  later ones continue from the first one's round 1 and r1 adapter (`run.round1_from`);
- variants that differ only in retrieval/training/response knobs answer the same round-1
  instructions (`run.instructions_from`), so a top-k sweep compares k on identical instructions.
Then every model (base once, each adapter once) is evaluated on the same items in one pass, and
`report.md` + `report.png` compare the variants. Re-running the same command resumes: finished runs
are kept, unfinished ones resume, evaluation answers already saved are not asked again.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from rich.console import Console

from orchestrator.execution.driver import hot_load
from orchestrator.execution.evaluated_run import (
    build_driver,
    eval_task_files,
    evaluate_models,
    execute_and_evaluate,
)
from orchestrator.execution.services import Services, open_retriever, open_services
from orchestrator.store import RunStore
from selfspec.errors import ConfigError
from selfspec.files import write_text_atomic
from selfspec.jsonl import describe_validation_error
from selfspec.progress import RichProgress
from selfspec.settings import RunConfig, load_config, read_toml
from selfspec.types import AdapterRef, EvalResult

log = logging.getLogger(__name__)

GridValue = int | float | str | bool
# Sections that never change round 1's content; round 1 is shared across variants differing only here.
_NOT_ROUND1 = ("rounds", "eval", "services", "storage")
# Knobs that change round-1 answers but not round-1 instructions.
_RESPONSE_ONLY = {"retrieval": None, "training": None,
                  "generation": ("response_max_tokens", "demos_per_response", "passage_max_words", "response_workers")}
_SHARING_FIELDS = ("name", "instructions_from", "round1_from")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SweepSection(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,40}$")
    base: Path
    overrides: dict[str, GridValue | list[GridValue]] = Field(default_factory=dict)
    share: bool = Field(True, description="share round 1 / instructions between variants where configs allow")


class SweepFile(_Strict):
    sweep: SweepSection
    grid: dict[str, list[GridValue]] = Field(min_length=1)


@dataclass
class Variant:
    label: str
    values: dict[str, GridValue]
    config: RunConfig
    overrides: dict[str, Any]
    shares: tuple[Literal["round1", "instructions"], str] | None = None  # (what, label of the source)


@dataclass
class Sweep:
    name: str
    path: Path
    base_path: Path
    grid: dict[str, list[GridValue]]
    variants: list[Variant]

    @property
    def base(self) -> RunConfig:
        return self.variants[0].config

    def directory(self) -> Path:
        return self.base.data_dir / "sweeps" / self.name


@dataclass
class VariantOutcome:
    variant: Variant
    run_id: str
    adapters: list[AdapterRef] = field(default_factory=list)
    samples: int = 0
    instruction_tokens: int = 0
    wall_s: float = 0.0
    training_s: float = 0.0

    @property
    def final_model(self) -> str:
        return self.adapters[-1].name if self.adapters else self.variant.config.generation.model


def _label(values: dict[str, GridValue]) -> str:
    return ",".join(f"{key.split('.')[-1]}={value}" for key, value in values.items())


def load_sweep(path: Path) -> Sweep:
    """Read and validate a sweep file and every variant's config; errors name the file and key."""
    raw = read_toml(path)
    try:
        spec = SweepFile.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(f"{path}: {describe_validation_error(err)}") from err
    for key, choices in spec.grid.items():
        if not choices:
            raise ConfigError(f"{path}: [grid.{key}] needs at least one value")
        if len(set(map(repr, choices))) != len(choices):
            raise ConfigError(f"{path}: [grid.{key}] repeats a value")
        if key in spec.sweep.overrides:
            raise ConfigError(f"{path}: {key} is both in [sweep.overrides] and [grid]")
    base_path = spec.sweep.base if spec.sweep.base.is_absolute() else Path(path).parent / spec.sweep.base
    variants = []
    for combo in itertools.product(*spec.grid.values()):
        values = dict(zip(spec.grid, combo, strict=True))
        label = _label(values)
        overrides = {**spec.sweep.overrides, **values, "run.name": _safe_name(f"{spec.sweep.name}-{label}"[:64])}
        try:
            config = load_config(base_path, overrides)
        except ConfigError as err:
            raise ConfigError(f"{path}: variant {label}: {err}") from err
        variants.append(Variant(label, values, config, overrides))
    models = {v.config.generation.model for v in variants}
    if len(models) > 1:
        raise ConfigError(f"{path}: variants use different base models {sorted(models)}; one sweep, one base model")
    sweep = Sweep(spec.sweep.name, Path(path), base_path, dict(spec.grid), variants)
    if spec.sweep.share:
        plan_sharing(sweep.variants)
    return sweep


def _safe_name(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "_.-" else "-" for c in name)
    return cleaned.strip("-.")[:64] or "sweep"


def _signature(config: RunConfig, *, instructions_only: bool) -> str:
    data = config.model_dump(mode="json")
    for section in _NOT_ROUND1:
        data.pop(section, None)
    for key in _SHARING_FIELDS:
        data["run"].pop(key, None)
    if instructions_only:
        for section, keys in _RESPONSE_ONLY.items():
            if keys is None:
                data.pop(section, None)
            else:
                for key in keys:
                    data[section].pop(key, None)
    return json.dumps(data, sort_keys=True)


def plan_sharing(variants: list[Variant]) -> None:
    """Mark each variant that can reuse an earlier variant's round 1, or its round-1 instructions."""
    round1: dict[str, str] = {}
    instructions: dict[str, str] = {}
    for variant in variants:
        cfg = variant.config
        full, instr = _signature(cfg, instructions_only=False), _signature(cfg, instructions_only=True)
        if cfg.run.round1_from or cfg.run.instructions_from:
            continue  # set by hand in the base config: leave it alone
        if full in round1 and cfg.rounds.count >= 2 and cfg.training.enabled:
            variant.shares = ("round1", round1[full])
        elif instr in instructions:
            variant.shares = ("instructions", instructions[instr])
        round1.setdefault(full, variant.label)
        instructions.setdefault(instr, variant.label)


class SweepState:
    """variant label -> run id, saved after every new run so a killed sweep resumes the same runs."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.runs: dict[str, str] = json.loads(path.read_text())["runs"] if path.is_file() else {}

    def record(self, label: str, run_id: str) -> None:
        self.runs[label] = run_id
        write_text_atomic(self.path, json.dumps({"runs": self.runs}, indent=2) + "\n")


def _with_sharing(sweep: Sweep, variant: Variant, state: SweepState) -> RunConfig:
    if variant.shares is None:
        return variant.config
    what, source_label = variant.shares
    key = "run.round1_from" if what == "round1" else "run.instructions_from"
    return load_config(sweep.base_path, {**variant.overrides, key: state.runs[source_label]})


def _run_adapters(store: RunStore, run_id: str, config: RunConfig) -> list[AdapterRef]:
    own = [a.ref() for a in store.list_adapters(run_id=run_id)]
    if config.run.round1_from:
        own = [a.ref() for a in store.list_adapters(run_id=config.run.round1_from) if a.round == 1] + own
    return sorted(own, key=lambda a: a.round)


def _outcome(store: RunStore, variant: Variant, run_id: str, config: RunConfig) -> VariantOutcome:
    run = store.get_run(run_id)
    stats = store.stats(run_id)["rounds"]
    adapters = _run_adapters(store, run_id, config)
    return VariantOutcome(
        variant=variant, run_id=run_id, adapters=adapters,
        samples=sum(r["samples"].get("ok", 0) for r in stats.values()),
        instruction_tokens=sum(r["instruction_tokens"] for r in stats.values()),
        wall_s=(run.updated_at - run.created_at).total_seconds(),
        training_s=sum(a.wall_s for a in adapters if a.run_id == run_id),
    )


async def _run_variant(variant: Variant, config: RunConfig, base: RunConfig, services: Services,
                       state: SweepState, console: Console) -> VariantOutcome:
    store = services.store
    async with AsyncExitStack() as stack:
        if config.retrieval.model_dump(exclude={"k"}) != base.retrieval.model_dump(exclude={"k"}):
            services = replace(services, retriever=await open_retriever(config, stack))
        driver = build_driver(config, services)
        run_id = state.runs.get(variant.label)
        if run_id is None:
            run_id = driver.create()
            state.record(variant.label, run_id)
        shared = f" (shares {variant.shares[0]} of {variant.shares[1]})" if variant.shares else ""
        if store.get_run(run_id).status == "completed":
            console.print(f"[dim]{variant.label}: run {run_id} already completed[/]")
            for adapter in _run_adapters(store, run_id, config):
                await hot_load(services.generator, adapter)
        else:
            console.print(f"[bold]{variant.label}[/]: run {run_id}{shared}")
            # The variants' models are evaluated together, on the same items, once all have run.
            await execute_and_evaluate(driver, run_id, services=services, evaluate=False,
                                       progress=lambda: RichProgress(console))
    return _outcome(store, variant, run_id, config)


async def run_sweep(sweep: Sweep, console: Console) -> Path:
    """Run (or resume) every variant, evaluate all their models together, write the sweep report."""
    from orchestrator.execution.sweep_report import write_sweep_report

    out = sweep.directory()
    state = SweepState(out / "state.json")
    base = sweep.base
    started = time.monotonic()
    async with open_services(base) as services:
        outcomes = []
        for variant in sweep.variants:
            config = _with_sharing(sweep, variant, state)
            outcomes.append(await _run_variant(variant, config, base, services, state, console))
        results: list[EvalResult] = []
        if base.eval.tasks:
            models = list(dict.fromkeys([base.generation.model, *(a.name for o in outcomes for a in o.adapters)]))
            console.print(f"evaluating {len(models)} models on {len(eval_task_files(base))} task files")
            with RichProgress(console) as progress:
                results = await evaluate_models(services, base, models=models, out_dir=out / "eval",
                                                progress=progress)
    report = write_sweep_report(sweep, outcomes, results, out)
    console.print(f"sweep {sweep.name}: {len(outcomes)} variants in {time.monotonic() - started:.0f}s; "
                  f"report: [bold]{report}[/] (+ report.png)")
    return report
