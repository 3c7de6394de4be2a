"""What a training job leaves on disk, and the rules that keep it consistent after a crash.

    <adapters>/<name>/                     the final adapter; exists only when complete
        adapter_config.json, adapter_model.safetensors, selfspec-adapter.json (AdapterRef),
        README.md (model card, PEFT form: selfspec/cards.py; the run adds its evaluation table)
    <adapters>/.<name>.work/               scratch (dot names are never valid adapter names)
        job.json                           dataset sha256 + config fingerprint + elapsed wall time
        lock                               flock held by the one process training this adapter
        checkpoints/checkpoint-N/          transformers checkpoints, for resume after kill -9

The final dir is built in a temp dir next to it and renamed into place (atomic on one filesystem).
A checkpoint counts only once its `trainer_state.json` (written last by transformers) parses.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from pydantic import ValidationError

from selfspec.cards import adapter_card
from selfspec.errors import AdapterConflict, AdapterError
from selfspec.files import write_text_atomic
from selfspec.processes import LockBusy, exclusive_lock
from selfspec.types import AdapterRef
from trainer.config import MANIFEST_NAME, TrainConfig

log = logging.getLogger(__name__)

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
LOCK_WAIT_S = 30.0  # how long a second trainer for the same output dir waits before giving up
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
# Fields whose change makes old checkpoints unusable for resuming.
_FINGERPRINT_FIELDS = (
    "base_model", "r", "alpha", "dropout", "target_modules", "lr", "epochs", "effective_batch",
    "micro_batch", "max_length", "max_steps", "seed", "packing", "init_adapter",
)


def read_manifest(adapter_dir: Path) -> AdapterRef | None:
    try:
        return AdapterRef.model_validate_json((adapter_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValidationError):
        return None


def existing_adapter(config: TrainConfig, dataset_sha256: str) -> AdapterRef | None:
    """The finished adapter for this dataset, if any; refuse to clobber a different one unless asked."""
    out = config.output_dir
    if not out.exists():
        return None
    ref = read_manifest(out)
    complete = ref is not None and all((out / name).is_file() for name in ADAPTER_FILES)
    if complete and ref is not None and ref.dataset_sha256 == dataset_sha256:
        return ref
    if not complete:
        # Not even `overwrite` replaces it: it may be any folder (the adapters dir itself, say), and
        # replacing renames and deletes the whole of it.
        raise AdapterConflict(f"{out} exists but holds no complete selfspec adapter; remove it or choose another output")
    if config.overwrite:
        return None
    assert ref is not None
    raise AdapterConflict(
        f"{out} already holds adapter {ref.name!r} trained on dataset sha256 {ref.dataset_sha256[:12]}, "
        f"not {dataset_sha256[:12]}; choose a new adapter name (or set overwrite)"
    )


@contextmanager
def training_lock(config: TrainConfig, *, wait_s: float = LOCK_WAIT_S) -> Iterator[None]:
    """One trainer per output dir: a second process (CLI next to the service, say) fails after `wait_s`,
    which covers a trainer orphaned by a killed run (it exits within a second: parent watchdog)."""
    with ExitStack() as held:
        try:  # only taking the lock: a LockBusy from inside the training body is not this conflict
            held.enter_context(exclusive_lock(config.work_dir / "lock", wait_s=wait_s, poll_s=0.5))
        except LockBusy as err:
            raise AdapterConflict(f"another trainer is already writing {config.output_dir}") from err
        yield


def fingerprint(config: TrainConfig, quantization: str) -> str:
    data = {name: config.to_dict()[name] for name in _FINGERPRINT_FIELDS}
    data["quantization"] = quantization
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


class WorkState:
    """`job.json` in the work dir: ties checkpoints to one dataset and config, accumulates wall time."""

    def __init__(self, config: TrainConfig, *, dataset_sha256: str, quantization: str) -> None:
        self.path = config.work_dir / "job.json"
        self.checkpoints = config.checkpoints_path
        self.identity = {"dataset_sha256": dataset_sha256, "fingerprint": fingerprint(config, quantization)}
        self.prior_elapsed_s = 0.0

    def prepare(self) -> Path | None:
        """Create the work dir; return the checkpoint to resume from, after discarding unusable ones."""
        saved = self._load()
        if saved is not None and {k: saved.get(k) for k in self.identity} != self.identity:
            log.warning("checkpoints in %s belong to another dataset or config: starting fresh", self.checkpoints)
            clear_checkpoints(self.checkpoints)
            saved = None
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        resume = latest_checkpoint(self.checkpoints)
        elapsed = saved.get("elapsed_s", 0.0) if saved and resume else 0.0
        self.prior_elapsed_s = float(elapsed) if isinstance(elapsed, int | float) else 0.0
        self.save(self.prior_elapsed_s)
        return resume

    def save(self, elapsed_s: float) -> None:
        write_text_atomic(self.path, json.dumps({**self.identity, "elapsed_s": round(elapsed_s, 3)}))

    def _load(self) -> dict[str, object] | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None
        return data if isinstance(data, dict) else None


def latest_checkpoint(checkpoints: Path) -> Path | None:
    """Newest complete checkpoint; newer incomplete ones (killed mid-save) are deleted."""
    if not checkpoints.is_dir():
        return None
    found = sorted(
        ((int(m.group(1)), p) for p in checkpoints.iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name))),
        reverse=True,
    )
    for step, path in found:
        if _checkpoint_complete(path):
            return path
        log.warning("discarding incomplete checkpoint %s (step %d)", path, step)
        shutil.rmtree(path, ignore_errors=True)
    return None


def _checkpoint_complete(path: Path) -> bool:
    try:
        state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return isinstance(state, dict) and "global_step" in state


def publish_adapter(save: Callable[[Path], None], config: TrainConfig, ref: AdapterRef) -> None:
    """Write the adapter (via `save(tmp_dir)`) plus its manifest next to the target, then rename into place."""
    out = config.output_dir
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        save(tmp)
        missing = [name for name in ADAPTER_FILES if not (tmp / name).is_file()]
        if missing:
            raise AdapterError(f"saving the adapter produced no {', '.join(missing)}")
        (tmp / MANIFEST_NAME).write_text(ref.model_dump_json(indent=2) + "\n", encoding="utf-8")
        # PEFT's save writes a bare model card; ours replaces it (training settings, dataset, evaluation).
        (tmp / "README.md").write_text(adapter_card(ref, settings=card_settings(config), dataset=config.dataset),
                                       encoding="utf-8")
        _make_readable(tmp)
        if out.exists():  # only reached with overwrite=True
            old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


CARD_SETTINGS = ("r", "alpha", "dropout", "target_modules", "lr", "epochs", "effective_batch", "micro_batch",
                 "max_length", "max_steps", "seed", "packing", "init_adapter")


def card_settings(config: TrainConfig) -> dict[str, object]:
    """The training settings an adapter card lists (quantization is on the manifest)."""
    values = config.to_dict()
    return {name: values[name] for name in CARD_SETTINGS if name in values}


def clear_checkpoints(checkpoints: Path) -> None:
    """Delete `checkpoint-N` dirs only: a user-chosen checkpoint dir may hold other files."""
    if not checkpoints.is_dir():
        return
    for path in checkpoints.iterdir():
        if path.is_dir() and _CHECKPOINT.match(path.name):
            shutil.rmtree(path, ignore_errors=True)


def _make_readable(directory: Path) -> None:
    """mkdtemp makes 0700 and safetensors may write 0600; the generator may run as another user."""
    os.chmod(directory, 0o755)
    for path in directory.iterdir():
        if path.is_file():
            os.chmod(path, 0o644)


def remove_work_dir(config: TrainConfig) -> None:
    """After success: drop checkpoints and the work dir unless `keep_checkpoints`."""
    if config.keep_checkpoints:
        return
    clear_checkpoints(config.checkpoints_path)
    shutil.rmtree(config.work_dir, ignore_errors=True)
