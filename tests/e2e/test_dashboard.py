"""The dashboard in headless Chromium: token prompt, a run's live progress, a sample with its passages.

Needs /usr/bin/chromium (Debian's `chromium`) and the `playwright` Python package (its driver only:
the system Chromium is used, nothing is downloaded). Skipped with the reason when either is missing.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from orchestrator.store import RunStore
from tests.e2e.browser import needs_chromium, signed_in_page
from tests.fakes.openai_server import FakeState
from tests.integration.test_api_support import api_config, fake_generator, running_api, wait_for_status

TOKEN = "dashboard-test-token"

pytestmark = [
    pytest.mark.integration,
    needs_chromium,
]


def test_dashboard_shows_progress_and_a_sample_with_passages(tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    screenshots = tmp_path / "screenshots"
    screenshots.mkdir()
    fake = FakeState(down=True)  # the run waits (status running) until the page is up
    with fake_generator(fake) as gen_url:
        config = api_config(tmp_path, gen_url, target=30)
        with running_api(config, token=TOKEN) as client:
            run_id = client.post("/v1/runs", json={"run": {"name": "ui"}}).raise_for_status().json()["id"]
            base = str(client.base_url).rstrip("/")
            errors: list[str] = []
            with signed_in_page(sync_api, f"{base}/ui/#{run_id}", token=TOKEN, errors=errors) as page:
                expect = sync_api.expect  # selector-based waits: the page's CSP forbids eval
                expect(page.locator("#run-status")).to_have_text("running", timeout=30_000)
                page.screenshot(path=str(screenshots / "dashboard-running.png"), full_page=True)
                fake.down = False
                # the page only re-reads the run when an event arrives: reaching 'completed' is the SSE at work
                expect(page.locator("#run-status")).to_have_text("completed", timeout=90_000)
                expect(page.locator("#stages")).to_contain_text("30 / 30")
                assert wait_for_status(client, run_id, {"completed"})["samples_ok"] == 30
                assert page.inner_text("#runs-table").count(run_id) == 1
                page.click("#samples-table tbody tr")
                page.wait_for_selector("#sample-passages li.passage")
                passages = page.locator("#sample-passages li.passage")
                assert passages.count() == 5
                assert all(len(text) > 20 for text in passages.all_inner_texts())
                assert page.inner_text("#sample-response").startswith("Answer from fake-base")
                expect(page.locator("#events-log li").first).to_be_visible()
                expect(page.locator("#estimate-block")).to_be_hidden()  # no dry run of this config
                # A run of a dry-run config ends with its estimate next to the actual seconds (the
                # run path records it; here it is written straight into the store).
                store = RunStore(config.database_url)
                store.add_event(run_id, "estimate", {"phases": [
                    {"phase": "round1:synthesis", "estimated_s": 12.0, "actual_s": 9.6},
                    {"phase": "evaluation", "estimated_s": 30.0, "actual_s": None}]})
                store.close()
                page.reload()
                expect(page.locator("#estimate-block")).to_be_visible(timeout=30_000)
                rows = page.locator("#estimate-table tbody tr")
                expect(rows).to_have_count(2)
                expect(rows.nth(0)).to_have_text("round1:synthesis1210")
                expect(rows.nth(1)).to_have_text("evaluation30-")
                page.screenshot(path=str(screenshots / "dashboard.png"), full_page=True)
    assert (screenshots / "dashboard.png").stat().st_size > 10_000
    assert errors == [], errors
    if os.environ.get("DASHBOARD_SCREENSHOT"):
        shutil.copy(screenshots / "dashboard.png", os.environ["DASHBOARD_SCREENSHOT"])
