"""`trackway import` and `trackway export`: events as NDJSON, one per line, in the API's body
format.

Import runs every line through the API's own rules (`validate_event`) and the store's group
commit (`Store.ingest`: dedup, identity resolution, attribute types, rollups), several thousand
events per call. A line without an `event_uuid` gets one derived from the account and the line,
so running the same file again stores nothing twice. Export pages through the stored events of
each name by (timestamp_ms, id) and merges the names into one stream ordered by timestamp:
memory stays bounded whatever the account holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import heapq
import io
import itertools
import re
import sys
import time
import uuid
from collections import Counter, deque
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import msgspec

from trackway.domain.batch import MAX_ATTRIBUTE_NAMES
from trackway.domain.errors import AccountNotFound, EventRejected, StoreUnavailable
from trackway.domain.events import (
    MAX_AHEAD_MS,
    MAX_EVENT_ATTRIBUTES,
    AcceptedEvent,
    parse_json_object,
    validate_event,
)
from trackway.domain.timestamps import now_ms, parse_timestamp
from trackway.store import Account, IngestResult, Rejection, Store, open_store

# Fixed forever: derived event_uuids must come out the same in every version.
IMPORT_NAMESPACE = uuid.UUID("5c1d7c52-6f4e-4f0b-9a57-0c3b1f6a2d91")
# Events per store call. The writer puts every call queued meanwhile into one group commit (up
# to 20,000 events), so calls this size cost no more commits than bigger ones did, while memory
# stays bounded (IN_FLIGHT batches, read and validated ahead) and the progress bar moves several
# times a second. Beside a running server they go through its writer process, between the
# live requests: a single POST waits for one group commit at most, not for the whole import.
BATCH_EVENTS = 5_000
MAX_BATCH_EVENTS = 500_000
# Batches handed to the store and not yet committed; the next one is read meanwhile.
IN_FLIGHT = 4
# Without a server, the import's own writer commits up to this many events at once (as many
# batches as are in flight), with a small page cache (writer.IMPORT_CACHE_KIB). 1M events
# (bench/import_speed.py --events 1000000 --rss), page cache of 32 MiB: 8 batches / 40,000 a
# group, 9,386 events/s at 308 MiB peak RSS; 4 / 20,000, 8,756 and 9,110 events/s at 254 and
# 256 MiB (a 1 GiB cache and 8 / 40,000: 9,527 events/s at 844 MiB). Six in flight, so that
# the next group is read and validated while one is written (with four, one group, nothing was
# read meanwhile); 1M lines of 100,000 customers with the writer's cache: 4 in flight 6,101
# events/s at 264 MiB, 6: 7,089 at 286 MiB, 8: 7,435 at 308 MiB.
DIRECT_IN_FLIGHT = 6
DIRECT_GROUP_EVENTS = 20_000
# Through a running server's writer: how long a batch is retried while that writer restarts
# (it is idempotent: each event has its event_uuid; the events the lost attempt had stored come
# back as duplicates).
WRITER_RETRY_SECONDS = 60.0
REMOTE_JOB_EVENTS = 1000
REMOTE_IN_FLIGHT = 2
# Export: stored events held at once across every event name's page.
EXPORT_ROWS = 50_000
EXPORT_PAGE = 1000
EXPORT_MIN_PAGE = 100
_FAR_FUTURE_MS = 253402300800000  # 10000-01-01
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_USAGE = 2
EXIT_FAILED = 3

_encode = msgspec.json.Encoder().encode


class UsageError(Exception):
    """A mistake in the command line (exit status 2)."""


# -- import --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RejectedLine:
    line: int
    error_type: str
    errors: dict[str, list[str]]
    raw: bytes


@dataclass(slots=True)
class PreparedBatch:
    """One batch of lines after the API's rules: what goes to the store, and what did not."""

    lines: int
    events: list[AcceptedEvent]
    # The line number and the line of each event.
    event_lines: list[int]
    event_raws: list[bytes]
    rejected: list[RejectedLine]
    received_ms: int


@dataclass(slots=True)
class ImportSummary:
    lines: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    rejected_file: Path | None = None
    # Lines without an event_uuid that repeat an earlier line of the input, byte for byte:
    # each is an event of its own (EventUuids), counted so that the summary says so.
    repeated: int = 0

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    @property
    def events_per_second(self) -> float:
        return self.lines / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "lines": self.lines,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": self.rejected_total,
            "rejected_by_type": dict(sorted(self.rejected.items())),
            "rejected_file": str(self.rejected_file) if self.rejected_file else None,
            "repeated_lines": self.repeated,
            "seconds": round(self.seconds, 3),
            "events_per_second": round(self.events_per_second),
        }


class EventUuids:
    """The event_uuid of a line that has none: uuid5(IMPORT_NAMESPACE, "<account uuid>\\n<line>")
    (the line without surrounding whitespace), so a re-run finds it stored already. The n-th
    line (n > 1) of an input identical to an earlier one gets uuid5 of "…<line>\\n#<n>": two
    identical lines are two events, and a re-run of the same input still stores nothing twice
    (neither line numbers nor the file's name enter, so the same lines on stdin, gzipped or in
    a file whose other lines changed keep their uuids). Remembers 8 bytes of each line's hash
    (about 60 bytes of memory a line)."""

    def __init__(self, account_uuid: str) -> None:
        self._prefix = hashlib.sha1(IMPORT_NAMESPACE.bytes + account_uuid.encode() + b"\n")
        self._seen: set[int] = set()
        self._occurrences: dict[int, int] = {}
        # Lines that repeated an earlier one.
        self.repeated = 0

    def of(self, line: bytes) -> str:
        digest = self._prefix.copy()
        digest.update(line)
        raw = digest.digest()
        key = int.from_bytes(raw[:8], "big")
        if key in self._seen:
            occurrence = self._occurrences.get(key, 1) + 1
            self._occurrences[key] = occurrence
            self.repeated += 1
            digest.update(b"\n#%d" % occurrence)
            raw = digest.digest()
        else:
            self._seen.add(key)
        b = bytearray(raw[:16])
        b[6] = (b[6] & 0x0F) | 0x50  # version 5
        b[8] = (b[8] & 0x3F) | 0x80  # RFC 4122 variant
        h = b.hex()
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def prepare_batch(
    lines: Iterable[tuple[int, bytes]],
    uuids: EventUuids,
    verification_secret: str | None,
    max_ahead_ms: int | None = MAX_AHEAD_MS,
    max_attributes: int = MAX_EVENT_ATTRIBUTES,
) -> PreparedBatch:
    """Decode and validate each (line number, line) under the API's rules; blank lines are
    skipped. History is received now: a timestamp more than `max_ahead_ms` after the import
    is refused, as the API refuses it (None: no bound)."""
    received = now_ms()
    events: list[AcceptedEvent] = []
    event_lines: list[int] = []
    event_raws: list[bytes] = []
    rejected: list[RejectedLine] = []
    count = 0
    for number, raw in lines:
        line = raw.strip()
        if number == 1:
            line = line.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte order mark
        if not line:
            continue
        count += 1
        try:
            body = parse_json_object(line)
            event_uuid = body.get("event_uuid")
            if event_uuid is None or event_uuid == "":
                body["event_uuid"] = uuids.of(line)
            events.append(
                validate_event(
                    body,
                    received,
                    verification_secret,
                    correct_clock_skew=False,
                    max_ahead_ms=max_ahead_ms,
                    max_attributes=max_attributes,
                )
            )
            event_lines.append(number)
            event_raws.append(line)
        except EventRejected as rejection:
            rejected.append(RejectedLine(number, rejection.error_type, rejection.errors, line))
    return PreparedBatch(count, events, event_lines, event_raws, rejected, received)


def open_lines(source: str) -> IO[bytes]:
    """The byte stream of FILE (gunzipped when it ends in .gz) or of stdin for '-' (gunzipped
    when it starts with the gzip magic)."""
    if source == "-":
        stdin = sys.stdin.buffer
        if not isinstance(stdin, io.BufferedReader):
            stdin = io.BufferedReader(stdin)  # type: ignore[arg-type]
        if stdin.peek(2)[:2] == b"\x1f\x8b":
            return gzip.GzipFile(fileobj=stdin, mode="rb")  # type: ignore[return-value]
        return stdin
    if source.endswith(".gz"):
        return gzip.open(source, "rb")  # type: ignore[return-value]
    return open(source, "rb", buffering=1 << 20)


def count_lines(source: str) -> int | None:
    """Lines of a plain file (for the progress bar's total); None for stdin or gzip."""
    if source == "-" or source.endswith(".gz"):
        return None
    count, last = 0, b"\n"
    with open(source, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            count += chunk.count(b"\n")
            last = chunk
    return count if last.endswith(b"\n") else count + 1


def rejected_path(source: str) -> Path:
    if source == "-":
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        return Path(f"import-rejected-{stamp}.ndjson")
    return Path(source + ".rejected.ndjson")


class RejectedFile:
    """`<input>.rejected.ndjson`: one JSON object a line (line, error_type, errors, raw), made
    on the first rejection."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[bytes] | None = None

    def write(self, rejected: Iterable[RejectedLine]) -> None:
        for r in rejected:
            if self._file is None:
                self._file = open(self.path, "wb")  # noqa: SIM115
            record = {
                "line": r.line,
                "error_type": r.error_type,
                "errors": r.errors,
                "raw": r.raw.decode("utf-8", "replace"),
            }
            self._file.write(_encode(record) + b"\n")

    def close(self) -> bool:
        """Close; True when something was written."""
        if self._file is None:
            return False
        self._file.close()
        return True


async def import_lines(
    store: Store,
    account: Account,
    lines: Iterator[tuple[int, bytes]],
    *,
    batch_size: int = BATCH_EVENTS,
    rejected_file: RejectedFile | None = None,
    on_progress: Any = None,
    max_ahead_ms: int | None = MAX_AHEAD_MS,
    max_attributes: int = MAX_EVENT_ATTRIBUTES,
) -> ImportSummary:
    """Import numbered lines into the account; return the counts. Each batch is read and
    validated on a thread while the store commits the ones before it."""
    summary = ImportSummary()
    uuids = EventUuids(account.uuid)
    secret = account.verification_secret
    in_flight: deque[tuple[PreparedBatch, asyncio.Task[IngestResult]]] = deque()
    most = IN_FLIGHT
    jobs = asyncio.Semaphore(REMOTE_IN_FLIGHT)
    if _writes_alone(store):
        most = DIRECT_IN_FLIGHT
        store.allow_large_groups(max(DIRECT_GROUP_EVENTS, batch_size))  # type: ignore[attr-defined]

    def next_batch() -> PreparedBatch | None:
        chunk = list(itertools.islice(lines, batch_size))
        return prepare_batch(chunk, uuids, secret, max_ahead_ms, max_attributes) if chunk else None

    def settle(batch: PreparedBatch, result: IngestResult) -> None:
        summary.lines += batch.lines
        summary.accepted += result.stored
        summary.duplicates += result.duplicates
        rejected = list(batch.rejected)
        # What the store refused (an attribute of another type than its name's): by line.
        rejected += [
            RejectedLine(batch.event_lines[i], r.error_type, r.errors, batch.event_raws[i])
            for i, r in result.rejected
        ]
        rejected.sort(key=lambda r: r.line)
        summary.rejected.update(r.error_type for r in rejected)
        if rejected_file is not None:
            rejected_file.write(rejected)
        if on_progress is not None:
            on_progress(batch.lines)

    started = time.perf_counter()
    try:
        while True:
            batch = await asyncio.to_thread(next_batch)
            if batch is None:
                break
            rejections = [
                Rejection(batch.received_ms, r.error_type, r.errors, r.raw) for r in batch.rejected
            ]
            task = asyncio.ensure_future(_ingest(store, account, batch.events, rejections, jobs))
            in_flight.append((batch, task))
            while len(in_flight) >= most:
                done, pending = in_flight.popleft()
                settle(done, await pending)
        while in_flight:
            done, pending = in_flight.popleft()
            settle(done, await pending)
    finally:
        for _, pending in in_flight:
            # Committed or not, nothing waits for it any more; a re-run finds what was stored.
            with contextlib.suppress(BaseException):
                await pending
        summary.seconds = time.perf_counter() - started
        summary.repeated = uuids.repeated
    return summary


def _through_server(store: Store) -> bool:
    """SQLite with a running server: the events go through that server's writer process."""
    return getattr(store, "writer_socket", None) is not None


def _writes_alone(store: Store) -> bool:
    """SQLite without a server: this process's own writer is the file's only one."""
    return hasattr(store, "allow_large_groups") and not _through_server(store)


async def _ingest(
    store: Store,
    account: Account,
    events: list[AcceptedEvent],
    rejections: list[Rejection],
    jobs: asyncio.Semaphore | None = None,
) -> IngestResult:
    """store.ingest; through a server's writer process, retried while that writer restarts."""
    if not _through_server(store):
        return await store.ingest(account, events, rejections)
    # Through a server's writer: in jobs of REMOTE_JOB_EVENTS, so that each of its group
    # commits stays short and the live requests between them wait little.
    starts = range(0, max(len(events), 1), REMOTE_JOB_EVENTS)
    parts = await asyncio.gather(
        *(
            _ingest_retrying(
                store,
                account,
                events[start : start + REMOTE_JOB_EVENTS],
                rejections if start == 0 else [],
                jobs,
            )
            for start in starts
        )
    )
    result = IngestResult()
    for start, part in zip(starts, parts, strict=True):
        result.stored += part.stored
        result.duplicates += part.duplicates
        result.rejected += [(start + i, why) for i, why in part.rejected]
    return result


async def _ingest_retrying(
    store: Store,
    account: Account,
    events: list[AcceptedEvent],
    rejections: list[Rejection],
    jobs: asyncio.Semaphore | None,
) -> IngestResult:
    deadline = time.monotonic() + WRITER_RETRY_SECONDS
    while True:
        try:
            # At most REMOTE_IN_FLIGHT jobs queued at the writer: a live request waits behind
            # that much of the import, not behind everything read ahead.
            async with jobs or contextlib.nullcontext():
                return await store.ingest(account, events, rejections)
        except StoreUnavailable:
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(0.2)


def run_import(
    source: str,
    account_ref: str,
    database_url: str,
    batch_size: int,
    as_json: bool,
    max_ahead_ms: int | None = MAX_AHEAD_MS,
    max_attributes: int = MAX_EVENT_ATTRIBUTES,
    max_attribute_names: int = MAX_ATTRIBUTE_NAMES,
) -> int:
    """`trackway import`: the exit status (EXIT_OK, EXIT_REJECTED); raises UsageError or
    StoreUnavailable."""
    from tqdm import tqdm

    total = count_lines(source)
    rejected_file = RejectedFile(rejected_path(source))
    progress = tqdm(
        total=total,
        unit="ev",
        unit_scale=True,
        file=sys.stderr,
        disable=None,  # off when stderr is not a terminal
        desc="import",
        smoothing=0.1,
    )

    async def work(store: Store) -> ImportSummary:
        try:
            account = await store.find_account(account_ref)
        except AccountNotFound:
            raise UsageError(f"account not found: {account_ref}") from None
        if _through_server(store):
            progress.write(
                "import: a server runs on this database; the events go through its writer",
                file=sys.stderr,
            )
        with open_lines(source) as stream:
            numbered = enumerate(stream, 1)
            return await import_lines(
                store,
                account,
                numbered,
                batch_size=batch_size,
                rejected_file=rejected_file,
                on_progress=progress.update,
                max_ahead_ms=max_ahead_ms,
                max_attributes=max_attributes,
            )

    try:
        summary = _with_store(database_url, work, max_attribute_names)
    finally:
        progress.close()
        wrote = rejected_file.close()
    if wrote:
        summary.rejected_file = rejected_file.path
    elif source != "-":
        # A file left by an earlier run of this input no longer says anything true.
        rejected_file.path.unlink(missing_ok=True)
    if as_json:
        sys.stdout.write(_encode(summary.as_dict()).decode() + "\n")
    sys.stderr.write(summary_text(source, account_ref, summary))
    return EXIT_REJECTED if summary.rejected_total else EXIT_OK


def summary_text(source: str, account_ref: str, s: ImportSummary) -> str:
    name = "stdin" if source == "-" else source
    text = (
        f"imported {name} into {account_ref}: {s.lines:,} lines in {s.seconds:.1f} s "
        f"({s.events_per_second:,.0f} events/s)\n"
        f"  accepted    {s.accepted:,}\n"
        f"  duplicates  {s.duplicates:,}\n"
        f"  rejected    {s.rejected_total:,}\n"
    )
    for error_type, count in sorted(s.rejected.items()):
        text += f"    {error_type:<28}{count:,}\n"
    if s.repeated:
        text += (
            f"  {s.repeated:,} lines without an event_uuid repeat an earlier line exactly; "
            "each is an event of its own\n"
        )
    if s.rejected_file is not None:
        text += f"  rejected lines: {s.rejected_file}\n"
    return text


# -- export --------------------------------------------------------------------------------


def parse_time_bound(value: str | None) -> int | None:
    """An ISO 8601 timestamp (as the API takes them) or a day YYYY-MM-DD (its midnight UTC) →
    epoch ms."""
    if value is None:
        return None
    text = value.strip()
    if _DATE_RE.fullmatch(text):
        text += "T00:00:00Z"
    parsed = parse_timestamp(text)
    if parsed is None:
        raise UsageError(f"not an ISO 8601 timestamp or YYYY-MM-DD day: {value!r}")
    return parsed[1]


async def stored_events(
    store: Store,
    account: Account,
    *,
    since_ms: int = 0,
    until_ms: int = _FAR_FUTURE_MS,
    event: str | None = None,
) -> AsyncIterator[bytes]:
    """The stored bodies (JSON) of the account's events with since_ms <= timestamp < until_ms,
    ordered by (timestamp, id): one keyset-paged stream per event name, merged."""
    if event is not None:
        names = [event]
    else:
        names = [entry["name"] for entry in await store.event_names(account)]
    if not names:
        return
    page = max(EXPORT_MIN_PAGE, min(EXPORT_PAGE, EXPORT_ROWS // len(names)))
    # since_ms - 1 with an id past every id: the first page starts at since_ms itself.
    start = (since_ms - 1, sys.maxsize)

    async def first_page(name: str) -> list[tuple[int, int, bytes]]:
        return await store.events_page(account, name, start, until_ms, page)

    pages = [await first_page(name) for name in names]
    # (timestamp_ms, id, stream index, position in its page); ids are unique per store.
    heap = [(rows[0][0], rows[0][1], s, 0) for s, rows in enumerate(pages) if rows]
    heapq.heapify(heap)
    while heap:
        ts, row_id, s, position = heap[0]
        rows = pages[s]
        yield rows[position][2]
        position += 1
        if position == len(rows):
            rows = (
                await store.events_page(account, names[s], (ts, row_id), until_ms, page)
                if len(rows) == page
                else []
            )
            pages[s] = rows
            position = 0
        if rows:
            heapq.heapreplace(heap, (rows[position][0], rows[position][1], s, position))
        else:
            heapq.heappop(heap)


def run_export(
    account_ref: str,
    database_url: str,
    since: str | None,
    until: str | None,
    event: str | None,
    out: IO[bytes],
) -> int:
    """`trackway export`: stream the events as NDJSON to `out`; the number written."""
    from tqdm import tqdm

    since_ms = parse_time_bound(since)
    until_ms = parse_time_bound(until)
    if since_ms is not None and until_ms is not None and until_ms <= since_ms:
        raise UsageError("--until must be after --since")

    async def work(store: Store) -> int:
        try:
            account = await store.find_account(account_ref)
        except AccountNotFound:
            raise UsageError(f"account not found: {account_ref}") from None
        written = 0
        buffer: list[bytes] = []
        with tqdm(unit="ev", unit_scale=True, file=sys.stderr, disable=None, desc="export") as bar:
            async for body in stored_events(
                store,
                account,
                since_ms=since_ms if since_ms is not None else 0,
                until_ms=until_ms if until_ms is not None else _FAR_FUTURE_MS,
                event=event,
            ):
                buffer.append(body)
                if len(buffer) == EXPORT_PAGE:
                    out.write(b"\n".join(buffer) + b"\n")
                    written += len(buffer)
                    bar.update(len(buffer))
                    buffer.clear()
            if buffer:
                out.write(b"\n".join(buffer) + b"\n")
                written += len(buffer)
                bar.update(len(buffer))
        out.flush()
        return written

    return _with_store(database_url, work)


def _with_store(
    database_url: str, work: Any, max_attribute_names: int = MAX_ATTRIBUTE_NAMES
) -> Any:
    async def run() -> Any:
        store = open_store(database_url, max_attribute_names=max_attribute_names)
        await store.open()
        try:
            return await work(store)
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except ValueError as exc:  # a malformed database URL
        raise UsageError(str(exc)) from None


__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_REJECTED",
    "EXIT_USAGE",
    "EventUuids",
    "ImportSummary",
    "StoreUnavailable",
    "UsageError",
    "import_lines",
    "parse_time_bound",
    "run_export",
    "run_import",
    "stored_events",
]
