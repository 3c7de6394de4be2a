"""Hugging Face cards: a dataset card for each exported round, a PEFT model card for each adapter.

The dataset card (`round<N>/README.md`) carries the YAML the Hub and `datasets.load_dataset(<folder>)`
read (license, language, task categories, size category, `configs` naming the four files) and the facts
a reader needs to trust or redo the data: generator model and adapter, seeds and corpus hashes,
retrieval settings, counts per stage and drop reason, review edits, prompt template hashes, and the
run config with the command that reproduces it. The adapter card (`<adapter>/README.md`) is PEFT's
model card form (`base_model`, `library_name: peft`) with the training settings, the dataset's hash and
card, and the evaluation table once the run has evaluated the adapter.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from huggingface_hub import DatasetCard, DatasetCardData, ModelCard, ModelCardData

from selfspec.files import file_sha256
from selfspec.prompts import PROMPTS_DIR, template_hash
from selfspec.settings import RunConfig
from selfspec.types import AdapterRef, EvalResult
from selfspec.urls import redact_url

DATASET_LICENSE = "apache-2.0"  # the project's seeds and corpus; the generator's own terms are stated in the card
TASK_CATEGORIES = ("text-generation", "question-answering")
DEFAULT_CONFIG = "alpaca"
# Hub license ids of the registered models (selfspec/models.py); other models: "other".
MODEL_LICENSES = {"smollm2-135m": "apache-2.0", "gemma3-270m": "gemma"}
UPSTREAM_MODELS = {"smollm2-135m": "HuggingFaceTB/SmolLM2-135M-Instruct", "gemma3-270m": "google/gemma-3-270m"}
# The Hub's size categories (datasets/utils/resources/size_categories.json), by upper bound.
SIZE_CATEGORIES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                   (10_000_000, "1M<n<10M"))
FORMAT_NOTES = {
    "alpaca": "instruction / input / output (Alpaca fields)",
    "messages": "chat messages (user, assistant)",
    "sft": "selfspec SFTRecord: ids, round, Alpaca fields and messages",
    "provenance": "per sample: model, prompt hash, retrieved documents with BM25 scores",
}


@dataclass(frozen=True)
class ReviewCounts:
    """Human review of a round's samples (events in the run store); zero until someone reviews."""

    rejected: int = 0
    restored: int = 0
    edited: int = 0


@dataclass(frozen=True)
class RoundCounts:
    """What each stage of a round produced, from the run store."""

    instruction_prompts: int = 0
    verdicts: Mapping[str, int] = field(default_factory=dict)  # parsed instructions by filter verdict
    samples: Mapping[str, int] = field(default_factory=dict)  # responses by status: ok or the gate that held it
    gates: Mapping[str, int] = field(default_factory=dict)  # gate counts (and judge notes)


@dataclass(frozen=True)
class DatasetFacts:
    run_id: str
    round: int
    config: RunConfig
    instruction_model: str
    response_model: str  # the base model, or the previous round's adapter name
    counts: RoundCounts
    adapter: AdapterRef | None = None  # the adapter that wrote the responses (rounds >= 2)
    review: ReviewCounts | None = None


def size_category(rows: int) -> str:
    return next((name for bound, name in SIZE_CATEGORIES if rows < bound), "n>1T" if rows > 10**12 else "other")


def prompt_hashes() -> dict[str, str]:
    return {path.stem: template_hash(path.stem) for path in sorted(PROMPTS_DIR.glob("*.jinja"))}


def dataset_card(facts: DatasetFacts, *, rows: int) -> str:
    """The README.md text of an exported round (`rows` samples in each of the four files)."""
    cfg = facts.config
    data = DatasetCardData(
        license=DATASET_LICENSE,
        language=["en"],
        task_categories=list(TASK_CATEGORIES),
        size_categories=[size_category(rows)],
        pretty_name=f"selfspec {cfg.run.domain} round {facts.round} ({facts.run_id})",
        tags=["synthetic", "self-specialization", cfg.run.domain],
        configs=[{"config_name": fmt, "data_files": [{"split": "train", "path": f"{fmt}.jsonl"}],
                  **({"default": True} if fmt == DEFAULT_CONFIG else {})}
                 for fmt in ("alpaca", "messages", "sft", "provenance")],
    )
    body = "\n".join([
        f"# {data.pretty_name}",
        "",
        f"Synthetic {cfg.run.domain} instruction data made by Self-Specialization (arXiv 2310.00160): the base "
        "model wrote instructions from seed tasks, then answered each with passages retrieved from the corpus.",
        f"{rows} samples; every file holds the same samples in another form:",
        "",
        *(f"- `{fmt}.jsonl`: {note}" for fmt, note in FORMAT_NOTES.items()),
        "",
        "```python",
        "import datasets",
        'ds = datasets.load_dataset("<this folder or repo>")  # alpaca; name="messages" | "sft" | "provenance"',
        "```",
        "",
        "## Generation",
        "",
        _table(("", ""), [
            ("run", f"`{facts.run_id}`, round {facts.round}"),
            ("base model", f"`{cfg.generation.model}` (license: {_model_license(cfg.generation.model)})"),
            ("instructions by", f"`{facts.instruction_model}`"),
            ("responses by", f"`{facts.response_model}`"),
            ("adapter", _adapter_line(facts.adapter)),
            ("seeds", f"`{cfg.run.seeds}` sha256 `{_sha_or_missing(cfg.resolve(cfg.run.seeds))}`"),
            ("corpus", f"`{cfg.run.corpus}` sha256 `{_sha_or_missing(cfg.resolve(cfg.run.corpus))}`"),
            ("retrieval", _retrieval_line(cfg)),
            ("sampling", f"instructions T={cfg.generation.temperature} top_p={cfg.generation.top_p}, "
                         f"{cfg.generation.seeds_per_prompt} seeds a prompt; responses greedy, "
                         f"{cfg.generation.demos_per_response} demonstrations"),
        ]),
        "",
        "## Counts",
        "",
        _counts_section(facts.counts, rows),
        "",
        "## Review",
        "",
        _review_line(facts.review),
        "",
        "## Prompt templates (sha256, first 16 hex digits)",
        "",
        _table(("template", "hash"), [(f"`{name}.jinja`", f"`{h}`") for name, h in prompt_hashes().items()]),
        "",
        "## Reproduce",
        "",
        "Save the config below as `run.toml` and run (from a selfspec checkout holding the same seeds and corpus):",
        "",
        "```sh",
        "selfspec run -c run.toml",
        "```",
        "",
        "Sampling at temperature > 0 and service timing make a rerun's samples differ; the counts and hashes "
        "above say whether the inputs were the same.",
        "",
        "```toml",
        config_toml(card_config(cfg)).rstrip(),
        "```",
        "",
    ])
    return f"---\n{data.to_yaml()}\n---\n\n{body}"


def card_config(cfg: RunConfig) -> dict[str, Any]:
    """The run config as a card shows it: no machine-local storage, no service URLs' passwords."""
    data = cfg.model_dump(mode="json", exclude={"storage"})
    services = data.get("services", {})
    services["generator_urls"] = [redact_url(u) for u in services.get("generator_urls", [])]
    for key in ("retriever_url", "trainer_url"):
        services[key] = redact_url(services.get(key, ""))
    data["gates"]["judge_url"] = redact_url(data["gates"].get("judge_url", ""))
    return data


def config_toml(data: Mapping[str, Any], prefix: str = "") -> str:
    """A run config dict as TOML (tables of scalars and lists, nested tables), enough for RunConfig."""
    scalars = [f"{key} = {_toml_value(value)}" for key, value in data.items() if not isinstance(value, Mapping)]
    out = ([f"[{prefix}]"] if prefix and scalars else []) + scalars
    text = "\n".join(out) + ("\n\n" if out else "")
    for key, value in data.items():
        if isinstance(value, Mapping):
            text += config_toml(value, f"{prefix}.{key}" if prefix else key)
    return text


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a TOML basic string


def _sha_or_missing(path: Path) -> str:
    return file_sha256(path) if path.is_file() else "(file missing)"


def _model_license(model: str) -> str:
    return MODEL_LICENSES.get(model, "see the model's own terms")


def _adapter_line(adapter: AdapterRef | None) -> str:
    if adapter is None:
        return "none (round 1 answers with the base model)"
    return (f"`{adapter.name}` (round {adapter.round}, trained on dataset sha256 `{adapter.dataset_sha256[:16]}`, "
            f"{adapter.steps} steps)")


def _retrieval_line(cfg: RunConfig) -> str:
    r = cfg.retrieval
    line = (f"{r.method} via {r.backend} backend, index `{cfg.run.index}`, top-{r.k} passages cut to "
            f"{cfg.generation.passage_max_words} words")
    return line + (f", dense model `{r.dense_model or 'all-MiniLM-L6-v2'}`" if r.method != "bm25" else "")


def _counts_section(counts: RoundCounts, rows: int) -> str:
    parsed = sum(counts.verdicts.values())
    kept = counts.verdicts.get("kept", 0)
    answered = sum(counts.samples.values())
    rows_out = [
        ("instruction prompts", counts.instruction_prompts),
        ("instructions parsed", parsed),
        ("instructions kept", kept),
        ("responses written", answered),
        ("responses passed the gates", counts.samples.get("ok", 0)),
        ("samples exported", rows),
    ]
    table = _table(("stage", "n"), [(name, str(n)) for name, n in rows_out])
    drops = [(f"instruction: {k}", str(v)) for k, v in sorted(counts.verdicts.items()) if k != "kept"]
    drops += [(f"response gate: {k}", str(v)) for k, v in sorted(counts.gates.items())]
    if not drops:
        return table + "\n\nNothing was dropped."
    return table + "\n\nDropped, by reason:\n\n" + _table(("reason", "n"), drops)


def _review_line(review: ReviewCounts | None) -> str:
    if review is None or review == ReviewCounts():
        return "No review edits: the samples are as generated and gated (0 rejected, 0 restored, 0 edited)."
    return (f"Reviewed by hand: {review.rejected} rejected, {review.restored} restored, {review.edited} edited; "
            "the files hold the reviewed samples.")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


# ---- validation (local: the Hub's /api/validate-yaml is online only) ----

def check_dataset_card(folder: Path) -> DatasetCard:
    """Parse `folder/README.md` as a DatasetCard and check its metadata against the Hub's vocabularies
    that ship with `datasets` (size categories, languages, task ids) and its `configs` against the files."""
    from datasets.utils.metadata import known_task_ids

    card: DatasetCard = DatasetCard.load(folder / "README.md")
    # huggingface_hub leaves CardData.to_dict unannotated
    data: dict[str, Any] = card.data.to_dict()  # type: ignore[no-untyped-call]
    resources = Path(cast(str, __import__("datasets").__file__)).parent / "utils/resources"
    sizes = set(json.loads((resources / "size_categories.json").read_text()))
    languages = set(json.loads((resources / "languages.json").read_text()))
    problems = [f"size_categories {s!r}" for s in data.get("size_categories", []) if s not in sizes]
    problems += [f"language {s!r}" for s in data.get("language", []) if s not in languages]
    problems += [f"task_categories {s!r}" for s in data.get("task_categories", []) if s not in known_task_ids]
    if not data.get("license"):
        problems.append("no license")
    for config in data.get("configs", []):
        problems += [f"config {config['config_name']}: {f['path']} missing" for f in config["data_files"]
                     if not (folder / f["path"]).is_file()]
    if problems:
        raise ValueError(f"{folder / 'README.md'}: " + "; ".join(problems))
    return card


# ---- adapter card ----

def adapter_card(ref: AdapterRef, *, settings: Mapping[str, Any], dataset: Path | None,
                 evaluation: Sequence[EvalResult] = ()) -> str:
    """README.md of an adapter dir in PEFT's model card form, with its training settings and dataset."""
    data = ModelCardData(
        base_model=UPSTREAM_MODELS.get(ref.base_model, ref.base_model) if not Path(ref.base_model).is_absolute()
        else None,
        library_name="peft",
        license=MODEL_LICENSES.get(ref.base_model, "other"),
        pipeline_tag="text-generation",
        tags=["base_model:adapter", "lora", "selfspec", "self-specialization"],
    )
    card_path = dataset.parent / "README.md" if dataset is not None else None
    dataset_lines = [f"- trained on `{dataset}` (sha256 `{ref.dataset_sha256}`)" if dataset is not None
                     else f"- dataset sha256 `{ref.dataset_sha256}`"]
    if card_path is not None and card_path.is_file():
        dataset_lines.append(f"- dataset card: `{card_path}` (sha256 `{file_sha256(card_path)[:16]}`)")
    body = "\n".join([
        f"# {ref.name}",
        "",
        f"LoRA adapter of round {ref.round} of selfspec run `{ref.run_id or '-'}` on `{ref.base_model}`"
        f" ({ref.quantization} quantization while training).",
        "",
        "```python",
        "from peft import AutoPeftModelForCausalLM",
        'model = AutoPeftModelForCausalLM.from_pretrained("<this folder or repo>")',
        "```",
        "",
        "## Training",
        "",
        _table(("setting", "value"), [(k, f"`{v}`") for k, v in settings.items()]
               + [("steps", str(ref.steps)), ("final loss", f"{ref.final_loss:.4f}" if ref.final_loss is not None
                                                 else "-"), ("wall time", f"{ref.wall_s:.0f} s")]),
        "",
        "## Dataset",
        "",
        *dataset_lines,
        "",
        "## Evaluation",
        "",
        evaluation_table(ref.name, evaluation),
        "",
    ])
    return f"---\n{data.to_yaml()}\n---\n\n{body}"


def evaluation_table(adapter: str, results: Sequence[EvalResult]) -> str:
    """Rows of `results` for this adapter (paired differences against their baseline included)."""
    mine = [r for r in results if r.model == adapter]
    if not mine:
        return "Not evaluated yet."
    rows = []
    for r in sorted(mine, key=lambda r: (r.baseline or "", r.task, r.shots, r.scoring, r.metric)):
        ci = f"[{r.ci_low:.1f}, {r.ci_high:.1f}]" if r.ci_low is not None and r.ci_high is not None else "-"
        label = f"{r.task} − {r.baseline}" if r.baseline else r.task
        rows.append((label, r.metric, r.scoring, str(r.shots), f"{r.value:.1f}", ci, str(r.n)))
    return _table(("task", "metric", "scoring", "shots", "value", "95% CI", "n"), rows)


def write_adapter_evaluation(adapter_dir: Path, results: Sequence[EvalResult]) -> bool:
    """Put the evaluation table into an existing adapter card; False when the dir has no selfspec card."""
    from selfspec.files import write_text_atomic

    readme = adapter_dir / "README.md"
    if not readme.is_file():
        return False
    text = readme.read_text(encoding="utf-8")
    head, sep, _rest = text.partition("\n## Evaluation\n")
    if not sep:
        return False
    write_text_atomic(readme, f"{head}\n## Evaluation\n\n{evaluation_table(adapter_dir.name, results)}\n")
    return True


def check_adapter_card(adapter_dir: Path) -> ModelCard:
    """Parse the adapter's README.md as a ModelCard; PEFT's fields must be there."""
    card: ModelCard = ModelCard.load(adapter_dir / "README.md")
    data = cast(ModelCardData, card.data)  # RepoCard types .data as the base CardData
    if data.library_name != "peft" or not data.base_model:
        raise ValueError(f"{adapter_dir / 'README.md'}: not a PEFT model card (library_name, base_model)")
    return card
