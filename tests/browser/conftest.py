"""Fixtures of the browser tests: real headless Chromium (Debian's /usr/bin/chromium, driven by
Playwright; never a downloaded browser) against a real `trackway serve`. Without Chromium the
tests are skipped, except in CI (CI=true), where that fails them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Account, Server, create_account

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).parent / "screenshots"
# Bulk calls big enough to fill a large error log quickly.
MAX_BULK_EVENTS = 5000


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason}: CI must run the browser tests")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Chromium for one module's tests (a Playwright per module: one runs at a time)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install playwright)")
    if not Path(CHROMIUM).exists():
        _unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="session")
def page_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("browser")
    server = Server(
        directory / "trackway.db",
        directory / "server.log",
        "--max-bulk-events",
        str(MAX_BULK_EVENTS),
        "--max-body-bytes",
        str(8 * 1024 * 1024),
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def tenant(page_server: Server) -> Account:
    return create_account(page_server.db_path)


@pytest.fixture
def signed_in(chromium: Any, page_server: Server, tenant: Account) -> Iterator[Any]:
    """A page of a browser context that answers the Basic-auth prompt with the user key.
    The page's Content-Security-Policy is bypassed: Playwright's waits evaluate strings, and
    the escaping tests must hold without that safety net."""
    context = chromium.new_context(
        http_credentials={"username": tenant.user_key, "password": ""},
        viewport={"width": 1360, "height": 900},
        accept_downloads=True,
        bypass_csp=True,
    )
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on(
        "console",
        lambda message: (
            problems.append(f"console: {message.text}") if message.type == "error" else None
        ),
    )
    page.problems = problems
    try:
        yield page
    finally:
        # Hang up the live stream before the server stops (it would wait for it).
        context.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(exist_ok=True)
    return SCREENSHOTS
