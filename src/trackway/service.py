"""The use cases, independent of HTTP: authenticate a key, ingest events, answer the reads."""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from trackway.domain import customers, reads
from trackway.domain.enrich import history_document, timeline_document
from trackway.domain.errors import (
    EventRejected,
    InvalidRequest,
    NotFound,
    RateLimited,
    StoreUnavailable,
    TooManyEvents,
)
from trackway.domain.events import (
    NOT_AN_OBJECT,
    AcceptedEvent,
    decode_event_body,
    encode_json,
    parse_json_object,
    validate_event,
)
from trackway.domain.identity import email_hash
from trackway.domain.keys import hash_key
from trackway.domain.ratelimit import TokenBuckets, retry_after_seconds
from trackway.domain.timestamps import format_ms, now_ms
from trackway.settings import Settings
from trackway.store.base import (
    PIXEL,
    Account,
    AttributeType,
    Credential,
    CustomerDetails,
    CustomerRecord,
    CustomerSummary,
    IngestResult,
    Rejection,
    Store,
)

log = logging.getLogger("trackway.service")

# How long a key lookup is trusted in this process: a rotated key stops working within it.
CREDENTIAL_TTL_SECONDS = 5.0
CREDENTIAL_CACHE_SIZE = 10_000
HOUR_MS = 3_600_000
CUSTOMER_LOOKUP_KINDS = ("customer_id", "email", "email_hash", "device_id", "cookie")


@dataclass(frozen=True, slots=True)
class BulkError:
    index: int
    event_uuid: str | None
    errors: dict[str, list[str]]


@dataclass(frozen=True, slots=True)
class BulkResult:
    count: int
    errors: list[BulkError]


class Trackway:
    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        # A token (raw Authorization value, or key) → (valid until, its credential or None).
        self.credentials: dict[bytes | str | None, tuple[float, Credential | None]] = {}
        limit = settings.ingest_rate_limit
        # Each worker process holds its share of the limit: no shared state on the hot path.
        self._ingest_rate = TokenBuckets(limit / settings.workers) if limit > 0 else None
        self.max_ahead_ms = settings.max_ahead_ms
        self.max_attributes = settings.max_event_attributes

    def check_ingest_rate(self, account: Account, events: int) -> None:
        if self._ingest_rate is not None:
            wait = self._ingest_rate.take(account.id, events)
            if wait:
                raise RateLimited(retry_after_seconds(wait))

    async def credential_for(
        self, token: bytes | str | None, parse: Callable[[Any], str | None]
    ) -> Credential | None:
        """The account and kind that the key in `token` opens (`parse` finds the key: the raw
        Authorization value of a request, a pixel's `x`), or None; remembered under the token
        itself for CREDENTIAL_TTL_SECONDS, negatives too, so that a repeated header costs one
        dictionary lookup (`cached_credential`) and garbage does not reach the store each time.
        A rotated or expired key stops working within that time."""
        entry = self.credentials.get(token)
        now = time.monotonic()
        if entry is not None and entry[0] > now:
            return entry[1]
        key = parse(token)
        credential = None
        if key:
            key_hash = hash_key(key)
            found = await self.store.credential(key_hash)
            if found is not None and hmac.compare_digest(found.key_hash, key_hash):
                credential = found
        if len(self.credentials) >= CREDENTIAL_CACHE_SIZE:
            self.credentials.clear()
        self.credentials[token] = (now + CREDENTIAL_TTL_SECONDS, credential)
        return credential

    async def credential_for_key(self, key: str) -> Credential | None:
        return await self.credential_for(key, _same)

    async def ingest_event(self, account: Account, raw: bytes) -> IngestResult:
        """Validate one event body and store it durably; a rejection is logged and counted,
        then raised as EventRejected."""
        if self._ingest_rate is not None:
            self.check_ingest_rate(account, 1)
        received = now_ms()
        try:
            event = decode_event_body(
                raw,
                received,
                account.verification_secret,
                max_ahead_ms=self.max_ahead_ms,
                max_attributes=self.max_attributes,
            )
        except EventRejected as rejected:
            await self.log_rejections(
                account, [Rejection(received, rejected.error_type, rejected.errors, raw)]
            )
            raise
        result = await self.store.ingest(account, [event])
        if result.rejected:
            raise result.rejected[0][1]
        return result

    async def ingest_pixel(
        self,
        account: Account,
        body: dict[str, Any],
        raw: bytes,
        context: dict[str, Any] | None = None,
    ) -> None:
        """GET /unity.gif: one event from the pixel's parameters; the browser gets its GIF
        whatever happens, so a rejection is only logged and counted, with the query (`raw`)
        and the request's user agent, IP and referrer (`context`), so that it can be replayed
        as it came."""
        received = now_ms()
        try:
            self.check_ingest_rate(account, 1)
        except RateLimited:
            log.info("pixel event of account %s dropped: over the ingest rate limit", account.name)
            return
        try:
            event = validate_event(
                body,
                received,
                account.verification_secret,
                max_ahead_ms=self.max_ahead_ms,
                max_attributes=self.max_attributes,
            )
        except EventRejected as rejected:
            await self.log_rejections(
                account,
                [Rejection(received, rejected.error_type, rejected.errors, raw, PIXEL, context)],
            )
            return
        await self.store.ingest(account, [event])

    async def ingest_bulk(self, account: Account, raw: bytes) -> BulkResult:
        """POST /api/v1/bulkevents: each event under the single-event rules; the valid ones
        are stored, every rejected one logged and counted like a single one."""
        received = now_ms()
        try:
            body = parse_json_object(raw)
        except EventRejected as rejected:
            await self.log_rejections(
                account, [Rejection(received, rejected.error_type, rejected.errors, raw)]
            )
            raise
        items = body.get("events")
        if not isinstance(items, list):
            no_array = EventRejected("parsing_error", {"events": ["must be an array of events"]})
            await self.log_rejections(
                account, [Rejection(received, no_array.error_type, no_array.errors, raw)]
            )
            raise no_array
        if len(items) > self.settings.max_bulk_events:
            raise TooManyEvents(self.settings.max_bulk_events)
        self.check_ingest_rate(account, len(items))
        accepted: list[AcceptedEvent] = []
        positions: list[int] = []
        errors: list[BulkError] = []
        rejections: list[Rejection] = []
        for index, item in enumerate(items):
            try:
                if not isinstance(item, dict):
                    # Like the same item sent alone to /api/v1/event.
                    raise EventRejected("parsing_error", {"body": [NOT_AN_OBJECT]})
                accepted.append(
                    validate_event(
                        item,
                        received,
                        account.verification_secret,
                        max_ahead_ms=self.max_ahead_ms,
                        max_attributes=self.max_attributes,
                    )
                )
                positions.append(index)
            except EventRejected as rejected:
                uuid = item.get("event_uuid") if isinstance(item, dict) else None
                errors.append(
                    BulkError(index, uuid if isinstance(uuid, str) else None, rejected.errors)
                )
                rejections.append(
                    Rejection(received, rejected.error_type, rejected.errors, encode_json(item))
                )
        result = await self.store.ingest(account, accepted, rejections)
        for position, refused in result.rejected:
            event = accepted[position]
            errors.append(BulkError(positions[position], event.event_uuid, refused.errors))
        errors.sort(key=lambda e: e.index)
        return BulkResult(count=len(accepted) - len(result.rejected), errors=errors)

    async def log_rejections(self, account: Account, rejections: Sequence[Rejection]) -> None:
        # The client gets its 400 even when the log cannot be written; the fault is logged.
        try:
            await self.store.ingest(account, (), rejections)
        except StoreUnavailable as exc:
            log.warning("could not log %d rejected event(s): %s", len(rejections), exc)

    # -- reads ---------------------------------------------------------------------------

    async def find_customer(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        """The customer one identifier names (customer_id, email, email_hash, device_id or
        cookie); the first given, in that order, is used."""
        for kind in CUSTOMER_LOOKUP_KINDS:
            value = params.get(kind)
            if value:
                break
        else:
            raise InvalidRequest(
                {"base": ["customer_id, email, email_hash, device_id or cookie must be present"]}
            )
        value = str(value).strip()
        if kind == "email":
            kind, value = "email_hash", email_hash(value)
        elif kind == "email_hash":
            value = value.lower()
        customer = await self.store.customer_by_identifier(account, kind, value)
        if customer is None:
            raise NotFound("Customer not found")
        return customer_document(customer)

    async def customer_by_uuid(self, account: Account, uuid: str) -> dict[str, Any]:
        """The profile and what explains it: identifiers with when each was first seen, the
        profiles merged into it, its newest identity conflicts."""
        details = await self.store.customer_details(
            account, uuid.strip().lower(), customers.CONFLICTS_SHOWN
        )
        if details is None:
            raise NotFound("Customer not found")
        return details_document(details)

    async def search_customers(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        """Customers whose customer_id, email, device_id or cookie starts with `q` (every
        customer without it), newest activity first, one keyset page."""
        prefix = customers.parse_query(params.get("q"))
        limit = reads.parse_limit(
            params.get("limit"), default=customers.SEARCH_DEFAULT, maximum=customers.SEARCH_MAX
        )
        before = customers.decode_cursor(params.get("cursor"), "cursor")
        rows = await self.store.search_customers(account, prefix, before, limit + 1)
        page, more = customers.page_of(rows, limit)
        last = page[-1] if more else None
        return {
            "customers": [summary_document(c) for c in page],
            "next": None if last is None else customers.encode_cursor((last.seen_ms, last.id)),
        }

    async def customer_events_page(
        self, account: Account, uuid: str, params: dict[str, Any]
    ) -> dict[str, Any]:
        """A customer's timeline, newest first, one keyset page; a merged-away uuid answers
        with the profile that took it over. Not counted against show_events' hourly calls."""
        limit = reads.parse_limit(
            params.get("limit"),
            default=customers.TIMELINE_PAGE_DEFAULT,
            maximum=customers.TIMELINE_PAGE_MAX,
        )
        before = customers.decode_cursor(params.get("before"), "before")
        customer = await self.store.customer_by_uuid(account, uuid.strip().lower())
        if customer is None:
            raise NotFound("Customer not found")
        rows = await self.store.customer_events_page(account, customer.uuid, before, limit + 1)
        page, more = customers.page_of(rows, limit)
        last = page[-1] if more else None
        return {
            "uuid": customer.uuid,
            "events": [
                timeline_document(
                    t.event.body,
                    account_uuid=account.uuid,
                    user_uuid=t.event.user_uuid,
                    received_ms=t.event.received_ms,
                    timestamp_ms=t.event.timestamp_ms,
                )
                for t in page
            ],
            "next": None
            if last is None
            else customers.encode_cursor((last.event.timestamp_ms, last.id)),
        }

    async def delete_customer(self, account: Account, uuid: str) -> dict[str, Any]:
        """Privacy deletion: the customer, its identifiers and events go; rollup counts stay;
        later events with the same identifiers make a new customer."""
        deleted = await self.store.delete_customer(account, uuid.strip().lower())
        if deleted is None:
            raise NotFound("Customer not found")
        return {"status": "ok", "uuid": uuid.strip().lower(), "events_deleted": deleted}

    async def customer_timeline(self, account: Account, params: dict[str, Any]) -> list[Any]:
        """show_events: the latest `limit` events of a customer in range, oldest first;
        `show_events_per_hour` calls an hour per account, counted in the store."""
        uuid = params.get("uuid")
        if not uuid or not str(uuid).strip():
            raise InvalidRequest({"uuid": ["can't be blank"]})
        start, end = reads.timeline_range(
            params.get("timestamp_start"), params.get("timestamp_end")
        )
        limit = reads.parse_limit(
            params.get("limit"), default=reads.TIMELINE_DEFAULT, maximum=reads.TIMELINE_MAX
        )
        await self._count_call(account, "show_events", self.settings.show_events_per_hour)
        customer = await self.store.customer_by_uuid(account, str(uuid).strip().lower())
        if customer is None:
            raise NotFound("Customer not found")
        events = await self.store.customer_events(account, customer.uuid, start, end, limit)
        return [
            timeline_document(
                e.body,
                account_uuid=account.uuid,
                user_uuid=e.user_uuid,
                received_ms=e.received_ms,
                timestamp_ms=e.timestamp_ms,
            )
            for e in reversed(events)
        ]

    async def event_history(
        self, account: Account, params: dict[str, Any], query: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The latest events of one name, newest first. `query`: parameters a body overrode,
        checked too."""
        if query:
            reads.check_history_parameters(query)
        name = reads.history_name(params.get("event_name"))
        limit = reads.parse_limit(
            params.get("limit"), default=reads.HISTORY_MAX, maximum=reads.HISTORY_MAX
        )
        events = await self.store.latest_events(account, name, limit)
        if not events:
            raise NotFound("Event not found")
        return {
            name: [
                history_document(
                    e.body,
                    account_uuid=account.uuid,
                    user_uuid=e.user_uuid,
                    received_ms=e.received_ms,
                    timestamp_ms=e.timestamp_ms,
                )
                for e in events
            ]
        }

    async def summary(
        self, account: Account, params: dict[str, Any], query: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        if query:
            reads.check_summary_bounds(query)
        start, end = reads.summary_range(
            params.get("timestamp_start"), params.get("timestamp_end"), now_ms()
        )
        first, last = reads.days_of(start, end)[0], reads.days_of(start, end)[-1]
        first_day, last_day = first.strftime("%Y-%m-%d"), last.strftime("%Y-%m-%d")
        event_counts = await self.store.daily_event_counts(account, first_day, last_day)
        error_counts = await self.store.daily_error_counts(account, first_day, last_day)
        names = await self.store.event_names(account)
        return reads.summary_document(start, end, event_counts, error_counts, names)

    # -- attribute types -----------------------------------------------------------------

    async def attribute_types(self, account: Account) -> dict[str, Any]:
        """GET /api/v1/attributes: every type fixed by first use, by name."""
        return {
            "attributes": [attribute_document(a) for a in await self.store.attribute_types(account)]
        }

    async def reset_attribute_type(self, account: Account, name: str) -> dict[str, Any]:
        """Forget a fixed type: the next event that carries the name fixes it anew."""
        forgotten = await self.store.reset_attribute_type(account, name)
        if forgotten is None:
            raise NotFound("Attribute not found")
        return {"status": "ok", **attribute_document(forgotten)}

    async def _count_call(self, account: Account, name: str, per_hour: int) -> None:
        now = now_ms()
        window = now - now % HOUR_MS
        count = await self.store.hit_rate_window(account, name, window, window - HOUR_MS)
        if count > per_hour:
            raise RateLimited(retry_after=max(1, -(-(window + HOUR_MS - now) // 1000)))


def customer_document(customer: CustomerRecord) -> dict[str, Any]:
    """The profile: its identify attributes at the top (where the document's own fields do
    not use their names) and all of them, as sent, under `attributes`."""
    doc: dict[str, Any] = dict(customer.attributes)
    doc.update(
        uuid=customer.uuid,
        customer_id=customer.customer_id,
        email=customer.email,
        emails=[v for k, v in customer.identifiers if k == "email"],
        device_ids=[v for k, v in customer.identifiers if k == "device_id"],
        cookies=[v for k, v in customer.identifiers if k == "cookie"],
        subscription_groups=dict(customer.subscriptions),
        attributes=dict(customer.attributes),
        created_at=format_ms(customer.created_ms),
        updated_at=format_ms(customer.updated_ms),
    )
    return doc


def summary_document(customer: CustomerSummary) -> dict[str, Any]:
    """One search result: the profile's names and times, and the identifier that matched."""
    matched = customer.matched
    return {
        "uuid": customer.uuid,
        "customer_id": customer.customer_id,
        "email": customer.email,
        "matched": None if matched is None else {"kind": matched[0], "value": matched[1]},
        "last_seen_at": format_ms(customer.seen_ms),
        "created_at": format_ms(customer.created_ms),
        "updated_at": format_ms(customer.updated_ms),
    }


def details_document(details: CustomerDetails) -> dict[str, Any]:
    """The profile document, and what explains it."""
    doc = customer_document(details.customer)
    doc.update(
        last_seen_at=format_ms(details.customer.seen_ms),
        identifiers=[
            {"kind": i.kind, "value": i.value, "first_seen_at": format_ms(i.first_seen_ms)}
            for i in details.identifiers
        ],
        merged_profiles=[
            {
                "uuid": m.uuid,
                "created_at": format_ms(m.created_ms),
                "merged_at": None if m.merged_ms is None else format_ms(m.merged_ms),
            }
            for m in details.merged
        ],
        conflicts=[
            {
                "kind": c.kind,
                "value": c.value,
                "event_uuid": c.event_uuid,
                "at": format_ms(c.received_ms),
                # The event stayed on `customer_uuid`; the identifier is `holder_uuid`'s.
                "customer_uuid": c.customer_uuid,
                "holder_uuid": c.other_uuid,
            }
            for c in details.conflicts
        ],
    )
    return doc


def _same(key: str) -> str:
    return key


def attribute_document(attribute: AttributeType) -> dict[str, Any]:
    first_seen = attribute.first_seen_ms
    return {
        "name": attribute.name,
        "type": attribute.type,
        "first_seen_at": None if first_seen is None else format_ms(first_seen),
    }
