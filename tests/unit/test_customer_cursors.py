"""The search prefix's ranges and the keyset cursors of customer pages."""

from __future__ import annotations

import pytest

from trackway.domain.customers import (
    SearchPrefix,
    decode_cursor,
    encode_cursor,
    parse_query,
    prefix_upper,
)
from trackway.domain.errors import InvalidRequest


@pytest.mark.parametrize(
    ("prefix", "upper"),
    [
        ("ab", "ac"),
        ("a", "b"),
        ("a\U0010ffff", "b"),
        ("x\ud7ff", "x\ue000"),
        ("\U0010ffff", "\U0010ffff\U0010ffff"),
    ],
)
def test_prefix_upper_is_just_past_every_string_with_the_prefix(prefix: str, upper: str) -> None:
    assert prefix_upper(prefix) == upper
    for longer in (prefix, prefix + "\x00", prefix + "zz", prefix + "\U0010ffff" * 3):
        if not longer.startswith("\U0010ffff"):
            assert prefix <= longer < upper


def test_the_email_range_is_lower_cased_and_the_others_kept() -> None:
    prefix = SearchPrefix.of("Ann.S")
    assert (prefix.exact, prefix.folded) == ("Ann.S", "ann.s")
    assert (prefix.exact_upper, prefix.folded_upper) == ("Ann.T", "ann.t")


def test_query_blank_is_everyone_and_bad_text_names_q() -> None:
    assert parse_query(None) is None
    assert parse_query("  ") is None
    assert parse_query(" ck-1 ") == SearchPrefix.of("ck-1")
    for bad in ("x" * 257, "a\x00b", "\udcff"):
        with pytest.raises(InvalidRequest) as caught:
            parse_query(bad)
        assert list(caught.value.errors) == ["q"]


@pytest.mark.parametrize("position", [(0, 0), (1706788800000, 42), (2**63 - 1, 2**63 - 1)])
def test_cursors_round_trip_and_are_opaque(position: tuple[int, int]) -> None:
    cursor = encode_cursor(position)
    assert str(position[1]) not in cursor or position[1] == 0
    assert decode_cursor(cursor, "cursor") == position


@pytest.mark.parametrize(
    "bad",
    [
        "nope",
        "1.2.3",
        "!!!!",
        encode_cursor((1, 2)) + "A",
        encode_cursor((1, 2))[:-1],
        "MS4tMS4y",  # "1.-1.2"
        "Mi4xLjI",  # version 2
        "x" * 65,
        "MS4xLjJ4",  # "1.1.2x"
    ],
)
def test_a_bad_cursor_names_its_field(bad: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        decode_cursor(bad, "before")
    assert list(caught.value.errors) == ["before"]


def test_no_cursor_is_the_first_page() -> None:
    assert decode_cursor(None, "cursor") is None
    assert decode_cursor("", "cursor") is None
