"""Client against a real `trackway serve` process: batching, flushing, retries, give-ups and
the full-queue policies. Faults are played by a proxy transport in front of the real one."""

from __future__ import annotations

import json
import logging
import re
import time
from datetime import UTC, datetime

import httpx
import pytest
from conftest import basic

from trackway.client import Client, QueueFullError, TrackwayClientError

from .conftest import SMALL_BODY_BYTES
from .support import (
    LoseAnswer,
    ProxyTransport,
    Refuse,
    Reply,
    assert_stored_once,
    stored_counts,
    wait_until,
)

ISO_MS_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")


def purchases(client: Client, n: int, **fields) -> list[str]:
    return [client.track("purchase", customer_id=f"c{i % 7}", n=i, **fields) for i in range(n)]


# --- batching and flushing ------------------------------------------------------------------


def test_250_events_go_in_three_batches_of_at_most_100(server, account):
    proxy = ProxyTransport()
    # A long interval: only full batches go out until close() flushes the rest.
    with Client(
        server.url, account.event_key, batch_size=100, flush_interval=60, transport=proxy
    ) as client:
        uuids = purchases(client, 250)
    assert proxy.sizes == [100, 100, 50]
    assert proxy.statuses == [200, 200, 200]
    assert [u for e in proxy.exchanges for u in e.uuids] == uuids  # in order, none twice
    assert_stored_once(account, uuids)
    assert (client.sent, client.failed, client.retries, client.dropped) == (250, 0, 0, 0)


def test_what_the_client_sent_reads_back_through_the_history_api(server, account, fast):
    with Client(server.url, account.event_key, **fast) as client:
        uuids = [client.track("client_history_check", customer_id="h1") for _ in range(250)]
    response = httpx.get(
        server.url + "/api/v1/event/history",
        params={"event_name": "client_history_check"},
        headers=basic(account.user_key),
        timeout=10,
    )
    assert response.status_code == 200, response.text
    latest = [e["event_uuid"] for e in response.json()["client_history_check"]]
    assert len(latest) == len(set(latest)) == 50  # the API's page: the latest 50
    assert set(latest) <= set(uuids)
    assert_stored_once(account, uuids)


def test_a_partial_batch_goes_after_flush_interval_without_flush(server, account):
    proxy = ProxyTransport()
    client = Client(server.url, account.event_key, flush_interval=0.2, transport=proxy)
    try:
        started = time.monotonic()
        uuids = purchases(client, 3)
        assert wait_until(lambda: len(stored_counts(account)) == 3, timeout=5)
        assert time.monotonic() - started >= 0.15  # not before the interval...
        assert proxy.sizes == [3]  # ...and in one request
        assert_stored_once(account, uuids)
    finally:
        client.close()


def test_flush_returns_once_everything_queued_is_stored(server, account):
    client = Client(server.url, account.event_key, flush_interval=60)
    try:
        uuids = purchases(client, 5)
        assert client.flush() is True
        assert_stored_once(account, uuids)  # no waiting: stored when flush() returned
        assert client.flush() is True  # nothing queued: at once
    finally:
        client.close()


def test_close_sends_what_is_queued(server, account):
    proxy = ProxyTransport()
    client = Client(server.url, account.event_key, flush_interval=60, transport=proxy)
    uuids = purchases(client, 7)
    assert proxy.exchanges == []
    started = time.monotonic()
    client.close()
    assert time.monotonic() - started < 5
    assert proxy.sizes == [7]
    assert_stored_once(account, uuids)
    assert not client._thread.is_alive()
    with pytest.raises(TrackwayClientError):
        client.track("purchase", customer_id="late")
    client.close()  # twice is harmless


def test_context_manager_flushes_on_exit(server, account):
    with Client(server.url, account.event_key, flush_interval=60) as client:
        uuids = purchases(client, 4)
    assert_stored_once(account, uuids)


# --- the events themselves -----------------------------------------------------------------


def test_identify_is_sent_with_uuid_and_millisecond_utc_timestamp(server, account, fast):
    before = datetime.now(UTC)
    with Client(server.url, account.event_key, **fast) as client:
        uuid = client.identify(customer_id="42", email="ada@example.com", first_name="Ada")
    after = datetime.now(UTC)
    row, body = account.stored(uuid)
    assert row["event"] == "identify"
    assert body["event"] == "identify"
    assert body["event_uuid"] == uuid
    assert body["first_name"] == "Ada"
    assert ISO_MS_RE.fullmatch(body["timestamp"]), body["timestamp"]
    stamped = datetime.strptime(body["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert before.replace(microsecond=0) <= stamped <= after


def test_given_event_uuid_and_timestamp_are_kept(server, account, fast):
    given = "0b9f5c1e-3a7d-4c2b-9e8f-1a2b3c4d5e6f"
    with Client(server.url, account.event_key, **fast) as client:
        returned = client.track(
            "view",
            customer_id="42",
            event_uuid=given,
            timestamp="2024-06-24T04:53:54.123Z",
            product={"sku": "A1", "price": 49.9900016784668},
        )
    assert returned == given
    _, body = account.stored(given)
    assert body["timestamp"] == "2024-06-24T04:53:54.123Z"
    assert body["product"] == {"sku": "A1", "price": 49.9900016784668}


def test_a_value_that_is_not_json_fails_in_track(server, account):
    with Client(server.url, account.event_key, flush_interval=60) as client:
        with pytest.raises(TypeError):
            client.track("purchase", customer_id="1", when=object())
        with pytest.raises(ValueError):
            client.track("purchase", customer_id="1", total=float("nan"))
        with pytest.raises(ValueError):
            client.track("", customer_id="1")
    assert client.sent == 0


# --- retries ---------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [503, 429])
def test_retry_after_is_waited_then_the_batch_is_stored_once(server, account, fast, status):
    proxy = ProxyTransport(Reply(status, retry_after="1"))
    with Client(server.url, account.event_key, transport=proxy, **fast) as client:
        uuids = purchases(client, 5)
        assert client.flush() is True
    assert proxy.statuses == [status, 200]
    assert proxy.exchanges[0].uuids == proxy.exchanges[1].uuids == uuids
    waited = proxy.exchanges[1].at - proxy.exchanges[0].at
    # backoff_base=0.01 would retry within 10 ms; the server asked for 1 s.
    assert 0.9 <= waited < 4.0, waited
    assert client.retries == 1
    assert_stored_once(account, uuids)


def test_no_duplicates_after_a_retry_whose_first_attempt_was_stored(server, account, fast):
    """The key property: the first attempt is stored but its answer is lost (ReadTimeout), so
    the client sends the same batch again; every event must be stored exactly once."""
    proxy = ProxyTransport(LoseAnswer())
    give_ups = []
    with Client(
        server.url,
        account.event_key,
        transport=proxy,
        on_error=lambda events, reason: give_ups.append(reason),
        **fast,
    ) as client:
        uuids = purchases(client, 50)
        assert client.flush() is True
    first, second = proxy.exchanges
    assert first.server_status == 200 and first.status is None  # stored, answer lost
    assert second.status == 200
    assert first.uuids == second.uuids == uuids
    assert_stored_once(account, uuids)
    assert (client.sent, client.failed, client.retries) == (50, 0, 1)
    assert give_ups == []


def test_a_refused_connection_is_retried(server, account, fast):
    proxy = ProxyTransport(Refuse(), Refuse())
    with Client(server.url, account.event_key, transport=proxy, **fast) as client:
        uuids = purchases(client, 3)
    assert proxy.statuses == [None, None, 200]
    assert client.retries == 2
    assert_stored_once(account, uuids)


def test_5xx_is_given_up_after_max_retries(server, account, fast, give_ups):
    proxy = ProxyTransport(*[Reply(500)] * 10)
    with Client(
        server.url,
        account.event_key,
        transport=proxy,
        max_retries=2,
        on_error=give_ups,
        **fast,
    ) as client:
        uuids = purchases(client, 4)
    assert proxy.statuses == [500, 500, 500]  # the first attempt and two retries
    assert len(give_ups.calls) == 1
    events, reason = give_ups.calls[0]
    assert [e["event_uuid"] for e in events] == uuids
    assert isinstance(reason, httpx.Response) and reason.status_code == 500
    assert (client.sent, client.failed, client.retries) == (0, 4, 2)
    assert stored_counts(account) == {}


def test_an_unreachable_server_is_given_up_with_the_exception(account, fast, give_ups):
    from conftest import free_port

    with Client(
        f"http://127.0.0.1:{free_port()}",
        account.event_key,
        max_retries=1,
        on_error=give_ups,
        **fast,
    ) as client:
        client.track("purchase", customer_id="1")
    [(events, reason)] = give_ups.calls
    assert len(events) == 1
    assert isinstance(reason, httpx.ConnectError)
    assert client.retries == 1


# --- what is not retried ---------------------------------------------------------------------


def test_a_bad_key_is_401_given_up_once_without_retry(server, account, fast, give_ups):
    proxy = ProxyTransport()
    with Client(server.url, "not-a-key", transport=proxy, on_error=give_ups, **fast) as client:
        uuids = purchases(client, 3)
    assert proxy.statuses == [401]
    [(events, reason)] = give_ups.calls
    assert [e["event_uuid"] for e in events] == uuids
    assert reason.status_code == 401
    assert (client.sent, client.failed, client.retries) == (0, 3, 0)


def test_without_on_error_a_give_up_is_logged_at_warning(server, account, fast, caplog):
    caplog.set_level(logging.WARNING, logger="trackway.client")
    with Client(server.url, "not-a-key", **fast) as client:
        purchases(client, 3)
    messages = [r.getMessage() for r in caplog.records if r.name == "trackway.client"]
    assert any("gave up on 3 event(s)" in m and "HTTP 401" in m for m in messages), messages
    assert all(r.levelno == logging.WARNING for r in caplog.records if r.name == "trackway.client")


def test_a_partial_answer_hands_only_the_rejected_event_to_on_error(
    server, account, fast, give_ups
):
    proxy = ProxyTransport()
    with Client(
        server.url, account.event_key, transport=proxy, on_error=give_ups, **fast
    ) as client:
        good1 = client.track("purchase", customer_id="p1")
        bad = client.track("purchase", email="not an email")
        good2 = client.track("purchase", customer_id="p2")
        assert client.flush() is True
    assert proxy.statuses == [400]  # not retried
    [(events, response)] = give_ups.calls
    assert [e["event_uuid"] for e in events] == [bad]
    assert events[0]["email"] == "not an email"
    payload = response.json()
    assert payload["status"] == "partial" and payload["count"] == 2
    assert [e["index"] for e in payload["errors"]] == [1]
    assert_stored_once(account, [good1, good2])
    assert (client.sent, client.failed, client.retries) == (2, 1, 0)


def test_on_error_raising_does_not_stop_the_sender(server, account, fast, caplog):
    def broken(events, reason):
        raise RuntimeError("callback bug")

    with Client(server.url, account.event_key, on_error=broken, **fast) as client:
        client.track("purchase", email="not an email")
        client.flush()
        uuid = client.track("purchase", customer_id="after")
    assert_stored_once(account, [uuid])
    assert any("on_error raised" in r.getMessage() for r in caplog.records)


# --- 413: too large a batch ------------------------------------------------------------------


def test_a_batch_over_the_body_limit_is_split_until_it_fits(
    small_body_server, small_body_account, fast, give_ups
):
    proxy = ProxyTransport()
    padding = "x" * 300
    with Client(
        small_body_server.url,
        small_body_account.event_key,
        flush_interval=60,
        transport=proxy,
        on_error=give_ups,
    ) as client:
        uuids = [client.track("view", customer_id="s", pad=padding) for _ in range(30)]
    assert 413 in proxy.statuses
    assert give_ups.calls == []
    delivered = [u for e in proxy.exchanges if e.status == 200 for u in e.uuids]
    assert delivered == uuids  # every event once, in order
    assert_stored_once(small_body_account, uuids)
    assert client.sent == 30


def test_a_single_event_over_the_body_limit_is_given_up(
    small_body_server, small_body_account, fast, give_ups
):
    with Client(
        small_body_server.url, small_body_account.event_key, on_error=give_ups, **fast
    ) as client:
        uuid = client.track("view", customer_id="s", pad="x" * SMALL_BODY_BYTES)
    [(events, reason)] = give_ups.calls
    assert [e["event_uuid"] for e in events] == [uuid]
    assert reason.status_code == 413
    assert client.retries == 0


# --- the queue ------------------------------------------------------------------------------


def test_full_queue_raises_by_default(server, account):
    with Client(server.url, account.event_key, max_queue=3, flush_interval=60) as client:
        uuids = purchases(client, 3)
        with pytest.raises(QueueFullError):
            client.track("purchase", customer_id="overflow")
        assert client.dropped == 0
    assert_stored_once(account, uuids)


def test_full_queue_with_drop_policy_drops_counts_and_logs(server, account, caplog):
    caplog.set_level(logging.WARNING, logger="trackway.client")
    with Client(
        server.url, account.event_key, max_queue=3, flush_interval=60, on_full="drop"
    ) as client:
        uuids = purchases(client, 3)
        assert client.track("purchase", customer_id="overflow") is None
        assert client.track("purchase", customer_id="overflow") is None
        assert client.dropped == 2
    assert_stored_once(account, uuids)
    drops = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert len(drops) == 2 and all(r.levelno == logging.WARNING for r in drops)


def test_close_with_a_timeout_gives_up_what_it_could_not_send(server, account, give_ups):
    proxy = ProxyTransport(*[Reply(503, retry_after="20")] * 5)
    client = Client(
        server.url,
        account.event_key,
        flush_interval=0.05,
        backoff_max=30,
        transport=proxy,
        on_error=give_ups,
    )
    uuids = purchases(client, 3)
    assert wait_until(lambda: len(proxy.exchanges) == 1)
    started = time.monotonic()
    client.close(timeout=0.3)
    assert time.monotonic() - started < 3  # did not sit out the 20 s Retry-After
    [(events, reason)] = give_ups.calls
    assert [e["event_uuid"] for e in events] == uuids
    assert isinstance(reason, TrackwayClientError)
    assert client.failed == 3
    assert stored_counts(account) == {}


def test_bodies_are_json_with_the_documented_header(server, account, fast):
    seen: list[httpx.Request] = []
    with Client(
        server.url,
        account.event_key,
        transport=httpx.MockTransport(
            lambda request: (seen.append(request), httpx.Response(200, json={}))[1]
        ),
        **fast,
    ) as client:
        uuid = client.track("purchase", customer_id="1")
    [request] = seen
    assert request.url == server.url + "/api/v1/bulkevents"
    assert request.headers["authorization"] == basic(account.event_key)["Authorization"]
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content)["events"][0]["event_uuid"] == uuid
