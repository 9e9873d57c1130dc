"""The SQLite store: one writer thread per process doing group commit, reads on a thread pool.

Every write goes through the writer: it takes every job queued while the previous transaction
committed and writes them all in one transaction (WAL, synchronous=FULL), then answers them.
Several processes may share one file: SQLite serialises their writers (BEGIN IMMEDIATE with a
busy timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from trackway.domain.errors import AccountExists, AccountNotFound, StoreUnavailable
from trackway.domain.events import STANDARD_EVENTS, AcceptedEvent
from trackway.domain.timestamps import now_ms
from trackway.store.base import Account, Credential, IngestResult, Rejection
from trackway.store.queries import load_queries, migration_files

log = logging.getLogger("trackway.store")

T = TypeVar("T")

PRAGMAS = (
    "PRAGMA journal_mode = WAL",
    # A 200 means the event is on disk: fsync the WAL at every commit.
    "PRAGMA synchronous = FULL",
    "PRAGMA busy_timeout = 10000",
    "PRAGMA temp_store = MEMORY",
    "PRAGMA cache_size = -65536",
)
# Rows per INSERT statement: 7 parameters a row stays under SQLite's 32,766 variables.
ROWS_PER_STATEMENT = 2000
# Events per group commit at most; the rest wait for the next transaction.
MAX_BATCH_EVENTS = 20000
READER_THREADS = 4
# Raw bodies kept in the error log are cut at this size.
MAX_RAW_BYTES = 64 * 1024

Q = load_queries("trackway.store.sqlite", "queries.sql")
_encode = msgspec.json.Encoder().encode


def path_from_url(url: str) -> Path:
    rest = url.removeprefix("sqlite://")
    if not rest.startswith("/") or rest == "/":
        raise ValueError(
            f"a SQLite URL is sqlite:///relative/path or sqlite:////absolute/path: {url!r}"
        )
    return Path(rest[1:])


@lru_cache(maxsize=64)
def _insert_events_sql(rows: int) -> str:
    values = ",".join(["(?,?,?,?,?,?,?)"] * rows)
    return f"{Q['insert_events_head']} {values} {Q['insert_events_tail']}"


@lru_cache(maxsize=64)
def _insert_error_log_sql(rows: int) -> str:
    return f"{Q['insert_error_log_head']} {','.join(['(?,?,?,?,?)'] * rows)}"


def _unavailable(exc: sqlite3.Error) -> StoreUnavailable:
    return StoreUnavailable(f"SQLite: {exc}")


class _Job:
    __slots__ = ("account_id", "call", "events", "future", "loop", "rejections")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        account_id: int = 0,
        events: Sequence[AcceptedEvent] = (),
        rejections: Sequence[Rejection] = (),
        call: Callable[[sqlite3.Connection], Any] | None = None,
    ) -> None:
        self.loop = loop
        self.future: asyncio.Future[Any] = loop.create_future()
        self.account_id = account_id
        self.events = events
        self.rejections = rejections
        self.call = call


_STOP = object()


def _deliver(outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, error in outcomes:
        if future.done():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)


class _Writer(threading.Thread):
    """The one thread of this process that writes; group commit happens here."""

    def __init__(self, store: SQLiteStore) -> None:
        super().__init__(name="trackway-writer", daemon=True)
        self.store = store
        self.jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.conn: sqlite3.Connection | None = None

    def run(self) -> None:
        stopping = False
        while not stopping:
            item = self.jobs.get()
            if item is _STOP:
                break
            batch = item if isinstance(item, list) else [item]
            size = sum(len(job.events) + 1 for job in batch)
            while size < MAX_BATCH_EVENTS:
                try:
                    item = self.jobs.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                more = item if isinstance(item, list) else [item]
                batch += more
                size += sum(len(job.events) + 1 for job in more)
            self._run_batch(batch)
        if self.conn is not None:
            self.conn.close()

    def _run_batch(self, batch: list[_Job]) -> None:
        outcomes: dict[asyncio.AbstractEventLoop, list[Any]] = {}
        ingests = [job for job in batch if job.call is None]
        if ingests:
            # One INSERT is a transaction of its own: BEGIN and COMMIT would only add two more
            # hand-overs of the GIL.
            single = not any(job.rejections for job in ingests) and (
                sum(len(job.events) for job in ingests) <= ROWS_PER_STATEMENT
            )
            try:
                results = self._commit(self._write_ingest, ingests, explicit=not single)
                for job, result in zip(ingests, results, strict=True):
                    outcomes.setdefault(job.loop, []).append((job.future, result, None))
            except BaseException as exc:
                error = self._translate(exc)
                for job in ingests:
                    outcomes.setdefault(job.loop, []).append((job.future, None, error))
        for job in batch:
            if job.call is None:
                continue
            try:
                result = self._commit(job.call)
                outcomes.setdefault(job.loop, []).append((job.future, result, None))
            except BaseException as exc:
                outcomes.setdefault(job.loop, []).append((job.future, None, self._translate(exc)))
        for loop, items in outcomes.items():
            # A loop closed while we wrote has nobody waiting for these.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_deliver, items)

    def _translate(self, exc: BaseException) -> BaseException:
        if isinstance(exc, sqlite3.OperationalError):
            log.warning("write failed, store unavailable: %s", exc)
            self._drop_connection()
            return _unavailable(exc)
        if isinstance(exc, sqlite3.Error) and not isinstance(exc, sqlite3.IntegrityError):
            log.error("write failed: %r", exc)
            self._drop_connection()
        return exc

    def _drop_connection(self) -> None:
        # A fresh connection after a storage fault lets the store recover by itself.
        if self.conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self.conn.close()
            self.conn = None

    def _commit(self, write: Callable[..., T], *args: Any, explicit: bool = True) -> T:
        if self.conn is None:
            self.conn = self.store.connect()
        conn = self.conn
        if not explicit:
            return write(conn, *args)
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

    def _write_ingest(self, conn: sqlite3.Connection, jobs: list[_Job]) -> list[IngestResult]:
        """One multi-row INSERT for the events of every job and one for the rejections; the
        triggers keep the rollups and the name registry. Few statements means few hand-overs
        of the GIL between this thread and the event loop, which is what a commit costs."""
        rows: list[Any] = []
        count = 0
        for job in jobs:
            account_id = job.account_id
            for e in job.events:
                rows += (
                    account_id,
                    e.event_uuid,
                    e.event,
                    None,
                    e.timestamp_ms,
                    e.received_ms,
                    _encode(e.body),
                )
                count += 1
        inserted: set[tuple[int, str]] = set()
        step = ROWS_PER_STATEMENT * 7
        for start in range(0, len(rows), step):
            chunk = rows[start : start + step]
            inserted.update(conn.execute(_insert_events_sql(len(chunk) // 7), chunk).fetchall())

        log_rows: list[Any] = []
        results = []
        for job in jobs:
            result = IngestResult()
            account_id = job.account_id
            for e in job.events:
                key = (account_id, e.event_uuid)
                if key in inserted:
                    # Discard, so that a second copy of one uuid in this batch is a duplicate.
                    inserted.discard(key)
                    result.stored += 1
                else:
                    result.duplicates += 1
            for r in job.rejections:
                log_rows += (
                    account_id,
                    r.received_ms,
                    r.error_type,
                    _encode(r.errors),
                    r.raw[:MAX_RAW_BYTES],
                )
            results.append(result)
        step = ROWS_PER_STATEMENT * 5
        for start in range(0, len(log_rows), step):
            chunk = log_rows[start : start + step]
            conn.execute(_insert_error_log_sql(len(chunk) // 5), chunk)
        return results


class SQLiteStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._writer: _Writer | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._pending: list[_Job] = []

    # -- connections ---------------------------------------------------------------------

    def connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=10.0
        )
        for pragma in PRAGMAS:
            conn.execute(pragma)
        return conn

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self.connect()
            self._local.conn = conn
            with self._lock:
                self._reader_conns.append(conn)
        return conn

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._readers is None:
            raise RuntimeError("store is not open")

        def run() -> T:
            try:
                return fn(self._reader())
            except sqlite3.OperationalError as exc:
                self._local.conn = None
                raise _unavailable(exc) from exc

        return await asyncio.get_running_loop().run_in_executor(self._readers, run)

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._writer is None:
            raise RuntimeError("store is not open")
        job = _Job(asyncio.get_running_loop(), call=fn)
        self._writer.jobs.put(job)
        return await job.future  # type: ignore[no-any-return]

    # -- life cycle ----------------------------------------------------------------------

    async def open(self) -> None:
        await asyncio.to_thread(self.migrate)
        self._readers = ThreadPoolExecutor(READER_THREADS, thread_name_prefix="trackway-read")
        self._writer = _Writer(self)
        self._writer.start()

    def migrate(self) -> None:
        """Apply every schema file newer than the database's user_version, each in a
        transaction of its own; BEGIN IMMEDIATE keeps processes starting together in line."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = self.connect()
        except sqlite3.OperationalError as exc:
            raise _unavailable(exc) from exc
        try:
            for number, name, sql in migration_files("trackway.store.sqlite"):
                conn.execute("BEGIN IMMEDIATE")
                try:
                    version = conn.execute("PRAGMA user_version").fetchone()[0]
                    if version >= number:
                        conn.execute("COMMIT")
                        continue
                    log.info("applying migration %s", name)
                    for statement in _statements(sql):
                        conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {number}")
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(Q["add_standard_event_name"], [(n,) for n in STANDARD_EVENTS])
            conn.execute("COMMIT")
        finally:
            conn.close()

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.jobs.put(_STOP)
            await asyncio.to_thread(self._writer.join)
            self._writer = None
        if self._readers is not None:
            self._readers.shutdown(wait=True)
            self._readers = None
        with self._lock:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()

    async def ping(self) -> None:
        await self._read(lambda conn: conn.execute("SELECT 1").fetchone())

    # -- writes --------------------------------------------------------------------------

    async def ingest(
        self,
        account: Account,
        events: Sequence[AcceptedEvent],
        rejections: Sequence[Rejection] = (),
    ) -> IngestResult:
        if self._writer is None:
            raise RuntimeError("store is not open")
        loop = asyncio.get_running_loop()
        job = _Job(loop, account.id, events, rejections)
        # Hand the writer every job of this turn of the event loop at once: one wake-up of
        # its thread per turn instead of one per request.
        if not self._pending:
            loop.call_soon(self._hand_over)
        self._pending.append(job)
        return await job.future  # type: ignore[no-any-return]

    def _hand_over(self) -> None:
        jobs, self._pending = self._pending, []
        if self._writer is None:
            for job in jobs:
                job.future.set_exception(StoreUnavailable("store is closed"))
            return
        self._writer.jobs.put(jobs)

    async def create_account(self, name: str, event_key_hash: str, user_key_hash: str) -> Account:
        account_uuid = str(uuid.uuid4())
        created = now_ms()

        def write(conn: sqlite3.Connection) -> Account:
            try:
                cursor = conn.execute(Q["insert_account"], (account_uuid, name, created))
            except sqlite3.IntegrityError:
                raise AccountExists(f"an account named {name!r} exists already") from None
            account_id = cursor.lastrowid
            assert account_id is not None
            conn.execute(Q["insert_key"], (event_key_hash, account_id, "event", created))
            conn.execute(Q["insert_key"], (user_key_hash, account_id, "user", created))
            return Account(account_id, account_uuid, name, created)

        return await self._write(write)

    async def replace_key(self, account: Account, kind: str, key_hash: str) -> None:
        now = now_ms()

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(Q["expire_keys"], (now, account.id, kind))
            conn.execute(Q["insert_key"], (key_hash, account.id, kind, now))

        await self._write(write)

    # -- reads ---------------------------------------------------------------------------

    async def credential(self, key_hash: str) -> Credential | None:
        def read(conn: sqlite3.Connection) -> Credential | None:
            row = conn.execute(Q["credential"], (key_hash, now_ms())).fetchone()
            if row is None:
                return None
            return Credential(Account(*row[:4]), row[4], row[5])

        return await self._read(read)

    async def list_accounts(self) -> list[Account]:
        return await self._read(
            lambda conn: [Account(*row) for row in conn.execute(Q["list_accounts"])]
        )

    async def find_account(self, ref: str) -> Account:
        row = await self._read(lambda conn: conn.execute(Q["find_account"], (ref, ref)).fetchone())
        if row is None:
            raise AccountNotFound(ref)
        return Account(*row)

    async def event_by_uuid(self, account: Account, event_uuid: str) -> dict[str, Any] | None:
        row = await self._read(
            lambda conn: conn.execute(Q["event_by_uuid"], (account.id, event_uuid)).fetchone()
        )
        if row is None:
            return None
        body: dict[str, Any] = msgspec.json.decode(row[0])
        return body

    async def count_events(self, account: Account) -> int:
        row = await self._read(
            lambda conn: conn.execute(Q["count_events"], (account.id,)).fetchone()
        )
        return int(row[0])

    async def daily_event_counts(
        self, account: Account, first_day: str, last_day: str
    ) -> list[tuple[str, str, int]]:
        return await self._read(
            lambda conn: conn.execute(
                Q["daily_event_counts"], (account.id, first_day, last_day)
            ).fetchall()
        )

    async def daily_error_counts(
        self, account: Account, first_day: str, last_day: str
    ) -> list[tuple[str, str, int]]:
        return await self._read(
            lambda conn: conn.execute(
                Q["daily_error_counts"], (account.id, first_day, last_day)
            ).fetchall()
        )

    async def error_log(self, account: Account, limit: int = 100) -> list[dict[str, Any]]:
        rows = await self._read(
            lambda conn: conn.execute(Q["error_log"], (account.id, limit)).fetchall()
        )
        return [
            {
                "id": i,
                "received_ms": ms,
                "error_type": t,
                "errors": msgspec.json.decode(e),
                "raw": bytes(raw),
            }
            for i, ms, t, e, raw in rows
        ]

    async def event_names(self, account: Account) -> list[dict[str, Any]]:
        rows = await self._read(
            lambda conn: conn.execute(Q["event_names"], (account.id,)).fetchall()
        )
        return [
            {"name": n, "display_name": d, "type": t, "archived": bool(a), "created_ms": c}
            for n, d, t, a, c in rows
        ]


def _statements(sql: str) -> list[str]:
    """Split a schema file into statements (sqlite3 runs one per execute)."""
    statements, current = [], ""
    for line in sql.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    if current.strip() and not all(
        ln.strip().startswith("--") or not ln.strip() for ln in current.splitlines()
    ):
        raise ValueError(f"unterminated SQL statement: {current.strip()[:80]}")
    return statements
