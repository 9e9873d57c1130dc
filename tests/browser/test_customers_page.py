"""The Customers tab of the clickstream page, in real headless Chromium against a real server:
search, results newest first, a profile that explains itself (identifiers, attributes,
subscriptions, merges, conflicts) with its paged timeline, the live stream's customer chips
opening it, payloads shown as text, and the view usable at 420 px wide."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
from conftest import Account, Server, basic

NARROW = {"width": 420, "height": 860}

TIMEOUT = 10_000


def bulk(server: Server, tenant: Account, events: list[dict[str, Any]]) -> None:
    for event in events:
        event.setdefault("event_uuid", str(uuid.uuid4()))
    response = httpx.post(
        server.url + "/api/v1/bulkevents",
        json={"events": events},
        headers=basic(tenant.event_key),
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ok", "count": len(events)}, response.text


def customer_uuid(server: Server, tenant: Account, **identifier: str) -> str:
    response = httpx.get(
        server.url + "/api/v1/customers", params=identifier, headers=basic(tenant.user_key)
    )
    assert response.status_code == 200, response.text
    return str(response.json()["customer"]["uuid"])


def assert_inside(page: Any, selector: str, width: int) -> None:
    """Every node `selector` matches is shown, and within the screen's width."""
    found = page.evaluate(
        """(selector) => Array.from(document.querySelectorAll(selector)).map(node => {
             const r = node.getBoundingClientRect();
             return {left: r.left, right: r.right, width: r.width, height: r.height};
           })""",
        selector,
    )
    assert found, f"nothing matches {selector}"
    for box in found:
        assert box["width"] > 0 and box["height"] > 0, (selector, box)
        assert box["left"] >= 0 and box["right"] <= width + 0.5, (selector, box)


def open_customers(page: Any, server: Server, fragment: str = "") -> None:
    response = page.goto(f"{server.url}/clickstream#customers{fragment}")
    assert response.status == 200
    page.wait_for_selector("body[data-customers=ready]", timeout=TIMEOUT)


def listed(page: Any) -> list[str]:
    names = page.locator("#customers-table tr.customer-row .customer-name")
    return [n.text_content() for n in names.all()]


def search(page: Any, text: str) -> None:
    page.fill("#customer-search", text)
    page.wait_for_function(
        "(q) => document.body.dataset.customers === 'ready' && "
        "document.querySelector('#customer-search').value === q",
        arg=text,
        timeout=TIMEOUT,
    )
    page.wait_for_timeout(400)  # past the typing pause: the answer for `text` is in
    page.wait_for_selector("body[data-customers=ready]", timeout=TIMEOUT)


def a_shop_history(server: Server, tenant: Account) -> None:
    """Ann (customer_id ann-1) browsed anonymously, then identified, with 60 events; Bob, an
    older customer; Carla shares Ann's email under another customer_id (a conflict)."""
    bulk(server, tenant, [
        {"event": "view", "customer_id": "bob-2", "email": "bob@example.com",
         "timestamp": "2024-04-01T09:00:00Z"},
        {"event": "view", "cookie": "ann-cookie", "timestamp": "2024-04-02T09:00:00Z"},
    ])  # fmt: skip
    bulk(server, tenant, [
        {"event": "identify", "customer_id": "ann-1", "cookie": "ann-cookie",
         "email": "Ann@Example.com", "plan": "gold", "nickname": "<img src=x onerror=alert(1)>",
         "subscription_groups": [{"id": "news", "subscribed": True},
                                 {"id": "promo", "subscribed": False}],
         "timestamp": "2024-04-03T09:00:00Z"},
    ])  # fmt: skip
    bulk(server, tenant, [
        {"event": "view", "customer_id": "ann-1", "product_id": f"p{n}",
         "timestamp": f"2024-04-04T09:{n:02d}:00Z"}
        for n in range(59)
    ])  # fmt: skip
    bulk(server, tenant, [
        {"event": "view", "customer_id": "carla-3", "email": "ann@example.com",
         "timestamp": "2024-04-05T09:00:00Z"},
    ])  # fmt: skip


def test_search_then_the_profile_explains_itself(
    signed_in: Any, page_server: Server, tenant: Account, screenshots: Path
):
    page = signed_in
    a_shop_history(page_server, tenant)
    ann = customer_uuid(page_server, tenant, customer_id="ann-1")
    open_customers(page, page_server)
    # Everyone, newest activity first.
    assert listed(page) == ["carla-3", "ann-1", "bob-2"]
    search(page, "ANN@")
    assert listed(page) == ["ann-1"]
    search(page, "ann-c")
    assert listed(page) == ["ann-1"]
    row = page.locator("#customers-table tr.customer-row").first
    assert "ann-cookie" in row.locator(".chip.matched").text_content()
    search(page, "nobody")
    assert listed(page) == []
    assert page.locator("#customers-empty").is_visible()
    search(page, "ann")
    page.locator("#customers-table tr.customer-row").first.click()
    page.wait_for_selector("body[data-profile=ready]", timeout=TIMEOUT)
    assert page.url.endswith(f"#customers/{ann}")
    facts = {
        d.get_attribute("data-fact"): d.text_content()
        for d in page.locator("#profile-facts dd").all()
    }
    assert facts["uuid"] == ann and facts["customer_id"] == "ann-1"
    assert facts["email"] == "ann@example.com"
    assert facts["last seen"] == "2024-04-04T09:58:00.000Z"
    kinds = [
        r.get_attribute("data-kind") for r in page.locator("#profile-identifiers tbody tr").all()
    ]
    assert kinds[0] == "cookie" and set(kinds) == {"cookie", "customer_id", "email", "email_hash"}
    attributes = page.locator("#profile-attributes")
    assert attributes.locator("dd[data-name=plan]").text_content() == "gold"
    # A payload is shown as text, never run as markup.
    nickname = attributes.locator("dd[data-name=nickname]").text_content()
    assert nickname == "<img src=x onerror=alert(1)>"
    assert page.locator("#profile-attributes img").count() == 0
    subscriptions = page.locator("#profile-subscriptions")
    assert subscriptions.locator("dd[data-name=news]").text_content() == "subscribed"
    assert subscriptions.locator("dd[data-name=promo]").text_content() == "unsubscribed"
    # Carla's event carried Ann's email: a conflict, with a link to Carla's profile.
    (conflict,) = page.locator("#profile-conflicts tbody tr").all()
    assert "ann@example.com" in conflict.text_content()
    carla = customer_uuid(page_server, tenant, customer_id="carla-3")
    assert conflict.locator("a.uuid").get_attribute("href") == f"#customers/{carla}"
    # The timeline: 61 events, newest first, 50 a page.
    events = page.locator("#profile-events tbody.event-row")
    assert events.count() == 50
    assert "2024-04-04 09:58:00" in events.first.locator("td.time").text_content()
    page.click("#profile-older")
    page.wait_for_function(
        "() => document.querySelectorAll('#profile-events tbody.event-row').length === 61",
        timeout=TIMEOUT,
    )
    assert page.locator("#profile-older").is_hidden()
    last = events.nth(60).locator("td.time").text_content()
    assert "2024-04-02 09:00:00" in last
    # A row opens its JSON.
    events.first.locator("tr.row").click()
    assert '"product_id": "p58"' in events.first.locator("pre.json").text_content()
    page.screenshot(path=str(screenshots / "customers-profile.png"), full_page=True)
    # The other profile, from the conflict's link; then back to Ann's.
    conflict.locator("a.uuid").click()
    page.wait_for_function(
        "(uuid) => document.querySelector('#profile-facts dd[data-fact=uuid]').textContent"
        " === uuid && document.body.dataset.profile === 'ready'",
        arg=carla,
        timeout=TIMEOUT,
    )
    page.go_back()
    page.wait_for_function(
        "(uuid) => document.querySelector('#profile-facts dd[data-fact=uuid]').textContent"
        " === uuid && document.body.dataset.profile === 'ready'",
        arg=ann,
        timeout=TIMEOUT,
    )
    assert page.problems == []


def test_a_merged_away_uuid_opens_the_profile_that_took_it_over(
    signed_in: Any, page_server: Server, tenant: Account
):
    page = signed_in
    bulk(page_server, tenant, [{"event": "view", "device_id": "dev-9"}])
    anonymous = customer_uuid(page_server, tenant, device_id="dev-9")
    bulk(page_server, tenant, [{"event": "view", "customer_id": "dan-4", "email": "d@x.io"}])
    bulk(page_server, tenant, [{"event": "view", "customer_id": "dan-4", "device_id": "dev-9"}])
    dan = customer_uuid(page_server, tenant, customer_id="dan-4")
    assert dan != anonymous
    open_customers(page, page_server, f"/{anonymous}")
    page.wait_for_selector("body[data-profile=ready]", timeout=TIMEOUT)
    assert page.locator("#profile-facts dd[data-fact=uuid]").text_content() == dan
    assert anonymous in page.locator("#profile-merged-note").text_content()
    (merged,) = page.locator("#profile-merges tbody tr").all()
    assert merged.get_attribute("data-uuid") == anonymous
    assert page.locator("#profile-events tbody.event-row").count() == 3
    # An unknown uuid says so.
    page.goto(f"{page_server.url}/clickstream#customers/01900000-0000-7000-8000-000000000000")
    page.wait_for_selector("body[data-profile=failed]", timeout=TIMEOUT)
    assert "Customer not found" in page.locator("#toast").text_content()
    page.problems.clear()  # the 404 logs a console error


def test_a_chip_in_the_live_stream_opens_the_customer(
    signed_in: Any, page_server: Server, tenant: Account
):
    page = signed_in
    assert page.goto(f"{page_server.url}/clickstream#stream").status == 200
    page.wait_for_selector("body[data-stream=ready]", timeout=TIMEOUT)
    bulk(page_server, tenant, [{"event": "chip_opens", "customer_id": "eve-5", "cookie": "ck-e"}])
    row = page.locator('#stream-table tbody[data-event="chip_opens"]')
    row.wait_for(timeout=TIMEOUT)
    eve = customer_uuid(page_server, tenant, customer_id="eve-5")
    chip = row.locator('td.customer .chip[data-identifier="cookie"]')
    assert chip.get_attribute("href") == f"#customers/{eve}"
    chip.click()
    page.wait_for_selector("body[data-profile=ready]", timeout=TIMEOUT)
    assert page.url.endswith(f"#customers/{eve}")
    assert page.locator("#view-customers").is_visible()
    assert page.locator("#profile-facts dd[data-fact=customer_id]").text_content() == "eve-5"
    assert page.locator(".tabs a[data-view=customers]").get_attribute("aria-selected") == "true"
    # The row itself did not open: the chip's click was the profile's.
    page.click(".tabs a[data-view=stream]")
    assert row.locator("tr.detail").count() == 0
    assert page.problems == []


def test_the_customers_view_works_at_420_px(
    chromium: Any, page_server: Server, tenant: Account, screenshots: Path
):
    bulk(page_server, tenant, [
        {"event": "identify", "customer_id": "a-rather-long-customer-id-" + "x" * 30,
         "email": "someone.with.a.long.address@example.com", "cookie": "c" * 60,
         "note": "an attribute long enough to need the whole width of a phone " * 2}
    ])  # fmt: skip
    who = customer_uuid(page_server, tenant, cookie="c" * 60)
    context = chromium.new_context(
        http_credentials={"username": tenant.user_key, "password": ""}, viewport=NARROW
    )
    try:
        page = context.new_page()
        width = NARROW["width"]
        open_customers(page, page_server, f"/{who}")
        page.wait_for_selector("body[data-profile=ready]", timeout=TIMEOUT)
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        for selector in ("#customer-search", "#customers-table tr.customer-row",
                         "#profile-facts dd", "#profile-identifiers td",
                         "#profile-attributes dd", "#profile-events tr.row td.time"):  # fmt: skip
            assert_inside(page, selector, width)
        page.screenshot(path=str(screenshots / "narrow-customers.png"), full_page=True)
    finally:
        context.close()
