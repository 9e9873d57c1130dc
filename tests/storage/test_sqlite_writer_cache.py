"""The SQLite writer's cache (store/sqlite/cache.py): what it keeps between group commits must
always be what the file holds, after merges, after another connection's writes, after a
transaction that failed, and after its entries were evicted."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from conftest import query

from trackway.domain.events import validate_event
from trackway.domain.keys import hash_key
from trackway.domain.timestamps import now_ms
from trackway.store import Account
from trackway.store.sqlite import cache
from trackway.store.sqlite.store import SQLiteStore

T = TypeVar("T")


def run_with_store(db_path: Path, work: Callable[[SQLiteStore, Account], Awaitable[T]]) -> T:
    async def go() -> T:
        store = SQLiteStore(db_path)
        await store.open()
        try:
            name = "acct-" + uuid.uuid4().hex[:8]
            account = await store.create_account(name, hash_key(name + "e"), hash_key(name + "u"))
            return await work(store, account)
        finally:
            await store.close()

    return asyncio.run(go())


async def send(store: SQLiteStore, account: Account, **body: Any) -> str:
    """Ingest one event; the uuid of the customer it was stored on."""
    event = validate_event({"event": "view", **body}, now_ms(), None)
    result = await store.ingest(account, [event])
    assert (result.stored, result.rejected) == (1, []), result
    sql = "SELECT user_uuid FROM events WHERE event_uuid = ?"
    rows = query(store.path, sql, [event.event_uuid])
    return str(rows[0][0])


def live_customers(db_path: Path, account: Account) -> list[str]:
    rows = query(
        db_path,
        "SELECT uuid FROM customers WHERE account_id = ? AND merged_into IS NULL ORDER BY id",
        [account.id],
    )
    return [row[0] for row in rows]


def test_an_identifier_cached_before_a_merge_finds_the_winner(tmp_path: Path) -> None:
    async def work(store: SQLiteStore, account: Account) -> tuple[str, str, str]:
        known = await send(store, account, cookie="k-1")
        anonymous = await send(store, account, device_id="d-1", cookie="k-2")
        assert known != anonymous
        await send(store, account, cookie="k-1", customer_id="c-1")
        # Ties the device's profile to the identified one: merged into it.
        assert await send(store, account, cookie="k-1", device_id="d-1") == known
        # The cache held cookie k-2 -> the profile merged away (that event did not carry it).
        return known, anonymous, await send(store, account, cookie="k-2")

    known, anonymous, after = run_with_store(tmp_path / "t.db", work)
    assert after == known
    sql = "SELECT merged_into FROM customers WHERE uuid = ?"
    merged = query(tmp_path / "t.db", sql, [anonymous])
    assert merged[0][0] == known


def test_writes_of_another_connection_are_seen(tmp_path: Path) -> None:
    """A command beside the server (its own connection) deletes a customer the writer has
    cached: the next event of that customer_id makes a new profile."""
    db_path = tmp_path / "t.db"

    async def work(store: SQLiteStore, account: Account) -> tuple[str, str]:
        first = await send(store, account, customer_id="c-1", email="a@example.com")
        assert await send(store, account, customer_id="c-1") == first
        other = SQLiteStore(db_path)
        await other.open()
        try:
            assert await other.delete_customer(account, first) == 2
        finally:
            await other.close()
        return first, await send(store, account, customer_id="c-1")

    first, second = run_with_store(db_path, work)
    assert second != first
    (account_id,) = {row[0] for row in query(db_path, "SELECT account_id FROM customers")}
    rows = query(db_path, "SELECT uuid, email FROM customers WHERE account_id = ?", [account_id])
    assert [tuple(row) for row in rows] == [(second, None)]


def test_a_customer_deleted_through_the_writer_is_forgotten(tmp_path: Path) -> None:
    async def work(store: SQLiteStore, account: Account) -> tuple[str, str]:
        first = await send(store, account, cookie="k-1")
        assert await store.delete_customer(account, first) == 1
        return first, await send(store, account, cookie="k-1")

    first, second = run_with_store(tmp_path / "t.db", work)
    assert second != first


def test_a_failed_transaction_leaves_nothing_of_its_plan(tmp_path: Path) -> None:
    """A job that fails inside its transaction had already attached a cookie and an email to
    a cached profile: neither may outlive its rollback."""
    db_path = tmp_path / "t.db"

    async def work(store: SQLiteStore, account: Account) -> tuple[str, str]:
        owner = await send(store, account, customer_id="c-1")
        with contextlib.closing(sqlite3.connect(db_path)) as conn:
            conn.execute(
                "CREATE TRIGGER poison BEFORE INSERT ON events WHEN NEW.event = 'poison'"
                " BEGIN SELECT RAISE(ABORT, 'poisoned event'); END"
            )
            conn.commit()
        assert await send(store, account, customer_id="c-1") == owner
        poisoned = validate_event(
            {"event": "poison", "customer_id": "c-1", "cookie": "k-1", "email": "e@example.com"},
            now_ms(),
            None,
        )
        with pytest.raises(sqlite3.IntegrityError):
            await store.ingest(account, [poisoned])
        # An identify rewrites the profile: from what the file holds, not from the plan.
        assert await send(store, account, customer_id="c-1", event="identify", tier="gold") == owner
        return owner, await send(store, account, cookie="k-1")

    owner, by_cookie = run_with_store(db_path, work)
    assert by_cookie != owner
    (row,) = query(db_path, "SELECT email, attributes FROM customers WHERE uuid = ?", [owner])
    assert row[0] is None
    assert json.loads(row[1]) == {"tier": "gold"}


def test_evicted_entries_are_read_again(tmp_path: Path) -> None:
    async def work(store: SQLiteStore, account: Account) -> tuple[list[str], list[str]]:
        assert store._writer is not None
        store._writer.cache = cache.WriterCache(max_profiles=4, max_identifiers=6)
        first = [await send(store, account, customer_id=f"c-{n}") for n in range(20)]
        # The merge leaves a redirect; the eviction after it starts the identifiers over.
        a = await send(store, account, cookie="k-a")
        await send(store, account, cookie="k-a", customer_id="c-0")
        again = [await send(store, account, customer_id=f"c-{n}") for n in range(20)]
        assert await send(store, account, cookie="k-a") == first[0]
        assert a != first[0]
        assert len(store._writer.cache.account(account.id).profiles) <= 4
        return first, again

    first, again = run_with_store(tmp_path / "t.db", work)
    assert again == first
    assert len(set(first)) == 20


def test_an_import_without_a_server_caches_less(tmp_path: Path) -> None:
    async def work(store: SQLiteStore, account: Account) -> tuple[int, int]:
        store.allow_large_groups(20_000)
        assert store._writer is not None
        limits = store._writer.cache.max_profiles, store._writer.cache.max_identifiers
        await send(store, account, customer_id="c-1")
        return limits

    assert run_with_store(tmp_path / "t.db", work) == (
        cache.IMPORT_MAX_PROFILES,
        cache.IMPORT_MAX_IDENTIFIERS,
    )


def test_eviction_folds_the_redirects_into_the_identifiers_left(tmp_path: Path) -> None:
    async def work(store: SQLiteStore, account: Account) -> tuple[str, str]:
        assert store._writer is not None
        store._writer.cache = cache.WriterCache(max_profiles=2, max_identifiers=1000)
        await send(store, account, cookie="k-2", device_id="d-2")
        winner = await send(store, account, cookie="k-1", customer_id="c-1")
        # The device's profile merges into c-1's; the cache still holds k-2 -> the loser.
        assert await send(store, account, cookie="k-1", device_id="d-2") == winner
        await send(store, account, customer_id="c-3")
        await send(store, account, customer_id="c-4")  # three profiles cached: eviction
        account_cache = store._writer.cache.account(account.id)
        assert account_cache.merged == {}
        assert account_cache.identifiers.get(("cookie", "k-2")) == winner
        return winner, await send(store, account, cookie="k-2")

    winner, by_cookie = run_with_store(tmp_path / "t.db", work)
    assert by_cookie == winner


def test_a_failed_group_retried_job_by_job_caches_only_what_was_stored(tmp_path: Path) -> None:
    """Two jobs in one group commit, one refused by a trigger: the group fails, each job is
    retried alone; the cache then holds the stored job's identifiers, never the refused one's."""
    db_path = tmp_path / "t.db"

    async def work(store: SQLiteStore, account: Account) -> tuple[str, str, str]:
        with contextlib.closing(sqlite3.connect(db_path)) as conn:
            conn.execute(
                "CREATE TRIGGER poison BEFORE INSERT ON events WHEN NEW.event = 'poison'"
                " BEGIN SELECT RAISE(ABORT, 'poisoned event'); END"
            )
            conn.commit()
        good = validate_event({"event": "view", "customer_id": "c-1", "cookie": "k-1"}, now_ms())
        bad = validate_event({"event": "poison", "customer_id": "c-2", "cookie": "k-2"}, now_ms())
        # Handed over in one turn of the event loop: one group commit.
        stored, refused = await asyncio.gather(
            store.ingest(account, [good]), store.ingest(account, [bad]), return_exceptions=True
        )
        assert not isinstance(stored, BaseException) and stored.stored == 1
        assert isinstance(refused, sqlite3.IntegrityError)
        sql = "SELECT user_uuid FROM events WHERE event_uuid = ?"
        owner = str(query(db_path, sql, [good.event_uuid])[0][0])
        return (
            owner,
            await send(store, account, cookie="k-1"),
            await send(store, account, cookie="k-2"),
        )

    owner, by_good_cookie, by_bad_cookie = run_with_store(db_path, work)
    assert by_good_cookie == owner
    assert by_bad_cookie != owner
    rows = query(db_path, "SELECT count(*) FROM customers WHERE customer_id = 'c-2'")
    assert rows[0][0] == 0
    # Every event's customer is a row of the file (a plan cached from the failed group would
    # have taken c-1's new profile for a stored one and written no row for it).
    rows = query(db_path, "SELECT uuid, customer_id FROM customers ORDER BY id")
    assert [tuple(row) for row in rows] == [(owner, "c-1"), (by_bad_cookie, None)]
