"""Events as the client queues them, and the delivery of one batch as a sans-I/O generator.

`delivery()` holds every decision about a batch (what an answer means, when to retry, when to
split, what to give up) and yields the I/O it needs, so the thread-based `Client` and the
asyncio `AsyncClient` share one copy of the rules and differ only in how they send and wait.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import httpx

from trackway.client._exceptions import TrackwayClientError
from trackway.client._retry import (
    RetryPolicy,
    is_retryable_exception,
    is_retryable_status,
    parse_retry_after,
)

BULK_PATH = "/api/v1/bulkevents"

# --- events -------------------------------------------------------------------------------


def utc_timestamp(moment: datetime | None = None) -> str:
    """ISO 8601 in UTC with milliseconds and a Z: '2024-06-24T04:53:54.123Z'."""
    moment = (moment or datetime.now(UTC)).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return utc_timestamp(value) if value.tzinfo else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def encode_event(event: str, fields: Mapping[str, Any]) -> tuple[str, bytes]:
    """(event_uuid, JSON bytes) of one event, stamped now.

    The uuid and timestamp are fixed here, at track() time, so that every retry of the event
    carries the same ones and the server stores it once. Encoding here too means a value that
    is not JSON fails in the caller's thread, and later changes to the caller's dicts do not
    reach the queue.
    """
    if not isinstance(event, str) or not event.strip():
        raise ValueError("event must be a non-empty string")
    body: dict[str, Any] = {"event": event, **fields}
    event_uuid = body.get("event_uuid")
    if event_uuid is None:
        event_uuid = body["event_uuid"] = str(uuid.uuid4())
    elif isinstance(event_uuid, uuid.UUID):
        event_uuid = body["event_uuid"] = str(event_uuid)
    if body.get("timestamp") is None:
        body["timestamp"] = utc_timestamp()
    # NaN and Infinity are not JSON: the server would refuse the whole batch.
    data = json.dumps(
        body, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_json_default
    ).encode()
    return str(event_uuid), data


def bulk_body(events: Sequence[bytes]) -> bytes:
    return b'{"events":[' + b",".join(events) + b"]}"


def decode_events(events: Sequence[bytes]) -> list[dict[str, Any]]:
    return [json.loads(e) for e in events]


def bulk_url(base_url: str) -> str:
    return base_url.rstrip("/") + BULK_PATH


# --- what an answer means -----------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """What one reply (a response or an exception) means for the batch that was sent."""

    kind: str  # "ok" | "partial" | "too_large" | "retry" | "fatal"
    rejected: tuple[int, ...] = ()
    retry_after: float | None = None


def read_answer(reply: httpx.Response | BaseException, size: int) -> Answer:
    if isinstance(reply, BaseException):
        return Answer("retry") if is_retryable_exception(reply) else Answer("fatal")
    status = reply.status_code
    if 200 <= status < 300:
        return Answer("ok")
    if status == 400:
        rejected = partial_rejections(reply, size)
        return Answer("partial", rejected) if rejected is not None else Answer("fatal")
    if status == 413:
        return Answer("too_large")
    if is_retryable_status(status):
        return Answer("retry", retry_after=parse_retry_after(reply.headers.get("retry-after")))
    return Answer("fatal")


def partial_rejections(response: httpx.Response, size: int) -> tuple[int, ...] | None:
    """Indices of the events a 400 `{"status": "partial", "errors": [{"index": …}]}` refused;
    None when the 400 is not that answer (then nothing is known to be stored)."""
    try:
        payload = response.json()
    except ValueError:
        return None
    if not isinstance(payload, dict) or payload.get("status") != "partial":
        return None
    errors = payload.get("errors")
    if not isinstance(errors, list):
        return None
    indices: set[int] = set()
    for error in errors:
        index = error.get("index") if isinstance(error, dict) else None
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < size:
            return None
        indices.add(index)
    return tuple(sorted(indices))


# --- the delivery of one batch ------------------------------------------------------------


@dataclass(frozen=True)
class Send:
    """POST `body` (`count` events); reply with the httpx.Response or the exception raised."""

    body: bytes
    count: int


@dataclass(frozen=True)
class Wait:
    """Sleep `seconds` before a retry; reply True if the client was closed meanwhile."""

    seconds: float


@dataclass(frozen=True)
class Delivered:
    """`count` events are stored (or were already: same event_uuid)."""

    count: int


@dataclass(frozen=True)
class GiveUp:
    """These events will not be sent; hand them to on_error (or log them)."""

    events: list[dict[str, Any]]
    reason: httpx.Response | BaseException


Step = Send | Wait | Delivered | GiveUp
Delivery = Generator[Step, Any, None]

CLOSED = TrackwayClientError("the client was closed before these events could be sent")


def delivery(events: Sequence[bytes], policy: RetryPolicy) -> Delivery:
    """Send `events` as one bulk request, retrying, splitting and giving up as needed.

    - 2xx: delivered.
    - 400 partial: the accepted ones are delivered, the rejected ones (by index) given up with
      the response; never retried, since the same events would be refused again.
    - 413 (too many events or too large a body): nothing was stored; split the batch in two
      and send each half; a single event that is still too large is given up.
    - 429, 5xx, connection errors and timeouts: retried after `policy.delay()`, with the same
      body, so an attempt whose answer was lost is deduplicated by event_uuid on the server.
    - anything else (401, 403, other 4xx): given up at once.
    """
    pending: list[list[bytes]] = [list(events)]
    while pending:
        batch = pending.pop()
        attempt = 0
        while True:
            reply = yield Send(bulk_body(batch), len(batch))
            answer = read_answer(reply, len(batch))
            if answer.kind == "ok":
                yield Delivered(len(batch))
                break
            if answer.kind == "partial":
                rejected = set(answer.rejected)
                if len(rejected) < len(batch):
                    yield Delivered(len(batch) - len(rejected))
                yield GiveUp(decode_events([batch[i] for i in answer.rejected]), reply)
                break
            if answer.kind == "too_large" and len(batch) > 1:
                half = (len(batch) + 1) // 2
                # A stack: the first half goes out first, so order is kept.
                pending.append(batch[half:])
                pending.append(batch[:half])
                break
            if answer.kind == "retry":
                delay = policy.delay(attempt, answer.retry_after)
                if delay is not None:
                    closed = yield Wait(delay)
                    if closed:
                        rest = [e for b in reversed(pending) for e in b]
                        yield GiveUp(decode_events(batch + rest), CLOSED)
                        return
                    attempt += 1
                    continue
            yield GiveUp(decode_events(batch), reply)
            break
