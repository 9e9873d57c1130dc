"""What Client and AsyncClient share besides the delivery rules: their checked settings, the
request headers, and how a give-up is reported."""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, cast

import httpx

from trackway.client._batch import bulk_url
from trackway.client._retry import RetryPolicy

log = logging.getLogger("trackway.client")

USER_AGENT = "trackway-python"

OnError = Callable[[list[dict[str, Any]], httpx.Response | BaseException], Any]
OnFull = Literal["raise", "drop"]


def basic_auth(api_key: str) -> str:
    """The documented header: `Basic base64(key:)` (the key as user name, no password)."""
    return "Basic " + base64.b64encode(f"{api_key}:".encode()).decode()


@dataclass(frozen=True)
class Config:
    url: str
    headers: dict[str, str]
    batch_size: int
    flush_interval: float
    max_queue: int
    timeout: float | None
    policy: RetryPolicy
    on_full: OnFull


def make_config(
    base_url: str,
    api_key: str,
    *,
    batch_size: int,
    flush_interval: float,
    max_queue: int,
    timeout: float | None,
    max_retries: int,
    backoff_base: float,
    backoff_max: float,
    on_full: str,
) -> Config:
    if not base_url:
        raise ValueError("base_url is required")
    if not api_key:
        raise ValueError("api_key is required")
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    if flush_interval <= 0:
        raise ValueError("flush_interval must be positive")
    if max_queue < 1:
        raise ValueError("max_queue must be at least 1")
    if max_retries < 0:
        raise ValueError("max_retries must be >= 0")
    if backoff_base < 0 or backoff_max < 0:
        raise ValueError("backoff_base and backoff_max must be >= 0")
    if on_full not in ("raise", "drop"):
        raise ValueError('on_full must be "raise" or "drop"')
    return Config(
        url=bulk_url(base_url),
        headers={
            "Authorization": basic_auth(api_key),
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
        },
        batch_size=batch_size,
        flush_interval=flush_interval,
        max_queue=max_queue,
        timeout=timeout,
        policy=RetryPolicy(max_retries, backoff_base, backoff_max),
        on_full=cast(OnFull, on_full),
    )


def describe(reason: httpx.Response | BaseException) -> str:
    if isinstance(reason, httpx.Response):
        return f"HTTP {reason.status_code}: {reason.text[:300]}"
    return f"{type(reason).__name__}: {reason}"


def log_give_up(events: list[dict[str, Any]], reason: httpx.Response | BaseException) -> None:
    # The uuids let an operator find the events again (and resending them is safe).
    uuids = ", ".join(str(e.get("event_uuid")) for e in events[:5])
    more = f" and {len(events) - 5} more" if len(events) > 5 else ""
    log.warning(
        "gave up on %d event(s) (%s); event_uuid %s%s",
        len(events),
        describe(reason),
        uuids,
        more,
    )


def log_drop(dropped: int, max_queue: int) -> None:
    log.warning(
        "queue full (%d events waiting): event dropped, %d dropped so far", max_queue, dropped
    )
