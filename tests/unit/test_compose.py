"""The compose files: health, GPUs, shared adapter paths, startup order, Elasticsearch safety, replicas.

Parsed with PyYAML (variables interpolated with their defaults, as compose does with an empty .env);
when `docker-compose` is on PATH, its own validator (`config -q`) runs on both files too.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from selfspec.settings import load_config

yaml = pytest.importorskip("yaml")

REPO = Path(__file__).resolve().parents[2]
BASE = REPO / "docker-compose.yml"
REPLICAS = REPO / "docker-compose.replicas.yml"
ENV_EXAMPLE = REPO / ".env.example"
SECRETS = {"ELASTIC_PASSWORD": "test-password", "SELFSPEC_API_TOKEN": "test-token",
           "SELFSPEC_SERVICE_TOKEN": "test-service-token"}
GPU_SERVICES = ("generator", "trainer")
GENERATORS = ("generator", "generator-cpu")
TRAINERS = ("trainer", "trainer-cpu")
ORCHESTRATORS = ("orchestrator", "orchestrator-cpu")
ONE_SHOT = {"models"}

_VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)")


def _interpolate(value: Any, env: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: _interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        name = match["name"] or match["bare"]
        op, arg = match["op"], match["arg"] or ""
        current = env.get(name)
        if op in (":-", "-"):
            return current if current else arg
        if op in (":?", "?"):
            if not current:
                raise KeyError(f"{name}: {arg}")
            return current
        return current or ""

    # `$$` is a literal dollar for the container's shell; keep it out of interpolation.
    parts = value.split("$$")
    return "$".join(_VAR.sub(one, part) for part in parts)


def _load(*files: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """The files merged the way these files need it (mappings merged, lists replaced), interpolated."""
    merged: dict[str, Any] = {}
    for path in files:
        _merge(merged, yaml.safe_load(path.read_text(encoding="utf-8")))
    return _interpolate(merged, {**SECRETS, **(env or {})})


def _merge(into: dict[str, Any], other: dict[str, Any]) -> None:
    for key, value in other.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


@pytest.fixture(scope="module")
def base() -> dict[str, Any]:
    return _load(BASE)


@pytest.fixture(scope="module")
def replicas() -> dict[str, Any]:
    return _load(BASE, REPLICAS)


def _services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: spec for name, spec in compose["services"].items()}


def _env(spec: dict[str, Any]) -> dict[str, str]:
    env = spec.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def _mounts(spec: dict[str, Any]) -> dict[str, str]:
    """volume name -> container path, for named volumes."""
    mounts = {}
    for entry in spec.get("volumes") or []:
        source, target = entry.split(":")[:2]
        mounts[source] = target
    return mounts


def _option(command: list[str], flag: str) -> str:
    assert flag in command, f"{flag} missing from {command}"
    return command[command.index(flag) + 1]


def _served_name(command: list[str]) -> str:
    flag = "--served-model-name" if "--served-model-name" in command else "--served-name"  # vLLM | embedded
    return _option(command, flag)


def _gpu_devices(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return spec.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])


@pytest.mark.parametrize("files", [(BASE,), (BASE, REPLICAS)], ids=["base", "replicas"])
def test_compose_every_service_has_a_healthcheck(files: tuple[Path, ...]) -> None:
    for name, spec in _services(_load(*files)).items():
        check = spec.get("healthcheck")
        assert check and not check.get("disable") and check.get("test"), f"{name} has no healthcheck"
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name


def test_compose_gpu_services_reserve_gpus(replicas: dict[str, Any]) -> None:
    services = _services(replicas)
    for name in (*GPU_SERVICES, "generator-2"):
        devices = _gpu_devices(services[name])
        assert devices, f"{name} reserves no GPU"
        assert all(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices), name
        assert services[name].get("profiles") == ["gpu"], name
    for name in ("generator-cpu", "trainer-cpu", "orchestrator-cpu"):
        assert not _gpu_devices(services[name]), f"{name} is in the cpu profile but reserves a GPU"
        assert services[name].get("profiles") == ["cpu"], name
    first = _gpu_devices(services["generator"])[0]["device_ids"]
    second = _gpu_devices(services["generator-2"])[0]["device_ids"]
    assert first != second, "the two vLLM replicas must sit on different GPUs"


def test_compose_vllm_has_runtime_lora_and_a_pinned_image(replicas: dict[str, Any]) -> None:
    services = _services(replicas)
    for name in ("generator", "generator-2"):
        spec = services[name]
        image = spec["image"]
        assert image.startswith("vllm/vllm-openai:v") and not image.endswith(":latest"), image
        command = spec["command"]
        assert "--enable-lora" in command
        assert _option(command, "--max-lora-rank") == "8"
        assert int(_option(command, "--max-loras")) >= 3  # base + round 1 + round 2
        assert _option(command, "--model").startswith("/models/")
        assert _option(command, "--served-model-name")
        assert _env(spec)["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    for name, spec in services.items():
        image = spec.get("image", "")
        assert ":" in image and not image.endswith(":latest"), f"{name}: unpinned image {image!r}"


def test_compose_adapters_volume_is_shared_at_the_orchestrators_adapters_dir(replicas: dict[str, Any]) -> None:
    services = _services(replicas)
    for orchestrator in ORCHESTRATORS:
        adapters_dir = _env(services[orchestrator])["SELFSPEC_STORAGE__ADAPTERS_DIR"]
        assert _mounts(services[orchestrator])["adapters"] == adapters_dir  # it checks the dir exists
        for name in (*GENERATORS, "generator-2", *TRAINERS):
            assert _mounts(services[name]).get("adapters") == adapters_dir, name
        for name in TRAINERS:
            assert _option(services[name]["command"], "--adapters-dir") == adapters_dir
            assert _mounts(services[name])["data"] == _option(services[name]["command"], "--data-dir")
        assert _option(services["generator-cpu"]["command"], "--adapters-dir") == adapters_dir
    for name in (*GENERATORS, "generator-2"):
        assert any(v.startswith("adapters:") and v.endswith(":ro") for v in services[name]["volumes"]), (
            f"{name} only reads adapters")
    # The datasets the orchestrator writes are where the trainer reads them.
    assert _mounts(services["orchestrator"])["data"] == _mounts(services["trainer"])["data"]


def test_compose_depends_on_waits_for_health(replicas: dict[str, Any]) -> None:
    services = _services(replicas)
    for name, spec in services.items():
        depends = spec.get("depends_on") or {}
        assert isinstance(depends, dict), f"{name}: depends_on must use conditions"
        for target, rule in depends.items():
            assert target in services, f"{name} depends on unknown {target}"
            expected = "service_completed_successfully" if target in ONE_SHOT else "service_healthy"
            assert rule["condition"] == expected, f"{name} -> {target}"
    assert set(services["orchestrator"]["depends_on"]) >= {"generator", "generator-2", "trainer", "retriever"}
    assert set(services["orchestrator-cpu"]["depends_on"]) >= {"generator-cpu", "trainer-cpu", "retriever"}
    assert "elasticsearch" in services["retriever"]["depends_on"]


def test_compose_profiles_never_depend_across_stacks(replicas: dict[str, Any]) -> None:
    """docker-compose refuses to start a service whose dependency sits in a profile that is not active."""
    services = _services(replicas)
    for name, spec in services.items():
        mine = set(spec.get("profiles") or [])
        for target in spec.get("depends_on") or {}:
            theirs = set(services[target].get("profiles") or [])
            assert not theirs or theirs <= mine, f"{name} ({mine or 'always'}) depends on {target} ({theirs})"


def test_compose_elasticsearch_is_never_published_without_auth(base: dict[str, Any]) -> None:
    services = _services(base)
    es = services["elasticsearch"]
    env = _env(es)
    security_on = env.get("xpack.security.enabled") == "true"
    assert security_on, "Elasticsearch security must be on"
    assert not es.get("ports"), "Elasticsearch must not be published to the host"
    assert es["networks"] == ["search"] and base["networks"]["search"].get("internal") is True
    assert env["ELASTIC_PASSWORD"] == SECRETS["ELASTIC_PASSWORD"]
    assert "-Xms" in env["ES_JAVA_OPTS"] and "-Xmx" in env["ES_JAVA_OPTS"] and es.get("mem_limit")
    for name, spec in services.items():
        for port in spec.get("ports") or []:
            assert "9200" not in str(port).split(":")[-1] and "9300" not in str(port), f"{name} publishes ES"
    # The password is required: no default an attacker could guess.
    raw = yaml.safe_load(BASE.read_text(encoding="utf-8"))["services"]["elasticsearch"]["environment"]
    assert raw["ELASTIC_PASSWORD"].startswith("${ELASTIC_PASSWORD:?")
    with pytest.raises(KeyError):
        _interpolate(raw, {})
    # The retriever authenticates with the same password.
    es_url = _env(services["retriever"])["SELFSPEC_RETRIEVER__ES_URL"]
    assert es_url == f"http://elastic:{SECRETS['ELASTIC_PASSWORD']}@elasticsearch:9200"


def test_compose_only_the_orchestrator_is_published_on_loopback(replicas: dict[str, Any]) -> None:
    services = _services(replicas)
    published = {name for name, spec in services.items() if spec.get("ports")}
    assert published == set(ORCHESTRATORS)
    for name in ORCHESTRATORS:
        assert services[name]["ports"] == ["127.0.0.1:8000:8000"]
        assert _env(services[name])["SELFSPEC_API_TOKEN"] == SECRETS["SELFSPEC_API_TOKEN"]


def test_compose_every_service_requires_the_service_token(replicas: dict[str, Any]) -> None:
    """Each service binds 0.0.0.0 inside the stack, so each takes the token; the orchestrators send it."""
    services = _services(replicas)
    token = SECRETS["SELFSPEC_SERVICE_TOKEN"]
    for name in (*GENERATORS, "generator-2"):
        assert _env(services[name])["VLLM_API_KEY"] == token, name  # vLLM's --api-key, as an env var
        assert "--api-key" not in services[name]["command"], f"{name}: a key on the command line shows in ps"
    for name in ("retriever", *TRAINERS, *ORCHESTRATORS):
        assert _env(services[name])["SELFSPEC_SERVICE_TOKEN"] == token, name
    raw = yaml.safe_load(BASE.read_text(encoding="utf-8"))["services"]["retriever"]["environment"]
    with pytest.raises(KeyError):  # required: no default token
        _interpolate(raw, {"ELASTIC_PASSWORD": "x"})


def test_compose_services_answer_their_own_name_and_loopback(replicas: dict[str, Any]) -> None:
    """The Host allowlist of each of our services (selfspec.hosts) admits the name the stack calls it by."""
    from selfspec.hosts import ServiceHosts

    services = _services(replicas)
    for name in ("retriever", "generator-cpu", *TRAINERS):
        allowed = ServiceHosts(_env_file=None, allowed_hosts=_env(services[name])["SELFSPEC_SERVICE_ALLOWED_HOSTS"])
        assert {name, "localhost", "127.0.0.1"} <= set(allowed.allowed_hosts), name


def test_compose_replicas_override_lists_both_urls(base: dict[str, Any], replicas: dict[str, Any]) -> None:
    one = _env(_services(base)["orchestrator"])["SELFSPEC_SERVICES__GENERATOR_URLS"]
    both = _env(_services(replicas)["orchestrator"])["SELFSPEC_SERVICES__GENERATOR_URLS"]
    assert one == "http://generator:8000"
    assert both.split(",") == ["http://generator:8000", "http://generator-2:8000"]
    cpu = _env(_services(base)["orchestrator-cpu"])["SELFSPEC_SERVICES__GENERATOR_URLS"]
    assert cpu == "http://generator-cpu:8000"


@pytest.mark.parametrize("files", [(BASE,), (BASE, REPLICAS)], ids=["base", "replicas"])
def test_compose_orchestrator_env_is_a_valid_run_config(files: tuple[Path, ...],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Every SELFSPEC_<SECTION>__<KEY> the compose files set is a real settings key with a valid value."""
    from services.retriever.app.config import RetrieverSettings

    services = _services(_load(*files))
    for name in ORCHESTRATORS:
        spec = services[name]
        with monkeypatch.context() as patch:
            for key, value in _env(spec).items():
                patch.setenv(key, value)
            config = load_config(REPO / _option(spec["command"], "--config"))
        assert config.retrieval.backend == "http" and config.services.retriever_url == "http://retriever:8002"
        assert str(config.adapters_dir) == _env(spec)["SELFSPEC_STORAGE__ADAPTERS_DIR"]
        hosts = [url.removeprefix("http://").split(":")[0] for url in config.services.generator_urls]
        assert hosts and all(host in services for host in hosts), hosts
        served = {_served_name(services[host]["command"]) for host in hosts}
        assert served == {config.generation.model}, "the orchestrator asks for the name the generators serve"
    with monkeypatch.context() as patch:
        for key, value in _env(services["retriever"]).items():
            patch.setenv(key, value)
        retriever = RetrieverSettings()
    assert retriever.backend == "elasticsearch" and retriever.es_url.endswith("@elasticsearch:9200")
    assert _option(services["retriever"]["command"], "--backend") == "elasticsearch"


def test_compose_every_variable_is_documented_in_env_example() -> None:
    used = set()
    for path in (BASE, REPLICAS):
        for part in path.read_text(encoding="utf-8").split("$$"):
            used |= {m["name"] or m["bare"] for m in _VAR.finditer(part)}
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(encoding="utf-8"), re.M))
    assert used - documented == set(), "variables missing from .env.example"
    assert "COMPOSE_PROFILES" in documented


@pytest.mark.parametrize("config", ["configs/full.toml", "configs/sports.toml"])
def test_shipped_configs_load(config: str) -> None:
    loaded = load_config(REPO / config)
    assert loaded.resolve(loaded.run.seeds).is_file() and loaded.resolve(loaded.run.corpus).is_file()


def test_full_config_follows_the_paper() -> None:
    full = load_config(REPO / "configs/full.toml")
    g, t = full.generation, full.training
    assert (g.target_per_round, g.temperature, g.top_p, g.demos_per_response, full.retrieval.k) == (5000, 1.0, 0.98, 5, 5)
    assert (t.r, t.alpha, t.lr, t.epochs, t.effective_batch, t.quantization) == (8, 16, 3e-4, 3, 32, "nf4")
    assert (full.rounds.count, full.rounds.round2.instructions) == (2, "distinct")


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose is not installed")
@pytest.mark.parametrize("files", [(BASE,), (BASE, REPLICAS)], ids=["base", "replicas"])
def test_compose_files_pass_docker_compose_config(files: tuple[Path, ...], tmp_path: Path) -> None:
    empty_env_file = tmp_path / "empty.env"  # a developer's own .env must not leak into the check
    empty_env_file.write_text("", encoding="utf-8")
    args = ["docker-compose", "--project-directory", str(REPO), "--env-file", str(empty_env_file)]
    for path in files:
        args += ["-f", str(path)]
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path), **SECRETS}
    done = subprocess.run([*args, "config", "-q"], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    # Without any one secret compose refuses the files: nothing starts with a default password or token.
    for secret in SECRETS:
        without = {k: v for k, v in env.items() if k != secret}
        refused = subprocess.run([*args, "config", "-q"], capture_output=True, text=True, env=without,
                                 cwd=tmp_path, timeout=120, check=False)
        assert refused.returncode != 0 and secret in refused.stderr + refused.stdout, secret
