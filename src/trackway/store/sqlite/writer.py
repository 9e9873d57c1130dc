"""The SQLite writer: one thread per process, group commit.

It takes every job queued while the previous transaction committed and writes them all in one
transaction, then answers them. Per batch and account it asks the database a fixed number of
questions (which event uuids exist, which identifiers and profiles the events name, which
attribute types are fixed), resolves the events in memory, and writes with multi-row
statements; it counts the rollups once per (day, name) of the group (the error log's trigger
keeps error_daily).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import date, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from trackway.domain.batch import (
    AccountPlan,
    Lookups,
    LookupsNeeded,
    identity_writes,
    lookups_needed,
    names_to_count,
    plan_account,
)
from trackway.domain.errors import StoreUnavailable
from trackway.domain.events import AcceptedEvent, Uuid7, event_type
from trackway.domain.identity import Profile
from trackway.store.base import (
    IngestResult,
    Rejection,
    count_outcomes,
    entries_by_account,
    error_log_rows,
    observe_batch,
)
from trackway.store.queries import load_queries
from trackway.store.sqlite.cache import WriterCache

if TYPE_CHECKING:
    from trackway.store.sqlite.store import SQLiteStore

log = logging.getLogger("trackway.store")

T = TypeVar("T")
Q = load_queries("trackway.store.sqlite", "queries.sql")

# Rows per INSERT statement: 7 parameters a row stays under SQLite's 32,766 variables.
ROWS_PER_STATEMENT = 2000
# Values per IN (...) list.
IN_LIST = 500
# Events per group commit at most; the rest wait for the next transaction.
MAX_BATCH_EVENTS = 20000
# In the writer process, which serves live requests beside imports: a single POST waits for
# a group commit or two, so groups stay short (an import sends jobs of 1,000 events, two at a
# time).
SHARED_MAX_BATCH_EVENTS = 5000
# The writer's page cache (KiB; SQLite takes the memory only as pages are read). The random
# indexes (event uuid, customer) outgrow a small cache: inserting 2M events in batches of
# 50,000 (a scratch benchmark of this schema) cost 53 us an event at the end with 64 MiB,
# 43 us with 1 GiB, 29 us with 1 GiB and batches of 200,000.
WRITER_CACHE_KIB = 1024 * 1024
# An import without a server: its memory stays bounded. 1M events into a fresh file
# (bench/import_speed.py --events 1000000 --rss): with 1 GiB, 9,527 events/s at 844 MiB peak
# RSS; with 32 MiB, 9,386 events/s at 308 MiB.
IMPORT_CACHE_KIB = 32 * 1024

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode
# The writer thread's own generator of profile uuids (a Uuid7 is not shared between threads).
new_profile_uuid = Uuid7()


def unavailable(exc: sqlite3.Error) -> StoreUnavailable:
    return StoreUnavailable(f"SQLite: {exc}")


@lru_cache(maxsize=64)
def _insert_events_sql(rows: int) -> str:
    values = ",".join(["(?,?,?,?,?,?,?)"] * rows)
    return f"{Q['insert_events_head']} {values} {Q['insert_events_tail']}"


@lru_cache(maxsize=64)
def _insert_error_log_sql(rows: int) -> str:
    return f"{Q['insert_error_log_head']} {','.join(['(?,?,?,?,?,?,?)'] * rows)}"


@lru_cache(maxsize=256)
def _in_list_sql(name: str, count: int) -> str:
    if name == "identifiers_of_pairs":
        return Q[name].replace("{pairs}", ",".join(["(?,?)"] * count))
    return Q[name].replace("{marks}", ",".join(["?"] * count))


@lru_cache(maxsize=4096)
def _day_of_second(day: int) -> str:
    return (_EPOCH + timedelta(days=day)).isoformat()


_EPOCH = date(1970, 1, 1)


def _day(timestamp_ms: int) -> str:
    """The day SQLite's strftime('%Y-%m-%d', timestamp_ms / 1000, 'unixepoch') gives (the
    division truncates toward zero, as the rollup trigger did)."""
    seconds = timestamp_ms // 1000 if timestamp_ms >= 0 else -(-timestamp_ms // 1000)
    return _day_of_second(seconds // 86400)


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Ingest:
    """What the group commit takes of a job: an account's events and the rejections they
    bring along (or, with `call`, a write of its own). Job is one that a loop awaits; the
    writer process has its own (writer_process.py), answered over its socket."""

    __slots__ = ("account_id", "call", "events", "group", "rejections")

    def __init__(
        self,
        account_id: int = 0,
        events: Sequence[AcceptedEvent] = (),
        rejections: Sequence[Rejection] = (),
        call: Callable[[sqlite3.Connection], Any] | None = None,
    ) -> None:
        self.account_id = account_id
        self.events = events
        self.rejections = rejections
        self.call = call
        # (events, seconds) of the group commit that wrote this job, set on its first job
        # only when the writer serves other processes (they count the commit in metrics).
        self.group: tuple[int, float] | None = None


class Job(Ingest):
    __slots__ = ("future", "loop")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        account_id: int = 0,
        events: Sequence[AcceptedEvent] = (),
        rejections: Sequence[Rejection] = (),
        call: Callable[[sqlite3.Connection], Any] | None = None,
    ) -> None:
        super().__init__(account_id, events, rejections, call)
        self.loop = loop
        self.future: asyncio.Future[Any] = loop.create_future()


IngestT = TypeVar("IngestT", bound=Ingest)
# A job, and its result or its error.
Outcome = tuple[IngestT, Any, BaseException | None]


STOP = object()


def _deliver(outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, error in outcomes:
        if future.done():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)


class Writer(threading.Thread):
    """The one thread of this process that writes."""

    def __init__(self, store: SQLiteStore, *, serves_others: bool = False) -> None:
        super().__init__(name="trackway-writer", daemon=True)
        self.store = store
        self.jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.conn: sqlite3.Connection | None = None
        # In the writer process: the API workers count each commit (Job.group), not this one.
        self.serves_others = serves_others
        self.max_batch_events = SHARED_MAX_BATCH_EVENTS if serves_others else MAX_BATCH_EVENTS
        # The page cache of the writer's connection (KiB); applied before its next transaction.
        self.cache_kib = WRITER_CACHE_KIB
        self._cache_set = 0
        # What the group commits read, kept between them (cache.py).
        self.cache = WriterCache()

    def run(self) -> None:
        stopping = False
        while not stopping:
            item = self.jobs.get()
            if item is STOP:
                break
            batch = item if isinstance(item, list) else [item]
            size = sum(len(job.events) + 1 for job in batch)
            while size < self.max_batch_events:
                try:
                    item = self.jobs.get_nowait()
                except queue.Empty:
                    break
                if item is STOP:
                    stopping = True
                    break
                more = item if isinstance(item, list) else [item]
                batch += more
                size += sum(len(job.events) + 1 for job in more)
            self._run_batch(batch)
        self.close_connection()

    def _run_batch(self, batch: list[Job]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[Any]] = {}
        for job, result, error in self.write_batch(batch):
            by_loop.setdefault(job.loop, []).append((job.future, result, error))
        for loop, items in by_loop.items():
            # A loop closed while we wrote has nobody waiting for these.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_deliver, items)

    def write_batch(self, batch: Sequence[IngestT]) -> list[Outcome[IngestT]]:
        """Write a batch: its ingests in one group commit, then each other write in a
        transaction of its own; each job's outcome. Called on the writer thread, or on the
        writer process's event loop (which has no thread to hand jobs to)."""
        outcomes: list[Outcome[IngestT]] = []
        ingests = [job for job in batch if job.call is None]
        if ingests:
            self._ingest_group(ingests, outcomes)
        for job in batch:
            if job.call is None:
                continue
            # A write the cache does not follow (a customer or attribute type deleted...).
            self.cache.clear()
            try:
                outcomes.append((job, self._commit(job.call), None))
            except BaseException as exc:
                outcomes.append((job, None, self._translate(exc)))
        return outcomes

    def _ingest_group(self, jobs: list[IngestT], outcomes: list[Outcome[IngestT]]) -> None:
        """One transaction for every job; when it fails for anything but the storage (a job
        whose events make a statement fail), each job is retried in a transaction of its own,
        so that one bad job fails alone and not the others of its group."""
        try:
            started = time.perf_counter()
            results = self._commit(self._write_ingest, jobs)
            seconds = time.perf_counter() - started
            if self.serves_others:
                jobs[0].group = (sum(len(job.events) for job in jobs), seconds)
            else:
                observe_batch(jobs, results, seconds)
            outcomes.extend((job, result, None) for job, result in zip(jobs, results, strict=True))
        except BaseException as exc:
            # Its plan had changed cached profiles: what the database holds is read again.
            self.cache.clear()
            error = self._translate(exc)
            retry = isinstance(exc, Exception) and not isinstance(exc, sqlite3.OperationalError)
            if len(jobs) > 1 and retry:
                log.warning(
                    "a group commit of %d jobs failed (%r): each job retried on its own",
                    len(jobs),
                    exc,
                )
                for job in jobs:
                    self._ingest_group([job], outcomes)
                return
            outcomes.extend((job, None, error) for job in jobs)

    def _translate(self, exc: BaseException) -> BaseException:
        if isinstance(exc, sqlite3.OperationalError):
            log.warning("write failed, store unavailable: %s", exc)
            self.close_connection()
            return unavailable(exc)
        if isinstance(exc, sqlite3.Error) and not isinstance(exc, sqlite3.IntegrityError):
            log.error("write failed: %r", exc)
            self.close_connection()
        return exc

    def close_connection(self) -> None:
        # Also after a storage fault: a fresh connection lets the store recover by itself.
        if self.conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self.conn.close()
            self.conn = None
        # data_version is per connection: a new one starts with nothing cached.
        self.cache.clear()

    def _commit(self, write: Callable[..., T], *args: Any) -> T:
        if self.conn is None:
            self.conn = self.store.connect()
            self._cache_set = 0
        conn = self.conn
        if self._cache_set != self.cache_kib:
            conn.execute(f"PRAGMA cache_size = -{int(self.cache_kib)}")
            self._cache_set = self.cache_kib
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = write(conn, *args) if args else write(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise
        return result

    # -- the ingest transaction --------------------------------------------------------------

    def _write_ingest(self, conn: sqlite3.Connection, jobs: Sequence[Ingest]) -> list[IngestResult]:
        results = [IngestResult() for _ in jobs]
        rows: list[Any] = []
        daily: Counter[tuple[int, str, str]] = Counter()
        names: dict[tuple[int, str], int] = {}
        plans: list[AccountPlan] = []
        self.cache.follow(conn.execute("PRAGMA data_version").fetchone()[0])
        for account_id, entries in entries_by_account(jobs).items():
            needed = lookups_needed([e for _, _, e in entries])
            lookups = self._lookups(conn, account_id, needed)
            if names_to_count(needed, lookups.attribute_types):
                counted = conn.execute(Q["count_attribute_types"], (account_id,)).fetchone()
                lookups.attribute_name_count = counted[0]
            plan = plan_account(
                account_id, entries, lookups, new_profile_uuid, self.store.max_attribute_names
            )
            plans.append(plan)
            self._write_identity(conn, plan)
            # What the database holds once this commits (the cache is emptied if it fails).
            self.cache.adopt(plan)
            if plan.new_attribute_types:
                conn.executemany(
                    Q["insert_attribute_type"],
                    [(account_id, name, kind) for name, kind in plan.new_attribute_types],
                )
            for event, user_uuid in plan.stored:
                rows += (
                    account_id,
                    event.event_uuid,
                    event.event,
                    user_uuid,
                    event.timestamp_ms,
                    event.received_ms,
                    event.stored or _encode(event.body),
                )
                daily[(account_id, _day(event.timestamp_ms), event.event)] += 1
                names.setdefault((account_id, event.event), event.received_ms)
            count_outcomes(plan, entries, results)

        for chunk in _chunks(rows, ROWS_PER_STATEMENT * 7):
            conn.execute(_insert_events_sql(len(chunk) // 7), chunk)
        # The rollups, once per (day, name) and name of the group (they were a trigger's two
        # upserts per row); every event of plan.stored is inserted (the lookups ran in this
        # transaction), so the counts are exact.
        if daily:
            conn.executemany(Q["add_event_daily"], [(*key, n) for key, n in daily.items()])
            conn.executemany(
                Q["add_event_name"],
                [(a, name, name, event_type(name), ms) for (a, name), ms in names.items()],
            )
        log_rows = [v for row in error_log_rows(jobs, plans, results, _encode) for v in row]
        for chunk in _chunks(log_rows, ROWS_PER_STATEMENT * 7):
            conn.execute(_insert_error_log_sql(len(chunk) // 7), chunk)
        return results

    def _lookups(self, conn: sqlite3.Connection, account_id: int, needed: LookupsNeeded) -> Lookups:
        """What the batch needs of the account: from the cache, the rest from the database."""
        cache = self.cache.account(account_id)
        existing: set[str] = set()
        for chunk in _chunks(needed.event_uuids, IN_LIST):
            sql = _in_list_sql("existing_event_uuids", len(chunk))
            existing.update(row[0] for row in conn.execute(sql, (account_id, *chunk)))
        types: dict[str, str] = {}
        cached_types = cache.types
        missing: list[Any] = [n for n in needed.attribute_names if n not in cached_types]
        for name in needed.attribute_names:
            kind = cached_types.get(name)
            if kind is not None:
                types[name] = kind
        for chunk in _chunks(missing, IN_LIST):
            sql = _in_list_sql("attribute_types_of", len(chunk))
            found = conn.execute(sql, (account_id, *chunk)).fetchall()
            types.update(found)
            cached_types.update(found)
        index: dict[tuple[str, str], str] = {}
        missing = []
        owner = cache.owner
        for pair in needed.identifiers:
            uuid = owner(pair)
            if uuid is None:
                missing.append(pair)
            else:
                index[pair] = uuid
        for pairs in _chunks(missing, IN_LIST):
            sql = _in_list_sql("identifiers_of_pairs", len(pairs))
            params = [*(v for pair in pairs for v in pair), account_id]
            for kind, value, customer_uuid in conn.execute(sql, params):
                index[(kind, value)] = customer_uuid
        profiles: dict[str, Profile] = {}
        cached_profiles = cache.profiles
        missing = []
        for uuid in set(index.values()):
            profile = cached_profiles.get(uuid)
            if profile is None:
                missing.append(uuid)
            else:
                profiles[uuid] = profile
        for chunk in _chunks(sorted(missing), IN_LIST):
            sql = _in_list_sql("profiles_by_uuid", len(chunk))
            for u, cid, email, attributes, subscriptions, created, updated, seen in conn.execute(
                sql, (account_id, *chunk)
            ):
                profiles[u] = Profile(
                    u, cid, email, _decode(attributes), _decode(subscriptions), created, updated,
                    seen,
                )  # fmt: skip
        return Lookups(existing, types, index, profiles)

    @staticmethod
    def _write_identity(conn: sqlite3.Connection, plan: AccountPlan) -> None:
        """Write what resolving the plan's events changed: profiles, merges, identifiers."""
        writes = identity_writes(plan, _encode)
        if writes.new_profiles:
            conn.executemany(Q["insert_customer"], writes.new_profiles)
        account_id = plan.account_id
        for merge in writes.merges:
            log.info("merging customer %s into %s", merge.loser, merge.winner)
            conn.execute(Q["merge_identifiers"], (merge.winner, account_id, merge.loser))
            conn.execute(Q["merge_events"], (merge.winner, account_id, merge.loser))
            conn.execute(
                Q["merge_customers"],
                (
                    merge.winner,
                    merge.loser,
                    merge.received_ms,
                    account_id,
                    merge.loser,
                    merge.loser,
                ),
            )
        if writes.changed_profiles:
            conn.executemany(Q["update_customer"], writes.changed_profiles)
        if writes.identifiers:
            conn.executemany(Q["insert_identifier"], writes.identifiers)
        if writes.conflicts:
            conn.executemany(Q["insert_conflict"], writes.conflicts)
