"""Headless Chromium for the dashboard tests: the system browser (Debian's `chromium`) driven by
playwright's driver, nothing downloaded; a page opened on a run and signed in with the API token."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium)")


@contextmanager
def signed_in_page(sync_api: Any, url: str, *, token: str, errors: list[str], height: int = 1000) -> Iterator[Any]:
    """A page at `url` with the token entered into the dashboard's prompt. Console errors and page errors
    after sign-in are appended to `errors` (the 401 that asks for the token is expected and dropped)."""
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": height})
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(url)
            page.wait_for_selector("#token-form:not([hidden])")
            errors.clear()
            page.fill("#token-input", token)
            page.click("#token-form button[type=submit]")
            yield page
        finally:
            browser.close()
