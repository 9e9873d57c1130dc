"""What only the SQLite backend has: its migrations and PRAGMAs, and its group-commit ingest seen
through the async API and then through the file itself. (The behaviour every backend shares is
the contract suite's, in test_contract.py.)"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from conftest import query

from trackway.domain.events import STANDARD_EVENTS, AcceptedEvent, validate_event
from trackway.domain.keys import hash_key
from trackway.domain.timestamps import now_ms
from trackway.store import Account, Rejection, Store, open_store
from trackway.store.queries import migration_files
from trackway.store.sqlite.store import SQLiteStore, path_from_url

T = TypeVar("T")
MIGRATIONS = migration_files("trackway.store.sqlite")
TABLES = {
    "accounts",
    "api_keys",
    "events",
    "event_daily",
    "error_daily",
    "error_log",
    "event_names",
}


def schema(db_path: Path) -> set[tuple[str, str]]:
    return {
        (row["type"], row["name"])
        for row in query(
            db_path, "SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
        )
    }


def user_version(db_path: Path) -> int:
    return int(query(db_path, "PRAGMA user_version")[0][0])


def with_store(db_path: Path, work: Callable[[Store], Awaitable[T]]) -> T:
    async def go() -> T:
        store = open_store("sqlite:///" + str(db_path))
        await store.open()
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(go())


async def new_account(store: Store) -> Account:
    name = "acct-" + uuid.uuid4().hex[:8]
    return await store.create_account(name, hash_key(name + "-e"), hash_key(name + "-u"))


def accepted(**fields: Any) -> AcceptedEvent:
    fields.setdefault("event", "view")
    fields.setdefault("customer_id", "c-1")
    return validate_event(fields, now_ms())


# -- migrations -------------------------------------------------------------------------------


def test_migration_files_are_numbered_from_one():
    assert [number for number, _, _ in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))


def test_migrations_from_an_empty_database(tmp_path):
    db_path = tmp_path / "new" / "dir" / "trackway.db"
    SQLiteStore(db_path).migrate()
    assert db_path.exists()
    assert user_version(db_path) == len(MIGRATIONS)
    assert {name for kind, name in schema(db_path) if kind == "table"} >= TABLES
    columns = {row["name"] for row in query(db_path, "PRAGMA table_info(events)")}
    assert {
        "account_id",
        "event_uuid",
        "event",
        "user_uuid",
        "timestamp_ms",
        "received_ms",
        "body",
    } <= columns
    assert query(db_path, "PRAGMA journal_mode")[0][0] == "wal"


def test_rerunning_migrations_is_a_no_op_that_keeps_data(tmp_path):
    db_path = tmp_path / "trackway.db"

    async def fill(store: Store) -> Account:
        account = await new_account(store)
        await store.ingest(account, [accepted(event="purchase")])
        return account

    account = with_store(db_path, fill)

    def snapshot() -> list[Any]:
        return [
            user_version(db_path),
            *(
                [tuple(row) for row in query(db_path, sql)]
                for sql in (
                    "SELECT type, name, sql FROM sqlite_master ORDER BY name",
                    "SELECT * FROM standard_event_names ORDER BY name",
                    "SELECT * FROM events",
                    "SELECT * FROM event_daily",
                )
            ),
        ]

    before = snapshot()
    SQLiteStore(db_path).migrate()
    with_store(db_path, lambda store: store.ping())
    after = snapshot()
    assert after == before
    events = query(db_path, "SELECT account_id FROM events")
    assert [row["account_id"] for row in events] == [account.id]


@pytest.mark.parametrize("applied", range(1, len(MIGRATIONS)))
def test_migrating_from_an_earlier_version(tmp_path, applied):
    """A database left at version `applied` (by an older release) is brought to the latest, its
    accounts kept, and ends with the same schema as a new one."""
    old = tmp_path / "old.db"
    conn = sqlite3.connect(old)
    for number, _, sql in MIGRATIONS[:applied]:
        conn.executescript(sql)
        conn.execute(f"PRAGMA user_version = {number}")
    conn.execute(
        "INSERT INTO accounts (uuid, name, created_ms) VALUES (?, ?, ?)",
        ("11111111-2222-4333-8444-555555555555", "legacy", 1),
    )
    conn.commit()
    conn.close()

    SQLiteStore(old).migrate()
    fresh = tmp_path / "fresh.db"
    SQLiteStore(fresh).migrate()
    assert user_version(old) == len(MIGRATIONS)
    assert schema(old) == schema(fresh)
    found = with_store(old, lambda store: store.find_account("legacy"))
    assert found.uuid == "11111111-2222-4333-8444-555555555555"


def test_standard_event_names_are_registered_once(tmp_path):
    db_path = tmp_path / "trackway.db"
    for _ in range(2):
        SQLiteStore(db_path).migrate()
    names = [row[0] for row in query(db_path, "SELECT name FROM standard_event_names")]
    assert sorted(names) == sorted(STANDARD_EVENTS)


def test_every_connection_is_wal_with_full_fsync(tmp_path):
    store = SQLiteStore(tmp_path / "trackway.db")
    store.migrate()
    conn = store.connect()
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        # 2 = FULL: the WAL is synced at every commit, so a 200 survives a power cut.
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] > 0
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///trackway-data/trackway.db", Path("trackway-data/trackway.db")),
        ("sqlite:////var/lib/trackway/t.db", Path("/var/lib/trackway/t.db")),
    ],
)
def test_path_from_url(url, path):
    assert path_from_url(url) == path


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///", "sqlite://relative.db"])
def test_malformed_sqlite_urls_are_refused(url):
    with pytest.raises(ValueError):
        path_from_url(url)


def test_open_store_refuses_unknown_schemes():
    with pytest.raises(ValueError):
        open_store("mysql://localhost/trackway")


# -- ingest through the async API ------------------------------------------------------------


def test_ingest_stores_commits_and_dedups(tmp_path):
    db_path = tmp_path / "trackway.db"
    first = accepted(event="purchase", timestamp="2024-03-01T10:00:00Z", price=5, note="héllo")

    async def work(store: Store) -> tuple[Account, list[tuple[int, int]]]:
        account = await new_account(store)
        results = []
        result = await store.ingest(account, [first])
        results.append((result.stored, result.duplicates))
        # Committed before ingest() returned: another connection sees it at once.
        rows = query(db_path, "SELECT body FROM events WHERE event_uuid = ?", [first.event_uuid])
        assert len(rows) == 1
        again = validate_event(dict(first.body), now_ms())
        result = await store.ingest(account, [again])
        results.append((result.stored, result.duplicates))
        return account, results

    account, results = with_store(db_path, work)
    assert results == [(1, 0), (0, 1)]
    (row,) = query(db_path, "SELECT * FROM events WHERE account_id = ?", [account.id])
    assert row["event_uuid"] == first.event_uuid
    assert row["event"] == "purchase"
    assert row["timestamp_ms"] == 1709287200000
    body = json.loads(row["body"])
    assert (body["price"], body["note"], body["timestamp"]) == (5, "héllo", "2024-03-01T10:00:00Z")
    daily = query(
        db_path, "SELECT day, event, count FROM event_daily WHERE account_id = ?", [account.id]
    )
    assert [tuple(r) for r in daily] == [("2024-03-01", "purchase", 1)]


def test_concurrent_ingests_share_commits_and_store_each_uuid_once(tmp_path):
    db_path = tmp_path / "trackway.db"
    twin_uuid = str(uuid.uuid4())

    async def work(store: Store) -> tuple[Account, list[Any]]:
        account = await new_account(store)
        calls = [store.ingest(account, [accepted(amount=n)]) for n in range(200)]
        calls += [store.ingest(account, [accepted(event_uuid=twin_uuid)]) for _ in range(20)]
        return account, await asyncio.gather(*calls)

    account, results = with_store(db_path, work)
    assert sum(r.stored for r in results) == 201
    assert sum(r.duplicates for r in results) == 19
    assert [(r.stored, r.duplicates) for r in results[:200]] == [(1, 0)] * 200
    count = query(db_path, "SELECT count(*) FROM events WHERE account_id = ?", [account.id])
    assert count[0][0] == 201
    total = query(db_path, "SELECT sum(count) FROM event_daily WHERE account_id = ?", [account.id])
    assert total[0][0] == 201


def test_one_call_larger_than_one_statement(tmp_path):
    db_path = tmp_path / "trackway.db"
    events = [accepted(n=n) for n in range(4500)]
    events.append(validate_event(dict(events[0].body), now_ms()))

    async def work(store: Store) -> tuple[Account, Any]:
        account = await new_account(store)
        return account, await store.ingest(account, events)

    account, result = with_store(db_path, work)
    assert (result.stored, result.duplicates) == (4500, 1)
    rows = query(db_path, "SELECT body FROM events WHERE account_id = ?", [account.id])
    assert sorted(json.loads(r["body"])["n"] for r in rows) == list(range(4500))


def test_events_and_rejections_in_one_call(tmp_path):
    db_path = tmp_path / "trackway.db"
    received = now_ms()
    rejection = Rejection(received, "missing_identifier", {"base": ["none"]}, b'{"event":"x"}')
    event = accepted()

    async def work(store: Store) -> Account:
        account = await new_account(store)
        result = await store.ingest(account, [event], [rejection])
        assert result.stored == 1
        return account

    account = with_store(db_path, work)
    (entry,) = query(db_path, "SELECT * FROM error_log WHERE account_id = ?", [account.id])
    assert (entry["error_type"], bytes(entry["raw"])) == ("missing_identifier", b'{"event":"x"}')
    assert json.loads(entry["errors"]) == {"base": ["none"]}
    assert entry["received_ms"] == received
    (daily,) = query(db_path, "SELECT count FROM error_daily WHERE account_id = ?", [account.id])
    assert daily[0] == 1
    assert len(query(db_path, "SELECT id FROM events WHERE account_id = ?", [account.id])) == 1


def test_accounts_are_isolated(tmp_path):
    db_path = tmp_path / "trackway.db"
    shared_uuid = str(uuid.uuid4())

    async def work(store: Store) -> list[Any]:
        one, two = await new_account(store), await new_account(store)
        a = await store.ingest(one, [accepted(event_uuid=shared_uuid)])
        b = await store.ingest(two, [accepted(event_uuid=shared_uuid)])
        return [(a.stored, b.stored), await store.count_events(one), await store.count_events(two)]

    assert with_store(db_path, work) == [(1, 1), 1, 1]


def test_an_import_without_a_server_writes_with_a_small_page_cache(tmp_path: Path) -> None:
    """The writer's 1 GiB page cache fills as a large import goes (844 MiB peak RSS at 1M
    events); an import without a server asks for IMPORT_CACHE_KIB before its next write."""
    from trackway.store.sqlite.writer import IMPORT_CACHE_KIB, WRITER_CACHE_KIB

    def cache_size(conn: sqlite3.Connection) -> int:
        return int(conn.execute("PRAGMA cache_size").fetchone()[0])

    async def work(store: Store) -> tuple[int, int]:
        assert isinstance(store, SQLiteStore)
        before = await store._write(cache_size)
        store.allow_large_groups(20_000)
        return before, await store._write(cache_size)

    assert with_store(tmp_path / "t.db", work) == (-WRITER_CACHE_KIB, -IMPORT_CACHE_KIB)


def test_the_writer_process_store_writes_on_its_event_loop(tmp_path: Path) -> None:
    """The writer process's store starts no writer thread (writer_process.py writes on its
    loop): its other writes run there too, and their errors reach the caller."""
    from trackway.domain.errors import AccountExists

    async def go() -> tuple[bool, int, bool]:
        store = SQLiteStore(tmp_path / "w.db", serves_others=True)
        await store.open()
        try:
            assert store._writer is not None
            account = await new_account(store)
            stored = (await store.ingest(account, [accepted()])).stored
            try:
                await store.create_account(account.name, hash_key("x"), hash_key("y"))
                refused = False
            except AccountExists:
                refused = True
            return store._writer.is_alive(), stored, refused
        finally:
            await store.close()

    assert asyncio.run(go()) == (False, 1, True)
    assert query(tmp_path / "w.db", "SELECT count(*) FROM events")[0][0] == 1
