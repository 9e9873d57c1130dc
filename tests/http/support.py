"""Helpers of the read-API tests (customers, show_events, history, summary, bulk): send events
as a real client would, read them back through the API, and compute expected values without
importing the code under test."""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
from conftest import Account, basic

EVENT_URL = "/api/v1/event"
BULK_URL = "/api/v1/bulkevents"
CUSTOMERS_URL = "/api/v1/customers"
SHOW_EVENTS_URL = "/api/v1/customer_search/show_events"
HISTORY_URL = "/api/v1/event/history"
SUMMARY_URL = "/api/v1/event/summary.json"

OK = {"status": "OK"}
NOT_AUTHORIZED = {"message": "Not authorized"}
PERMISSION_DENIED = {"message": "Permission denied"}
CUSTOMER_NOT_FOUND = {"message": "Customer not found"}
EVENT_NOT_FOUND = {"message": "Event not found"}
RATE_LIMITED = {"message": "Rate limit exceeded"}
BLANK = ["can't be blank"]
NOT_VALID = ["is not valid"]
NO_IDENTIFIER = ["customer_id, email, device_id or cookie must be present"]

UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
ISO_MS_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
DAY_MS = 86_400_000

# The sixteen error types of the summary page (seed 003), in its order.
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

FIREFOX_126_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:126.0) Gecko/20100101 Firefox/126.0"
)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def iso_ms(ms: int) -> str:
    """Epoch ms → '2021-06-24T04:53:54.123Z', the API's format of instants it generates."""
    seconds, millis = divmod(ms, 1000)
    return f"{datetime.fromtimestamp(seconds, UTC):%Y-%m-%dT%H:%M:%S}.{millis:03d}Z"


def epoch_ms(text: str) -> int:
    """'2021-06-24T04:53:54.123Z' (or without fraction) → epoch ms."""
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return round(parsed.timestamp() * 1000)


def utc_day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d")


def md5_email(email: str) -> str:
    return hashlib.md5(email.lower().encode()).hexdigest()


def unique(prefix: str = "x") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def canonical(value: Any) -> str:
    """JSON text that tells 1 from 1.0 and true from 1, for exact comparisons."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def send(client: httpx.Client, account: Account, body: dict[str, Any]) -> str:
    """POST one event with the account's event key, expect 200; return its event_uuid."""
    body = dict(body)
    body.setdefault("event_uuid", str(uuid.uuid4()))
    response = client.post(EVENT_URL, json=body, headers=basic(account.event_key))
    assert response.status_code == 200, response.text
    assert response.json() == OK
    return str(body["event_uuid"])


def send_raw(client: httpx.Client, account: Account, body: Any) -> httpx.Response:
    """POST one event (a dict as JSON, bytes as they are), whatever the answer."""
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {**basic(account.event_key), "Content-Type": "application/json"}
    return client.post(EVENT_URL, content=content, headers=headers)


def bulk(
    client: httpx.Client, key: str, events: Any, *, headers: dict[str, str] | None = None
) -> httpx.Response:
    """POST /api/v1/bulkevents: a list is wrapped as {"events": [...]}, bytes go as they are,
    anything else is sent as its JSON."""
    if isinstance(events, bytes):
        content = events
    elif isinstance(events, list):
        content = json.dumps({"events": events}).encode()
    else:
        content = json.dumps(events).encode()
    all_headers = {
        "Content-Type": "application/json",
        **(basic(key) if headers is None else headers),
    }
    return client.post(BULK_URL, content=content, headers=all_headers)


def bulk_ok(client: httpx.Client, account: Account, events: list[dict[str, Any]]) -> list[str]:
    """Send events in bulk with uuids, expect 200 for all; return their event_uuids."""
    events = [{"event_uuid": str(uuid.uuid4()), **e} for e in events]
    response = bulk(client, account.event_key, events)
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ok", "count": len(events)}
    return [e["event_uuid"] for e in events]


def find_customer(client: httpx.Client, account: Account, **identifier: str) -> httpx.Response:
    return client.get(CUSTOMERS_URL, params=identifier, headers=basic(account.user_key))


def customer(client: httpx.Client, account: Account, **identifier: str) -> dict[str, Any]:
    """The customer document one identifier finds (expects 200)."""
    response = find_customer(client, account, **identifier)
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()["customer"]
    return document


def customer_uuid(client: httpx.Client, account: Account, **identifier: str) -> str:
    return str(customer(client, account, **identifier)["uuid"])


def show_events(
    client: httpx.Client, account: Account, uuid_: str | None, **params: Any
) -> httpx.Response:
    if uuid_ is not None:
        params["uuid"] = uuid_
    return client.get(SHOW_EVENTS_URL, params=params, headers=basic(account.user_key))


def timeline(client: httpx.Client, account: Account, uuid_: str, **params: Any) -> list[Any]:
    response = show_events(client, account, uuid_, **params)
    assert response.status_code == 200, response.text
    events: list[Any] = response.json()
    return events


def summary(client: httpx.Client, account: Account, **params: Any) -> dict[str, Any]:
    response = client.post(SUMMARY_URL, params=params, headers=basic(account.user_key))
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


def zero_errors(buckets: int) -> dict[str, list[int]]:
    return {error_type: [0] * buckets for error_type in ERROR_TYPES}


def avoid_hour_boundary(margin_seconds: float = 15.0) -> None:
    """Rate limits count per clock hour: do not start a burst of calls just before the hour
    turns, or it would be split over two windows."""
    left = 3600 - time.time() % 3600
    if left < margin_seconds:
        time.sleep(left + 0.5)
