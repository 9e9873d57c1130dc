"""trackway.js in a real headless Chromium: a page served by the test loads the script from the
real trackway server, and the pageload, track and identify events arrive through the pixel with
the browser's `_bs` cookie, its user agent and the page's URL.

Needs Debian's `chromium` (/usr/bin/chromium) and the `playwright` package (the `test` extra);
no browser is downloaded. Skipped when chromium is missing, except in CI (CI=true), where a
missing browser fails."""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import Account, Server, basic

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
IN_CI = bool(os.environ.get("CI"))
UUID4_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
TIMEOUT_MS = 15_000
ARRIVAL_SECONDS = 15.0


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason}: CI must provide it (see .ci/run)", pytrace=False)
    pytest.skip(reason)


# --- a shop: the test's own web server, on another port than trackway's -----------------


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


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install -e '.[test]')")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def context(browser) -> Iterator[Any]:
    """A fresh browser profile (its own cookie jar)."""
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    try:
        yield context
    finally:
        context.close()


# --- helpers -------------------------------------------------------------------------------


def product_page(server: Server, account: Account) -> str:
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Product p1</title>
<script src="{server.url}/trackway.js" data-key="{account.event_key}"></script>
</head><body><h1>Product p1</h1>
<script>
  window.pixels = [
    trackway.track("add_to_cart", {{product_id: "p1", price: 9.99, tags: ["a"]}}),
    trackway.identify({{email: "ann@example.com"}})
  ];
</script>
</body></html>"""


def wait_pixels(page: Any) -> list[dict[str, Any]]:
    """Wait until the images trackway.track/identify returned are loaded (or failed); their
    natural sizes, as the browser's own GIF decoder saw them."""
    return page.evaluate(
        """() => Promise.all(window.pixels.map(img => new Promise(resolve => {
              const done = () => resolve({ok: img.complete && img.naturalWidth > 0,
                                          width: img.naturalWidth, height: img.naturalHeight});
              if (img.complete) done();
              else { img.onload = done; img.onerror = done; }
            })))"""
    )


def bodies(account: Account) -> list[dict[str, Any]]:
    return [json.loads(r["body"]) for r in account.events()]


def wait_for(
    account: Account, ready: Callable[[list[dict[str, Any]]], bool]
) -> list[dict[str, Any]]:
    """The account's stored event bodies, once `ready` says they are all there."""
    deadline = time.monotonic() + ARRIVAL_SECONDS
    while True:
        found = bodies(account)
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


# --- tests ---------------------------------------------------------------------------------


def test_trackway_js_is_served(client):
    response = client.get("/trackway.js")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/javascript")
    assert "unity.gif" in response.text


def test_events_arrive_with_the_cookie_and_the_browser_fields(
    server, client, account, shop, context
):
    shop.pages["/products/p1"] = product_page(server, account)
    page_url = f"{shop.url}/products/p1?utm_source=test&q=a%20b"
    page = context.new_page()
    started = time.time()
    page.goto(page_url)
    assert wait_pixels(page) == [{"ok": True, "width": 1, "height": 1}] * 2

    cookie = browser_cookie(context)
    bs = cookie["value"]
    assert UUID4_RE.fullmatch(bs), bs
    assert page.evaluate("trackway.cookie()") == bs
    assert cookie["path"] == "/"
    assert not cookie["httpOnly"]
    assert cookie["sameSite"] == "Lax"
    # Two years asked; Chromium keeps a cookie for at most 400 days.
    assert 395 * 86400 < cookie["expires"] - started < 732 * 86400

    found = wait_for(account, count_of("pageload", "add_to_cart", "identify"))
    assert sorted(b["event"] for b in found) == ["add_to_cart", "identify", "pageload"]
    by_name = {b["event"]: b for b in found}
    user_agent = page.evaluate("navigator.userAgent")
    assert "Chrome" in user_agent
    for body in found:
        assert body["cookie"] == bs
        assert body["user_agent"] == user_agent
        assert body["url"] == page_url
        assert body["ip"] == "127.0.0.1"
        # Opened directly: the page had no referrer.
        assert body.get("referrer") in (None, "")
        # `t` is the browser's clock in Unix seconds.
        assert body["timestamp"].endswith("Z")
        for internal in ("x", "z", "k", "e", "u", "r", "t"):
            assert internal not in body

    assert by_name["pageload"]["title"] == "Product p1"
    cart = by_name["add_to_cart"]
    assert cart["product_id"] == "p1"
    assert cart["price"] == 9.99 and isinstance(cart["price"], float)
    assert cart["tags"] == ["a"]
    assert by_name["identify"]["email"] == "ann@example.com"

    # The same, read back through the history API.
    response = client.get(
        "/api/v1/event/history",
        params={"event_name": "add_to_cart"},
        headers=basic(account.user_key),
    )
    assert response.status_code == 200, response.text
    (event,) = response.json()["add_to_cart"]
    assert (event["price"], event["tags"], event["cookie"]) == (9.99, ["a"], bs)

    # The browser's cookie finds the customer the identify named.
    response = client.get(
        "/api/v1/customers", params={"cookie": bs}, headers=basic(account.user_key)
    )
    assert response.status_code == 200, response.text
    assert response.json()["customer"]["email"] == "ann@example.com"

    # A reload keeps the cookie, and its events carry it.
    page.reload()
    wait_pixels(page)
    assert browser_cookie(context)["value"] == bs
    found = wait_for(account, count_of("pageload", "add_to_cart", "identify", each=2))
    assert len(found) == 6
    assert {b["cookie"] for b in found} == {bs}


def test_a_new_browser_gets_a_new_cookie_and_the_referrer_is_sent(server, account, shop, browser):
    shop.pages["/products/p1"] = product_page(server, account)
    cookies = []
    for referrer in ("https://search.example/?q=shoes", "https://mail.example/"):
        context = browser.new_context()
        try:
            page = context.new_page()
            page.goto(f"{shop.url}/products/p1", referer=referrer, timeout=TIMEOUT_MS)
            wait_pixels(page)
            cookies.append(browser_cookie(context)["value"])
        finally:
            context.close()
    assert cookies[0] != cookies[1]
    found = wait_for(account, count_of("pageload", "add_to_cart", "identify", each=2))
    assert {b["cookie"] for b in found} == set(cookies)
    pageloads = {b["cookie"]: b for b in found if b["event"] == "pageload"}
    assert pageloads[cookies[0]]["referrer"] == "https://search.example/?q=shoes"
    assert pageloads[cookies[1]]["referrer"] == "https://mail.example/"


def test_init_without_data_key(server, account, shop, context):
    shop.pages["/later"] = f"""<!doctype html><html><head><title>Later</title>
<script async src="{server.url}/trackway.js"
        onload="window.pixels = [trackway.init('{account.event_key}') ||
                                 trackway.track('view', {{n: 1, ok: true, s: 'x'}})]"></script>
</head><body></body></html>"""
    page = context.new_page()
    page.goto(f"{shop.url}/later")
    page.wait_for_function("window.pixels !== undefined")
    wait_pixels(page)
    (body,) = wait_for(account, count_of("view"))
    # No data-key: no pageload, only the event sent after init.
    assert body["event"] == "view"
    assert (body["n"], body["ok"], body["s"]) == (1, True, "x")
    assert body["cookie"] == browser_cookie(context)["value"]
    assert body["url"] == f"{shop.url}/later"


def test_attribute_names_the_pixel_uses_itself(server, account, shop, context):
    shop.pages["/names"] = (
        f'<!doctype html><title>Names</title><script src="{server.url}/trackway.js" '
        f'data-key="{account.event_key}"></script>'
    )
    page = context.new_page()
    page.goto(f"{shop.url}/names")
    page.evaluate(
        """() => { window.pixels = [trackway.track("view", {
              e: "not-the-event", u: "not-the-url", k: "not-the-cookie", t: "soon",
              z: "kept", x: "not-the-key", note_json: "{not json}", n_json: 5,
              nothing: undefined, fn: function () {}, empty: null, text: "a&b=c d+é"
           })]; }"""
    )
    wait_pixels(page)
    found = wait_for(account, count_of("pageload", "view"))
    (view,) = [b for b in found if b["event"] == "view"]
    assert view["cookie"] == browser_cookie(context)["value"]
    assert view["url"] == f"{shop.url}/names"
    expected = {
        "e": "not-the-event",
        "u": "not-the-url",
        "k": "not-the-cookie",
        "t": "soon",
        "z": "kept",
        "x": "not-the-key",
        "note_json": "{not json}",
        "n_json": 5,
        "empty": None,
        "text": "a&b=c d+é",
    }
    assert {name: view.get(name) for name in expected} == expected
    assert "nothing" not in view and "fn" not in view
