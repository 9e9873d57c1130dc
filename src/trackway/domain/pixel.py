"""The browser pixel: GET /unity.gif?x=KEY&e=EVENT&k=COOKIE&… as an event body.

`x` carries the event key (a browser cannot send Basic auth), `e` the event, `k` the cookie,
`u` the url, `r` the referrer, `t` the time in Unix seconds; `z` is a cache-buster. Every other
parameter is a string attribute, and `NAME_json` carries the JSON value of attribute NAME.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode

import msgspec

from trackway.domain.errors import EventRejected
from trackway.domain.events import NUL_MESSAGE, holds_nul

_RENAMED = {"e": "event", "k": "cookie", "u": "url", "r": "referrer", "t": "timestamp"}
_IGNORED = frozenset({"x", "z"})
MAX_QUERY = 64 * 1024

# A 1x1 transparent GIF.
PIXEL_GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)


def pixel_parameters(query_string: bytes) -> list[tuple[str, str]]:
    text = query_string[:MAX_QUERY].decode("utf-8", "replace")
    return parse_qsl(text, keep_blank_values=True, errors="replace")


def logged_query(parameters: list[tuple[str, str]]) -> bytes:
    """The query as the error log keeps it: without the key."""
    return urlencode([(k, v) for k, v in parameters if k != "x"]).encode()


def pixel_key(parameters: list[tuple[str, str]]) -> str | None:
    for name, value in parameters:
        if name == "x" and value:
            return value
    return None


def request_context(
    *, user_agent: str | None, ip: str | None, referrer: str | None
) -> dict[str, str | None]:
    """What the pixel's request adds to its event, as pixel_body takes it (and the error log
    keeps it for a replay)."""
    return {"user_agent": user_agent, "ip": ip, "referrer": referrer}


def pixel_body(
    parameters: list[tuple[str, str]],
    *,
    user_agent: str | None,
    ip: str | None,
    referrer: str | None,
) -> dict[str, Any]:
    """The event body the pixel's parameters describe; the request's user agent, IP and
    referrer fill `user_agent`, `ip` and `referrer` when the parameters do not carry them."""
    if any("\x00" in name or "\x00" in value for name, value in parameters):
        raise EventRejected("parsing_error", {"query": [NUL_MESSAGE]})
    body: dict[str, Any] = {}
    bad_json: dict[str, list[str]] = {}
    for name, value in parameters:
        if name in _IGNORED:
            continue
        if name in _RENAMED:
            name = _RENAMED[name]
            if name == "timestamp":
                body[name] = _number_or_text(value)
                continue
        elif name.endswith("_json") and len(name) > 5:
            try:
                decoded = msgspec.json.decode(value)
            except (msgspec.DecodeError, RecursionError, ValueError):
                bad_json[name] = ["is not valid JSON"]
                continue
            if "\\u0000" in value and holds_nul(decoded):
                raise EventRejected("parsing_error", {name: [NUL_MESSAGE]})
            body[name[:-5]] = decoded
            continue
        body[name] = value
    if bad_json:
        raise EventRejected("parsing_error", bad_json)
    for name, context in (("user_agent", user_agent), ("ip", ip), ("referrer", referrer)):
        # Present in the query, even empty (`r=`: the page had no referrer), the query wins.
        if context and name not in body:
            body[name] = context
    return body


def _number_or_text(value: str) -> Any:
    try:
        return int(value)
    except ValueError:
        try:
            return float(value)
        except ValueError:
            return value
