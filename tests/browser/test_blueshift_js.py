"""blueshift.js and trackway.js's queue in real headless Chromium: a shop page (another origin)
carries Blueshift's standard web snippet with only the script's URL pointing at the real
trackway server, or README's async trackway.js snippet; the calls queued before the script
arrived reach the store in order, later calls at once, with the browser's `_bs` cookie, and
`identify` ties the browser to its customer. The pixel requests themselves are looked at as the
browser sends them.

Needs Debian's `chromium` and the `playwright` package; skipped without (failed in CI)."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
from conftest import Account, Server, basic

from browser.conftest import browser_cookie, count_of, stored_bodies, wait_for_events

README = Path(__file__).resolve().parents[2] / "README.md"
# Blueshift's own script sets this kind of cookie: 36 characters, not a v4 uuid.
BLUESHIFT_COOKIE = "935430ac-a189-0cfb-f7c4-89b71e94b539"


def blueshift_snippet(server: Server, key: str, methods: str | None = None) -> str:
    """Blueshift's standard web snippet (its published form, written out), the script's URL
    pointing at `server` instead of Blueshift's CDN."""
    names = methods or '"config","identify","track","click","pageload","capture","retarget","live"'
    host = server.url.removeprefix("http:")
    return (
        f"window._blueshiftid='{key}';window.blueshift=window.blueshift||[];"
        "if(blueshift.constructor===Array){blueshift.load=function(){var d=function(a){return "
        "function(){blueshift.push([a].concat(Array.prototype.slice.call(arguments,0)))}},"
        f"e=[{names}];for(var f=0;f<e.length;f++)blueshift[e[f]]=d(e[f])}};}}"
        "blueshift.load();blueshift.pageload();"
        "if(blueshift.constructor===Array){(function(){var b=document.createElement('script');"
        "b.type='text/javascript',b.async=!0,b.src=('https:'===document.location.protocol?"
        f"'https:':'http:')+'{host}/blueshift.js';"
        "var c=document.getElementsByTagName('script')[0];c.parentNode.insertBefore(b,c);})()}"
    )


def shop_page(head_script: str, body: str = "") -> str:
    return (
        '<!doctype html><html><head><meta charset="utf-8"><title>Shop</title>'
        f"<script>{head_script}</script></head><body><h1>Shop</h1>{body}</body></html>"
    )


def wait_loaded(page: Any, name: str = "blueshift") -> None:
    page.wait_for_function(f"window.{name} && !Array.isArray(window.{name})")


class PixelRequests(list):  # type: ignore[type-arg]
    """Every pixel request a page makes, as its parameters (in order), and how many were in
    flight at once at most."""

    def __init__(self, page: Any) -> None:
        super().__init__()
        self.in_flight = 0
        self.most_in_flight = 0
        page.on("request", self.started)
        page.on("requestfinished", self.ended)
        page.on("requestfailed", self.ended)

    def started(self, request: Any) -> None:
        if "/unity.gif?" in request.url:
            self.append(dict(parse_qsl(urlsplit(request.url).query, keep_blank_values=True)))
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)

    def ended(self, request: Any) -> None:
        if "/unity.gif?" in request.url:
            self.in_flight -= 1


def pixel_requests(page: Any) -> PixelRequests:
    return PixelRequests(page)


def customer(server: Server, account: Account, **identifier: str) -> dict[str, Any]:
    response = httpx.get(
        server.url + "/api/v1/customers", params=identifier, headers=basic(account.user_key)
    )
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()["customer"]
    return found


def readme_block(marker: str) -> str:
    """The ```html block of README.md that holds `marker`."""
    blocks = re.findall(r"```html\n(.*?)```", README.read_text(), re.DOTALL)
    (block,) = [b for b in blocks if marker in b]
    return block


def test_the_scripts_are_served(client):
    for name in ("blueshift.js", "trackway.js"):
        response = client.get("/" + name)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/javascript")
        assert response.headers["access-control-allow-origin"] == "*"
        assert "unity.gif" in response.text
        # The shared part is in, its marker gone.
        assert "@include" not in response.text
        assert "function pixelSender(" in response.text


def test_the_standard_snippet_sends_queued_calls_in_order_and_later_ones_at_once(
    server, account, shop, context
):
    # Everything below runs before the script can: it is queued by the snippet's stubs.
    queued = (
        blueshift_snippet(server, account.event_key)
        + ";blueshift.identify({email: 'ann@example.com', firstname: 'Ann'});"
        + "blueshift.track('view', {product_id: 'p1', price: 9.99, tags: ['a', 'b'],"
        + " in_stock: true, sku: {id: 7}});"
        + "blueshift.track('add_to_cart', {product_id: 'p1', quantity: 2});"
        + "window.queuedBeforeLoad = Array.isArray(blueshift) ? blueshift.length : -1;"
    )
    shop.pages["/p/1"] = shop_page(queued)
    page = context.new_page()
    requests = pixel_requests(page)
    page.goto(f"{shop.url}/p/1?utm_source=mail")
    assert page.evaluate("window.queuedBeforeLoad") == 4
    wait_loaded(page)
    found = wait_for_events(account, count_of("pageload", "identify", "view", "add_to_cart"))
    # In the order the page made them, each stored once.
    assert [b["event"] for b in found] == ["pageload", "identify", "view", "add_to_cart"]

    # A call after the script is in is sent at once, and says when it has been answered.
    started = time.monotonic()
    assert page.evaluate("blueshift.track('search', {q: 'red shoes'})") is True
    assert time.monotonic() - started < 2.0
    assert [b["event"] for b in stored_bodies(account)][-1] == "search"
    found = stored_bodies(account)

    cookie = browser_cookie(context)["value"]
    user_agent = page.evaluate("navigator.userAgent")
    for body in found:
        assert body["cookie"] == cookie
        assert body["url"] == f"{shop.url}/p/1?utm_source=mail"
        assert body["user_agent"] == user_agent
        assert body["ip"] == "127.0.0.1"
        assert body["timestamp"].endswith("Z")
    view = found[2]
    assert (view["product_id"], view["price"], view["tags"]) == ("p1", 9.99, ["a", "b"])
    assert (view["in_stock"], view["sku"]) == (True, {"id": 7})
    assert found[3]["quantity"] == 2
    assert found[4]["q"] == "red shoes"

    # identify tied the email to the browser's cookie: one customer, found either way, and
    # the events before and after it are that customer's.
    by_cookie = customer(server, account, cookie=cookie)
    by_email = customer(server, account, email="ann@example.com")
    assert by_cookie["uuid"] == by_email["uuid"]
    assert by_email["firstname"] == "Ann"
    assert cookie in by_email["cookies"]
    timeline = httpx.get(
        server.url + "/api/v1/customer_search/show_events",
        params={"uuid": by_email["uuid"]},
        headers=basic(account.user_key),
    )
    assert timeline.status_code == 200, timeline.text
    assert sorted(e["event"] for e in timeline.json()) == sorted(b["event"] for b in found)

    # What went over the wire: one pixel at a time (so they arrive in order), Blueshift's
    # parameter names, the key in x.
    assert [r["e"] for r in requests] == ["pageload", "identify", "view", "add_to_cart", "search"]
    assert requests.most_in_flight == 1
    now = time.time()
    for params in requests:
        assert list(params)[:7] == ["x", "t", "e", "r", "z", "k", "u"]
        assert params["x"] == account.event_key
        assert abs(int(params["t"]) - now) < 120
        assert 1 <= int(params["z"]) <= 1_000_000
        assert params["k"] == cookie
        assert params["u"] == f"{shop.url}/p/1?utm_source=mail"
        assert params["r"] == ""
    assert requests[1]["email"] == "ann@example.com"
    assert requests[2]["product_id"] == "p1"
    assert requests[2]["price_json"] == "9.99"
    assert requests[2]["tags_json"] == '["a","b"]'


def test_a_customer_tagged_by_blueshifts_own_script_keeps_the_cookie(
    server, account, shop, context
):
    context.add_cookies([{"name": "_bs", "value": BLUESHIFT_COOKIE, "url": shop.url}])
    shop.pages["/known"] = shop_page(
        blueshift_snippet(server, account.event_key),
        "<script>blueshift.identify({customer_id: 'c-42'});</script>",
    )
    page = context.new_page()
    page.goto(f"{shop.url}/known", referer="https://search.example/?q=shop")
    found = wait_for_events(account, count_of("pageload", "identify"))
    assert {b["cookie"] for b in found} == {BLUESHIFT_COOKIE}
    assert browser_cookie(context)["value"] == BLUESHIFT_COOKIE
    assert found[0]["referrer"] == "https://search.example/?q=shop"
    assert customer(server, account, cookie=BLUESHIFT_COOKIE)["customer_id"] == "c-42"


def test_analytics_js_integration_and_calls_trackway_does_not_have(server, account, shop, context):
    # analytics.js's Blueshift integration: load(KEY) sets the key, events carry _bsft_source.
    # A site's own stub names (presale_load) and Blueshift features Trackway does not have
    # (capture, retarget, live, config) send nothing and break nothing.
    head = (
        "window.blueshift=window.blueshift||[];"
        "window.blueshift.load=function(a){window._blueshiftid=a;var d=function(a){return "
        "function(){blueshift.push([a].concat(Array.prototype.slice.call(arguments,0)))}},"
        "e=['identify','track','click','pageload','capture','retarget','live','config',"
        "'presale_load'];for(var f=0;f<e.length;f++)blueshift[e[f]]=d(e[f])};"
        f"window.blueshift.load('{account.event_key}');"
        "blueshift.retarget();blueshift.capture({form: 'x'});blueshift.live({slot: 's'});"
        "blueshift.config({tracking: false});blueshift.presale_load();"
        "blueshift.pageload({path: '/a', _bsft_source: 'segment.com'});"
        "blueshift.click({element: 'buy', _bsft_source: 'segment.com'});"
    )
    shop.pages["/segment"] = shop_page(
        head, f'<script async src="{server.url}/blueshift.js"></script>'
    )
    page = context.new_page()
    warnings: list[str] = []
    page.on("console", lambda m: warnings.append(m.text) if m.type == "warning" else None)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    requests = pixel_requests(page)
    page.goto(f"{shop.url}/segment")
    wait_loaded(page)
    found = wait_for_events(account, count_of("pageload", "click"))
    assert [b["event"] for b in found] == ["pageload", "click"]
    assert found[0]["path"] == "/a" and found[0]["_bsft_source"] == "segment.com"
    assert found[1]["element"] == "buy"
    assert [r["e"] for r in requests] == ["pageload", "click"]
    assert page.evaluate("blueshift.options") == {"tracking": False}
    assert page.evaluate("blueshift.live({slot: 's'})") is False
    assert any("presale_load" in w for w in warnings), warnings
    assert errors == []
    time.sleep(0.3)
    assert len(stored_bodies(account)) == 2


def test_without_a_key_nothing_is_sent_and_nothing_breaks(server, account, shop, context):
    shop.pages["/nokey"] = shop_page(
        "window.blueshift=[];",
        f'<script src="{server.url}/blueshift.js"></script>'
        "<script>window.sent = blueshift.track('view', {product_id: 'p'});</script>",
    )
    page = context.new_page()
    messages: list[str] = []
    page.on("console", lambda m: messages.append(m.text) if m.type == "error" else None)
    requests = pixel_requests(page)
    page.goto(f"{shop.url}/nokey")
    assert page.evaluate("window.sent") is False
    assert requests == []
    assert any("_blueshiftid" in m for m in messages), messages


def test_the_script_included_twice_sends_each_call_once(server, account, shop, context):
    script = f'<script src="{server.url}/blueshift.js"></script>'
    shop.pages["/twice"] = shop_page(blueshift_snippet(server, account.event_key), script + script)
    page = context.new_page()
    page.goto(f"{shop.url}/twice")
    wait_loaded(page)
    assert page.evaluate("blueshift.track('view', {product_id: 'p2'})") is True
    time.sleep(0.3)
    assert [b["event"] for b in stored_bodies(account)] == ["pageload", "view"]


def test_readme_blueshift_snippet(server, account, shop, context):
    block = readme_block("_blueshiftid")
    html = block.replace("//127.0.0.1:8080", server.url.removeprefix("http:")).replace(
        "EVENT_KEY", account.event_key
    )
    shop.pages["/readme-blueshift"] = f"<!doctype html><title>README</title>{html}"
    page = context.new_page()
    page.goto(f"{shop.url}/readme-blueshift")
    found = wait_for_events(account, count_of("pageload", "identify", "add_to_cart"))
    assert [b["event"] for b in found] == ["pageload", "identify", "add_to_cart"]
    assert found[2]["price"] == 9.99
    assert customer(server, account, cookie=found[0]["cookie"])["customer_id"] == "42"


def test_readme_async_trackway_snippet(server, account, shop, context):
    block = readme_block('trackway.js" data-key')
    assert " async>" in block
    html = block.replace("http://127.0.0.1:8080", server.url).replace(
        "EVENT_KEY", account.event_key
    )
    later = (
        "<script>window.addEventListener('load', function () {"
        " window.later = trackway.identify({email: 'ann@example.com'}); });</script>"
    )
    shop.pages["/readme-trackway"] = f"<!doctype html><title>Async</title>{html}{later}"
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{shop.url}/readme-trackway")
    wait_loaded(page, "trackway")
    page.wait_for_function("window.later !== undefined")
    assert page.evaluate("window.later") is True
    found = wait_for_events(account, count_of("pageload", "add_to_cart", "identify"))
    # The script's own pageload first, then the queued call, then the later one.
    assert [b["event"] for b in found] == ["pageload", "add_to_cart", "identify"]
    assert found[0]["title"] == "Async"
    assert found[1]["price"] == 9.99 and found[1]["product_id"] == "p1"
    assert {b["cookie"] for b in found} == {browser_cookie(context)["value"]}
    assert errors == []
