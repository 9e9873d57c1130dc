"""POST (and GET) /api/v1/event/summary.json: counts per event name and UTC day from the rollups,
errors per type and receipt day, in exactly the seed's shape."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from conftest import Account, basic, create_account
from support import (
    DAY_MS,
    ERROR_TYPES,
    ISO_MS_RE,
    SUMMARY_URL,
    bulk_ok,
    epoch_ms,
    now_ms,
    send_raw,
    summary,
    utc_day,
    zero_errors,
)


@pytest.fixture(scope="module")
def reader(server) -> Account:
    """An account for requests that only read (and are refused)."""
    return create_account(server.db_path)


def test_document_in_the_seed_shape(client, account):
    bulk_ok(
        client,
        account,
        [
            {"event": "add_to_cart", "customer_id": "c-1", "timestamp": "2023-04-25T08:00:00Z"},
            {"event": "add_to_cart", "customer_id": "c-2", "timestamp": "2023-04-25T23:59:59Z"},
            {"event": "add_to_cart", "customer_id": "c-1", "timestamp": "2023-04-26T00:00:00Z"},
            {"event": "subscription_update", "cookie": "k", "timestamp": "2023-04-26T12:00:00Z"},
            {"event": "signup", "email": "a@example.com", "timestamp": "2023-04-25T10:00:00Z"},
        ],
    )
    # Rejected today: counted on today's bucket, outside this range.
    assert send_raw(client, account, {"event": "view"}).status_code == 400
    document = summary(
        client,
        account,
        timestamp_start="2023-04-25T00:00:00Z",
        timestamp_end="2023-04-26T23:59:59Z",
    )
    assert document == {
        "events_chart_stats": [
            {
                "archives": {},
                "error": zero_errors(2),
                "events": {"add_to_cart": [2, 1], "signup": [1, 0], "subscription_update": [0, 1]},
                "timelapse": ["04/25", "04/26"],
            }
        ],
        "stats": {
            "add_to_cart": {
                "archived": False,
                "count": 3,
                "display_name": "add_to_cart",
                "type": "standard",
            },
            "signup": {
                "archived": False,
                "count": 1,
                "display_name": "signup",
                "type": "custom_event",
            },
            "subscription_update": {
                "archived": False,
                "count": 1,
                "display_name": "subscription_update",
                "type": "standard",
            },
        },
        "status": "ok",
        "timestamp_end": "2023-04-26T23:59:59.000Z",
        "timestamp_start": "2023-04-25T00:00:00.000Z",
    }
    assert list(document["events_chart_stats"][0]["error"]) == list(ERROR_TYPES)


def test_get_post_query_and_post_body_answer_alike(client, account):
    bulk_ok(client, account, [{"event": "view", "cookie": "k", "timestamp": "2024-02-28T10:00Z"}])
    params = {"timestamp_start": "2024-02-27T00:00:00Z", "timestamp_end": "2024-03-01T00:00:00Z"}
    headers = basic(account.user_key)
    by_post = client.post(SUMMARY_URL, params=params, headers=headers)
    by_get = client.get(SUMMARY_URL, params=params, headers=headers)
    by_body = client.post(
        SUMMARY_URL,
        content=json.dumps(params).encode(),
        headers={**headers, "Content-Type": "application/json"},
    )
    assert by_post.status_code == by_get.status_code == by_body.status_code == 200
    assert by_post.json() == by_get.json() == by_body.json()
    chart = by_post.json()["events_chart_stats"][0]
    assert chart["timelapse"] == ["02/27", "02/28", "02/29", "03/01"]
    assert chart["events"] == {"view": [0, 1, 0, 0]}


def test_events_are_counted_on_the_utc_day_of_their_timestamp(client, account):
    bulk_ok(
        client,
        account,
        [
            {"event": "purchase", "customer_id": "c", "timestamp": "2024-03-10T23:59:59.999Z"},
            {"event": "purchase", "customer_id": "c", "timestamp": "2024-03-11T00:00:00Z"},
            # 2024-03-10T23:00:00Z
            {"event": "purchase", "customer_id": "c", "timestamp": "2024-03-11T01:00:00+02:00"},
            # 2024-03-12T02:00:00Z
            {"event": "purchase", "customer_id": "c", "timestamp": "2024-03-11T21:00:00-05:00"},
            # Epoch seconds: 2024-03-11T12:00:00Z
            {"event": "purchase", "customer_id": "c", "timestamp": 1710158400},
        ],
    )
    document = summary(
        client,
        account,
        timestamp_start="2024-03-10T00:00:00Z",
        timestamp_end="2024-03-12T23:00:00Z",
    )
    chart = document["events_chart_stats"][0]
    assert chart["timelapse"] == ["03/10", "03/11", "03/12"]
    assert chart["events"] == {"purchase": [2, 2, 1]}
    assert document["stats"]["purchase"]["count"] == 5


def test_one_bucket_per_utc_day_from_start_day_to_end_day(client, account):
    document = summary(
        client,
        account,
        timestamp_start="2023-12-30T12:00:00Z",
        timestamp_end="2024-01-02T01:00:00Z",
    )
    chart = document["events_chart_stats"][0]
    assert chart["timelapse"] == ["12/30", "12/31", "01/01", "01/02"]
    assert chart["error"] == zero_errors(4)
    assert chart["events"] == {} and chart["archives"] == {}
    assert document["stats"] == {}
    # Bounds with an offset come back in UTC, with milliseconds and Z.
    document = summary(
        client,
        account,
        timestamp_start="2024-01-01T02:00:00.5+02:00",
        timestamp_end="2024-01-01T00:00:00.25-01:00",
    )
    assert document["timestamp_start"] == "2024-01-01T00:00:00.500Z"
    assert document["timestamp_end"] == "2024-01-01T01:00:00.250Z"
    assert document["events_chart_stats"][0]["timelapse"] == ["01/01"]


def test_stats_count_only_the_range(client, account):
    bulk_ok(
        client,
        account,
        [
            {"event": "signup", "cookie": "k", "timestamp": "2024-01-01T10:00:00Z"},
            {"event": "signup", "cookie": "k", "timestamp": "2024-01-02T10:00:00Z"},
            {"event": "signup", "cookie": "k", "timestamp": "2024-01-05T10:00:00Z"},
            {"event": "view", "cookie": "k", "timestamp": "2024-01-05T11:00:00Z"},
        ],
    )
    first = summary(
        client,
        account,
        timestamp_start="2024-01-01T00:00:00Z",
        timestamp_end="2024-01-02T23:00:00Z",
    )
    assert first["events_chart_stats"][0]["events"] == {"signup": [1, 1]}
    assert first["stats"]["signup"]["count"] == 2
    later = summary(
        client,
        account,
        timestamp_start="2024-01-05T00:00:00Z",
        timestamp_end="2024-01-05T23:00:00Z",
    )
    assert later["events_chart_stats"][0]["events"] == {"signup": [1], "view": [1]}
    assert {name: s["count"] for name, s in later["stats"].items()} == {"signup": 1, "view": 1}


REJECTED_BODIES = [
    ({"customer_id": "c"}, "event_name_missing"),
    ({"event": "view", "customer_id": "0"}, "invalid_customer_id"),
    ({"event": "view", "device_id": "00000000-0000-0000-0000-000000000000"}, "invalid_device_id"),
    ({"event": "view", "email": "not-an-email"}, "invalid_email"),
    ({"event": "a.b", "customer_id": "c"}, "invalid_event_attributes"),
    (
        {"event": "view", "customer_id": "c", "subscription_groups": "all"},
        "invalid_user_attributes",
    ),
    ({"event": "view"}, "missing_identifier"),
    ({"event": "view"}, "missing_identifier"),
    (b"{not json", "parsing_error"),
    ({"event": "view", "customer_id": "c", "size": "large"}, "es_index_error"),
]


def test_errors_are_counted_on_their_receipt_day_by_type(client, account):
    bulk_ok(client, account, [{"event": "view", "customer_id": "c", "size": 1}])
    before = now_ms()
    for body, _ in REJECTED_BODIES:
        if isinstance(body, dict):
            # An event time long ago does not matter: errors count when they are received.
            body = {**body, "timestamp": "2020-01-01T00:00:00Z"}
        assert send_raw(client, account, body).status_code == 400, body
    after = now_ms()
    if utc_day(before) != utc_day(after):
        pytest.skip("the UTC day changed while the errors were sent")
    today = datetime.fromtimestamp(before / 1000, UTC).replace(hour=0, minute=0, second=0)
    yesterday = today - timedelta(days=1)
    document = summary(
        client,
        account,
        timestamp_start=yesterday.strftime("%Y-%m-%dT%H:%M:%SZ"),
        timestamp_end=today.strftime("%Y-%m-%dT23:59:59Z"),
    )
    expected = zero_errors(2)
    for _, error_type in REJECTED_BODIES:
        expected[error_type][1] += 1
    chart = document["events_chart_stats"][0]
    assert chart["error"] == expected
    assert chart["timelapse"] == [yesterday.strftime("%m/%d"), today.strftime("%m/%d")]
    # The accepted event carried no timestamp: it counts today too; the rejected ones do not.
    assert chart["events"] == {"view": [0, 1]}


def test_default_range_is_the_last_7_utc_days_including_today(client, account):
    now = now_ms()
    bulk_ok(
        client,
        account,
        [
            {"event": "view", "cookie": "k", "timestamp": (now - 6 * DAY_MS) // 1000},
            {"event": "view", "cookie": "k", "timestamp": (now - 7 * DAY_MS) // 1000},
            {"event": "view", "cookie": "k", "timestamp": (now - 9 * DAY_MS) // 1000},
            {"event": "view", "cookie": "k"},
        ],
    )
    before = now_ms()
    for response in (
        client.post(SUMMARY_URL, headers=basic(account.user_key)),
        client.get(SUMMARY_URL, headers=basic(account.user_key)),
    ):
        after = now_ms()
        assert response.status_code == 200
        document = response.json()
        assert ISO_MS_RE.fullmatch(document["timestamp_end"])
        assert ISO_MS_RE.fullmatch(document["timestamp_start"])
        end = epoch_ms(document["timestamp_end"])
        assert before <= end <= after
        today = datetime.fromtimestamp(end / 1000, UTC).date()
        days = [today - timedelta(days=6 - i) for i in range(7)]
        # From the first millisecond of the day 6 days ago: 7 buckets, today the last.
        assert document["timestamp_start"] == f"{days[0]:%Y-%m-%d}T00:00:00.000Z"
        chart = document["events_chart_stats"][0]
        assert chart["timelapse"] == [d.strftime("%m/%d") for d in days]
        if utc_day(now) == utc_day(end):
            assert chart["events"] == {"view": [1, 0, 0, 0, 0, 0, 1]}
            assert document["stats"]["view"]["count"] == 2
        assert chart["error"] == zero_errors(7)


def test_days_as_bounds_count_whole_utc_days(client, account):
    bulk_ok(
        client,
        account,
        [
            {"event": "view", "cookie": "k", "timestamp": "2026-11-30T23:59:59.999Z"},
            {"event": "view", "cookie": "k", "timestamp": "2026-12-01T00:00:00Z"},
            {"event": "view", "cookie": "k", "timestamp": "2026-12-02T23:59:59.999Z"},
            {"event": "view", "cookie": "k", "timestamp": "2026-12-03T00:00:00Z"},
        ],
    )
    headers = basic(account.user_key)
    params = {"timestamp_start": "2026-12-01", "timestamp_end": "2026-12-02"}
    by_query = client.get(SUMMARY_URL, params=params, headers=headers)
    by_body = client.post(
        SUMMARY_URL,
        content=json.dumps(params).encode(),
        headers={**headers, "Content-Type": "application/json"},
    )
    for response in (by_query, by_body):
        assert response.status_code == 200, response.text
        document = response.json()
        assert document["timestamp_start"] == "2026-12-01T00:00:00.000Z"
        assert document["timestamp_end"] == "2026-12-02T23:59:59.999Z"
        chart = document["events_chart_stats"][0]
        assert chart["timelapse"] == ["12/01", "12/02"]
        assert chart["events"] == {"view": [1, 1]}
        assert document["stats"]["view"]["count"] == 2
    # The start alone: the 7 days from it.
    document = summary(client, account, timestamp_start="2026-12-01")
    chart = document["events_chart_stats"][0]
    assert chart["timelapse"] == [f"12/{d:02d}" for d in range(1, 8)]
    assert chart["events"] == {"view": [1, 1, 1, 0, 0, 0, 0]}
    assert document["timestamp_end"] == "2026-12-07T23:59:59.999Z"
    # The end alone: the 7 days up to it.
    chart = summary(client, account, timestamp_end="2026-12-02")["events_chart_stats"][0]
    assert chart["timelapse"] == ["11/26", "11/27", "11/28", "11/29", "11/30", "12/01", "12/02"]
    assert chart["events"] == {"view": [0, 0, 0, 0, 1, 1, 1]}


@pytest.mark.parametrize("field", ["timestamp_start", "timestamp_end"])
@pytest.mark.parametrize("bad", ["2026-02-30", "2026-13-01", "26-12-01"])
def test_malformed_day_is_400_naming_the_field(client, reader, field, bad):
    params = {"timestamp_start": "2026-01-01", "timestamp_end": "2026-01-02"}
    params[field] = bad
    response = client.get(SUMMARY_URL, params=params, headers=basic(reader.user_key))
    assert response.status_code == 400
    assert response.json() == {
        "errors": {field: ["is not a valid ISO 8601 timestamp or day (YYYY-MM-DD)"]}
    }


@pytest.mark.parametrize("field", ["timestamp_start", "timestamp_end"])
@pytest.mark.parametrize("bad", ["not-a-date", "2024-02-30T00:00:00Z", "2024-01-01T24:00:00Z"])
def test_malformed_timestamp_is_400_naming_the_field(client, reader, field, bad):
    params = {"timestamp_start": "2024-01-01T00:00:00Z", "timestamp_end": "2024-01-02T00:00:00Z"}
    params[field] = bad
    headers = basic(reader.user_key)
    for response in (
        client.post(SUMMARY_URL, params=params, headers=headers),
        client.get(SUMMARY_URL, params=params, headers=headers),
        client.post(
            SUMMARY_URL,
            content=json.dumps(params).encode(),
            headers={**headers, "Content-Type": "application/json"},
        ),
    ):
        assert response.status_code == 400
        errors = response.json()["errors"]
        assert list(errors) == [field]
        assert len(errors[field]) == 1


def test_end_before_start_is_400_naming_timestamp_end(client, reader):
    response = client.post(
        SUMMARY_URL,
        params={"timestamp_start": "2024-01-02T00:00:00Z", "timestamp_end": "2024-01-01T00:00:00Z"},
        headers=basic(reader.user_key),
    )
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["timestamp_end"]


def test_at_most_366_days(client, reader):
    headers = basic(reader.user_key)
    response = client.post(
        SUMMARY_URL,
        params={"timestamp_start": "2023-01-01T00:00:00Z", "timestamp_end": "2024-01-02T00:00:01Z"},
        headers=headers,
    )
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["timestamp_end"]
    response = client.post(
        SUMMARY_URL,
        params={"timestamp_start": "2023-01-01T00:00:00Z", "timestamp_end": "2024-01-02T00:00:00Z"},
        headers=headers,
    )
    assert response.status_code == 200
    timelapse = response.json()["events_chart_stats"][0]["timelapse"]
    assert len(timelapse) == 367
    assert (timelapse[0], timelapse[-1]) == ("01/01", "01/02")
    assert response.json()["events_chart_stats"][0]["error"] == zero_errors(367)
