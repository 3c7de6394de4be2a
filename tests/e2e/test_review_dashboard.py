"""The dashboard's review panel in headless Chromium, on a run whose round waits for review.

The round is written into the store before the API starts (tests/fakes/review_round.py: kept, gated,
failed and near-duplicate items), so no model runs; approving it starts the run's worker for real,
which exports the reviewed round and completes. Needs /usr/bin/chromium and playwright, like
test_dashboard.py (skipped with the reason when either is missing).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from orchestrator.store import RunStore
from selfspec.settings import RunConfig, load_config
from tests.e2e.browser import needs_chromium, signed_in_page
from tests.fakes.review_round import DROPPED, populate_review_round, sample_id
from tests.integration.test_api_support import config_data, fake_generator, running_api, wait_for_status

TOKEN = "review-dashboard-token"
RUN_ID = "review-e2e"

pytestmark = [
    pytest.mark.integration,
    needs_chromium,
]


def _config(tmp_path: Path, gen_url: str, **rounds: object) -> RunConfig:
    data = config_data(tmp_path, gen_url, target=4)  # the round's four ok samples reach the target
    data["rounds"].update(rounds)
    return load_config(None, {f"{s}.{k}": v for s, fields in data.items() for k, v in fields.items()})


def _awaiting_review(config: RunConfig) -> None:
    """A run with `rounds.review`, synthesised and paused as the driver leaves it."""
    store = RunStore(config.database_url)
    try:
        store.create_run(RUN_ID, "review", config.model_dump(mode="json"))
        populate_review_round(store, RUN_ID)
        store.set_status(RUN_ID, "awaiting_review", phase="round1:review", round=1, reason="round 1 awaits review")
    finally:
        store.close()


def test_review_panel_rejects_restores_and_approves_a_run(tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    screenshots = tmp_path / "screenshots"
    screenshots.mkdir()
    first, second = sample_id(RUN_ID, 0), sample_id(RUN_ID, 2)
    with fake_generator() as gen_url:
        _awaiting_review(_config(tmp_path, gen_url, review=True))
        with running_api(_config(tmp_path, gen_url), token=TOKEN) as client:
            base = str(client.base_url).rstrip("/")
            errors: list[str] = []
            with signed_in_page(sync_api, f"{base}/ui/#{RUN_ID}", token=TOKEN, errors=errors, height=1200) as page:
                expect = sync_api.expect
                expect(page.locator("#run-status")).to_have_text("awaiting_review", timeout=30_000)
                expect(page.locator("#review-banner")).to_contain_text("waits for your review")
                rows = page.locator("#review-table tbody tr")
                expect(rows).to_have_count(9)  # six kept instructions and three dropped ones

                # Filter to near-duplicates: the dropped instructions, each with its reason, nothing to restore.
                page.select_option("#review-filter", "verdict:near_duplicate")
                expect(rows).to_have_count(2)
                expect(rows.first).to_contain_text("dropped: near_duplicate")
                rows.first.click()
                expect(page.locator("#review-verdict")).to_contain_text("ROUGE-L 0.92 > 0.7")
                expect(page.locator("#review-reject")).to_be_disabled()
                expect(page.locator("#review-restore")).to_be_disabled()

                # The kept instruction it duplicates, found by full-text search (typed after '/').
                page.select_option("#review-filter", "")
                page.keyboard.press("/")
                page.keyboard.type("INTERLEUKIN-2")
                page.keyboard.press("Enter")
                expect(rows).to_have_count(2)
                assert DROPPED[0][0] in page.inner_text("#review-table")
                kept = page.locator(f"#review-table tbody tr[data-sample-id='{first}']")
                kept.click()
                expect(page.locator("#review-passages li.doc")).to_have_count(2)
                expect(page.locator("#review-passages")).to_contain_text("bm-0001")
                page.keyboard.press("x")  # reject, from the keyboard
                expect(kept).to_contain_text("rejected")
                expect(page.locator("#review-state")).to_contain_text("token:")
                page.keyboard.press("r")  # and restore it
                expect(page.locator(f"#review-table tbody tr[data-sample-id='{first}']")).to_contain_text("included")

                # Reject another through its button, in the list of ok samples.
                page.fill("#review-search", "")
                page.select_option("#review-filter", "status:ok")
                expect(rows).to_have_count(4)
                page.click(f"#review-table tbody tr[data-sample-id='{second}']")
                page.click("#review-reject")
                expect(page.locator(f"#review-table tbody tr[data-sample-id='{second}']")).to_contain_text("rejected")
                log = page.locator("#review-log li")
                expect(log).to_have_count(3)
                page.screenshot(path=str(screenshots / "review.png"), full_page=True)

                page.click("#review-approve")
                expect(page.locator("#run-status")).to_have_text("completed", timeout=90_000)
                expect(log).to_have_count(4)
                actions = [item.get_attribute("data-action") for item in log.all()]
                assert actions == ["reject", "restore", "reject", "approve"]
                texts = log.all_inner_texts()
                assert first in texts[0] and first in texts[1] and second in texts[2]
                page.screenshot(path=str(screenshots / "review-approved.png"), full_page=True)
            wait_for_status(client, RUN_ID, {"completed"})
            events = client.get(f"/v1/runs/{RUN_ID}/review/log").raise_for_status().json()
    sft = tmp_path / "data" / "runs" / RUN_ID / "round1" / "sft.jsonl"
    exported = {json.loads(line)["source_sample_id"] for line in sft.read_text().splitlines()}
    assert exported == {sample_id(RUN_ID, i) for i in range(4)} - {second}  # exactly the rejected one is missing
    assert [(e["action"], e["sample_id"]) for e in events] == [
        ("reject", first), ("restore", first), ("reject", second), ("approve", None)]
    assert all(e["by"].startswith("token:") and TOKEN not in e["by"] for e in events)
    assert (screenshots / "review.png").stat().st_size > 10_000
    assert errors == [], errors
    if os.environ.get("REVIEW_SCREENSHOT"):
        shutil.copy(screenshots / "review.png", os.environ["REVIEW_SCREENSHOT"])
