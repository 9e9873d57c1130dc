"""Finding and browsing customers: the search prefix, keyset cursors and page bounds.

A search is a prefix of an identifier (customer_id, email, cookie or device_id); a store answers
it from index ranges [prefix, upper) of each kind. Emails are stored lower-cased (the event
rules do that), so the prefix searched among them is lower-cased too. Pages are keyset
pages: a cursor is an opaque token holding the (sort key, row id) of the last row shown, so a
page costs one index range however deep it is, and rows arriving meanwhile never shift it.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

from trackway.domain.errors import InvalidRequest

SEARCH_DEFAULT = 50
SEARCH_MAX = 200
TIMELINE_PAGE_DEFAULT = 50
TIMELINE_PAGE_MAX = 200
QUERY_MAX_CHARS = 256
# A profile document lists its newest identity conflicts, at most this many.
CONFLICTS_SHOWN = 100
# The kinds a search looks at, strongest first (the one a match is reported under).
SEARCH_KINDS: tuple[str, ...] = ("customer_id", "email", "device_id", "cookie")
# A profile's last activity is rewritten when an event moves it on by more than this, or when
# the profile is written anyway: a customer sending a stream of events costs one row update a
# minute, not one a batch. Search orders by it, so within a minute the order is approximate.
ACTIVITY_RESOLUTION_MS = 60_000

_MAX_CODE_POINT = 0x10FFFF
_CURSOR_RE = re.compile(r"[A-Za-z0-9_-]{1,64}", re.ASCII)
_CURSOR_VERSION = "1"
_INT64_MAX = 2**63 - 1


def fold_email(value: str) -> str:
    """An email prefix as the stored emails are: lower-cased as domain/events.py does."""
    return value.lower()


def prefix_upper(prefix: str) -> str:
    """The least string greater than every string that starts with `prefix`, in code point
    order (SQLite's BINARY and PostgreSQL's "C" collation on UTF-8)."""
    chars = list(prefix)
    while chars:
        last = ord(chars[-1])
        if last < _MAX_CODE_POINT:
            nxt = last + 1
            if 0xD800 <= nxt <= 0xDFFF:
                nxt = 0xE000
            chars[-1] = chr(nxt)
            return "".join(chars)
        chars.pop()
    # Only U+10FFFF characters: nothing valid sorts after them but longer runs of them.
    return chr(_MAX_CODE_POINT) * (len(prefix) + 1)


@dataclass(frozen=True, slots=True)
class SearchPrefix:
    """The ranges one search reads: [exact, exact_upper) of customer_id, device_id and cookie,
    [folded, folded_upper) of the folded emails."""

    exact: str
    exact_upper: str
    folded: str
    folded_upper: str

    @classmethod
    def of(cls, text: str) -> SearchPrefix:
        folded = fold_email(text)
        return cls(text, prefix_upper(text), folded, prefix_upper(folded))


def parse_query(raw: Any) -> SearchPrefix | None:
    """The `q` parameter: None (every customer) when absent or blank."""
    if raw is None:
        return None
    text = str(raw).strip()
    if not text:
        return None
    if len(text) > QUERY_MAX_CHARS:
        raise InvalidRequest({"q": [f"must be at most {QUERY_MAX_CHARS} characters"]})
    if "\x00" in text or any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        raise InvalidRequest({"q": ["must not contain NUL or unpaired surrogates"]})
    return SearchPrefix.of(text)


def encode_cursor(position: tuple[int, int]) -> str:
    """An opaque token for the keyset position (sort key, row id)."""
    key, row_id = position
    text = f"{_CURSOR_VERSION}.{key}.{row_id}".encode("ascii")
    return base64.urlsafe_b64encode(text).decode("ascii").rstrip("=")


def decode_cursor(raw: Any, field: str) -> tuple[int, int] | None:
    """The position a cursor holds; None when absent. Anything not made by encode_cursor is a
    400 naming `field`."""
    if raw is None or raw == "":
        return None
    bad = InvalidRequest({field: ["is not a valid cursor (use the `next` of a previous page)"]})
    if not isinstance(raw, str) or not _CURSOR_RE.fullmatch(raw):
        raise bad
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise bad from None
    version, _, rest = text.partition(".")
    key, _, row_id = rest.partition(".")
    if version != _CURSOR_VERSION or not key.isdigit() or not row_id.isdigit():
        raise bad
    position = int(key), int(row_id)
    if not all(0 <= v <= _INT64_MAX for v in position) or encode_cursor(position) != raw:
        raise bad
    return position


def page_of(rows: list[Any], limit: int) -> tuple[list[Any], bool]:
    """A store asked for limit + 1 rows: the page, and whether another follows."""
    return rows[:limit], len(rows) > limit
