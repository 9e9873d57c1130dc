"""The Store protocol: the narrow interface every backend implements."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from trackway import metrics
from trackway.domain.batch import AccountPlan, Entry
from trackway.domain.customers import SearchPrefix
from trackway.domain.errors import EventRejected
from trackway.domain.events import AcceptedEvent


@dataclass(frozen=True, slots=True)
class Account:
    id: int
    uuid: str
    name: str
    created_ms: int
    # Set when event verification is on: every event must carry a signature made with it.
    verification_secret: str | None = None


@dataclass(frozen=True, slots=True)
class Credential:
    """What a key opens: an account, as an event key or a user key."""

    account: Account
    kind: str
    key_hash: str


@dataclass(frozen=True, slots=True)
class Rejection:
    """A rejected request of a known account, kept in the error log and counted per day."""

    received_ms: int
    error_type: str
    errors: dict[str, list[str]]
    raw: bytes
    # How `raw` arrived: JSON; or PIXEL, the query string of GET /unity.gif (without its key),
    # with the request's user agent, IP and referrer in `context`.
    source: str = "json"
    context: dict[str, Any] | None = None


JSON = "json"
PIXEL = "pixel"


@dataclass(slots=True)
class IngestResult:
    stored: int = 0
    duplicates: int = 0
    # (index in the call's events, why) of events the store itself refused: an attribute
    # whose type differs from the one its name has (es_index_error). Logged and counted.
    rejected: list[tuple[int, EventRejected]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    body: dict[str, Any]
    user_uuid: str
    received_ms: int
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class CustomerRecord:
    uuid: str
    customer_id: str | None
    email: str | None
    attributes: dict[str, Any]
    subscriptions: dict[str, bool]
    created_ms: int
    updated_ms: int
    # (kind, value) of every identifier pointing at the customer, oldest first.
    identifiers: list[tuple[str, str]]
    # The newest timestamp of its events (see domain/customers.py: ACTIVITY_RESOLUTION_MS).
    seen_ms: int = 0


@dataclass(frozen=True, slots=True)
class CustomerSummary:
    """One row of a customer search: a live profile, and the identifier that matched."""

    id: int  # the row id: with seen_ms, the keyset position
    uuid: str
    customer_id: str | None
    email: str | None
    created_ms: int
    updated_ms: int
    seen_ms: int
    # (kind, value) of the strongest identifier that starts with the search text.
    matched: tuple[str, str] | None = None


@dataclass(frozen=True, slots=True)
class IdentifierSeen:
    kind: str
    value: str
    first_seen_ms: int


@dataclass(frozen=True, slots=True)
class MergedProfile:
    uuid: str
    created_ms: int
    # None for a merge made before Trackway recorded when.
    merged_ms: int | None


@dataclass(frozen=True, slots=True)
class IdentityConflict:
    """An event tied two identified profiles: it stayed on `customer_uuid`, the identifier
    (kind, value) on `other_uuid`."""

    id: int
    received_ms: int
    event_uuid: str
    customer_uuid: str
    other_uuid: str
    kind: str
    value: str


@dataclass(frozen=True, slots=True)
class CustomerDetails:
    """What explains a profile: every identifier with when it was first seen, the profiles
    merged into it, and the newest identity conflicts it is either side of."""

    customer: CustomerRecord
    identifiers: list[IdentifierSeen]
    merged: list[MergedProfile]
    conflicts: list[IdentityConflict]


@dataclass(frozen=True, slots=True)
class TimelineEvent:
    """A customer's event with its keyset position (timestamp_ms, id)."""

    id: int
    event: StoredEvent


@dataclass(frozen=True, slots=True)
class AttributeType:
    """A custom attribute's name and the type its first use fixed for the account."""

    name: str
    type: str
    # When it was fixed; None for a type fixed before Trackway recorded that.
    first_seen_ms: int | None


@dataclass(frozen=True, slots=True)
class ArrivedEvent:
    """An event as the live stream reads it: `id` grows in commit order within an account."""

    id: int
    user_uuid: str
    received_ms: int
    timestamp_ms: int
    body: bytes  # the stored body, as JSON


# The end of time for an open range, in epoch ms (9999-12-31T23:59:59.999Z).
END_OF_TIME_MS = 253402300799999


@dataclass(frozen=True, slots=True)
class ErrorFilter:
    """Which rows of the error log: of one type or all, received in [start_ms, end_ms), and
    replayed (True), pending (False) or both (None)."""

    error_type: str | None = None
    start_ms: int = 0
    end_ms: int = END_OF_TIME_MS
    replayed: bool | None = None


@dataclass(frozen=True, slots=True)
class LoggedError:
    """One row of the error log."""

    id: int
    received_ms: int
    error_type: str
    errors: dict[str, list[str]]
    raw: bytes
    # Set when a replay stored the payload: when, and the uuids of its events (comma-separated).
    replayed_ms: int | None = None
    replayed_event_uuid: str | None = None
    # The last replay attempt, passed or not.
    retried_ms: int | None = None
    # How the payload arrived (Rejection.source, .context); None: logged before rows said.
    source: str | None = None
    context: dict[str, Any] | None = None


class Store(Protocol):
    async def open(self) -> None:
        """Create or migrate the schema and start the writer."""

    async def close(self) -> None:
        """Finish the writes in flight, then release every connection."""

    async def ping(self) -> None:
        """Raise StoreUnavailable when the store cannot answer."""

    async def credential(self, key_hash: str) -> Credential | None: ...

    async def ingest(
        self,
        account: Account,
        events: Sequence[AcceptedEvent],
        rejections: Sequence[Rejection] = (),
    ) -> IngestResult:
        """Store the events (each event_uuid once per account) and log the rejections, in one
        durable transaction shared with every concurrent call; return once committed."""

    async def create_account(
        self, name: str, event_key_hash: str, user_key_hash: str
    ) -> Account: ...

    async def list_accounts(self) -> list[Account]: ...

    async def find_account(self, ref: str) -> Account:
        """By name or uuid; raises AccountNotFound."""

    async def replace_key(
        self, account: Account, kind: str, key_hash: str, grace_ms: int = 0
    ) -> None:
        """A new current key of `kind`; every key of that kind still valid (the current one,
        and any still in an earlier grace period) keeps working at most `grace_ms` more."""

    async def revoke_key(self, account: Account, key_hash: str) -> str | None:
        """The account's key with this hash stops working now; its kind, or None when the
        account has no such key still valid."""

    async def set_verification_secret(self, account: Account, secret: str | None) -> None: ...

    async def event_by_uuid(self, account: Account, event_uuid: str) -> dict[str, Any] | None: ...

    async def count_events(self, account: Account) -> int: ...

    async def daily_event_counts(
        self, account: Account, first_day: str, last_day: str
    ) -> list[tuple[str, str, int]]:
        """(day, event name, count) from the rollup, days inclusive."""

    async def daily_error_counts(
        self, account: Account, first_day: str, last_day: str
    ) -> list[tuple[str, str, int]]:
        """(day, error type, count) from the rollup, days inclusive."""

    async def error_log(self, account: Account, limit: int = 100) -> list[dict[str, Any]]: ...

    async def event_names(self, account: Account) -> list[dict[str, Any]]: ...

    async def update_event_name(
        self,
        account: Account,
        name: str,
        *,
        display_name: str | None = None,
        archived: bool | None = None,
    ) -> bool:
        """Change a registered name; False when the account has no such name."""

    async def attribute_types(self, account: Account) -> list[AttributeType]:
        """Every attribute type fixed for the account, by name (code point order)."""

    async def reset_attribute_type(self, account: Account, name: str) -> AttributeType | None:
        """Forget the type fixed for `name`, so that the next event fixes it anew; the type
        forgotten, or None when none was fixed. A write like any other: on SQLite through the
        writer, on PostgreSQL under the account's exclusive lock (no group commit in flight
        holds the old type meanwhile)."""

    async def hit_rate_window(
        self, account: Account, name: str, window_start: int, keep_after: int
    ) -> int:
        """Count one call in the window starting at `window_start`; return the window's count.
        Windows starting before `keep_after` are forgotten."""

    async def customer_by_identifier(
        self, account: Account, kind: str, value: str
    ) -> CustomerRecord | None: ...

    async def customer_by_uuid(self, account: Account, uuid: str) -> CustomerRecord | None:
        """The customer, or the one it was merged into."""

    async def delete_customer(self, account: Account, uuid: str) -> int | None:
        """Delete a live customer, the profiles merged into it, its identifiers and its events
        (the daily rollups keep their counts); the number of events deleted, or None when the
        account has no such customer."""

    async def customer_events(
        self, account: Account, user_uuid: str, start_ms: int, end_ms: int, limit: int
    ) -> list[StoredEvent]:
        """The latest `limit` events of the customer in [start_ms, end_ms], newest first."""

    async def customer_events_page(
        self, account: Account, user_uuid: str, before: tuple[int, int] | None, limit: int
    ) -> list[TimelineEvent]:
        """Up to `limit` events of the live customer, newest first (timestamp_ms, then id),
        those before the keyset position (timestamp_ms, id) when given; from the (account,
        customer, timestamp) index."""

    async def search_customers(
        self,
        account: Account,
        prefix: SearchPrefix | None,
        before: tuple[int, int] | None,
        limit: int,
    ) -> list[CustomerSummary]:
        """Up to `limit` live customers, newest activity first (seen_ms, then id), those
        before the keyset position (seen_ms, id) when given: every one of the account, or
        those with a customer_id, device_id or cookie that starts with `prefix.exact`, or an
        email whose folded form starts with `prefix.folded`. From index ranges only."""

    async def customer_details(
        self, account: Account, uuid: str, conflicts: int
    ) -> CustomerDetails | None:
        """The customer (or the one it was merged into) and what explains it, with at most
        `conflicts` conflicts, newest first."""

    async def latest_events(self, account: Account, event: str, limit: int) -> list[StoredEvent]:
        """The latest `limit` events of that name, newest first."""

    async def events_page(
        self, account: Account, event: str, after: tuple[int, int], before_ms: int, limit: int
    ) -> list[tuple[int, int, bytes]]:
        """One keyset page of the events of that name, oldest first: up to `limit` events whose
        (timestamp_ms, id) comes after `after` and whose timestamp_ms is before `before_ms`, as
        (timestamp_ms, id, stored body as JSON). Read from the (account, event, timestamp)
        index, so paging through all of them costs one index range per page."""

    # -- the clickstream page: live stream and error log ------------------------------------

    async def latest_event_id(self, account: Account) -> int:
        """A cursor at the account's newest event: every event stored later has a greater id."""

    async def events_since(
        self, account: Account, after_id: int, limit: int, event: str | None = None
    ) -> list[ArrivedEvent]:
        """The newest `limit` events of the account (of that name, when given) whose id is
        greater than `after_id`, oldest first. Cheap when `after_id` is recent: it reads only
        what was stored after it."""

    async def error_page(
        self,
        account: Account,
        where: ErrorFilter,
        before: tuple[int, int] | None,
        limit: int,
    ) -> list[LoggedError]:
        """Up to `limit` rows of the error log, newest first (received_ms, then id), those
        before the keyset cursor (received_ms, id) when one is given."""

    async def count_errors(self, account: Account, where: ErrorFilter, cap: int) -> int:
        """How many rows match, counting at most `cap`."""

    async def errors_by_id(self, account: Account, ids: Sequence[int]) -> list[LoggedError]:
        """The account's rows of those ids (others' ids and unknown ones are left out)."""

    async def record_replays(
        self,
        account: Account,
        replayed: Sequence[tuple[int, str]],
        failed: Sequence[tuple[int, EventRejected]],
        at_ms: int,
    ) -> None:
        """Mark rows replayed, (id, event uuids), or still failing, (id, why: the row takes the
        new error type and messages); rows replayed already are left alone."""


class _HasEvents(Protocol):
    account_id: int
    events: Sequence[AcceptedEvent]
    rejections: Sequence[Rejection]


def entries_by_account(jobs: Sequence[_HasEvents]) -> dict[int, list[Entry]]:
    """The events of a batch's jobs, grouped by account, each with where it came from."""
    grouped: dict[int, list[Entry]] = {}
    for j, job in enumerate(jobs):
        if job.events:
            entries = grouped.setdefault(job.account_id, [])
            entries.extend((j, i, event) for i, event in enumerate(job.events))
    return grouped


def count_outcomes(
    plan: AccountPlan, entries: Sequence[Entry], results: list[IngestResult]
) -> None:
    """Add the plan's stored and duplicate counts to each job's result."""
    stored = {id(event) for event, _ in plan.stored}
    for j, _, event in entries:
        if id(event) in stored:
            results[j].stored += 1
    for j, _, _ in plan.duplicates:
        results[j].duplicates += 1


# Raw bodies kept in the error log are cut at this size.
MAX_RAW_BYTES = 64 * 1024

# account id, received ms, error type, errors (JSON), raw body, source, context (JSON or None)
ErrorLogRow = tuple[int, int, str, bytes, bytes, str, bytes | None]


def error_log_rows(
    jobs: Sequence[_HasEvents],
    plans: Sequence[AccountPlan],
    results: list[IngestResult],
    encode: Callable[[Any], bytes],
) -> list[ErrorLogRow]:
    """The error-log rows of a batch: the events its plans refused (each also recorded on its
    job's result), then the rejections its jobs brought along."""
    rows: list[ErrorLogRow] = []
    for plan in plans:
        for (j, i, event), rejection in plan.rejected:
            results[j].rejected.append((i, rejection))
            rows.append(
                (
                    plan.account_id,
                    event.received_ms,
                    rejection.error_type,
                    encode(rejection.errors),
                    (event.stored or encode(event.body))[:MAX_RAW_BYTES],
                    JSON,
                    None,
                )
            )
    for job in jobs:
        for r in job.rejections:
            context = None if r.context is None else encode(r.context)
            rows.append(
                (job.account_id, r.received_ms, r.error_type, encode(r.errors),
                 r.raw[:MAX_RAW_BYTES], r.source, context)
            )  # fmt: skip
    return rows


def observe_batch(
    jobs: Sequence[_HasEvents], results: Sequence[IngestResult], seconds: float
) -> None:
    """Metrics of one committed group: its size and duration, events stored, duplicates and
    rejections by error type."""
    stored = sum(r.stored for r in results)
    duplicates = sum(r.duplicates for r in results)
    metrics.observe_commit(sum(len(j.events) for j in jobs), stored, duplicates, seconds)
    for job in jobs:
        for rejection in job.rejections:
            metrics.count_rejected(rejection.error_type)
    for result in results:
        for _, rejected in result.rejected:
            metrics.count_rejected(rejected.error_type)
