"""What a stored payload replays as, without I/O: one event, a whole bulk body, the pixel's
query string; the uuid a payload without one is stored under; the request parameters."""

from __future__ import annotations

import json

import pytest

from trackway.domain.errors import EventRejected, InvalidRequest
from trackway.errors_log import (
    csv_cell,
    error_filter,
    page_cursor,
    page_limit,
    replay_bodies,
    replay_events,
    replay_ids,
)
from trackway.store.base import Account, LoggedError

ACCOUNT = Account(1, "7f0c3b4e-9a55-4a8e-9d7e-5b8f1e2a3c4d", "shop", 0)
RECEIVED = 1_714_521_600_000  # 2024-05-01T00:00:00Z


def row(raw: bytes, row_id: int = 7) -> LoggedError:
    return LoggedError(row_id, RECEIVED, "parsing_error", {"body": ["x"]}, raw)


def test_one_event_a_bulk_body_and_the_pixel() -> None:
    assert replay_bodies(b'{"event": "view", "cookie": "c"}') == [{"event": "view", "cookie": "c"}]
    bulk = {"events": [{"event": "a", "cookie": "c"}, {"event": "b", "cookie": "c"}]}
    assert replay_bodies(json.dumps(bulk).encode()) == bulk["events"]
    pixel = b"x=EVENTKEY&e=view&k=cookie-1&u=https%3A%2F%2Fshop.example%2F&plan=pro&z=123"
    assert replay_bodies(pixel) == [
        {"event": "view", "cookie": "cookie-1", "url": "https://shop.example/", "plan": "pro"}
    ]
    with pytest.raises(EventRejected) as still:
        replay_bodies(b'{"event": "view", "cookie": ')
    assert still.value.error_type == "parsing_error"
    with pytest.raises(EventRejected):
        replay_bodies(b'{"events": "not a list"}')
    with pytest.raises(EventRejected):
        replay_bodies(b'{"events": [1]}')


def test_a_pixel_row_replays_as_the_pixel_with_its_request() -> None:
    query = b"e=view&k=cookie-1&plan=pro&z=9"  # as logged: without the key
    context = {"user_agent": "Mozilla/5.0", "ip": "203.0.113.9", "referrer": "https://a.example/"}
    assert replay_bodies(query, "pixel", context) == [
        {"event": "view", "cookie": "cookie-1", "plan": "pro", "user_agent": "Mozilla/5.0",
         "ip": "203.0.113.9", "referrer": "https://a.example/"}
    ]  # fmt: skip
    # The query wins over the request, as on the pixel (r= : the page had no referrer).
    assert replay_bodies(b"e=view&k=c&r=", "pixel", context)[0]["referrer"] == ""
    assert "user_agent" not in replay_bodies(query, "pixel", None)[0]
    # A row logged before rows said how they came: a query naming an event is the pixel's.
    assert replay_bodies(query)[0]["event"] == "view"
    # Its own error, not parsing_error of a JSON read.
    with pytest.raises(EventRejected) as still:
        replay_events(ACCOUNT, LoggedError(7, RECEIVED, "missing_identifier", {}, b"e=view",
                                           source="pixel", context=context))  # fmt: skip
    assert still.value.error_type == "missing_identifier"
    with pytest.raises(EventRejected) as bad:
        replay_bodies(b"e=view&k=c&meta_json=%7B", "pixel", context)
    assert bad.value.errors == {"meta_json": ["is not valid JSON"]}
    # A JSON row is JSON, whatever it holds.
    with pytest.raises(EventRejected) as not_json:
        replay_bodies(b"e=view&k=c", "json")
    assert not_json.value.errors == {"body": ["is not valid JSON"]}


def test_a_payload_without_a_uuid_replays_under_one_of_its_row() -> None:
    raw = b'{"event": "view", "cookie": "c", "timestamp": "2024-04-30T10:00:00Z"}'
    first = replay_events(ACCOUNT, row(raw))
    again = replay_events(ACCOUNT, row(raw))
    assert [e.event_uuid for e in first] == [e.event_uuid for e in again]
    assert replay_events(ACCOUNT, row(raw, 8))[0].event_uuid != first[0].event_uuid
    assert first[0].received_ms == RECEIVED
    assert first[0].timestamp == "2024-04-30T10:00:00Z"
    given = (
        b'{"event": "view", "cookie": "c", "event_uuid": "0F3B2C1D-1111-4222-8333-444455556666"}'
    )
    assert (
        replay_events(ACCOUNT, row(given))[0].event_uuid == "0f3b2c1d-1111-4222-8333-444455556666"
    )
    bulk = json.dumps({"events": [{"event": "a", "cookie": "c"}, {"event": "b"}]}).encode()
    with pytest.raises(EventRejected) as rejected:
        replay_events(ACCOUNT, row(bulk))
    assert rejected.value.error_type == "missing_identifier"
    assert list(rejected.value.errors) == ["events[1].base"]


def test_parameters() -> None:
    where = error_filter({"type": "invalid_email", "day": "2024-05-01", "status": "pending"})
    assert (where.error_type, where.start_ms, where.end_ms, where.replayed) == (
        "invalid_email",
        RECEIVED,
        RECEIVED + 86_400_000,
        False,
    )
    assert error_filter({}).replayed is None
    for bad in (
        {"type": "nope"},
        {"day": "2024-02-30"},
        {"day": "\u0662\u0660\u0662\u0664-\u0660\u0665-\u0660\u0661"},
        {"status": "x"},
    ):
        with pytest.raises(InvalidRequest):
            error_filter(bad)
    assert page_cursor("1714521600000:12") == (RECEIVED, 12)
    for bad_cursor in ("12", "a:b", "-1:2", "\uff11:2"):
        with pytest.raises(InvalidRequest):
            page_cursor(bad_cursor)
    assert page_limit(None) == 200 and page_limit("1000") == 1000
    for bad_limit in ("0", "1001", "²", "x"):
        with pytest.raises(InvalidRequest):
            page_limit(bad_limit)
    assert replay_ids([1, "2", " 3 "]) == [1, 2, 3]
    assert replay_ids("4,5") == [4, 5]
    assert replay_ids(None) is None
    assert replay_ids(["9" * 30]) == []  # no row has such an id
    for bad_ids in ([], [True], [-1], [1.5], ["²"], {"a": 1}, list(range(10_001))):
        with pytest.raises(InvalidRequest):
            replay_ids(bad_ids)
    assert csv_cell("=1+1") == "'=1+1" and csv_cell("{}") == "{}" and csv_cell("") == ""
