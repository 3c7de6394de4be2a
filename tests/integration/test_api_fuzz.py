"""Property-based fuzzing of the orchestrator API from its own OpenAPI schema (schemathesis).

Every operation gets a bounded number of generated requests, some the schema allows and some it does
not, against a server with a token (each request sent with it and without it) and one without a token
(loopback mode): no response is a 5xx, every response matches its documented schema, and nothing
succeeds without the token where one is set (but /healthz). A run a fuzzed request creates is cancelled
at once, so the fuzzing leaves no work behind. Derandomized: the same cases every time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.generation.modes import GenerationMode  # noqa: E402
from schemathesis.specs.openapi.checks import response_schema_conformance  # noqa: E402

from tests.fakes.openai_server import FakeState  # noqa: E402
from tests.integration.test_api_support import api_config, fake_generator, running_api  # noqa: E402

pytestmark = pytest.mark.integration

TOKEN = "fuzz-token"
EXAMPLES_PER_OPERATION = 15  # ~20 operations: about 300 cases per server
BUDGET_S = 60.0  # per server; both together stay under two minutes
OPEN_ROUTES = {"/healthz"}
CHECKS = [not_a_server_error, response_schema_conformance]


@pytest.fixture(scope="module", params=["token", "no-token"])
def api(request: pytest.FixtureRequest,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, str | None]]:
    token = TOKEN if request.param == "token" else None
    with fake_generator(FakeState()) as gen_url:
        config = api_config(tmp_path_factory.mktemp(f"fuzz-{request.param}"), gen_url, target=3)
        with running_api(config, token=token, run_workers="inline", max_active_runs=2,
                         sse_max_lifetime_s=2.0) as client:
            yield client, token


def test_api_fuzzed_from_its_schema(api: tuple[httpx.Client, str | None]) -> None:
    client, token = api
    base_url = str(client.base_url).rstrip("/")
    started = time.monotonic()
    schema = schemathesis.openapi.from_dict(client.get("/openapi.json").raise_for_status().json())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 16
    credentials = {"Authorization": f"Bearer {token}"} if token else {}
    sent = 0
    for operation in operations:

        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(case=st.one_of(operation.as_strategy(GenerationMode.POSITIVE),
                              operation.as_strategy(GenerationMode.NEGATIVE)))
        def check(case: Any) -> None:
            nonlocal sent
            response = case.call(base_url=base_url, headers=credentials, timeout=30)
            case.validate_response(response, checks=CHECKS)
            if response.status_code == 201 and case.path == "/v1/runs" and case.method.upper() == "POST":
                client.post(f"/v1/runs/{response.json()['id']}/cancel")  # leave nothing running
            sent += 1
            if token is None:
                return
            anonymous = case.call(base_url=base_url, timeout=30)
            case.validate_response(anonymous, checks=CHECKS)
            if case.path not in OPEN_ROUTES:  # refused (401, or 422 for a body FastAPI cannot even parse)
                assert anonymous.status_code >= 400, (case.method, case.path, anonymous.status_code)
            sent += 1

        check()
    assert sent >= len(operations)
    assert time.monotonic() - started < BUDGET_S
