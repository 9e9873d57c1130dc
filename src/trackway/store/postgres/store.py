"""The PostgreSQL store: many stateless processes, one database.

Each process has one writer task doing group commit: every ingest job queued while the previous
transaction committed goes into the next one (synchronous_commit on). The writers of several
processes resolve identities side by side, and stay in line where they meet:

- each takes its accounts' lock *shared*, then one advisory lock per hashed identifier and
  event uuid of the batch, then the profiles those identifiers point at (FOR UPDATE), each
  group in sorted order, so never a deadlock. Two processes seeing the same new customer at
  once wait for each other on its identifier and end with one customer; an event_uuid sent
  twice at once is stored once;
- a batch that merges profiles (a merge rewrites every identifier of the merged profile) or
  fixes the type of a new attribute name is rolled back and written again under the account's
  lock taken *exclusively*, as is a batch of very many identifiers; deleting a customer takes it
  exclusively too;
- the events are inserted under a per-account order lock taken shared and held to the
  commit, so writers insert and commit side by side and a lower id may commit after a higher
  one; the live stream, which reads after an id, takes that lock exclusively to learn up to
  which id everything is committed. The daily rollup is kept in shards, so that two writers
  seldom wait for each other on the row of the (day, event) they both count.

Events are partitioned by month of their timestamp; the writer creates a month's partition the
first time it sees the month.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
import uuid
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec
import psycopg
import psycopg_pool

from trackway.domain.batch import (
    MAX_ATTRIBUTE_NAMES,
    Entry,
    IdentityWrites,
    Lookups,
    LookupsNeeded,
    identity_writes,
    lookups_needed,
    names_to_count,
    plan_account,
)
from trackway.domain.customers import SearchPrefix
from trackway.domain.errors import (
    AccountExists,
    AccountNotFound,
    EventRejected,
    StoreUnavailable,
)
from trackway.domain.events import AcceptedEvent, event_type, new_event_uuid
from trackway.domain.identity import Profile
from trackway.domain.timestamps import day_of_ms, now_ms
from trackway.store.base import (
    END_OF_TIME_MS,
    Account,
    ArrivedEvent,
    AttributeType,
    Credential,
    CustomerDetails,
    CustomerRecord,
    CustomerSummary,
    ErrorFilter,
    ErrorLogRow,
    IdentifierSeen,
    IdentityConflict,
    IngestResult,
    LoggedError,
    MergedProfile,
    Rejection,
    StoredEvent,
    TimelineEvent,
    count_outcomes,
    entries_by_account,
    error_log_rows,
    observe_batch,
)
from trackway.store.queries import load_queries, migration_files

log = logging.getLogger("trackway.store")

T = TypeVar("T")
Q = load_queries("trackway.store.postgres", "queries.sql")

# Session-level advisory lock held while migrating, so that N processes starting together
# apply each migration once.
MIGRATION_LOCK = 7311
PARTITION_LOCK = 7313
MAX_BATCH_EVENTS = 20000
# Past every row id and every sort key: the position before the first page.
MAX_ROW_ID = 2**63 - 1
# Event-loop turns the writer lets pass before it cuts a batch (2 workers, 64 connections: 3
# turns took a batch from 8 to 14 events and ingest from ~4,400 to ~5,700 ev/s; 1 turn, 4,700).
GATHER_TURNS = 3
# Above this many identifier and uuid locks a batch takes its accounts' lock exclusively
# instead: PostgreSQL's lock table is shared and sized for some 64 locks per connection.
MAX_BUCKET_LOCKS = 256
# How long a live-stream poll waits for the writers' commits (an import's batch takes seconds);
# past that it finds nothing new, and the next poll asks again.
HORIZON_WAIT = "1s"
# Shards of the daily rollup (schema/005): a group commit adds to one, at random.
DAILY_SHARDS = 16
# Months of partitions created ahead at start: this one and the next few.
PARTITIONS_AHEAD = 3
POOL_TIMEOUT_SECONDS = 2.0
CONNECT_TIMEOUT_SECONDS = 2
# After a failed group commit, the writer answers 503 at once for this long before it tries again.
RETRY_PAUSE_SECONDS = 1.0

# The statements of a group commit that read or update existing rows. The writer's connection
# plans each once (force_generic_plan): each must probe indexes whatever the statistics, which
# tests/storage/test_postgres_plans.py checks on empty tables.
WRITER_STATEMENTS = (
    "lock_batch",
    "lookups",
    "write_batch",
    "merge_identifiers",
    "merge_events",
    "merge_customers",
)

_encode = msgspec.json.Encoder().encode
_DAY_MS = 86_400_000


def _json_text(value: Any) -> str:
    return _encode(value).decode()


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows of `width` values as one list per column: the parameters of an unnest()."""
    if not rows:
        return [[] for _ in range(width)]
    return [list(column) for column in zip(*rows, strict=True)]


def _write_batch_params(
    stored: list[tuple[int, AcceptedEvent, str]], writes: list[IdentityWrites]
) -> list[Any]:
    """The parameters of the write_batch statement: identity rows, events, new event names."""
    new_profiles = [row for w in writes for row in w.new_profiles]
    changed_profiles = [row for w in writes for row in w.changed_profiles]
    identifiers = [row for w in writes for row in w.identifiers]
    events = [
        (a, e.event_uuid, e.event, user_uuid, e.timestamp_ms, e.received_ms,
         _json_text(e.body), day_of_ms(e.timestamp_ms))
        for a, e, user_uuid in stored
    ]  # fmt: skip
    names = sorted({(a, e.event) for a, e, _ in stored})
    now = now_ms()
    return [
        *_columns(new_profiles, 9),
        *_columns(changed_profiles, 9),
        *_columns(identifiers, 5),
        *_columns(events, 8),
        random.randrange(DAILY_SHARDS),
        [a for a, _ in names],
        [n for _, n in names],
        [event_type(n) for _, n in names],
        [now] * len(names),
    ]


class _NeedsExclusive(Exception):
    """The batch must be written under its accounts' exclusive lock."""


class _HorizonBusy(Exception):
    """A writer held the order lock longer than the live stream waits for it."""


class _StaleConnection(StoreUnavailable):
    """The writer's connection, reused from the previous batch, failed before this batch's
    COMMIT was sent: nothing of the batch committed, and it may run again on a new one."""


def _bucket(account_id: int, kind: str, value: str) -> int:
    """A stable (not per-process, unlike hash()) signed 32-bit advisory lock key."""
    key = zlib.crc32(f"{account_id}\x1f{kind}\x1f{value}".encode())
    return key - 2**32 if key >= 2**31 else key


def _unavailable(exc: BaseException) -> StoreUnavailable:
    return StoreUnavailable(f"PostgreSQL: {exc}")


def _month_start(ms: int) -> datetime:
    dt = datetime.fromtimestamp(ms // 1000, UTC)
    return datetime(dt.year, dt.month, 1, tzinfo=UTC)


_YEAR_10000_MS = 253_402_300_800_000


@functools.lru_cache(maxsize=4096)
def _month_of_day(day: int) -> datetime:
    """The month of a day (days since the epoch): one per event of a batch, so cached."""
    return _month_start(day * _DAY_MS)


def _next_month(dt: datetime) -> datetime:
    return datetime(dt.year + dt.month // 12, dt.month % 12 + 1, 1, tzinfo=UTC)


def partition_name(month: datetime) -> str:
    return f"events_p{month:%Y%m}"


class _Job:
    __slots__ = ("account_id", "events", "future", "rejections")

    def __init__(
        self,
        future: asyncio.Future[IngestResult],
        account_id: int,
        events: Sequence[AcceptedEvent],
        rejections: Sequence[Rejection],
    ) -> None:
        self.future = future
        self.account_id = account_id
        self.events = events
        self.rejections = rejections


class PostgresStore:
    def __init__(
        self,
        url: str,
        *,
        min_connections: int = 2,
        max_connections: int = 10,
        max_attribute_names: int = MAX_ATTRIBUTE_NAMES,
    ) -> None:
        self.url = url
        # Custom attribute names one account may fix (the writer's bound).
        self.max_attribute_names = max_attribute_names
        self._pool: psycopg_pool.AsyncConnectionPool | None = None
        self._min = min_connections
        self._max = max_connections
        self._pending: list[_Job] = []
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        # The writer's own connection, outside the pool (see _writer_transaction).
        self._writer_conn: psycopg.AsyncConnection[Any] | None = None
        self._closing = False
        self._partitions: set[str] = set()
        # Until when (monotonic seconds) the writer answers 503 without trying the database.
        self._down_until = 0.0

    # -- connections ---------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A pooled connection inside a transaction; every database failure of the block is
        StoreUnavailable (503), every other error passes through."""
        if self._pool is None:
            raise RuntimeError("store is not open")
        try:
            async with self._pool.connection() as conn, conn.transaction():
                yield conn
        except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as exc:
            raise _unavailable(exc) from exc

    @contextlib.asynccontextmanager
    async def _writer_transaction(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A transaction in one pipeline on the writer's own connection.

        A group commit every few milliseconds skips the pool and its check of a connection (a
        round trip each). BEGIN and COMMIT are plain statements of the pipeline, so that the
        transaction costs one Sync at its end: psycopg's transaction() inside a pipeline syncs
        at each of its nested blocks, three round trips. A block that raises is rolled back;
        after any database error (rare: the writer's statements do not conflict) or a
        cancellation the connection is closed, and the next batch connects again."""
        conn = self._writer_conn
        reused = conn is not None and not conn.closed
        committing = False
        try:
            if conn is None or conn.closed:
                conn = self._writer_conn = await psycopg.AsyncConnection.connect(
                    self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS
                )
                # The writer's statements take arrays, whose lengths make every custom plan
                # look cheaper than the generic one: PostgreSQL planned some at each batch
                # (0.4 ms for write_batch). Every one is written so that its one generic plan
                # probes indexes whatever the statistics (the LATERAL ... OFFSET 0 fences).
                await conn.execute("SET plan_cache_mode = force_generic_plan")
            async with conn.pipeline():
                await conn.execute("BEGIN")
                yield conn
                committing = True
                await conn.execute("COMMIT")
        except BaseException as exc:
            await self._after_failed_transaction(conn, exc)
            if isinstance(exc, psycopg.OperationalError):
                if reused and not committing:
                    raise _StaleConnection(f"PostgreSQL: {exc}") from exc
                raise _unavailable(exc) from exc
            raise

    async def _after_failed_transaction(
        self, conn: psycopg.AsyncConnection[Any] | None, exc: BaseException
    ) -> None:
        """Roll back what the writer's block left open (it raised, say _NeedsExclusive), or,
        after a database error or a cancellation, drop the connection: rare, since the writer's
        statements do not conflict, and a new connection is in a known state."""
        if conn is None or conn.closed:
            self._writer_conn = None
            return
        if not isinstance(exc, psycopg.Error | asyncio.CancelledError):
            try:
                if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    await conn.execute("ROLLBACK")
            except psycopg.Error:
                await self._drop_writer_connection(conn)
                return
            except BaseException:
                # Even cancelled: a transaction left open would keep its locks, and the next
                # BEGIN would carry its writes into the next COMMIT.
                await self._drop_writer_connection(conn)
                raise
            if conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
                return
        await self._drop_writer_connection(conn)

    async def _drop_writer_connection(self, conn: psycopg.AsyncConnection[Any]) -> None:
        if self._writer_conn is conn:
            self._writer_conn = None
        with contextlib.suppress(psycopg.Error):
            await conn.close()

    async def _fetch(
        self, sql: str, params: Sequence[Any] | dict[str, Any] = ()
    ) -> list[tuple[Any, ...]]:
        async with self._connection() as conn:
            cursor = await conn.execute(sql, params)
            return await cursor.fetchall()

    # -- life cycle ----------------------------------------------------------------------

    async def open(self) -> None:
        await self.migrate_async()
        self._pool = psycopg_pool.AsyncConnectionPool(
            self.url,
            min_size=self._min,
            max_size=self._max,
            timeout=POOL_TIMEOUT_SECONDS,
            check=psycopg_pool.AsyncConnectionPool.check_connection,
            kwargs={"autocommit": True},
            open=False,
        )
        await self._pool.open(wait=False)
        now = now_ms()
        month = _month_start(now - 31 * _DAY_MS)
        months = []
        for _ in range(PARTITIONS_AHEAD + 2):
            months.append(month)
            month = _next_month(month)
        with contextlib.suppress(StoreUnavailable):
            await self._ensure_partitions(months)
        self._writer = asyncio.create_task(self._write_loop(), name="trackway-writer")

    def migrate(self) -> None:
        asyncio.run(self.migrate_async())

    async def migrate_async(self) -> None:
        try:
            conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
        except psycopg.OperationalError as exc:
            raise _unavailable(exc) from exc
        async with conn:
            await conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
            try:
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations ("
                    " version integer PRIMARY KEY, name text NOT NULL, applied_ms bigint NOT NULL)"
                )
                cursor = await conn.execute("SELECT version FROM schema_migrations")
                applied = {row[0] for row in await cursor.fetchall()}
                for number, name, sql in migration_files("trackway.store.postgres"):
                    if number in applied:
                        continue
                    log.info("applying migration %s", name)
                    async with conn.transaction():
                        await conn.execute(sql.encode())
                        await conn.execute(
                            "INSERT INTO schema_migrations VALUES (%s, %s, %s)",
                            (number, name, now_ms()),
                        )
            finally:
                await conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))

    async def close(self) -> None:
        self._closing = True
        if self._writer is not None:
            self._wake.set()
            await self._writer
            self._writer = None
        if self._writer_conn is not None:
            await self._writer_conn.close()
            self._writer_conn = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def ping(self) -> None:
        await self._fetch("SELECT 1")

    # -- partitions ----------------------------------------------------------------------

    async def _ensure_partitions(self, months: Sequence[datetime]) -> None:
        missing = [m for m in months if partition_name(m) not in self._partitions]
        if not missing:
            return
        if not self._partitions:
            self._partitions.update(row[0] for row in await self._fetch(Q["event_partitions"]))
            missing = [m for m in missing if partition_name(m) not in self._partitions]
        for month in missing:
            name = partition_name(month)
            start = int(month.timestamp() * 1000)
            # December 9999 has no next month in datetime: its partition ends at year 10000.
            end = (
                _YEAR_10000_MS
                if (month.year, month.month) == (9999, 12)
                else int(_next_month(month).timestamp() * 1000)
            )
            async with self._connection() as conn:
                await conn.execute("SELECT pg_advisory_xact_lock(%s)", (PARTITION_LOCK,))
                await conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF events "
                    f"FOR VALUES FROM ({start}) TO ({end})"
                )
            self._partitions.add(name)

    # -- the writer ----------------------------------------------------------------------

    async def ingest(
        self,
        account: Account,
        events: Sequence[AcceptedEvent],
        rejections: Sequence[Rejection] = (),
    ) -> IngestResult:
        if self._writer is None or self._closing:
            raise StoreUnavailable("store is closed")
        future: asyncio.Future[IngestResult] = asyncio.get_running_loop().create_future()
        self._pending.append(_Job(future, account.id, events, rejections))
        self._wake.set()
        return await future

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                # A few event-loop turns first, so that requests already read from the sockets
                # join this batch: under load that doubles the batch and halves what each event
                # pays of the per-batch work; idle, it costs microseconds.
                for _ in range(GATHER_TURNS):
                    await asyncio.sleep(0)
                batch, size = [], 0
                while self._pending and size < MAX_BATCH_EVENTS:
                    job = self._pending.pop(0)
                    batch.append(job)
                    size += len(job.events) + 1
                await self._run_batch(batch)
            if self._closing:
                return

    async def _run_batch(self, jobs: list[_Job]) -> None:
        if time.monotonic() < self._down_until:
            # The database just failed: answer at once rather than each batch waiting out the
            # pool's timeout in turn; the first batch after the pause tries again.
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(StoreUnavailable("PostgreSQL is unreachable"))
            return
        try:
            months = {_month_of_day(e.timestamp_ms // _DAY_MS) for job in jobs for e in job.events}
            await self._ensure_partitions(sorted(months))
            started = time.perf_counter()
            try:
                results = await self._write(jobs)
            except _StaleConnection:
                # Dropped while idle (a restart, a proxy's timeout) before anything of this
                # batch could commit: once more, on a new connection.
                results = await self._write(jobs)
            observe_batch(jobs, results, time.perf_counter() - started)
        except BaseException as exc:
            if isinstance(exc, StoreUnavailable):
                self._down_until = time.monotonic() + RETRY_PAUSE_SECONDS
            elif not isinstance(exc, asyncio.CancelledError):
                log.exception("group commit failed")
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        for job, result in zip(jobs, results, strict=True):
            if not job.future.done():
                job.future.set_result(result)

    async def _write(self, jobs: list[_Job]) -> list[IngestResult]:
        """One transaction, or two when the first finds that the batch needs the exclusive
        lock; straight to the exclusive lock when the batch would take too many locks."""
        grouped = entries_by_account(jobs)
        needed = {a: lookups_needed([e for _, _, e in grouped[a]]) for a in sorted(grouped)}
        buckets = sorted(
            {_bucket(a, k, v) for a, n in needed.items() for k, v in n.identifiers}
            | {_bucket(a, "event_uuid", u) for a, n in needed.items() for u in n.event_uuids}
        )
        if len(buckets) <= MAX_BUCKET_LOCKS:
            try:
                async with self._writer_transaction() as conn:
                    return await self._write_ingest(conn, jobs, grouped, needed, buckets)
            except _NeedsExclusive:
                pass
        async with self._writer_transaction() as conn:
            return await self._write_ingest(conn, jobs, grouped, needed, None)

    async def _write_ingest(
        self,
        conn: psycopg.AsyncConnection[Any],
        jobs: list[_Job],
        grouped: dict[int, list[Entry]],
        needed: dict[int, LookupsNeeded],
        buckets: list[int] | None,
    ) -> list[IngestResult]:
        """Two round trips whatever the batch (in the caller's pipeline): BEGIN, the locks (one
        statement) and the lookups (one); then the order lock, every new row in one statement
        (write_batch), and the COMMIT; merges, attribute types, conflicts and rejections add a
        statement each when there are some. With `buckets` (the shared lock and these), raises
        _NeedsExclusive (before writing anything) when the batch must be written under the
        exclusive lock; without, takes it."""
        exclusive = buckets is None
        results = [IngestResult() for _ in jobs]
        accounts = sorted(set(grouped) | {job.account_id for job in jobs if job.rejections})
        await conn.execute(Q["lock_batch"], (accounts, buckets or [], exclusive))
        pending = {a: await self._send_lookups(conn, a, n) for a, n in needed.items()}
        lookups = {a: await self._read_lookups(cursor) for a, cursor in pending.items()}
        for a, found in lookups.items():
            if names_to_count(needed[a], found.attribute_types):
                counted = await (await conn.execute(Q["count_attribute_types"], (a,))).fetchone()
                assert counted is not None
                found.attribute_name_count = int(counted[0])
        bound = self.max_attribute_names
        plans = {a: plan_account(a, grouped[a], lookups[a], new_event_uuid, bound) for a in needed}
        if not exclusive and any(
            p.new_attribute_types or (p.identity is not None and p.identity.merges)
            for p in plans.values()
        ):
            raise _NeedsExclusive

        writes = [identity_writes(plan, _json_text) for plan in plans.values()]
        stored = [(a, e, user_uuid) for a, plan in plans.items() for e, user_uuid in plan.stored]
        for account_id, plan in plans.items():
            count_outcomes(plan, grouped[account_id], results)
        if stored or any(w.new_profiles or w.changed_profiles or w.identifiers for w in writes):
            await conn.execute(Q["lock_account_order"], (sorted(plans),))
            await conn.execute(Q["write_batch"], _write_batch_params(stored, writes))
        for account_id, w in zip(plans, writes, strict=True):
            for merge in w.merges:
                log.info("merging customer %s into %s", merge.loser, merge.winner)
                await conn.execute(Q["merge_identifiers"], (merge.winner, account_id, merge.loser))
                await conn.execute(Q["merge_events"], (merge.winner, account_id, merge.loser))
                await conn.execute(
                    Q["merge_customers"],
                    (merge.winner, merge.loser, merge.received_ms, account_id, merge.loser,
                     merge.loser),
                )  # fmt: skip
            if w.conflicts:
                await conn.cursor().executemany(Q["insert_conflict"], w.conflicts)
        for account_id, plan in plans.items():
            if plan.new_attribute_types:
                names, kinds = zip(*plan.new_attribute_types, strict=True)
                await conn.execute(
                    Q["insert_attribute_types"], (account_id, list(names), list(kinds))
                )
        log_rows = error_log_rows(jobs, list(plans.values()), results, _encode)
        if log_rows:
            await self._insert_rejections(conn, log_rows)
        return results

    @staticmethod
    async def _send_lookups(
        conn: psycopg.AsyncConnection[Any], account_id: int, needed: LookupsNeeded
    ) -> psycopg.AsyncCursor[Any]:
        kinds = [k for k, _ in needed.identifiers]
        values = [v for _, v in needed.identifiers]
        params = (needed.event_uuids, account_id, needed.attribute_names, account_id)
        return await conn.execute(Q["lookups"], (*params, kinds, values, account_id, account_id))

    @staticmethod
    async def _read_lookups(cursor: psycopg.AsyncCursor[Any]) -> Lookups:
        existing: set[str] = set()
        fixed: dict[str, str] = {}
        index: dict[tuple[str, str], str] = {}
        profiles: dict[str, Profile] = {}
        for what, a, b, owner, *profile in await cursor.fetchall():
            if what == "i":
                index[(a, b)] = owner
                if profile[0] is not None and owner not in profiles:
                    profiles[owner] = Profile(*profile)
            elif what == "u":
                existing.add(a)
            else:
                fixed[a] = b
        return Lookups(existing, fixed, index, profiles)

    @staticmethod
    async def _insert_rejections(
        conn: psycopg.AsyncConnection[Any], rows: list[ErrorLogRow]
    ) -> None:
        await conn.execute(
            Q["insert_error_log"],
            (
                [r[0] for r in rows],
                [r[1] for r in rows],
                [r[2] for r in rows],
                [r[3].decode() for r in rows],
                [r[4] for r in rows],
                [r[5] for r in rows],
                [None if r[6] is None else r[6].decode() for r in rows],
            ),
        )
        daily = Counter((r[0], day_of_ms(r[1]), r[2]) for r in rows)
        keys = sorted(daily)
        await conn.execute(
            Q["add_error_daily"],
            (
                [k[0] for k in keys],
                [k[1] for k in keys],
                [k[2] for k in keys],
                [daily[k] for k in keys],
            ),
        )

    # -- accounts and keys ---------------------------------------------------------------

    async def _transaction(self, work: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]) -> T:
        async with self._connection() as conn:
            return await work(conn)

    async def create_account(self, name: str, event_key_hash: str, user_key_hash: str) -> Account:
        account_uuid = str(uuid.uuid4())
        created = now_ms()

        async def work(conn: psycopg.AsyncConnection[Any]) -> Account:
            cursor = await conn.execute(Q["insert_account"], (account_uuid, name, created))
            row = await cursor.fetchone()
            assert row is not None
            await conn.execute(Q["insert_key"], (event_key_hash, row[0], "event", created))
            await conn.execute(Q["insert_key"], (user_key_hash, row[0], "user", created))
            return Account(row[0], account_uuid, name, created)

        try:
            return await self._transaction(work)
        except psycopg.errors.UniqueViolation:
            raise AccountExists(f"an account named {name!r} exists already") from None

    async def replace_key(
        self, account: Account, kind: str, key_hash: str, grace_ms: int = 0
    ) -> None:
        now = now_ms()

        async def work(conn: psycopg.AsyncConnection[Any]) -> None:
            await conn.execute(Q["expire_keys"], (now + grace_ms, account.id, kind, now + grace_ms))
            await conn.execute(Q["insert_key"], (key_hash, account.id, kind, now))

        await self._transaction(work)

    async def revoke_key(self, account: Account, key_hash: str) -> str | None:
        now = now_ms()

        async def work(conn: psycopg.AsyncConnection[Any]) -> str | None:
            cursor = await conn.execute(Q["revoke_key"], (now, account.id, key_hash, now))
            row = await cursor.fetchone()
            return None if row is None else str(row[0])

        return await self._transaction(work)

    async def set_verification_secret(self, account: Account, secret: str | None) -> None:
        async def work(conn: psycopg.AsyncConnection[Any]) -> None:
            await conn.execute(Q["set_verification_secret"], (secret, account.id))

        await self._transaction(work)

    async def credential(self, key_hash: str) -> Credential | None:
        rows = await self._fetch(Q["credential"], (key_hash, now_ms()))
        if not rows:
            return None
        row = rows[0]
        return Credential(Account(*row[:5]), row[5], row[6])

    async def list_accounts(self) -> list[Account]:
        return [Account(*row) for row in await self._fetch(Q["list_accounts"])]

    async def find_account(self, ref: str) -> Account:
        rows = await self._fetch(Q["find_account"], (ref, ref))
        if not rows:
            raise AccountNotFound(ref)
        return Account(*rows[0])

    # -- reads ---------------------------------------------------------------------------

    async def event_by_uuid(self, account: Account, event_uuid: str) -> dict[str, Any] | None:
        rows = await self._fetch(Q["event_by_uuid"], (account.id, event_uuid))
        return rows[0][0] if rows else None

    async def count_events(self, account: Account) -> int:
        return int((await self._fetch(Q["count_events"], (account.id,)))[0][0])

    async def daily_event_counts(
        self, account: Account, first_day: str, last_day: str
    ) -> list[tuple[str, str, int]]:
        rows = await self._fetch(Q["daily_event_counts"], (account.id, first_day, last_day))
        return [(d, n, int(c)) for d, n, c in rows]

    async def daily_error_counts(
        self, account: Account, first_day: str, last_day: str
    ) -> list[tuple[str, str, int]]:
        rows = await self._fetch(Q["daily_error_counts"], (account.id, first_day, last_day))
        return [(d, t, int(c)) for d, t, c in rows]

    async def error_log(self, account: Account, limit: int = 100) -> list[dict[str, Any]]:
        rows = await self._fetch(Q["error_log"], (account.id, limit))
        return [
            {"id": i, "received_ms": ms, "error_type": t, "errors": e, "raw": bytes(raw)}
            for i, ms, t, e, raw in rows
        ]

    async def event_names(self, account: Account) -> list[dict[str, Any]]:
        rows = await self._fetch(Q["event_names"], (account.id,))
        return [
            {"name": n, "display_name": d, "type": t, "archived": bool(a), "created_ms": c}
            for n, d, t, a, c in rows
        ]

    async def update_event_name(
        self,
        account: Account,
        name: str,
        *,
        display_name: str | None = None,
        archived: bool | None = None,
    ) -> bool:
        async def work(conn: psycopg.AsyncConnection[Any]) -> bool:
            changed = 0
            if display_name is not None:
                cursor = await conn.execute(Q["rename_event"], (display_name, account.id, name))
                changed = cursor.rowcount
            if archived is not None:
                cursor = await conn.execute(Q["archive_event"], (archived, account.id, name))
                changed = cursor.rowcount
            return changed > 0

        return await self._transaction(work)

    async def attribute_types(self, account: Account) -> list[AttributeType]:
        return [
            AttributeType(*row) for row in await self._fetch(Q["attribute_types"], (account.id,))
        ]

    async def reset_attribute_type(self, account: Account, name: str) -> AttributeType | None:
        async def work(conn: psycopg.AsyncConnection[Any]) -> AttributeType | None:
            # The writers' lock, exclusively: no group commit of the account holds the old type.
            await conn.execute(Q["lock_account"], (account.id,))
            cursor = await conn.execute(Q["delete_attribute_type"], (account.id, name))
            row = await cursor.fetchone()
            return None if row is None else AttributeType(*row)

        return await self._transaction(work)

    async def hit_rate_window(
        self, account: Account, name: str, window_start: int, keep_after: int
    ) -> int:
        async def work(conn: psycopg.AsyncConnection[Any]) -> int:
            await conn.execute(Q["forget_rate_windows"], (account.id, name, keep_after))
            cursor = await conn.execute(Q["hit_rate_window"], (account.id, name, window_start))
            row = await cursor.fetchone()
            assert row is not None
            return int(row[0])

        return await self._transaction(work)

    async def customer_by_identifier(
        self, account: Account, kind: str, value: str
    ) -> CustomerRecord | None:
        async def work(conn: psycopg.AsyncConnection[Any]) -> CustomerRecord | None:
            cursor = await conn.execute(Q["customer_uuid_by_identifier"], (account.id, kind, value))
            row = await cursor.fetchone()
            return None if row is None else await _customer(conn, account.id, row[0])

        return await self._transaction(work)

    async def customer_by_uuid(self, account: Account, uuid: str) -> CustomerRecord | None:
        return await self._transaction(lambda conn: _customer(conn, account.id, uuid))

    async def delete_customer(self, account: Account, uuid: str) -> int | None:
        async def work(conn: psycopg.AsyncConnection[Any]) -> int | None:
            # The writer's lock: no group commit of this account resolves identities meanwhile.
            await conn.execute(Q["lock_account"], (account.id,))
            customer = await _customer(conn, account.id, uuid)
            if customer is None:
                return None
            live, a = customer.uuid, account.id
            deleted = await conn.execute(Q["delete_customer_events"], (a, a, live, live))
            await conn.execute(Q["delete_customer_identifiers"], (a, live))
            await conn.execute(Q["delete_customer_conflicts"], (a, live, live))
            await conn.execute(Q["delete_customer"], (a, live, live))
            return deleted.rowcount

        return await self._transaction(work)

    async def customer_events(
        self, account: Account, user_uuid: str, start_ms: int, end_ms: int, limit: int
    ) -> list[StoredEvent]:
        rows = await self._fetch(
            Q["customer_events"], (account.id, user_uuid, start_ms, end_ms, limit)
        )
        return [StoredEvent(*row) for row in rows]

    async def customer_events_page(
        self, account: Account, user_uuid: str, before: tuple[int, int] | None, limit: int
    ) -> list[TimelineEvent]:
        before_ms, before_id = before or (END_OF_TIME_MS, MAX_ROW_ID)
        rows = await self._fetch(
            Q["customer_events_page"],
            (account.id, user_uuid, before_ms, before_ms, before_id, limit),
        )
        return [
            TimelineEvent(i, StoredEvent(body, user, received, ts))
            for ts, i, body, user, received in rows
        ]

    async def search_customers(
        self,
        account: Account,
        prefix: SearchPrefix | None,
        before: tuple[int, int] | None,
        limit: int,
    ) -> list[CustomerSummary]:
        seen, row_id = before or (MAX_ROW_ID, MAX_ROW_ID)
        if prefix is None:
            rows = await self._fetch(Q["customers_page"], (account.id, seen, row_id, limit))
        else:
            params = {
                "a": account.id,
                "exact": prefix.exact,
                "exact_upper": prefix.exact_upper,
                "folded": prefix.folded,
                "folded_upper": prefix.folded_upper,
                "seen": seen,
                "id": row_id,
                "limit": limit,
            }
            rows = await self._fetch(Q["customers_by_prefix"], params)
        return [_summary(row) for row in rows]

    async def customer_details(
        self, account: Account, uuid: str, conflicts: int
    ) -> CustomerDetails | None:
        async def work(conn: psycopg.AsyncConnection[Any]) -> CustomerDetails | None:
            a = account.id
            customer = await _customer(conn, a, uuid)
            if customer is None:
                return None
            live = customer.uuid
            seen = await conn.execute(Q["identifiers_seen_of_customer"], (a, live))
            identifiers = [IdentifierSeen(*row) for row in await seen.fetchall()]
            merged = await conn.execute(Q["profiles_merged_into"], (a, live))
            profiles = [MergedProfile(*row) for row in await merged.fetchall()]
            found = await conn.execute(Q["conflicts_of_customer"], (a, live, a, live, conflicts))
            return CustomerDetails(
                customer,
                identifiers,
                profiles,
                [IdentityConflict(*row) for row in await found.fetchall()],
            )

        return await self._transaction(work)

    async def latest_events(self, account: Account, event: str, limit: int) -> list[StoredEvent]:
        rows = await self._fetch(Q["latest_events"], (account.id, event, limit))
        return [StoredEvent(*row) for row in rows]

    async def events_page(
        self, account: Account, event: str, after: tuple[int, int], before_ms: int, limit: int
    ) -> list[tuple[int, int, bytes]]:
        after_ms, after_id = after
        rows = await self._fetch(
            Q["events_page"], (account.id, event, after_ms, before_ms, after_ms, after_id, limit)
        )
        return [(ts, i, body.encode()) for ts, i, body in rows]

    # -- the clickstream page ------------------------------------------------------------

    async def latest_event_id(self, account: Account) -> int:
        horizon = await self._stream_horizon(account, wait=None)
        assert horizon is not None
        return horizon

    async def _stream_horizon(self, account: Account, wait: str | None) -> int | None:
        """The highest id of the account's events such that every lower one is committed (or
        rolled back): read under the order lock taken exclusively, which waits for the
        writers between their insert and their commit (a few milliseconds; an import's batch
        takes seconds) and holds new ones back as long as one index probe takes. None when the
        lock was not had within `wait` (a PostgreSQL interval)."""

        async def work(conn: psycopg.AsyncConnection[Any]) -> int:
            if wait is not None:
                await conn.execute("SELECT set_config('lock_timeout', %s, true)", (wait,))
            try:
                await conn.execute(Q["lock_stream_horizon"], (account.id,))
            except psycopg.errors.LockNotAvailable:
                raise _HorizonBusy from None
            cursor = await conn.execute(Q["latest_event_id"], (account.id,))
            row = await cursor.fetchone()
            return int(row[0]) if row else 0

        try:
            return await self._transaction(work)
        except _HorizonBusy:
            return None

    async def events_since(
        self, account: Account, after_id: int, limit: int, event: str | None = None
    ) -> list[ArrivedEvent]:
        horizon = await self._stream_horizon(account, wait=HORIZON_WAIT)
        if horizon is None or horizon <= after_id:
            return []
        if event is None:
            rows = await self._fetch(Q["events_since"], (account.id, after_id, horizon, limit))
        else:
            rows = await self._fetch(
                Q["events_since_named"], (account.id, after_id, horizon, event, limit)
            )
        return [ArrivedEvent(i, u, r, t, body.encode()) for i, u, r, t, body in reversed(rows)]

    async def error_page(
        self,
        account: Account,
        where: ErrorFilter,
        before: tuple[int, int] | None,
        limit: int,
    ) -> list[LoggedError]:
        before_ms, before_id = before or (END_OF_TIME_MS, 2**63 - 1)
        pending = None if where.replayed is None else not where.replayed
        tail = (before_ms, before_id, pending, pending, limit)
        params: tuple[Any, ...]
        if where.error_type is None:
            sql, params = Q["error_page"], (account.id, where.start_ms, where.end_ms, *tail)
        else:
            sql = Q["error_page_of_type"]
            params = (account.id, where.error_type, where.start_ms, where.end_ms, *tail)
        return [_logged_error(row) for row in await self._fetch(sql, params)]

    async def count_errors(self, account: Account, where: ErrorFilter, cap: int) -> int:
        pending = None if where.replayed is None else not where.replayed
        tail = (where.start_ms, where.end_ms, pending, pending, cap)
        if where.error_type is None:
            rows = await self._fetch(Q["count_errors"], (account.id, *tail))
        else:
            rows = await self._fetch(
                Q["count_errors_of_type"], (account.id, where.error_type, *tail)
            )
        return int(rows[0][0])

    async def errors_by_id(self, account: Account, ids: Sequence[int]) -> list[LoggedError]:
        rows = await self._fetch(Q["errors_by_id"], (sorted(set(ids)), account.id))
        return [_logged_error(row) for row in rows]

    async def record_replays(
        self,
        account: Account,
        replayed: Sequence[tuple[int, str]],
        failed: Sequence[tuple[int, EventRejected]],
        at_ms: int,
    ) -> None:
        async def work(conn: psycopg.AsyncConnection[Any]) -> None:
            cursor = conn.cursor()
            if replayed:
                await cursor.executemany(
                    Q["mark_error_replayed"],
                    [(at_ms, uuids, at_ms, account.id, i) for i, uuids in replayed],
                )
            if failed:
                await cursor.executemany(
                    Q["mark_error_failed"],
                    [
                        (why.error_type, _encode(why.errors).decode(), at_ms, account.id, i)
                        for i, why in failed
                    ],
                )

        await self._transaction(work)


def _logged_error(row: tuple[Any, ...]) -> LoggedError:
    i, received, error_type, errors, raw, replayed, uuids, retried, source, context = row
    return LoggedError(
        i, received, error_type, errors, bytes(raw), replayed, uuids, retried, source, context
    )


async def _customer(
    conn: psycopg.AsyncConnection[Any], account_id: int, uuid: str
) -> CustomerRecord | None:
    cursor = await conn.execute(Q["customer_by_uuid"], (account_id, uuid))
    row = await cursor.fetchone()
    if row is not None and row[3] is not None:
        cursor = await conn.execute(Q["customer_by_uuid"], (account_id, row[3]))
        row = await cursor.fetchone()
    if row is None:
        return None
    live, customer_id, email, _, attributes, subscriptions, created, updated, seen = row
    cursor = await conn.execute(Q["identifiers_of_customer"], (account_id, live))
    identifiers = [(k, v) for k, v in await cursor.fetchall()]
    return CustomerRecord(
        live, customer_id, email, attributes, subscriptions, created, updated, identifiers, seen
    )


def _summary(row: tuple[Any, ...]) -> CustomerSummary:
    i, uuid, customer_id, email, created, updated, seen, kind, value = row
    matched = None if kind is None else (kind, value)
    return CustomerSummary(i, uuid, customer_id, email, created, updated, seen, matched)
