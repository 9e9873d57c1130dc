"""The error log as people use it: filtered pages, downloads (CSV, NDJSON) and replay.

Replay resubmits stored payloads through today's rules (the account's current settings, the
validation of domain/events.py) and stores those that pass with the store's one ingest call,
so identity resolution, dedup by event_uuid and the rollups are those of every other event.
A payload without an event_uuid gets one derived from its row, so a replay repeated after a
crash between storing and marking stores nothing twice.
"""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, BinaryIO

import msgspec

from trackway.domain.errors import EventRejected, InvalidRequest
from trackway.domain.events import (
    ERROR_TYPES,
    MAX_AHEAD_MS,
    MAX_EVENT_ATTRIBUTES,
    AcceptedEvent,
    parse_json_object,
    validate_event,
)
from trackway.domain.pixel import pixel_body, pixel_parameters
from trackway.domain.timestamps import format_ms, now_ms
from trackway.store.base import JSON, PIXEL, Account, ErrorFilter, LoggedError, Store

PAGE_DEFAULT = 200
PAGE_MAX = 1000
EXPORT_PAGE = 1000
COUNT_CAP = 100_000
# Rows resubmitted per store call (one group commit).
REPLAY_CHUNK = 500
MAX_REPLAY_IDS = 10_000
# The list shows the start of each payload; GET /api/v1/errors/{id} and the downloads give it all.
RAW_PREVIEW_CHARS = 2000
DAY_MS = 86_400_000
FORMATS = ("json", "csv", "ndjson")
CSV_COLUMNS = (
    "id",
    "received_at",
    "error_type",
    "errors",
    "raw",
    "status",
    "replayed_at",
    "replayed_event_uuid",
)
# Payloads without an event_uuid replay under uuid5(this, "<account uuid>/<row id>/<index>").
REPLAY_NAMESPACE = uuid.UUID("5b0d7f3e-3c56-4a55-9d0c-0e0a9c1f7e21")

_DAY_RE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_CURSOR_RE = re.compile(r"(\d{1,16}):(\d{1,19})", re.ASCII)
_encode = msgspec.json.Encoder().encode


# -- parameters --------------------------------------------------------------------------


def error_filter(params: dict[str, Any], *, replayed_default: bool | None = None) -> ErrorFilter:
    """`type` (one of the sixteen), `day` (YYYY-MM-DD, UTC) and `status` (pending, replayed or
    all) of a request; 400 naming the bad one."""
    errors: dict[str, list[str]] = {}
    error_type = _text(params.get("type"))
    if error_type is not None and error_type not in ERROR_TYPES:
        errors["type"] = ["is not an error type"]
    start_ms, end_ms = ErrorFilter().start_ms, ErrorFilter().end_ms
    day = _text(params.get("day"))
    if day is not None:
        try:
            if not _DAY_RE.fullmatch(day):
                raise ValueError(day)
            start_ms = int(datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC).timestamp())
            start_ms *= 1000
            end_ms = start_ms + DAY_MS
        except ValueError:
            errors["day"] = ["must be a day as YYYY-MM-DD"]
    status = _text(params.get("status"))
    replayed = replayed_default
    if status is not None:
        states = {"pending": False, "replayed": True, "all": None}
        if status not in states:
            errors["status"] = ["must be pending, replayed or all"]
        else:
            replayed = states[status]
    if errors:
        raise InvalidRequest(errors)
    return ErrorFilter(error_type, start_ms, end_ms, replayed)


def page_cursor(raw: Any) -> tuple[int, int] | None:
    """`before`: the `next` of the previous page, "<received_ms>:<id>"."""
    text = _text(raw)
    if text is None:
        return None
    match = _CURSOR_RE.fullmatch(text)
    if match is None:
        raise InvalidRequest({"before": ["is not a cursor this API gave"]})
    return int(match.group(1)), int(match.group(2))


def page_limit(raw: Any) -> int:
    text = _text(raw)
    if text is None:
        return PAGE_DEFAULT
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= PAGE_MAX:
        raise InvalidRequest({"limit": [f"must be between 1 and {PAGE_MAX}"]})
    return int(text)


def export_format(raw: Any) -> str:
    text = _text(raw) or "json"
    if text not in FORMATS:
        raise InvalidRequest({"format": ["must be json, csv or ndjson"]})
    return text


def replay_ids(raw: Any) -> list[int] | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        raw = [part for part in raw.split(",") if part.strip()]
    if not isinstance(raw, list) or not raw or len(raw) > MAX_REPLAY_IDS:
        raise InvalidRequest({"ids": [f"must be a list of 1 to {MAX_REPLAY_IDS} error ids"]})
    ids = []
    for item in raw:
        text = str(item).strip()
        if isinstance(item, bool) or not isinstance(item, int | str) or not _digits(text):
            raise InvalidRequest({"ids": ["must be a list of error ids (integers)"]})
        if len(text) > 18:
            continue  # no row has such an id
        ids.append(int(text))
    return ids


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


# -- documents ---------------------------------------------------------------------------


def row_source(row: LoggedError) -> str:
    """How the row's payload arrived, and so how a replay reads it."""
    if row.source is not None:
        return row.source
    return PIXEL if _legacy_pixel_row(row.raw) else JSON


def raw_text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def error_document(row: LoggedError, *, preview: bool = False) -> dict[str, Any]:
    text = raw_text(row.raw)
    doc: dict[str, Any] = {
        "id": row.id,
        "received_at": format_ms(row.received_ms),
        "error_type": row.error_type,
        "errors": row.errors,
        "raw": text,
        "status": "pending" if row.replayed_ms is None else "replayed",
        "replayed_at": None if row.replayed_ms is None else format_ms(row.replayed_ms),
        "replayed_event_uuid": row.replayed_event_uuid,
        "retried_at": None if row.retried_ms is None else format_ms(row.retried_ms),
        "source": row_source(row),
        "context": row.context,
    }
    if preview:
        doc["raw"] = text[:RAW_PREVIEW_CHARS]
        doc["raw_truncated"] = len(text) > RAW_PREVIEW_CHARS
    return doc


def csv_cell(value: str) -> str:
    # A cell that starts like a formula would run in a spreadsheet: keep it text.
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def csv_header() -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow(CSV_COLUMNS)
    return out.getvalue().encode("utf-8")


def csv_rows(rows: Iterable[LoggedError]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    for row in rows:
        doc = error_document(row)
        writer.writerow(
            [
                doc["id"],
                doc["received_at"],
                doc["error_type"],
                _encode(doc["errors"]).decode(),
                csv_cell(doc["raw"]),
                doc["status"],
                doc["replayed_at"] or "",
                doc["replayed_event_uuid"] or "",
            ]
        )
    return out.getvalue().encode("utf-8")


def ndjson_rows(rows: Iterable[LoggedError]) -> bytes:
    return b"".join(_encode(error_document(row)) + b"\n" for row in rows)


def export_filename(account: Account, where: ErrorFilter, fmt: str) -> str:
    parts = ["trackway-errors", re.sub(r"[^A-Za-z0-9_.-]+", "_", account.name)[:60]]
    if where.error_type:
        parts.append(where.error_type)
    if where.start_ms:
        parts.append(datetime.fromtimestamp(where.start_ms / 1000, UTC).strftime("%Y-%m-%d"))
    return "-".join(parts) + "." + fmt


# -- replay ------------------------------------------------------------------------------


def replay_bodies(
    raw: bytes, source: str | None = None, context: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """The event bodies a stored payload holds, read the way it arrived (`source`): the query
    string of the pixel, with the user agent, IP and referrer its request had (`context`); or
    JSON: one event (POST /api/v1/event, an item of a bulk call, an import line), or a whole
    bulk body. EventRejected when it still does not parse."""
    if source == PIXEL or (source is None and _legacy_pixel_row(raw)):
        context = context or {}
        return [
            pixel_body(
                pixel_parameters(raw),
                user_agent=_text_or_none(context.get("user_agent")),
                ip=_text_or_none(context.get("ip")),
                referrer=_text_or_none(context.get("referrer")),
            )
        ]
    body = parse_json_object(raw)
    if "event" in body or "events" not in body:
        return [body]
    items = body["events"]
    if not isinstance(items, list):
        raise EventRejected("parsing_error", {"events": ["must be an array of events"]})
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise EventRejected("parsing_error", {f"events[{index}]": ["must be a JSON object"]})
    return items


def _legacy_pixel_row(raw: bytes) -> bool:
    """A pixel row logged before rows said how they arrived (source NULL): a query string,
    not JSON, that names an event (`e`) or carries the key (`x`)."""
    if raw.lstrip()[:1] in (b"{", b"["):
        return False
    return any(name in ("e", "x") for name, _ in pixel_parameters(raw))


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def replay_events(
    account: Account,
    row: LoggedError,
    max_ahead_ms: int | None = MAX_AHEAD_MS,
    max_attributes: int = MAX_EVENT_ATTRIBUTES,
) -> list[AcceptedEvent]:
    """The row's payload through today's rules, received when it first was (so a timestamp
    too far in the future then still is)."""
    bodies = replay_bodies(row.raw, row.source, row.context)
    accepted = []
    for index, body in enumerate(bodies):
        if body.get("event_uuid") in (None, ""):
            name = f"{account.uuid}/{row.id}/{index}"
            body = {**body, "event_uuid": str(uuid.uuid5(REPLAY_NAMESPACE, name))}
        try:
            accepted.append(
                validate_event(
                    body,
                    row.received_ms,
                    account.verification_secret,
                    max_ahead_ms=max_ahead_ms,
                    max_attributes=max_attributes,
                )
            )
        except EventRejected as rejected:
            if len(bodies) == 1:
                raise
            errors = {f"events[{index}].{k}": v for k, v in rejected.errors.items()}
            raise EventRejected(rejected.error_type, errors) from None
    return accepted


@dataclass
class ReplayOutcome:
    # (row id, uuids of the events stored or found stored already)
    replayed: list[tuple[int, str]] = field(default_factory=list)
    # (row id, the rejection it still gets)
    failed: list[tuple[int, EventRejected]] = field(default_factory=list)
    # rows a replay had stored before
    skipped: list[int] = field(default_factory=list)
    # asked-for ids the account has no row of
    missing: list[int] = field(default_factory=list)

    def document(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "replayed": len(self.replayed),
            "failed": len(self.failed),
            "skipped": len(self.skipped),
            "missing": len(self.missing),
            "results": [
                *({"id": i, "status": "replayed", "event_uuid": u} for i, u in self.replayed),
                *(
                    {"id": i, "status": "failed", "error_type": r.error_type, "errors": r.errors}
                    for i, r in self.failed
                ),
                *({"id": i, "status": "skipped"} for i in self.skipped),
                *({"id": i, "status": "missing"} for i in self.missing),
            ],
        }


class ErrorLog:
    def __init__(
        self,
        store: Store,
        max_ahead_ms: int | None = MAX_AHEAD_MS,
        max_attributes: int = MAX_EVENT_ATTRIBUTES,
    ) -> None:
        self.store = store
        # Replays pass today's rules, these bounds among them.
        self.max_ahead_ms = max_ahead_ms
        self.max_attributes = max_attributes

    async def page(
        self,
        account: Account,
        where: ErrorFilter,
        before: tuple[int, int] | None = None,
        limit: int = PAGE_DEFAULT,
    ) -> dict[str, Any]:
        """One page of the log, newest first, with the count of every matching row and the
        cursor of the next page (None on the last)."""
        rows = await self.store.error_page(account, where, before, limit + 1)
        total = await self.store.count_errors(account, where, COUNT_CAP + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        return {
            "errors": [error_document(row, preview=True) for row in rows],
            "total": min(total, COUNT_CAP),
            "total_capped": total > COUNT_CAP,
            "next": f"{rows[-1].received_ms}:{rows[-1].id}" if more else None,
        }

    async def one(self, account: Account, error_id: int) -> LoggedError | None:
        rows = await self.store.errors_by_id(account, [error_id])
        return rows[0] if rows else None

    async def rows(self, account: Account, where: ErrorFilter) -> AsyncIterator[list[LoggedError]]:
        """Every matching row, newest first, a page at a time."""
        before: tuple[int, int] | None = None
        while True:
            rows = await self.store.error_page(account, where, before, EXPORT_PAGE)
            if rows:
                yield rows
            if len(rows) < EXPORT_PAGE:
                return
            before = (rows[-1].received_ms, rows[-1].id)

    async def export(self, account: Account, where: ErrorFilter, fmt: str) -> AsyncIterator[bytes]:
        if fmt == "csv":
            yield csv_header()
        async for rows in self.rows(account, where):
            yield csv_rows(rows) if fmt == "csv" else ndjson_rows(rows)

    async def replay(
        self,
        account: Account,
        *,
        ids: Sequence[int] | None = None,
        where: ErrorFilter | None = None,
    ) -> ReplayOutcome:
        """Replay the rows of those ids, or every pending row the filter matches."""
        # Today's rules: the account as stored now, not as a key cache last saw it.
        account = await self.store.find_account(account.uuid)
        outcome = ReplayOutcome()
        if ids is not None:
            found = await self.store.errors_by_id(account, ids)
            known = {row.id for row in found}
            outcome.missing = [i for i in dict.fromkeys(ids) if i not in known]
            for start in range(0, len(found), REPLAY_CHUNK):
                await self._replay_rows(account, found[start : start + REPLAY_CHUNK], outcome)
        else:
            pending = ErrorFilter(
                where.error_type if where else None,
                where.start_ms if where else ErrorFilter().start_ms,
                where.end_ms if where else ErrorFilter().end_ms,
                replayed=False,
            )
            before: tuple[int, int] | None = None
            while True:
                rows = await self.store.error_page(account, pending, before, REPLAY_CHUNK)
                await self._replay_rows(account, rows, outcome)
                if len(rows) < REPLAY_CHUNK:
                    break
                before = (rows[-1].received_ms, rows[-1].id)
        return outcome

    async def _replay_rows(
        self, account: Account, rows: Sequence[LoggedError], outcome: ReplayOutcome
    ) -> None:
        events: list[AcceptedEvent] = []
        owners: list[int] = []
        failed: dict[int, EventRejected] = {}
        passed: dict[int, list[str]] = {}
        for row in rows:
            if row.replayed_ms is not None:
                outcome.skipped.append(row.id)
                continue
            try:
                accepted = replay_events(account, row, self.max_ahead_ms, self.max_attributes)
            except EventRejected as rejected:
                failed[row.id] = rejected
                continue
            passed[row.id] = [event.event_uuid for event in accepted]
            events += accepted
            owners += [row.id] * len(accepted)
        if events:
            result = await self.store.ingest(account, events)
            for index, refused in result.rejected:
                failed.setdefault(owners[index], refused)
        replayed = [(i, ",".join(u)) for i, u in passed.items() if i not in failed]
        if replayed or failed:
            await self.store.record_replays(account, replayed, list(failed.items()), now_ms())
        outcome.replayed += replayed
        outcome.failed += failed.items()


# -- the command line (trackway errors …) -------------------------------------------------


async def latest_rows(
    store: Store, account_ref: str, where: ErrorFilter, limit: int
) -> list[LoggedError]:
    account = await store.find_account(account_ref)
    return await store.error_page(account, where, None, limit)


async def export_rows(
    store: Store, account_ref: str, where: ErrorFilter, fmt: str, out: BinaryIO
) -> int:
    """Write every matching row to `out` as CSV or NDJSON; the number of rows."""
    account = await store.find_account(account_ref)
    log, count = ErrorLog(store), 0
    if fmt == "csv":
        out.write(csv_header())
    async for rows in log.rows(account, where):
        out.write(csv_rows(rows) if fmt == "csv" else ndjson_rows(rows))
        count += len(rows)
    out.flush()
    return count


async def replay_rows(
    store: Store,
    account_ref: str,
    ids: Sequence[int] | None,
    where: ErrorFilter | None,
    max_ahead_ms: int | None = MAX_AHEAD_MS,
    max_attributes: int = MAX_EVENT_ATTRIBUTES,
) -> ReplayOutcome:
    account = await store.find_account(account_ref)
    log = ErrorLog(store, max_ahead_ms, max_attributes)
    return await log.replay(account, ids=ids, where=where)


def list_line(row: LoggedError) -> str:
    doc = error_document(row)
    messages = "; ".join(f"{f}: {m}" for f, ms in row.errors.items() for m in ms)
    raw = doc["raw"].replace("\n", " ")
    raw = raw if len(raw) <= 80 else raw[:79] + "…"
    return (
        f"{row.id:>8}  {doc['received_at']}  {row.error_type:<26}  {doc['status']:<8}  "
        f"{messages}  {raw}"
    )
