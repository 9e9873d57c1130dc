"""GET /clickstream/stream, on SQLite and PostgreSQL: Server-Sent Events read from the store,
so an event accepted by another server process on the same database shows within a second."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from conftest import basic

from .conftest import BackendServer, Deployment, EventStream

LIVE_SECONDS = 1.5


@pytest.fixture(scope="module")
def second_server(
    deployment: Deployment, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BackendServer]:
    """Another `trackway serve` process on the same database: a second worker, in effect."""
    directory = tmp_path_factory.mktemp("second")
    server = BackendServer(directory, deployment.database_url).start()
    try:
        yield server
    finally:
        server.stop()


def accepted(base_url: str, key: str, body: dict) -> None:
    response = httpx.post(base_url + "/api/v1/event", json=body, headers=basic(key), timeout=10)
    assert response.status_code == 200, response.text


def test_events_of_another_process_appear_within_a_second(
    deployment: Deployment, second_server: BackendServer
) -> None:
    tenant, other = deployment.tenant(), deployment.tenant()
    earlier = [f"before-{n}-{uuid.uuid4().hex[:6]}" for n in range(3)]
    for n, cookie in enumerate(earlier):
        accepted(
            deployment.server.url, tenant.event_key, {"event": "view", "cookie": cookie, "n": n}
        )

    stream = EventStream(deployment.server.url, tenant.user_key)
    try:
        assert stream.status == 200
        backlog = stream.wait_ready()
        # On connecting: the latest events, oldest first, as show_events gives them.
        assert [e["cookie"] for e in backlog] == earlier
        assert all(e["account_uuid"] == tenant.uuid and e["user_uuid"] for e in backlog)

        accepted(second_server.url, other.event_key, {"event": "view", "cookie": "not-mine"})
        cookie = "live-" + uuid.uuid4().hex[:8]
        started = time.monotonic()
        accepted(
            second_server.url,
            tenant.event_key,
            {"event": "add_to_cart", "cookie": cookie, "sku": "A-1", "price": 9.5},
        )
        arrived = stream.events(1, timeout=5)
        elapsed = time.monotonic() - started
        assert arrived, "the event did not reach the stream"
        event = arrived[0]
        assert (event["event"], event["cookie"], event["sku"], event["price"]) == (
            "add_to_cart",
            cookie,
            "A-1",
            9.5,
        )
        assert elapsed < LIVE_SECONDS, f"took {elapsed:.2f} s"
        # Another account's event never shows.
        assert stream.events(1, timeout=0.8) == []
    finally:
        stream.close()


def test_the_stream_filters_by_name_and_resumes_after_an_id(deployment: Deployment) -> None:
    tenant = deployment.tenant()
    url, key = deployment.server.url, tenant.event_key
    stream = EventStream(url, tenant.user_key, event="purchase")
    try:
        assert stream.wait_ready() == []
        accepted(url, key, {"event": "view", "cookie": "c1"})
        accepted(url, key, {"event": "purchase", "cookie": "c1", "order": 1})
        accepted(url, key, {"event": "purchase", "cookie": "c1", "order": 2})
        got = stream.events(2, timeout=5)
        assert [(e["event"], e["order"]) for e in got] == [("purchase", 1), ("purchase", 2)]
    finally:
        stream.close()

    everything = EventStream(url, tenant.user_key)
    try:
        backlog = everything.wait_ready()
        assert [e["event"] for e in backlog] == ["view", "purchase", "purchase"]
    finally:
        everything.close()

    # A browser that reconnects sends Last-Event-ID: it gets what came after, no backlog.
    with httpx.Client(base_url=url, timeout=10) as client:
        ids = []
        with client.stream(
            "GET", "/clickstream/stream", headers=basic(tenant.user_key)
        ) as response:
            for line in response.iter_lines():
                if line.startswith("id:"):
                    ids.append(int(line[3:]))
                if line.startswith("event: ready"):
                    break
        assert len(ids) == 3 and ids == sorted(ids)
    resumed = EventStream(url, tenant.user_key, after=str(ids[0]))
    try:
        accepted(url, key, {"event": "search", "cookie": "c1", "q": "boots"})
        got = resumed.events(3, timeout=5)
        assert [e["event"] for e in got] == ["purchase", "purchase", "search"]
    finally:
        resumed.close()
