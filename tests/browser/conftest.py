"""Fixtures of the browser tests: real headless Chromium (Debian's /usr/bin/chromium, driven by
Playwright; never a downloaded browser) against a real `trackway serve`. Without Chromium the
tests are skipped, except in CI (CI=true), where that fails them."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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
TIMEOUT_MS = 15_000
ARRIVAL_SECONDS = 15.0


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


# --- a shop: the test's own web server, on another port (another origin) than trackway's ------


class Shop:
    """Pages by path, served on 127.0.0.1 by a thread; every GET is recorded."""

    def __init__(self) -> None:
        self.pages: dict[str, str] = {}
        self.requests: list[str] = []
        shop = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                shop.requests.append(self.path)
                page = shop.pages.get(self.path.split("?")[0])
                payload = (page or "not found").encode()
                self.send_response(200 if page is not None else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def shop() -> Iterator[Shop]:
    shop = Shop()
    try:
        yield shop
    finally:
        shop.close()


@pytest.fixture
def context(chromium: Any) -> Iterator[Any]:
    """A fresh browser profile (its own cookie jar)."""
    context = chromium.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    try:
        yield context
    finally:
        context.close()


def stored_bodies(account: Account) -> list[dict[str, Any]]:
    """The account's stored event bodies, in the order they were stored."""
    return [json.loads(r["body"]) for r in account.events()]


def wait_for_events(
    account: Account, ready: Callable[[list[dict[str, Any]]], bool]
) -> list[dict[str, Any]]:
    """The account's stored event bodies, once `ready` says they are all there."""
    deadline = time.monotonic() + ARRIVAL_SECONDS
    while True:
        found = stored_bodies(account)
        if ready(found):
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"events did not arrive in {ARRIVAL_SECONDS}s: {found}")
        time.sleep(0.05)


def count_of(*names: str, each: int = 1) -> Callable[[list[dict[str, Any]]], bool]:
    def ready(found: list[dict[str, Any]]) -> bool:
        return all(sum(1 for b in found if b["event"] == n) >= each for n in names)

    return ready


def browser_cookie(context: Any) -> dict[str, Any]:
    (cookie,) = [c for c in context.cookies() if c["name"] == "_bs"]
    return cookie
