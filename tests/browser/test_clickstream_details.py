"""The clickstream page as a new user meets it, in real headless Chromium: the stream shows
when each event happened (an imported history is not all "today"), one chip per identifier,
an Errors badge that follows new errors, the "7 days" of the page being summary.json's default,
and every view usable at 420 px wide (nothing overlaps, no column lost)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import Account, Server, basic

BADGE_SECONDS = 8.0
NARROW = {"width": 420, "height": 860}


def send(server: Server, tenant: Account, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        server.url + "/api/v1/event", json=body, headers=basic(tenant.event_key), timeout=10
    )


def open_view(page: Any, server: Server, view: str) -> None:
    response = page.goto(f"{server.url}/clickstream#{view}")
    assert response.status == 200


def row_of(page: Any, event: str) -> Any:
    page.wait_for_selector(f'#stream-table tbody[data-event="{event}"]', timeout=10_000)
    return page.locator(f'#stream-table tbody[data-event="{event}"]').first


def test_the_stream_shows_the_events_own_time_and_the_receipt_on_hover(
    signed_in: Any, page_server: Server, tenant: Account
):
    page = signed_in
    open_view(page, page_server, "stream")
    page.wait_for_selector("body[data-stream=ready]")
    # An event of a history being imported: it happened in 2024, it arrives today.
    body = {"event": "order_shipped", "customer_id": "c-1", "timestamp": "2024-05-01T10:20:30Z"}
    assert send(page_server, tenant, body).status_code == 200
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    row = row_of(page, "order_shipped")
    cell = row.locator("td.time")
    assert " ".join(cell.text_content().split()) == "2024-05-01 10:20:30"
    received = cell.get_attribute("title")
    assert received.startswith(f"received {today}T"), received
    # The details say both.
    row.locator("tr.row").click()
    facts = {
        d.get_attribute("data-fact"): d.text_content() for d in row.locator("dd[data-fact]").all()
    }
    assert facts["timestamp"] == "2024-05-01T10:20:30Z"
    assert facts["received"] == received.removeprefix("received ")
    assert facts["customer"] and facts["event uuid"]
    assert '"order_shipped"' in row.locator("pre.json").text_content()
    # An event sent without a timestamp is stamped on receipt: today.
    assert send(page_server, tenant, {"event": "visit", "cookie": "k"}).status_code == 200
    assert row_of(page, "visit").locator("td.time .date").text_content().strip() == today
    assert page.problems == []


@pytest.mark.parametrize(
    ("body", "chips"),
    [
        (
            {"retailer_customer_id": "r-7", "email": "ann@example.com", "cookie": "k-7"},
            [("customer_id", "r-7"), ("email", "ann@example.com"), ("cookie", "k-7")],
        ),
        (
            {"customer_id": "c-8", "retailer_customer_id": "c-8", "device_id": "d-8"},
            [("customer_id", "c-8"), ("device_id", "d-8")],
        ),
        (
            {"email": "bob@example.com", "email_hash": "0" * 32},
            [("email", "bob@example.com")],
        ),
        ({"email_hash": "f" * 32}, [("email_hash", "f" * 32)]),
    ],
)
def test_one_chip_per_identifier(
    signed_in: Any, page_server: Server, tenant: Account, body: dict[str, Any], chips: list
):
    page = signed_in
    open_view(page, page_server, "stream")
    page.wait_for_selector("body[data-stream=ready]")
    assert send(page_server, tenant, {"event": "chip_test", **body}).status_code == 200
    row = row_of(page, "chip_test")
    shown = [
        (c.locator(".k").text_content(), c.locator(".v").text_content())
        for c in row.locator("td.customer .chip").all()
    ]
    assert shown == chips


def test_the_errors_badge_follows_new_errors(signed_in: Any, page_server: Server, tenant: Account):
    page = signed_in
    open_view(page, page_server, "stream")
    page.wait_for_selector("body[data-stream=ready]")
    assert page.is_hidden("#pending-badge")
    assert send(page_server, tenant, {"event": "view"}).status_code == 400
    page.wait_for_function(
        "document.getElementById('pending-badge').textContent === '1'"
        " && !document.getElementById('pending-badge').hidden",
        timeout=BADGE_SECONDS * 1000,
    )
    for _ in range(2):
        assert send(page_server, tenant, {"event": "", "cookie": "k"}).status_code == 400
    page.wait_for_function(
        "document.getElementById('pending-badge').textContent === '3'",
        timeout=BADGE_SECONDS * 1000,
    )
    assert page.get_attribute("#pending-badge", "title") == "3 pending errors"


def test_the_pages_7_days_are_summary_jsons_default(
    signed_in: Any, page_server: Server, tenant: Account
):
    today = datetime.now(UTC).date()
    events = [
        {"event": "view", "cookie": "k", "timestamp": f"{today - timedelta(days=d)}T12:00:00Z"}
        for d in (0, 3, 6, 7)
    ]
    answer = httpx.post(
        page_server.url + "/api/v1/bulkevents",
        json={"events": events},
        headers=basic(tenant.event_key),
    )
    assert answer.status_code == 200, answer.text
    page = signed_in
    open_view(page, page_server, "counts")
    page.wait_for_selector("body[data-counts=ready]")
    assert page.get_attribute("#range-presets .btn.active", "data-days") == "7"
    start, end = (
        date.fromisoformat(page.input_value("#range-from")),
        date.fromisoformat(page.input_value("#range-to")),
    )
    default = httpx.get(
        page_server.url + "/api/v1/event/summary.json", headers=basic(tenant.user_key)
    ).json()
    chart = default["events_chart_stats"][0]
    assert (end - start).days + 1 == len(chart["timelapse"]) == 7
    assert end == today
    assert default["timestamp_start"] == f"{start}T00:00:00.000Z"
    # The same 7 buckets on the page and in the API: the event 7 days ago is in neither.
    assert chart["events"] == {"view": [1, 0, 0, 1, 0, 0, 1]}
    shown = {
        r.get_attribute("data-day"): int(r.get_attribute("data-value"))
        for r in page.locator("#events-chart rect.bar").all()
    }
    assert shown == {str(today - timedelta(days=d)): 1 for d in (0, 3, 6)}
    assert page.text_content("#total-events") == "3"


def boxes(page: Any, selector: str) -> list[dict[str, float]]:
    return page.evaluate(
        """(selector) => Array.from(document.querySelectorAll(selector)).map(node => {
             const r = node.getBoundingClientRect();
             return {left: r.left, right: r.right, top: r.top, bottom: r.bottom,
                     width: r.width, height: r.height};
           })""",
        selector,
    )


def overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    return not (
        a["right"] <= b["left"]
        or b["right"] <= a["left"]
        or a["bottom"] <= b["top"]
        or b["bottom"] <= a["top"]
    )


def assert_inside(page: Any, selector: str, width: int) -> None:
    found = boxes(page, selector)
    assert found, f"nothing matches {selector}"
    for box in found:
        assert box["width"] > 0 and box["height"] > 0, (selector, box)
        assert box["left"] >= 0 and box["right"] <= width + 0.5, (selector, box)


def test_every_view_works_at_420_px(
    chromium: Any, page_server: Server, tenant: Account, screenshots: Path
):
    for n in range(3):
        body = {
            "event": "add_to_cart",
            "retailer_customer_id": f"customer-{n}",
            "email": f"someone.with.a.long.address-{n}@example.com",
            "cookie": f"cookie-{n}",
            "product_id": "p1",
            "note": "an attribute long enough to need the whole width of a phone " * 2,
        }
        assert send(page_server, tenant, body).status_code == 200
    assert send(page_server, tenant, {"event": "view", "note": "x" * 300}).status_code == 400
    context = chromium.new_context(
        http_credentials={"username": tenant.user_key, "password": ""}, viewport=NARROW
    )
    try:
        page = context.new_page()
        width = NARROW["width"]
        open_view(page, page_server, "stream")
        for view in ("stream", "counts", "errors"):
            page.click(f".tabs a[data-view={view}]")  # the tabs can be reached and used
            if view == "stream":
                page.wait_for_selector("body[data-stream=ready]")
            else:
                page.wait_for_selector(f"body[data-{view}=ready]")
            # Nothing wider than the screen, nothing in the header on top of another.
            assert page.evaluate("document.documentElement.scrollWidth") <= width
            header = [boxes(page, s)[0] for s in (".brand", ".tabs", ".conn")]
            for i, a in enumerate(header):
                assert_inside(page, [".brand", ".tabs", ".conn"][i], width)
                for b in header[i + 1 :]:
                    assert not overlap(a, b), (a, b)
            for tab in boxes(page, ".tabs a"):
                assert tab["right"] <= width, tab
            shot_path = screenshots / f"narrow-{view}.png"
            page.screenshot(path=str(shot_path), full_page=True)
            print(f"screenshot: {shot_path}")
            if view == "stream":
                # Every column of every row is there: time, event, identifiers, attributes.
                for cell in ("td.time", "td.event .pill", "td.customer .chip", "td .attrs"):
                    assert_inside(page, f"#stream-table tr.row {cell}", width)
                assert page.locator("#stream-table tbody").count() == 3
                # On the time: a customer chip is a link to the profile.
                page.locator("#stream-table tr.row td.time").first.click()
                assert_inside(page, "#stream-table tr.detail pre.json", width)
                assert page.evaluate("document.documentElement.scrollWidth") <= width
            elif view == "errors":
                for cell in ("td.check input", "td.time", ".pill.error", ".messages li",
                             ".payload", ".status"):  # fmt: skip
                    assert_inside(page, f"#errors-table tr.row {cell}", width)
                for button in ("#download-csv", "#replay-selected", "#older"):
                    assert_inside(page, button, width)
            else:
                for column in range(1, 6):
                    assert_inside(page, f"#names-rows tr[data-name] td:nth-child({column})", width)
                assert_inside(page, "#events-chart svg", width)
                assert_inside(page, "#range-presets .btn", width)
        assert page.evaluate("document.documentElement.scrollWidth") <= width
    finally:
        context.close()
