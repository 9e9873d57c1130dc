"""When to try a batch again, and how long to wait first. Pure functions, no I/O."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

# Failures after which the same request may well succeed. Not UnsupportedProtocol or
# LocalProtocolError: those are our own mistakes and will fail the same way again.
RETRYABLE_EXCEPTIONS: tuple[type[BaseException], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
    httpx.ProxyError,
)


def is_retryable_status(status: int) -> bool:
    """429 (rate limited) and every 5xx; never another 4xx."""
    return status == 429 or 500 <= status <= 599


def is_retryable_exception(exc: BaseException) -> bool:
    return isinstance(exc, RETRYABLE_EXCEPTIONS)


def backoff_delay(
    attempt: int,
    base: float,
    cap: float,
    *,
    uniform: Callable[[], float] = random.random,
) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**attempt)].

    `attempt` counts retries from 0 (the wait before the first retry). Full jitter spreads
    clients that failed together, so that they do not all come back at the same instant.
    """
    if attempt < 0:
        raise ValueError("attempt must be >= 0")
    # 2**attempt overflows a float long before it matters; cap the exponent instead.
    ceiling = min(cap, base * 2.0 ** min(attempt, 64))
    return uniform() * ceiling


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); None when
    absent or unreadable. Never negative."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds or seconds == float("inf"):
        return None
    return max(0.0, seconds)


@dataclass(frozen=True)
class RetryPolicy:
    """`max_retries` retries after the first attempt, waiting `backoff_delay` before each, or
    the server's Retry-After when it sent one, capped at `backoff_max` either way."""

    max_retries: int = 5
    backoff_base: float = 0.5
    backoff_max: float = 30.0

    def delay(
        self,
        attempt: int,
        retry_after: float | None = None,
        *,
        uniform: Callable[[], float] = random.random,
    ) -> float | None:
        """Seconds to wait before retry number `attempt` (from 0), or None when the retries
        are spent."""
        if attempt >= self.max_retries:
            return None
        if retry_after is not None:
            # The server knows best when it can take the batch; still, one answer must not
            # park the client longer than its own cap.
            return min(retry_after, self.backoff_max)
        return backoff_delay(attempt, self.backoff_base, self.backoff_max, uniform=uniform)
