"""trackway.js in a real headless Chromium: a page served by the test loads the script from the
real trackway server, and the pageload, track and identify events arrive through the pixel with
the browser's `_bs` cookie, its user agent and the page's URL.

Needs Debian's `chromium` (/usr/bin/chromium) and the `playwright` package (the `test` extra);
no browser is downloaded. Skipped when chromium is missing, except in CI (CI=true), where a
missing browser fails."""

from __future__ import annotations

import re
import time
from typing import Any

from conftest import Account, Server, basic

from browser.conftest import browser_cookie, count_of, wait_for_events

UUID4_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
TIMEOUT_MS = 15_000


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


def wait_pixels(page: Any) -> list[bool]:
    """Wait until the pixels of the calls in window.pixels have answered: what their promises
    said (true: the pixel answered with an image the browser could decode)."""
    return page.evaluate("() => Promise.all(window.pixels)")


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
    assert wait_pixels(page) == [True, True]

    cookie = browser_cookie(context)
    bs = cookie["value"]
    assert UUID4_RE.fullmatch(bs), bs
    assert page.evaluate("trackway.cookie()") == bs
    assert cookie["path"] == "/"
    assert not cookie["httpOnly"]
    assert cookie["sameSite"] == "Lax"
    # Two years asked; Chromium keeps a cookie for at most 400 days.
    assert 395 * 86400 < cookie["expires"] - started < 732 * 86400

    found = wait_for_events(account, count_of("pageload", "add_to_cart", "identify"))
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
    found = wait_for_events(account, count_of("pageload", "add_to_cart", "identify", each=2))
    assert len(found) == 6
    assert {b["cookie"] for b in found} == {bs}


def test_a_new_browser_gets_a_new_cookie_and_the_referrer_is_sent(server, account, shop, chromium):
    shop.pages["/products/p1"] = product_page(server, account)
    cookies = []
    for referrer in ("https://search.example/?q=shoes", "https://mail.example/"):
        context = chromium.new_context()
        try:
            page = context.new_page()
            page.goto(f"{shop.url}/products/p1", referer=referrer, timeout=TIMEOUT_MS)
            wait_pixels(page)
            cookies.append(browser_cookie(context)["value"])
        finally:
            context.close()
    assert cookies[0] != cookies[1]
    found = wait_for_events(account, count_of("pageload", "add_to_cart", "identify", each=2))
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
    (body,) = wait_for_events(account, count_of("view"))
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
    found = wait_for_events(account, count_of("pageload", "view"))
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
