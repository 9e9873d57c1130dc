"""What a stored event looks like when it is read back: the seed's enriched fields."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from ua_parser import parse as parse_user_agent

from trackway.domain.timestamps import format_ms

# Fields every show_events document carries, null when the event did not send them.
_TIMELINE_FIELDS = (
    "cookie",
    "email",
    "event",
    "event_uuid",
    "ip",
    "referrer",
    "session_uuid",
    "site",
    "timestamp",
    "url",
    "user_agent",
)


@lru_cache(maxsize=4096)
def browser_fields(user_agent: str | None) -> tuple[str | None, str | None, str | None]:
    """(browser_platform, browser_type, browser_version) of a user agent, e.g. Firefox 126 on
    Windows → ("Windows", "Firefox", "126.0"); None where the parser does not know."""
    if not user_agent or not isinstance(user_agent, str):
        return None, None, None
    result = parse_user_agent(user_agent[:1024])
    browser = result.user_agent
    os = result.os
    version = None
    if browser is not None and browser.major:
        version = f"{browser.major}.{browser.minor or 0}"
    return (
        os.family if os is not None else None,
        browser.family if browser is not None else None,
        version,
    )


def warm_up() -> None:
    """Load the user-agent parser's rules now, not on the first timeline read."""
    browser_fields(
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:126.0) Gecko/20100101 Firefox/126.0"
    )


def timeline_document(
    body: dict[str, Any],
    *,
    account_uuid: str,
    user_uuid: str,
    received_ms: int,
    timestamp_ms: int,
) -> dict[str, Any]:
    """An event as GET /api/v1/customer_search/show_events returns it."""
    doc = dict(body)
    for name in _TIMELINE_FIELDS:
        doc.setdefault(name, None)
    platform, browser, version = browser_fields(body.get("user_agent"))
    received = format_ms(received_ms)
    doc.update(
        _bsft_doc_type="events",
        _bsft_ts=received,
        _bsft_type={"name": "events", "parent": user_uuid},
        account_uuid=account_uuid,
        browser_platform=platform,
        browser_type=browser,
        browser_version=version,
        santized_at=received,
        timestamp_epoch=timestamp_ms // 1000,
        user_uuid=user_uuid,
    )
    return dict(sorted(doc.items()))


def history_document(
    body: dict[str, Any],
    *,
    account_uuid: str,
    user_uuid: str,
    received_ms: int,
    timestamp_ms: int,
) -> dict[str, Any]:
    """An event as /api/v1/event/history returns it: as sent, plus what the store added."""
    doc = dict(body)
    doc.update(
        _bsft_ts=format_ms(received_ms),
        account_uuid=account_uuid,
        timestamp_epoch=timestamp_ms // 1000,
        user_uuid=user_uuid,
    )
    return dict(sorted(doc.items()))
