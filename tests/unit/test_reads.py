"""The rules of the read endpoints' parameters and the shape of summary.json, without I/O."""

from __future__ import annotations

import time
from datetime import datetime

import pytest

from trackway.domain.errors import InvalidRequest
from trackway.domain.reads import history_name, parse_limit, summary_document, summary_range

DAY_MS = 86_400_000

ERROR_TYPES = (
    "es_index_error",
    "event_name_missing",
    "event_verification_error",
    "invalid_customer_id",
    "invalid_device_id",
    "invalid_email",
    "invalid_event_attributes",
    "invalid_product",
    "invalid_user_attributes",
    "missing_identifier",
    "missing_product",
    "parsing_error",
    "transaction_indexing_error",
    "unknown_error",
    "user_lock_error",
    "user_not_found_error",
)


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def rejected(call, *args, **kwargs) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        call(*args, **kwargs)
    return info.value


# -- parse_limit ----------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [None, ""])
def test_absent_limit_is_the_default(raw):
    assert parse_limit(raw, default=50, maximum=50) == 50
    assert parse_limit(raw, default=1000, maximum=10_000) == 1000


@pytest.mark.parametrize(("raw", "value"), [("1", 1), ("50", 50), (1, 1), (50, 50), ("07", 7)])
def test_limit_within_bounds(raw, value):
    assert parse_limit(raw, default=50, maximum=50) == value


@pytest.mark.parametrize("raw", ["0", 0, "51", 51, "-1", "x", "2.5", 2.5, 2.0, True, [], {}])
def test_limit_out_of_bounds_or_not_an_integer(raw):
    error = rejected(parse_limit, raw, default=50, maximum=50)
    assert error.errors == {"limit": ["must be between 1 and 50"]}
    assert error.status == 400


def test_limit_message_names_the_maximum_and_the_field():
    error = rejected(parse_limit, "10001", default=1000, maximum=10_000)
    assert error.errors == {"limit": ["must be between 1 and 10000"]}
    assert parse_limit("10000", default=1000, maximum=10_000) == 10_000
    error = rejected(parse_limit, "0", default=1, maximum=5, field="count")
    assert error.errors == {"count": ["must be between 1 and 5"]}


# -- history_name ---------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [None, "", "   "])
def test_blank_event_name(raw):
    error = rejected(history_name, raw)
    assert (error.status, error.errors) == (400, {"event_name": ["can't be blank"]})


@pytest.mark.parametrize("raw", ["a.b", "has space", "tab\tname", "123", "1.5", 5, "x" * 65])
def test_event_name_breaking_the_naming_rules_is_422(raw):
    error = rejected(history_name, raw)
    assert (error.status, error.errors) == (422, {"event_name": ["is not valid"]})


@pytest.mark.parametrize("raw", ["app_install", "Add-To-Cart", "x" * 64, "a1"])
def test_valid_event_name_is_returned(raw):
    assert history_name(raw) == raw


# -- summary_range --------------------------------------------------------------------------

NOW = ms("2024-03-10T12:34:56.789Z")


def test_default_range_is_the_last_7_utc_days_including_today():
    # From the start of the day 6 days ago until now: 7 daily buckets.
    expected = (ms("2024-03-04T00:00:00Z"), NOW)
    assert summary_range(None, None, NOW) == expected
    assert summary_range("", "", NOW) == expected
    start, end = expected
    assert len(summary_document(start, end, [], [], [])["events_chart_stats"][0]["timelapse"]) == 7


def test_default_range_just_after_midnight_still_has_7_days():
    midnight = ms("2024-03-10T00:00:00Z")
    assert summary_range(None, None, midnight) == (ms("2024-03-04T00:00:00Z"), midnight)


def test_given_range_is_kept_to_the_millisecond():
    start, end = "2023-04-25T00:00:00Z", "2023-04-26T23:59:59.5Z"
    assert summary_range(start, end, NOW) == (ms(start), ms(end))


def test_offsets_are_converted_to_utc():
    start, end = summary_range("2023-04-25T02:00:00+02:00", "2023-04-26T00:00:00-01:00", NOW)
    assert (start, end) == (ms("2023-04-25T00:00:00Z"), ms("2023-04-26T01:00:00Z"))


def test_one_bound_only_spans_7_whole_days():
    # The 7 days ending on the end's day, or starting on the start's day.
    end = ms("2024-01-08T00:00:00Z")
    assert summary_range(None, "2024-01-08T00:00:00Z", NOW) == (ms("2024-01-02T00:00:00Z"), end)
    start = ms("2024-01-01T10:00:00Z")
    assert summary_range("2024-01-01T10:00:00Z", None, NOW) == (
        start,
        ms("2024-01-07T23:59:59.999Z"),
    )
    assert summary_range("2024-01-01", None, NOW) == (
        ms("2024-01-01T00:00:00Z"),
        ms("2024-01-07T23:59:59.999Z"),
    )
    assert summary_range(None, "2024-01-08", NOW) == (
        ms("2024-01-02T00:00:00Z"),
        ms("2024-01-08T23:59:59.999Z"),
    )


def test_days_are_whole_utc_days_and_the_end_day_is_included():
    assert summary_range("2023-04-25", "2023-04-26", NOW) == (
        ms("2023-04-25T00:00:00Z"),
        ms("2023-04-26T23:59:59.999Z"),
    )
    # One day: one bucket.
    start, end = summary_range("2024-02-29", "2024-02-29", NOW)
    assert (start, end) == (ms("2024-02-29T00:00:00Z"), ms("2024-02-29T23:59:59.999Z"))
    chart = summary_document(start, end, [], [], [])["events_chart_stats"][0]
    assert chart["timelapse"] == ["02/29"]
    # A day and an instant mix.
    assert summary_range("2024-01-01", "2024-01-03T12:00:00Z", NOW) == (
        ms("2024-01-01T00:00:00Z"),
        ms("2024-01-03T12:00:00Z"),
    )
    # Surrounding blanks are forgiven, as for instants.
    assert summary_range(" 2024-01-01 ", None, NOW)[0] == ms("2024-01-01T00:00:00Z")


@pytest.mark.parametrize("field", ["timestamp_start", "timestamp_end"])
@pytest.mark.parametrize(
    "bad", ["2024-02-30", "2023-13-01", "1969-12-31", "2024-1-01", "20240101x"]
)
def test_malformed_day_names_its_field(field, bad):
    args = {"timestamp_start": "2024-01-01", "timestamp_end": "2024-01-02"}
    args[field] = bad
    error = rejected(summary_range, args["timestamp_start"], args["timestamp_end"], NOW)
    assert error.status == 400
    assert error.errors == {field: ["is not a valid ISO 8601 timestamp or day (YYYY-MM-DD)"]}


def test_days_at_most_366():
    assert summary_range("2023-01-01", "2024-01-01", NOW) == (
        ms("2023-01-01T00:00:00Z"),
        ms("2024-01-01T23:59:59.999Z"),
    )
    error = rejected(summary_range, "2023-01-01", "2024-01-02", NOW)
    assert list(error.errors) == ["timestamp_end"]


@pytest.mark.parametrize("field", ["timestamp_start", "timestamp_end"])
@pytest.mark.parametrize("bad", ["yesterday", "2024-02-30T00:00:00Z", "2024-01-01T25:00:00Z"])
def test_malformed_bound_names_its_field(field, bad):
    args = {"timestamp_start": "2024-01-01T00:00:00Z", "timestamp_end": "2024-01-02T00:00:00Z"}
    args[field] = bad
    error = rejected(summary_range, args["timestamp_start"], args["timestamp_end"], NOW)
    assert error.status == 400
    assert list(error.errors) == [field]


def test_end_before_start_names_timestamp_end():
    error = rejected(summary_range, "2024-01-02T00:00:00Z", "2024-01-01T23:59:59Z", NOW)
    assert list(error.errors) == ["timestamp_end"]


def test_at_most_366_days():
    start = "2023-01-01T00:00:00Z"
    assert summary_range(start, "2024-01-02T00:00:00Z", NOW) == (
        ms(start),
        ms(start) + 366 * DAY_MS,
    )
    error = rejected(summary_range, start, "2024-01-02T00:00:00.001Z", NOW)
    assert list(error.errors) == ["timestamp_end"]


# -- summary_document -----------------------------------------------------------------------


def names(*entries: tuple[str, str, str, bool]):
    return [
        {"name": n, "display_name": d, "type": t, "archived": a, "created_ms": 0}
        for n, d, t, a in entries
    ]


def test_summary_document_in_the_seed_shape():
    document = summary_document(
        ms("2023-04-25T00:00:00Z"),
        ms("2023-04-26T23:59:59.999Z"),
        [
            ("2023-04-24", "add_to_cart", 7),  # before the range: not counted
            ("2023-04-25", "add_to_cart", 20),
            ("2023-04-25", "subscription_update", 53),
            ("2023-04-26", "add_to_cart", 30),
            ("2023-04-26", "old_campaign", 4),
            ("2023-04-27", "add_to_cart", 9),  # after the range: not counted
        ],
        [
            ("2023-04-25", "invalid_user_attributes", 10),
            ("2023-04-26", "missing_identifier", 20),
            ("2023-04-26", "invalid_user_attributes", 15),
        ],
        names(
            ("add_to_cart", "add_to_cart", "standard", False),
            ("old_campaign", "Old campaign", "custom_event", True),
            ("subscription_update", "pageload", "standard", False),
        ),
    )
    errors = {error_type: [0, 0] for error_type in ERROR_TYPES}
    errors["invalid_user_attributes"] = [10, 15]
    errors["missing_identifier"] = [0, 20]
    assert document == {
        "events_chart_stats": [
            {
                "archives": {"old_campaign": [0, 4]},
                "error": errors,
                "events": {"add_to_cart": [20, 30], "subscription_update": [53, 0]},
                "timelapse": ["04/25", "04/26"],
            }
        ],
        "stats": {
            "add_to_cart": {
                "archived": False,
                "count": 50,
                "display_name": "add_to_cart",
                "type": "standard",
            },
            "old_campaign": {
                "archived": True,
                "count": 4,
                "display_name": "Old campaign",
                "type": "custom_event",
            },
            "subscription_update": {
                "archived": False,
                "count": 53,
                "display_name": "pageload",
                "type": "standard",
            },
        },
        "status": "ok",
        "timestamp_end": "2023-04-26T23:59:59.999Z",
        "timestamp_start": "2023-04-25T00:00:00.000Z",
    }
    assert list(document["events_chart_stats"][0]["error"]) == list(ERROR_TYPES)


def test_one_bucket_per_utc_day_from_start_day_to_end_day_across_a_year():
    document = summary_document(
        ms("2023-12-30T23:00:00Z"),
        ms("2024-01-02T00:00:01Z"),
        [("2023-12-30", "view", 1), ("2024-01-02", "view", 2)],
        [],
        names(("view", "view", "standard", False)),
    )
    chart = document["events_chart_stats"][0]
    assert chart["timelapse"] == ["12/30", "12/31", "01/01", "01/02"]
    assert chart["events"] == {"view": [1, 0, 0, 2]}
    assert chart["error"] == {error_type: [0, 0, 0, 0] for error_type in ERROR_TYPES}
    assert chart["archives"] == {}


def test_a_range_within_one_day_is_one_bucket():
    document = summary_document(ms("2024-02-29T01:00:00Z"), ms("2024-02-29T02:00:00Z"), [], [], [])
    chart = document["events_chart_stats"][0]
    assert chart["timelapse"] == ["02/29"]
    assert chart["events"] == {}
    assert document["stats"] == {}


def test_stats_list_every_registered_name_with_its_count_in_the_range():
    document = summary_document(
        ms("2024-01-01T00:00:00Z"),
        ms("2024-01-01T12:00:00Z"),
        [("2024-01-01", "signup", 3)],
        [],
        names(("signup", "Sign up", "custom_event", False), ("view", "view", "standard", False)),
    )
    assert document["stats"] == {
        "signup": {
            "archived": False,
            "count": 3,
            "display_name": "Sign up",
            "type": "custom_event",
        },
        "view": {"archived": False, "count": 0, "display_name": "view", "type": "standard"},
    }


def test_day_labels_follow_utc_not_local_time(monkeypatch):
    monkeypatch.setenv("TZ", "Pacific/Kiritimati")  # UTC+14
    time.tzset()
    try:
        document = summary_document(
            ms("2024-06-30T23:59:59Z"), ms("2024-07-01T00:00:00Z"), [], [], []
        )
    finally:
        monkeypatch.undo()
        time.tzset()
    assert document["events_chart_stats"][0]["timelapse"] == ["06/30", "07/01"]
    assert document["timestamp_start"] == "2024-06-30T23:59:59.000Z"
