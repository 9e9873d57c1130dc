"""The SQLite store: reads on a thread pool; writes through one writer thread per process
(group commit, see writer.py), except the events of a process that was given a writer
socket: those go to the writer process of `trackway serve` (writer_process.py), which
group-commits the events of every API worker together, on its event loop (no writer thread
there). Several processes may still write one file (the commands beside a server): SQLite
serialises them (BEGIN IMMEDIATE with a busy timeout)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from trackway.domain.batch import MAX_ATTRIBUTE_NAMES
from trackway.domain.customers import SearchPrefix
from trackway.domain.errors import (
    AccountExists,
    AccountNotFound,
    EventRejected,
    StoreUnavailable,
)
from trackway.domain.events import STANDARD_EVENTS, AcceptedEvent
from trackway.domain.timestamps import now_ms
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
    IdentifierSeen,
    IdentityConflict,
    IngestResult,
    LoggedError,
    MergedProfile,
    Rejection,
    StoredEvent,
    TimelineEvent,
)
from trackway.store.queries import migration_files
from trackway.store.sqlite.cache import IMPORT_MAX_IDENTIFIERS, IMPORT_MAX_PROFILES, WriterCache
from trackway.store.sqlite.remote import WriterClient
from trackway.store.sqlite.writer import (
    IMPORT_CACHE_KIB,
    IN_LIST,
    STOP,
    Ingest,
    Job,
    Q,
    Writer,
    _in_list_sql,
    unavailable,
)

log = logging.getLogger("trackway.store")

T = TypeVar("T")
_decode = msgspec.json.Decoder().decode

PRAGMAS = (
    "PRAGMA journal_mode = WAL",
    # A 200 means the event is on disk: fsync the WAL at every commit.
    "PRAGMA synchronous = FULL",
    "PRAGMA busy_timeout = 10000",
    "PRAGMA temp_store = MEMORY",
    "PRAGMA cache_size = -65536",
)
READER_THREADS = 4
# Past every row id and every sort key: the position before the first page.
MAX_ROW_ID = 2**63 - 1


def path_from_url(url: str) -> Path:
    rest = url.removeprefix("sqlite://")
    if not rest.startswith("/") or rest == "/":
        raise ValueError(
            f"a SQLite URL is sqlite:///relative/path or sqlite:////absolute/path: {url!r}"
        )
    return Path(rest[1:])


class SQLiteStore:
    """`writer_socket`: hand every ingest to the writer process listening there (an API
    worker of `trackway serve`, or a command beside one) instead of this process's writer
    thread, which then writes only the rest (accounts, keys, names...)."""

    def __init__(
        self,
        path: Path,
        writer_socket: str | None = None,
        *,
        serves_others: bool = False,
        max_attribute_names: int = MAX_ATTRIBUTE_NAMES,
    ) -> None:
        self.path = path
        self.writer_socket = writer_socket
        self._serves_others = serves_others
        # Custom attribute names one account may fix (the writer's bound).
        self.max_attribute_names = max_attribute_names
        self._remote: WriterClient | None = None
        self._writer: Writer | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._pending: list[Job] = []

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
                raise unavailable(exc) from exc

        return await asyncio.get_running_loop().run_in_executor(self._readers, run)

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._writer is None:
            raise RuntimeError("store is not open")
        if self._serves_others:
            return self._write_here(Ingest(call=fn))  # type: ignore[no-any-return]
        job = Job(asyncio.get_running_loop(), call=fn)
        self._writer.jobs.put(job)
        return await job.future  # type: ignore[no-any-return]

    def _write_here(self, job: Ingest) -> Any:
        """The writer process's writes: on its event loop, as writer_process.py writes its
        clients' jobs (it has no writer thread)."""
        assert self._writer is not None
        ((_, result, error),) = self._writer.write_batch([job])
        if error is not None:
            raise error
        return result

    # -- life cycle ----------------------------------------------------------------------

    async def open(self) -> None:
        await asyncio.to_thread(self.migrate)
        self._readers = ThreadPoolExecutor(READER_THREADS, thread_name_prefix="trackway-read")
        self._writer = Writer(self, serves_others=self._serves_others)
        if not self._serves_others:
            # The writer process has no writer thread: it writes on its event loop, between
            # reading the jobs of its clients (writer_process.py); a thread's hand-offs cost
            # 10-20 us a single event there.
            self._writer.start()
        if self.writer_socket is not None:
            self._remote = WriterClient(self.writer_socket)

    def migrate(self) -> None:
        """Apply every schema file newer than the database's user_version, each in a
        transaction of its own; BEGIN IMMEDIATE keeps processes starting together in line."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = self.connect()
        except sqlite3.OperationalError as exc:
            raise unavailable(exc) from exc
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
        if self._remote is not None:
            await self._remote.close()
            self._remote = None
        if self._writer is not None:
            if self._writer.is_alive():
                self._writer.jobs.put(STOP)
                await asyncio.to_thread(self._writer.join)
            else:
                self._writer.close_connection()
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
        if self._remote is not None:
            return await self._remote.ingest(account.id, events, rejections)
        if self._writer is None:
            raise RuntimeError("store is not open")
        if self._serves_others:
            return self._write_here(Ingest(account.id, events, rejections))  # type: ignore[no-any-return]
        loop = asyncio.get_running_loop()
        job = Job(loop, account.id, events, rejections)
        # Hand the writer every job of this turn of the event loop at once: one wake-up of
        # its thread per turn instead of one per request.
        if not self._pending:
            loop.call_soon(self._hand_over)
        self._pending.append(job)
        return await job.future  # type: ignore[no-any-return]

    def allow_large_groups(self, events: int, cache_kib: int = IMPORT_CACHE_KIB) -> None:
        """Let this process's writer commit up to `events` at once (an import without a
        server: nobody waits behind its transactions), with a page cache of `cache_kib`, so
        that the import's memory stays bounded (its writer cache too)."""
        if self._writer is not None:
            self._writer.max_batch_events = events
            self._writer.cache_kib = cache_kib
            self._writer.cache = WriterCache(IMPORT_MAX_PROFILES, IMPORT_MAX_IDENTIFIERS)

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

    async def replace_key(
        self, account: Account, kind: str, key_hash: str, grace_ms: int = 0
    ) -> None:
        now = now_ms()

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(Q["expire_keys"], (now + grace_ms, account.id, kind, now + grace_ms))
            conn.execute(Q["insert_key"], (key_hash, account.id, kind, now))

        await self._write(write)

    async def revoke_key(self, account: Account, key_hash: str) -> str | None:
        now = now_ms()

        def write(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(Q["revoke_key"], (now, account.id, key_hash, now)).fetchone()
            return None if row is None else str(row[0])

        return await self._write(write)

    async def set_verification_secret(self, account: Account, secret: str | None) -> None:
        await self._write(
            lambda conn: conn.execute(Q["set_verification_secret"], (secret, account.id))
        )

    # -- reads ---------------------------------------------------------------------------

    async def credential(self, key_hash: str) -> Credential | None:
        def read(conn: sqlite3.Connection) -> Credential | None:
            row = conn.execute(Q["credential"], (key_hash, now_ms())).fetchone()
            if row is None:
                return None
            return Credential(Account(*row[:5]), row[5], row[6])

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

    async def update_event_name(
        self,
        account: Account,
        name: str,
        *,
        display_name: str | None = None,
        archived: bool | None = None,
    ) -> bool:
        def write(conn: sqlite3.Connection) -> bool:
            changed = 0
            if display_name is not None:
                changed = conn.execute(Q["rename_event"], (display_name, account.id, name)).rowcount
            if archived is not None:
                changed = conn.execute(
                    Q["archive_event"], (int(archived), account.id, name)
                ).rowcount
            return changed > 0

        return await self._write(write)

    async def attribute_types(self, account: Account) -> list[AttributeType]:
        rows = await self._read(
            lambda conn: conn.execute(Q["attribute_types"], (account.id,)).fetchall()
        )
        return [AttributeType(*row) for row in rows]

    async def reset_attribute_type(self, account: Account, name: str) -> AttributeType | None:
        def write(conn: sqlite3.Connection) -> AttributeType | None:
            row = conn.execute(Q["delete_attribute_type"], (account.id, name)).fetchone()
            return None if row is None else AttributeType(*row)

        return await self._write(write)

    async def hit_rate_window(
        self, account: Account, name: str, window_start: int, keep_after: int
    ) -> int:
        def write(conn: sqlite3.Connection) -> int:
            conn.execute(Q["forget_rate_windows"], (account.id, name, keep_after))
            row = conn.execute(Q["hit_rate_window"], (account.id, name, window_start)).fetchone()
            return int(row[0])

        return await self._write(write)

    async def customer_by_identifier(
        self, account: Account, kind: str, value: str
    ) -> CustomerRecord | None:
        def read(conn: sqlite3.Connection) -> CustomerRecord | None:
            row = conn.execute(
                Q["customer_uuid_by_identifier"], (account.id, kind, value)
            ).fetchone()
            return None if row is None else _customer(conn, account.id, row[0])

        return await self._read(read)

    async def customer_by_uuid(self, account: Account, uuid: str) -> CustomerRecord | None:
        return await self._read(lambda conn: _customer(conn, account.id, uuid))

    async def delete_customer(self, account: Account, uuid: str) -> int | None:
        def write(conn: sqlite3.Connection) -> int | None:
            return delete_customer_rows(conn, account.id, uuid)

        return await self._write(write)

    async def customer_events(
        self, account: Account, user_uuid: str, start_ms: int, end_ms: int, limit: int
    ) -> list[StoredEvent]:
        params = (account.id, user_uuid, start_ms, end_ms, limit)
        rows = await self._read(lambda conn: conn.execute(Q["customer_events"], params).fetchall())
        return [StoredEvent(_decode(body), *rest) for body, *rest in rows]

    async def customer_events_page(
        self, account: Account, user_uuid: str, before: tuple[int, int] | None, limit: int
    ) -> list[TimelineEvent]:
        before_ms, before_id = before or (END_OF_TIME_MS, MAX_ROW_ID)
        params = (account.id, user_uuid, before_ms, before_ms, before_id, limit)
        rows = await self._read(
            lambda conn: conn.execute(Q["customer_events_page"], params).fetchall()
        )
        return [
            TimelineEvent(i, StoredEvent(_decode(body), user, received, ts))
            for ts, i, body, user, received in rows
        ]

    async def search_customers(
        self,
        account: Account,
        prefix: SearchPrefix | None,
        before: tuple[int, int] | None,
        limit: int,
    ) -> list[CustomerSummary]:
        position = before or (MAX_ROW_ID, MAX_ROW_ID)
        a = account.id
        params: tuple[Any, ...]
        if prefix is None:
            sql, params = Q["customers_page"], (a, *position, limit)
        else:
            exact = (prefix.exact, prefix.exact_upper)
            sql = Q["customers_by_prefix"]
            params = (a, *exact, a, prefix.folded, prefix.folded_upper, a, *exact, a, *exact,
                      a, *position, limit)  # fmt: skip
        rows = await self._read(lambda conn: conn.execute(sql, params).fetchall())
        return [_summary(row) for row in rows]

    async def customer_details(
        self, account: Account, uuid: str, conflicts: int
    ) -> CustomerDetails | None:
        def read(conn: sqlite3.Connection) -> CustomerDetails | None:
            a = account.id
            customer = _customer(conn, a, uuid)
            if customer is None:
                return None
            live = customer.uuid
            seen = conn.execute(Q["identifiers_seen_of_customer"], (a, live)).fetchall()
            merged = conn.execute(Q["profiles_merged_into"], (a, live)).fetchall()
            found = conn.execute(
                Q["conflicts_of_customer"], (a, live, a, live, conflicts)
            ).fetchall()
            return CustomerDetails(
                customer,
                [IdentifierSeen(*row) for row in seen],
                [MergedProfile(*row) for row in merged],
                [IdentityConflict(*row) for row in found],
            )

        return await self._read(read)

    async def latest_events(self, account: Account, event: str, limit: int) -> list[StoredEvent]:
        params = (account.id, event, limit)
        rows = await self._read(lambda conn: conn.execute(Q["latest_events"], params).fetchall())
        return [StoredEvent(_decode(body), *rest) for body, *rest in rows]

    async def events_page(
        self, account: Account, event: str, after: tuple[int, int], before_ms: int, limit: int
    ) -> list[tuple[int, int, bytes]]:
        after_ms, after_id = after
        params = (account.id, event, after_ms, before_ms, after_ms, after_id, limit)
        rows = await self._read(lambda conn: conn.execute(Q["events_page"], params).fetchall())
        return [(ts, i, bytes(body)) for ts, i, body in rows]

    # -- the clickstream page ------------------------------------------------------------

    async def latest_event_id(self, account: Account) -> int:
        row = await self._read(lambda conn: conn.execute(Q["latest_event_id"]).fetchone())
        return int(row[0])

    async def events_since(
        self, account: Account, after_id: int, limit: int, event: str | None = None
    ) -> list[ArrivedEvent]:
        params: tuple[Any, ...]
        if event is None:
            sql, params = Q["events_since"], (after_id, account.id, limit)
        else:
            sql, params = Q["events_since_named"], (after_id, account.id, event, limit)
        rows = await self._read(lambda conn: conn.execute(sql, params).fetchall())
        return [ArrivedEvent(i, u, r, t, bytes(body)) for i, u, r, t, body in reversed(rows)]

    async def error_page(
        self,
        account: Account,
        where: ErrorFilter,
        before: tuple[int, int] | None,
        limit: int,
    ) -> list[LoggedError]:
        before_ms, before_id = before or (END_OF_TIME_MS, 2**63 - 1)
        state = _replayed_param(where.replayed)
        tail = (before_ms, before_ms, before_id, state, state, limit)
        params: tuple[Any, ...]
        if where.error_type is None:
            sql, params = Q["error_page"], (account.id, where.start_ms, where.end_ms, *tail)
        else:
            sql = Q["error_page_of_type"]
            params = (account.id, where.error_type, where.start_ms, where.end_ms, *tail)
        rows = await self._read(lambda conn: conn.execute(sql, params).fetchall())
        return [_logged_error(row) for row in rows]

    async def count_errors(self, account: Account, where: ErrorFilter, cap: int) -> int:
        state = _replayed_param(where.replayed)
        if where.error_type is None:
            sql = Q["count_errors"]
            params: tuple[Any, ...] = (account.id, where.start_ms, where.end_ms, state, state, cap)
        else:
            sql = Q["count_errors_of_type"]
            params = (account.id, where.error_type, where.start_ms, where.end_ms, state, state, cap)
        row = await self._read(lambda conn: conn.execute(sql, params).fetchone())
        return int(row[0])

    async def errors_by_id(self, account: Account, ids: Sequence[int]) -> list[LoggedError]:
        def read(conn: sqlite3.Connection) -> list[LoggedError]:
            found: list[LoggedError] = []
            unique = sorted(set(ids))
            for start in range(0, len(unique), IN_LIST):
                chunk = unique[start : start + IN_LIST]
                sql = _in_list_sql("errors_by_id", len(chunk))
                found += [_logged_error(row) for row in conn.execute(sql, (account.id, *chunk))]
            found.sort(key=lambda e: (e.received_ms, e.id), reverse=True)
            return found

        return await self._read(read)

    async def record_replays(
        self,
        account: Account,
        replayed: Sequence[tuple[int, str]],
        failed: Sequence[tuple[int, EventRejected]],
        at_ms: int,
    ) -> None:
        def write(conn: sqlite3.Connection) -> None:
            conn.executemany(
                Q["mark_error_replayed"],
                [(at_ms, uuids, at_ms, account.id, i) for i, uuids in replayed],
            )
            conn.executemany(
                Q["mark_error_failed"],
                [
                    (why.error_type, msgspec.json.encode(why.errors), at_ms, account.id, i)
                    for i, why in failed
                ],
            )

        await self._write(write)


def delete_customer_rows(conn: sqlite3.Connection, account_id: int, uuid: str) -> int | None:
    customer = _customer(conn, account_id, uuid)
    if customer is None:
        return None
    live = customer.uuid
    deleted = conn.execute(Q["delete_customer_events"], (account_id, account_id, live, live))
    conn.execute(Q["delete_customer_identifiers"], (account_id, live))
    conn.execute(Q["delete_customer_conflicts"], (account_id, live, live))
    conn.execute(Q["delete_customer"], (account_id, live, live))
    return deleted.rowcount


def _customer(conn: sqlite3.Connection, account_id: int, uuid: str) -> CustomerRecord | None:
    row = conn.execute(Q["customer_by_uuid"], (account_id, uuid)).fetchone()
    if row is not None and row[3] is not None:
        # Merged away: the profile that took it over answers (merges keep this one hop).
        row = conn.execute(Q["customer_by_uuid"], (account_id, row[3])).fetchone()
    if row is None:
        return None
    live, customer_id, email, _, attributes, subscriptions, created, updated, seen = row
    identifiers = conn.execute(Q["identifiers_of_customer"], (account_id, live)).fetchall()
    return CustomerRecord(
        live,
        customer_id,
        email,
        _decode(attributes),
        _decode(subscriptions),
        created,
        updated,
        [(k, v) for k, v in identifiers],
        seen,
    )


def _summary(row: Any) -> CustomerSummary:
    i, uuid, customer_id, email, created, updated, seen, kind, value = row
    matched = None if kind is None else (kind, value)
    return CustomerSummary(i, uuid, customer_id, email, created, updated, seen, matched)


def _replayed_param(replayed: bool | None) -> int | None:
    # error_page's state parameter compares with (replayed_ms IS NULL): 1 means pending.
    return None if replayed is None else int(not replayed)


def _logged_error(row: Any) -> LoggedError:
    i, received, error_type, errors, raw, replayed, uuids, retried, source, context = row
    return LoggedError(
        i, received, error_type, _decode(errors), bytes(raw), replayed, uuids, retried, source,
        None if context is None else _decode(context),
    )  # fmt: skip


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
