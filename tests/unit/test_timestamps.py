"""domain/timestamps.py: ISO 8601 and epoch seconds in, UTC `…Z` and epoch milliseconds out."""

from __future__ import annotations

import re

import pytest

from trackway.domain.timestamps import day_of_ms, format_ms, now_ms, parse_timestamp

BASE_MS = 1624510434000  # 2021-06-24T04:53:54Z


@pytest.mark.parametrize(
    ("value", "text", "ms"),
    [
        ("2021-06-24T04:53:54Z", "2021-06-24T04:53:54Z", BASE_MS),
        ("2021-06-24T04:53:54z", "2021-06-24T04:53:54Z", BASE_MS),
        ("2021-06-24T04:53:54", "2021-06-24T04:53:54Z", BASE_MS),
        ("2021-06-24 04:53:54", "2021-06-24T04:53:54Z", BASE_MS),
        ("2021-06-24T04:53Z", "2021-06-24T04:53:00Z", BASE_MS - 54_000),
        ("2021-06-24T10:23:54+05:30", "2021-06-24T04:53:54Z", BASE_MS),
        ("2021-06-24T10:23:54+0530", "2021-06-24T04:53:54Z", BASE_MS),
        ("2021-06-23T21:53:54-07:00", "2021-06-24T04:53:54Z", BASE_MS),
        ("2021-06-24T04:53:54+00:00", "2021-06-24T04:53:54Z", BASE_MS),
        ("2021-06-24T04:53:54-00:00", "2021-06-24T04:53:54Z", BASE_MS),
        ("2021-06-24T23:30:00-05:00", "2021-06-25T04:30:00Z", 1624595400000),
        ("2021-06-24T01:00:00+05:30", "2021-06-23T19:30:00Z", 1624476600000),
        ("2021-06-24T04:53:54+23:59", "2021-06-23T04:54:54Z", BASE_MS - 86_340_000),
        ("2020-02-29T12:00:00Z", "2020-02-29T12:00:00Z", 1582977600000),
        ("1970-01-01T00:00:00Z", "1970-01-01T00:00:00Z", 0),
        ("9999-12-31T23:59:59Z", "9999-12-31T23:59:59Z", 253402300799000),
        ("  2021-06-24T04:53:54Z ", "2021-06-24T04:53:54Z", BASE_MS),
        (1624510434, "2021-06-24T04:53:54Z", BASE_MS),
        (1624510434.0, "2021-06-24T04:53:54Z", BASE_MS),
        (0, "1970-01-01T00:00:00Z", 0),
    ],
)
def test_valid_timestamps(value, text, ms):
    assert parse_timestamp(value) == (text, ms)


@pytest.mark.parametrize("digits", range(1, 10))
def test_fractions_of_1_to_9_digits(digits):
    fraction = "123456789"[:digits]
    parsed = parse_timestamp(f"2021-06-24T04:53:54.{fraction}Z")
    assert parsed is not None
    text, ms = parsed
    assert ms == BASE_MS + int(fraction[:3].ljust(3, "0"))
    match = re.fullmatch(r"2021-06-24T04:53:54\.(\d{1,9})Z", text)
    assert match, text
    assert match.group(1).ljust(9, "0")[:3] == fraction.ljust(9, "0")[:3]


def test_fraction_and_offset_together():
    parsed = parse_timestamp("2021-06-24T10:23:54.250+05:30")
    assert parsed is not None
    assert parsed[1] == BASE_MS + 250
    assert parsed[0].startswith("2021-06-24T04:53:54.25") and parsed[0].endswith("Z")


def test_comma_as_the_decimal_sign():
    parsed = parse_timestamp("2021-06-24T04:53:54,5Z")
    assert parsed is not None and parsed[1] == BASE_MS + 500


def test_epoch_seconds_with_a_fraction():
    assert parse_timestamp(1624510434.25) == ("2021-06-24T04:53:54.250Z", BASE_MS + 250)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "yesterday",
        "2021-06-24",
        "2021/06/24T04:53:54Z",
        "2021-13-01T00:00:00Z",
        "2021-00-10T00:00:00Z",
        "2021-02-29T00:00:00Z",
        "2021-06-31T00:00:00Z",
        "2021-06-24T24:00:00Z",
        "2021-06-24T04:60:00Z",
        "2021-06-24T04:53:60Z",
        "2021-06-24T04:53:54.Z",
        "2021-06-24T04:53:54.1234567890Z",
        "2021-06-24T04:53:54+24:00",
        "2021-06-24T04:53:54+05:60",
        "2021-06-24T04:53:54+05:99",
        "2021-06-24T04:53:54+5:30",
        "2021-06-24T04:53:54 PST",
        "2021-06-24T04:53:54ZZ",
        "1969-12-31T23:59:59Z",
        "1624510434",
        "\uff12\uff10\uff12\uff11-06-24T04:53:54Z",  # fullwidth digits
        True,
        False,
        None,
        [],
        {},
        -1,
        -0.5,
        253402300800,
        1e30,
        float("nan"),
        float("inf"),
    ],
)
def test_malformed_timestamps(value):
    assert parse_timestamp(value) is None


def test_format_ms():
    assert format_ms(0) == "1970-01-01T00:00:00.000Z"
    assert format_ms(BASE_MS + 7) == "2021-06-24T04:53:54.007Z"
    assert format_ms(BASE_MS + 999) == "2021-06-24T04:53:54.999Z"


def test_format_then_parse_round_trips():
    for ms in (0, 1, 999, BASE_MS, BASE_MS + 123, 253402300799999):
        assert parse_timestamp(format_ms(ms)) == (format_ms(ms), ms)


def test_day_of_ms_is_the_utc_day():
    assert day_of_ms(0) == "1970-01-01"
    assert day_of_ms(BASE_MS) == "2021-06-24"
    assert day_of_ms(1624579199999) == "2021-06-24"
    assert day_of_ms(1624579200000) == "2021-06-25"


def test_now_ms_is_epoch_milliseconds():
    import time

    before = time.time_ns() // 1_000_000
    value = now_ms()
    after = time.time_ns() // 1_000_000
    assert before <= value <= after


def _general(value: str) -> tuple[str, int] | None:
    """The general parser alone: the canonical fast path skipped (a space in front makes the
    string longer than 24, and the general parser strips it)."""
    return parse_timestamp(" " + value)


@pytest.mark.parametrize(
    "value",
    [
        "2024-03-03T00:00:25.104Z",
        "1970-01-01T00:00:00.000Z",
        "9999-12-31T23:59:59.999Z",
        "2020-02-29T12:00:00.001Z",
        "2021-02-29T12:00:00.000Z",  # not a day
        "2021-13-01T12:00:00.000Z",
        "2021-00-10T12:00:00.000Z",
        "2021-01-00T12:00:00.000Z",
        "2021-01-01T24:00:00.000Z",
        "2021-01-01T23:60:00.000Z",
        "2021-01-01T23:59:60.000Z",  # no leap seconds
        "1969-12-31T23:59:59.999Z",
        "0000-01-01T00:00:00.000Z",
        "2021-01-01t12:00:00.000Z",
        "2021-01-01 12:00:00.000Z",
        "2021-01-01T12:00:00.000z",
        "2021-01-01T12:00:00,000Z",
        "2021-01-01T12:00:00.0a0Z",
        "2021-01-01T12:00:0٣.000Z",  # an Arabic-Indic digit
        "\uff12021-01-01T12:00:00.000Z",  # a fullwidth digit
        "2021-01-01T12:00:00.+00Z",
        "2021-01-01T1 :00:00.000Z",
        "-021-01-01T12:00:00.000Z",
        "2021/01/01T12:00:00.000Z",
        "2021-01-01T12:00:00.000+",
        "2021-01-01T12-00:00.000Z",
    ],
)
def test_the_canonical_fast_path_answers_as_the_general_parser(value: str) -> None:
    assert len(value) == 24
    assert parse_timestamp(value) == _general(value)


def test_the_canonical_fast_path_agrees_on_every_hour_of_a_year() -> None:
    start = 1704067200000  # 2024-01-01T00:00:00Z
    for hour in range(366 * 24):
        ms = start + hour * 3_600_000 + 59 * 60_000 + 58_999
        text = format_ms(ms)
        assert parse_timestamp(text) == (text, ms) == _general(text)
