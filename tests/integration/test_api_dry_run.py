from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.test_api_support import api_config, fake_generator, running_api

pytestmark = pytest.mark.integration


def test_post_runs_dry_run_estimates_and_creates_nothing(tmp_path: Path) -> None:
    with fake_generator() as url:
        config = api_config(tmp_path, url, target=12)
        with running_api(config) as client:
            response = client.post("/v1/runs", params={"dry_run": "true"},
                                   json={"generation": {"price_per_1k_tokens": 0.2}})
            assert response.status_code == 200, response.text
            body = response.json()
            stages = [s["stage"] for s in body["stages"]]
            assert "round1:instructions" in stages and "round1:responses" in stages
            assert body["probe"]["completion_tokens"] > 0 and body["total_s"] > 0
            assert body["cost"] == pytest.approx(body["tokens"] / 1000 * 0.2)
            assert client.get("/v1/runs").json() == []
