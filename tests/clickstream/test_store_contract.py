"""The Store methods of the clickstream page, one contract on SQLite and PostgreSQL: the live
stream's cursor reads, the error log's keyset pages and filters, replay marks; and the
migration that adds them, from the previous schema version with data in it."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import pytest

from trackway.domain.errors import EventRejected
from trackway.domain.events import validate_event
from trackway.domain.keys import hash_key
from trackway.domain.timestamps import now_ms
from trackway.store import Account, Rejection, Store, open_store
from trackway.store.base import ErrorFilter
from trackway.store.queries import migration_files

from .conftest import BACKENDS, PG_URL, database_for

T = TypeVar("T")
DAY_MS = 86_400_000


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return database_for(request.param, tmp_path)


def with_store(url: str, work: Callable[[Store], Awaitable[T]]) -> T:
    async def go() -> T:
        store = open_store(url)
        await store.open()
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(go())


async def new_account(store: Store) -> Account:
    name = "acct-" + uuid.uuid4().hex[:8]
    return await store.create_account(name, hash_key(name + "-e"), hash_key(name + "-u"))


def event(name: str, **fields: Any) -> Any:
    return validate_event({"event": name, "cookie": "c-1", **fields}, now_ms())


def rejection(error_type: str, received_ms: int, n: int) -> Rejection:
    return Rejection(received_ms, error_type, {"f": [f"bad {n}"]}, f'{{"n": {n}}}'.encode())


def test_events_since_reads_after_a_cursor_newest_limit_oldest_first(store_url: str) -> None:
    async def work(store: Store) -> None:
        a, b = await new_account(store), await new_account(store)
        assert await store.latest_event_id(a) == 0
        await store.ingest(a, [event("view", n=n) for n in range(3)])
        await store.ingest(b, [event("view", n=9)])
        start = await store.latest_event_id(a)
        assert await store.events_since(a, start, 10) == []
        await store.ingest(a, [event("view", n=3), event("purchase", n=4)])
        await store.ingest(b, [event("view", n=10)])
        await store.ingest(a, [event("view", n=5)])
        arrived = await store.events_since(a, start, 10)
        bodies = [msgspec.json.decode(e.body) for e in arrived]
        assert [body["n"] for body in bodies] == [3, 4, 5]
        assert [e.id for e in arrived] == sorted(e.id for e in arrived)
        assert all(e.id > start and e.user_uuid for e in arrived)
        # The newest `limit`, oldest first.
        assert [msgspec.json.decode(e.body)["n"] for e in await store.events_since(a, 0, 2)] == [
            4,
            5,
        ]
        named = await store.events_since(a, start, 10, "purchase")
        assert [msgspec.json.decode(e.body)["n"] for e in named] == [4]
        assert await store.events_since(a, arrived[-1].id, 10) == []
        assert await store.latest_event_id(a) >= arrived[-1].id

    with_store(store_url, work)


def test_error_pages_filters_counts_and_replay_marks(store_url: str) -> None:
    async def work(store: Store) -> None:
        a, b = await new_account(store), await new_account(store)
        day = (now_ms() // DAY_MS) * DAY_MS
        rows = [
            rejection("invalid_email", day - DAY_MS + 5, 0),  # yesterday
            rejection("invalid_email", day + 10, 1),
            rejection("missing_identifier", day + 10, 2),  # same ms: id breaks the tie
            rejection("invalid_email", day + 20, 3),
        ]
        await store.ingest(a, [], rows)
        await store.ingest(b, [], [rejection("invalid_email", day + 30, 9)])

        page = await store.error_page(a, ErrorFilter(), None, 10)
        assert [msgspec.json.decode(r.raw)["n"] for r in page] == [3, 2, 1, 0]
        assert page[0].errors == {"f": ["bad 3"]} and page[0].replayed_ms is None
        first = await store.error_page(a, ErrorFilter(), None, 2)
        rest = await store.error_page(a, ErrorFilter(), (first[-1].received_ms, first[-1].id), 2)
        assert [r.id for r in first + rest] == [r.id for r in page]

        today = ErrorFilter(start_ms=day, end_ms=day + DAY_MS)
        assert [
            msgspec.json.decode(r.raw)["n"] for r in await store.error_page(a, today, None, 10)
        ] == [3, 2, 1]
        emails_today = ErrorFilter("invalid_email", day, day + DAY_MS)
        assert len(await store.error_page(a, emails_today, None, 10)) == 2
        assert await store.count_errors(a, ErrorFilter(), 100) == 4
        assert await store.count_errors(a, ErrorFilter(), 3) == 3  # capped
        assert await store.count_errors(a, emails_today, 100) == 2

        ids = {msgspec.json.decode(r.raw)["n"]: r.id for r in page}
        other = (await store.error_page(b, ErrorFilter(), None, 10))[0].id
        found = await store.errors_by_id(a, [ids[1], ids[2], other, 10**12])
        assert sorted(r.id for r in found) == sorted([ids[1], ids[2]])

        at = now_ms()
        still = EventRejected("invalid_email", {"email": ["is not valid"]})
        await store.record_replays(a, [(ids[1], "u-1,u-2")], [(ids[2], still)], at)
        # Another account's row is not touched, whatever id it is given.
        await store.record_replays(b, [(ids[3], "x")], [], at)
        by_id = {r.id: r for r in await store.errors_by_id(a, list(ids.values()))}
        assert (by_id[ids[1]].replayed_ms, by_id[ids[1]].replayed_event_uuid) == (at, "u-1,u-2")
        assert by_id[ids[2]].replayed_ms is None and by_id[ids[2]].retried_ms == at
        assert (by_id[ids[2]].error_type, by_id[ids[2]].errors) == (
            "invalid_email",
            {"email": ["is not valid"]},
        )
        assert by_id[ids[3]].replayed_ms is None
        # A replayed row stays replayed.
        await store.record_replays(a, [], [(ids[1], still)], at + 1)
        again = (await store.errors_by_id(a, [ids[1]]))[0]
        assert (again.replayed_ms, again.error_type) == (at, "invalid_email")
        pending = await store.error_page(a, ErrorFilter(replayed=False), None, 10)
        assert ids[1] not in {r.id for r in pending} and len(pending) == 3
        replayed = await store.error_page(a, ErrorFilter(replayed=True), None, 10)
        assert [r.id for r in replayed] == [ids[1]]
        assert await store.count_errors(a, ErrorFilter(replayed=False), 100) == 3
        # The daily counts keep the original rejections.
        counts = await store.daily_error_counts(a, "1970-01-01", "9999-12-31")
        assert sum(n for _, _, n in counts) == 4

    with_store(store_url, work)


def test_the_migration_keeps_an_old_error_log(store_url: str) -> None:
    """From the schema before the clickstream's migration, with rows in the log."""
    if store_url.startswith("sqlite"):
        package, last = "trackway.store.sqlite", 3
        path = store_url.removeprefix("sqlite:///")
        conn = sqlite3.connect(path)
        for number, _, sql in migration_files(package):
            if number <= last:
                conn.executescript(sql)
                conn.execute(f"PRAGMA user_version = {number}")
        conn.execute("INSERT INTO accounts (uuid, name, created_ms) VALUES ('u', 'old', 1)")
        conn.execute(
            "INSERT INTO error_log (account_id, received_ms, error_type, errors, raw)"
            " VALUES (1, 1000, 'parsing_error', '{\"body\": [\"x\"]}', X'7B')"
        )
        conn.commit()
        conn.close()
    else:
        import psycopg

        package, last = "trackway.store.postgres", 2
        assert PG_URL
        with psycopg.connect(store_url, autocommit=True) as pg:
            pg.execute(
                "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,"
                " applied_ms bigint NOT NULL)"
            )
            for number, name, sql in migration_files(package):
                if number <= last:
                    pg.execute(sql.encode())  # type: ignore[arg-type]
                    pg.execute("INSERT INTO schema_migrations VALUES (%s, %s, 1)", (number, name))
            pg.execute("INSERT INTO accounts (uuid, name, created_ms) VALUES ('u', 'old', 1)")
            pg.execute(
                "INSERT INTO error_log (account_id, received_ms, error_type, errors, raw)"
                " VALUES (1, 1000, 'parsing_error', '{\"body\": [\"x\"]}', '\\x7b')"
            )

    async def work(store: Store) -> None:
        account = await store.find_account("old")
        rows = await store.error_page(account, ErrorFilter(), None, 10)
        assert [(r.error_type, r.errors, r.raw, r.replayed_ms) for r in rows] == [
            ("parsing_error", {"body": ["x"]}, b"{", None)
        ]
        typed = ErrorFilter("parsing_error")
        assert await store.count_errors(account, typed, 10) == 1

    with_store(store_url, work)
