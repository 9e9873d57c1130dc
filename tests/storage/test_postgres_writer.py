"""The PostgreSQL writer's own connection and its transaction (BEGIN ... COMMIT as statements of
one pipeline): a batch that fails, in Python or in the database, commits nothing and leaves no
transaction or lock open; the next batch is written; a connection dropped while idle costs no
batch."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from tests.conftest import fresh_postgres_database, require_postgres
from tests.storage.test_contract import event, new_account, with_store
from trackway.store import Store
from trackway.store.postgres import store as pg


async def backend_state(url: str, pid: int) -> tuple[str | None, int]:
    """pg_stat_activity's state of that backend, and how many advisory locks it holds."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as admin:
        cursor = await admin.execute(
            "SELECT state, (SELECT count(*) FROM pg_locks"
            "               WHERE pid = %s AND locktype = 'advisory')"
            " FROM pg_stat_activity WHERE pid = %s",
            (pid, pid),
        )
        row = await cursor.fetchone()
        return (row[0], row[1]) if row else (None, 0)


def fail_one_batch(
    break_it: Callable[[pytest.MonkeyPatch], None], expected: type[BaseException]
) -> None:
    url = fresh_postgres_database(require_postgres())

    async def work(store: Store) -> None:
        account = await new_account(store)
        await store.ingest(account, [event()])
        with pytest.MonkeyPatch.context() as patch:
            break_it(patch)
            with pytest.raises(expected):
                await store.ingest(account, [event(), event(customer_id="c1")])
        assert await store.count_events(account) == 1  # nothing of the failed batch
        conn = store._writer_conn  # type: ignore[attr-defined]
        if conn is not None and not conn.closed:
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            assert await backend_state(url, conn.info.backend_pid) == ("idle", 0)
        store._down_until = 0.0  # type: ignore[attr-defined]
        assert (await store.ingest(account, [event(customer_id="c1")])).stored == 1
        assert await store.count_events(account) == 2

    with_store(url, work)


def test_a_python_error_after_the_writes_were_sent_commits_nothing() -> None:
    def boom(*_: Any) -> Any:
        raise RuntimeError("boom")

    # error_log_rows runs after write_batch is in the pipeline, before the COMMIT.
    fail_one_batch(lambda patch: patch.setattr(pg, "error_log_rows", boom), RuntimeError)


def test_a_database_error_mid_pipeline_commits_nothing() -> None:
    def break_order_lock(patch: pytest.MonkeyPatch) -> None:
        patch.setitem(pg.Q, "lock_account_order", "SELECT 1 / 0 FROM unnest(%b::int4[]) AS u (a)")

    fail_one_batch(break_order_lock, psycopg.errors.DivisionByZero)


def test_the_exclusive_retry_leaves_nothing_open() -> None:
    """A batch that merges is rolled back and written again under the exclusive lock."""
    url = fresh_postgres_database(require_postgres())

    async def work(store: Store) -> None:
        account = await new_account(store)
        await store.ingest(account, [event(cookie="ck"), event(customer_id="m1")])
        await store.ingest(account, [event(customer_id="m1", cookie="ck")])  # a merge
        conn = store._writer_conn  # type: ignore[attr-defined]
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert await backend_state(url, conn.info.backend_pid) == ("idle", 0)
        one = await store.customer_by_identifier(account, "cookie", "ck")
        two = await store.customer_by_identifier(account, "customer_id", "m1")
        assert one is not None and two is not None and one.uuid == two.uuid

    with_store(url, work)


def test_a_batch_after_the_idle_writer_connection_was_dropped_is_stored() -> None:
    """A restart, idle_session_timeout or a proxy can drop the connection between batches:
    the next batch runs again on a new connection instead of answering 503."""
    url = fresh_postgres_database(require_postgres())

    async def work(store: Store) -> None:
        account = await new_account(store)
        await store.ingest(account, [event()])
        pid = store._writer_conn.info.backend_pid  # type: ignore[attr-defined]
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as admin:
            await admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        await asyncio.sleep(0.2)
        assert (await store.ingest(account, [event()])).stored == 1
        assert await store.count_events(account) == 2

    with_store(url, work)


def test_the_live_stream_never_moves_past_an_insert_not_yet_committed() -> None:
    """Ids are given at insert and made visible at commit; the live stream reads after a cursor
    (the last id it sent). A writer that inserted a lower id and has not committed yet must not
    be overtaken: a reader that moved its cursor past that id would never stream the event."""
    url = fresh_postgres_database(require_postgres())

    async def work(store: Store) -> None:
        account = await new_account(store)
        await store.ingest(account, [event()])
        cursor = await store.latest_event_id(account)
        seen: list[int] = []

        async def follow() -> None:
            nonlocal cursor
            deadline = asyncio.get_running_loop().time() + 10
            while len(seen) < 2 and asyncio.get_running_loop().time() < deadline:
                arrived = await store.events_since(account, cursor, 100)
                if arrived:
                    seen.extend(a.id for a in arrived)
                    cursor = arrived[-1].id
                await asyncio.sleep(0.02)

        async with await psycopg.AsyncConnection.connect(url) as slow:
            # A writer between its insert and its commit, as the store's writer holds it.
            await slow.execute(pg.Q["lock_account_order"], ([account.id],))
            inserted = await slow.execute(
                "INSERT INTO events (account_id, event_uuid, event, user_uuid,"
                " timestamp_ms, received_ms, body)"
                " SELECT account_id, 'slow-one', event, user_uuid, timestamp_ms,"
                " received_ms, body FROM events WHERE account_id = %s LIMIT 1"
                " RETURNING id",
                (account.id,),
            )
            slow_id = (await inserted.fetchone() or [0])[0]
            # Another writer stores an event meanwhile, and a reader follows.
            fast = asyncio.create_task(store.ingest(account, [event(cookie="fast")]))
            follower = asyncio.create_task(follow())
            await asyncio.sleep(0.5)
            await slow.commit()
        assert (await fast).stored == 1
        await follower
        assert len(seen) == 2 and slow_id in seen, (seen, slow_id)

    with_store(url, work)
