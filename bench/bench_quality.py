"""Quality benchmark: does self-specialization make the model better? Base vs r1 vs r2 of a finished run.

Evaluates the run's base model and its round adapters on the shipped biomedical tasks and on the
converted public reference tasks (NCBI-disease, BC5CDR chemicals, ChemProt, DDI; `--reference-items`
each, a seeded sample of the *test* splits, converted into the cache, never into the repo), in every
scoring mode asked for, and prints per task and mode: each model's score with its 95% CI, the generate
mode's invalid-answer rate, and the **paired** bootstrap difference (r1 - base, r2 - r1 on the same
items). report.md + report.png land in the output dir; a rerun resumes the answers already given.

    .venv/bin/python bench/bench_quality.py --run RUN_ID                    # a run in .selfspec/
    .venv/bin/python bench/bench_quality.py --run RUN_ID --data-dir /tmp/x/data --scoring generate,constrained \\
        --reference ../shared/reference --reference-items 100 --shipped-items 32 -o /tmp/quality

The run's own adapters are loaded into a fresh embedded generator (or `--generator-url`, where they
must already be loaded). Before anything is scored the training sets are checked for 13-gram overlap
with every task file; the hits are printed (they must be 0).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from evaluation.contamination import check_contamination, dataset_texts  # noqa: E402
from evaluation.converters import convert  # noqa: E402
from evaluation.report import write_report  # noqa: E402
from evaluation.runner import MACRO_TASK, evaluate, load_tasks  # noqa: E402
from evaluation.schema import find_task_files  # noqa: E402
from orchestrator.execution.driver import hot_load  # noqa: E402
from orchestrator.store import RunStore  # noqa: E402
from selfspec.clients.openai_compat import OpenAICompatGenerator  # noqa: E402
from selfspec.processes import ManagedServer, child_env, free_port  # noqa: E402
from selfspec.types import AdapterRef, EvalResult  # noqa: E402
from services.generator.launcher import embedded_generator_command  # noqa: E402

# (converter kind, source under the reference dir, task name, entity types)
REFERENCE_TASKS = (
    ("iob_ner", "eval/ner_mtl2016/NCBI-disease-IOB", "ncbi_disease", None),
    ("iob_ner", "eval/ner_mtl2016/BC5CDR-IOB", "bc5cdr_chemical", ["Chemical"]),
    ("chemprot", "eval/chemprot/test.jsonl", "chemprot", None),
    ("ddi", "eval/ddi/DDICorpus-2013.zip", "ddi", None),
)


def reference_task_files(reference: Path, cache: Path, items: int) -> list[Path]:
    """Convert the reference test splits once per size into the cache (derived data stays out of git)."""
    out_dir = cache / f"reference-tasks-{items}"
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for kind, source, task, types in REFERENCE_TASKS:
        out = out_dir / f"{task}.jsonl"
        if not out.is_file():
            convert(kind, reference / source, out, limit=items, seed=0, task=task, types=types)
        paths.append(out)
    return paths


def run_adapters(store: RunStore, run_id: str) -> list[AdapterRef]:
    refs = sorted((a.ref() for a in store.list_adapters(run_id=run_id)), key=lambda a: a.round)
    if not refs:
        raise SystemExit(f"run {run_id!r} has no adapters in the store")
    return refs


def print_table(results: list[EvalResult]) -> None:
    rows = [r for r in results if r.metric in ("macro_avg",) or r.task == MACRO_TASK or r.baseline is not None
            or r.metric in ("entity_f1", "macro_f1", "rouge_l", "invalid_rate")]
    for r in rows:
        ci = f"[{r.ci_low:.1f}, {r.ci_high:.1f}]" if r.ci_low is not None else ""
        versus = f" - {r.baseline}" if r.baseline else ""
        print(f"{r.scoring:9} {r.task:24} {r.metric:14} {r.model + versus:36} {r.value:7.1f} {ci}  n={r.n}")


async def main_async(args: argparse.Namespace) -> None:
    data_dir = Path(args.data_dir)
    store = RunStore(args.database_url or f"sqlite:///{data_dir / 'selfspec.db'}")
    run = store.get_run(args.run)
    config = run.config
    base = config["generation"]["model"]
    adapters = run_adapters(store, args.run)
    datasets = sorted((data_dir / "runs" / args.run).glob("round*/sft.jsonl"))
    store.close()

    task_files = find_task_files([REPO / "evaluation/tasks/biomedical"])
    shipped = load_tasks(task_files, args.shipped_items or None)
    reference: list[Path] = []
    if args.reference_found:
        reference = reference_task_files(Path(args.reference), Path(args.cache_dir), args.reference_items)
    else:
        print(f"reference data not found at {args.reference}: shipped tasks only")

    items = [item for task in shipped for item in task.items]
    items += [item for task in load_tasks(reference, None) for item in task.items]
    for path in datasets:
        report = check_contamination(dataset_texts(path), items, dataset=str(path))
        print(report.line())

    out = Path(args.out)
    server = None
    urls = args.generator_url
    if not urls:
        port = free_port()
        server = ManagedServer(
            embedded_generator_command(model=base, port=port, adapters_dir=Path(args.adapters_dir),
                                       cache_dir=Path(args.cache_dir), engine=args.engine),
            url=f"http://127.0.0.1:{port}", log_path=out / "generator.log", env=child_env(), startup_timeout_s=600)
        server.start()
        urls = [server.url]
    generator = OpenAICompatGenerator(urls, in_flight=args.concurrency, timeout_s=3600, retries=2)
    try:
        if server is not None:
            for adapter in adapters:
                await hot_load(generator, adapter)
        models = [base, *(a.name for a in adapters)]
        results: list[EvalResult] = []
        # Shipped and reference tasks have different sizes: one evaluation each, one report each.
        for name, files, limit in (("shipped", task_files, args.shipped_items or None),
                                   ("reference", reference, None)):
            if not files:
                continue
            part = await evaluate(generator, models=models, task_files=files, shots=[0], out_dir=out / name,
                                  max_items=limit, concurrency=args.concurrency, scoring=args.scoring.split(","))
            write_report(part, out / name)
            print(f"== {name} tasks ({out / name / 'report.md'})")
            print_table(part)
            results += part
        (out / "summary.json").write_text(json.dumps([r.model_dump(mode="json") for r in results], indent=1))
    finally:
        await generator.aclose()
        if server is not None:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="run id (its config names the base model)")
    parser.add_argument("--data-dir", default=str(REPO / ".selfspec"))
    parser.add_argument("--database-url", default="")
    parser.add_argument("--adapters-dir", default=str(REPO / ".selfspec/adapters"))
    parser.add_argument("--cache-dir", default=str(REPO / ".cache/selfspec"))
    parser.add_argument("--reference", default=str(REPO.parent / "shared/reference"))
    parser.add_argument("--reference-items", type=int, default=100)
    parser.add_argument("--shipped-items", type=int, default=32)
    parser.add_argument("--scoring", default="generate,constrained")
    parser.add_argument("--generator-url", action="append", default=[])
    parser.add_argument("--engine", choices=("embedded", "vllm"), default="vllm",
                        help="what serves the model when no --generator-url is given")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("-o", "--out", default=str(REPO / ".selfspec/bench-quality"))
    args = parser.parse_args()
    args.reference_found = bool(args.reference) and Path(args.reference).is_dir()
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
