"""Orchestrator API hardening that needs no running server: the token is checked before a body is read."""

from __future__ import annotations

import httpx
import pytest
from pydantic import SecretStr

from orchestrator.app.main import create_app
from orchestrator.app.settings import ApiSettings
from selfspec.settings import RunConfig

TOKEN = "s3cret-token"
MALFORMED = b'{"run": {"name": '


async def _post(path: str, *, headers: dict[str, str]) -> httpx.Response:
    # No lifespan: nothing is opened, so only what runs before the routes' dependencies can answer.
    app = create_app(RunConfig(), settings=ApiSettings(token=SecretStr(TOKEN)))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost") as http:
        return await http.post(path, content=MALFORMED, headers={"Content-Type": "application/json", **headers})


@pytest.mark.parametrize("path", ["/v1/runs", "/v1/evaluations", "/v1/adapters/a1/load", "/v1/runs/x/cancel"])
async def test_api_anonymous_malformed_body_is_401_not_422(path: str) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        response = await _post(path, headers=headers)
        assert response.status_code == 401, (path, headers, response.text)
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json() == {"detail": "missing or wrong bearer token"}


async def test_api_malformed_body_with_the_token_is_still_422() -> None:
    response = await _post("/v1/runs", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 422, response.text
