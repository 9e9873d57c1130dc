"""One contract suite for every store backend: SQLite always, PostgreSQL whenever
TRACKWAY_TEST_POSTGRES_URL is set (CI always sets it; in CI its absence fails the run)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import pytest

from trackway.domain.errors import AccountExists, AccountNotFound
from trackway.domain.events import AcceptedEvent, validate_event
from trackway.domain.keys import hash_key
from trackway.domain.timestamps import now_ms
from trackway.store import Account, Rejection, Store, open_store

T = TypeVar("T")
PG_URL = os.environ.get("TRACKWAY_TEST_POSTGRES_URL")


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]


def fresh_postgres_database(base_url: str) -> str:
    """A new, empty database on the test server; its URL."""
    import psycopg

    name = "trackway_" + uuid.uuid4().hex[:12]
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return base_url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return "sqlite:///" + str(tmp_path / "store.db")
    if not PG_URL:
        if os.environ.get("CI"):
            pytest.fail("TRACKWAY_TEST_POSTGRES_URL is not set: CI must run the PostgreSQL suite")
        pytest.skip("TRACKWAY_TEST_POSTGRES_URL is not set")
    return fresh_postgres_database(PG_URL)


def with_store(url: str, work: Callable[[Store], Awaitable[T]]) -> T:
    async def go() -> T:
        store = open_store(url)
        await store.open()
        try:
            return await work(store)
        finally:
            await store.close()

    return run(go())


async def new_account(store: Store, name: str | None = None) -> Account:
    name = name or "acct-" + uuid.uuid4().hex[:8]
    return await store.create_account(name, hash_key(name + "-e"), hash_key(name + "-u"))


def event(**fields: Any) -> AcceptedEvent:
    fields.setdefault("event", "view")
    if not any(k in fields for k in ("customer_id", "email", "device_id", "cookie")):
        fields["cookie"] = "c-" + uuid.uuid4().hex[:8]
    return validate_event(fields, now_ms())


@pytest.fixture
def store_run(store_url: str) -> Iterator[Callable[[Callable[[Store], Awaitable[Any]]], Any]]:
    yield lambda work: with_store(store_url, work)


def test_migrations_from_empty_twice(store_url: str) -> None:
    async def first(store: Store) -> Account:
        return await new_account(store, "one")

    created = with_store(store_url, first)
    # Opening again runs the migrations again: a no-op that keeps the data.
    found = with_store(store_url, lambda store: store.find_account("one"))
    assert found == created


def test_accounts_and_keys(store_run: Any) -> None:
    async def work(store: Store) -> None:
        account = await new_account(store, "shop")
        credential = await store.credential(hash_key("shop-e"))
        assert credential is not None
        assert (credential.account, credential.kind) == (account, "event")
        assert (await store.credential(hash_key("shop-u"))).kind == "user"  # type: ignore[union-attr]
        assert await store.credential(hash_key("nope")) is None
        with pytest.raises(AccountExists):
            await new_account(store, "shop")
        assert await store.find_account(account.uuid) == account
        with pytest.raises(AccountNotFound):
            await store.find_account("missing")
        await store.replace_key(account, "event", hash_key("new-e"))
        assert await store.credential(hash_key("shop-e")) is None
        assert (await store.credential(hash_key("new-e"))).account == account  # type: ignore[union-attr]
        assert [a.name for a in await store.list_accounts()] == ["shop"]

    store_run(work)


def test_ingest_dedups_and_rolls_up(store_run: Any) -> None:
    async def work(store: Store) -> None:
        account = await new_account(store)
        a = event(event="purchase", timestamp="2024-03-01T10:00:00Z", price=5)
        b = event(event="my_event", timestamp="2024-03-02T10:00:00Z")
        twin = validate_event(dict(a.body), now_ms())
        result = await store.ingest(account, [a, b, twin])
        assert (result.stored, result.duplicates) == (2, 1)
        again = await store.ingest(account, [validate_event(dict(b.body), now_ms())])
        assert (again.stored, again.duplicates) == (0, 1)
        assert await store.count_events(account) == 2
        counts = await store.daily_event_counts(account, "2024-03-01", "2024-03-02")
        assert counts == [("2024-03-01", "purchase", 1), ("2024-03-02", "my_event", 1)]
        names = {n["name"]: n["type"] for n in await store.event_names(account)}
        assert names == {"purchase": "standard", "my_event": "custom_event"}
        stored = await store.event_by_uuid(account, a.event_uuid)
        assert stored is not None and stored["price"] == 5

    store_run(work)


def test_rejections_are_logged_and_counted(store_run: Any) -> None:
    async def work(store: Store) -> None:
        account = await new_account(store)
        received = now_ms()
        await store.ingest(
            account, [], [Rejection(received, "missing_identifier", {"base": ["x"]}, b"{}")]
        )
        log = await store.error_log(account)
        assert [(e["error_type"], e["raw"]) for e in log] == [("missing_identifier", b"{}")]
        day = __import__("trackway.domain.timestamps", fromlist=["day_of_ms"]).day_of_ms(received)
        assert await store.daily_error_counts(account, day, day) == [(day, "missing_identifier", 1)]

    store_run(work)


def test_attribute_type_is_fixed_by_first_use(store_run: Any) -> None:
    async def work(store: Store) -> None:
        account = await new_account(store)
        first = await store.ingest(account, [event(price=1)])
        assert first.rejected == []
        second = await store.ingest(account, [event(price="cheap"), event(price=2)])
        assert (second.stored, [i for i, _ in second.rejected]) == (1, [0])
        assert second.rejected[0][1].error_type == "es_index_error"
        assert [e["error_type"] for e in await store.error_log(account)] == ["es_index_error"]

    store_run(work)


def test_an_account_fixes_at_most_its_bound_of_attribute_names(store_url: str) -> None:
    """--max-attribute-names: an event whose new names would take its account past the bound
    is refused (invalid_event_attributes, logged and counted); known names always pass; each
    account has its own bound; a reset name frees its place."""

    async def work(store: Store) -> None:
        account, other = await new_account(store), await new_account(store)
        assert (await store.ingest(account, [event(a=1, b="x")])).rejected == []
        # One batch: the first event takes the room that is left, the next two are refused,
        # the last carries only known names.
        result = await store.ingest(
            account,
            [event(c=1, d=2), event(e=1), event(a=2, f=1, g=2), event(a=3, b="y", c=4)],
        )
        assert (result.stored, [i for i, _ in result.rejected]) == (2, [1, 2])
        refused = result.rejected[0][1]
        assert refused.error_type == "invalid_event_attributes"
        assert refused.errors == {
            "attributes": [
                "would add 1 new attribute name to the 4 the account has (maximum is 4 per account)"
            ]
        }
        assert result.rejected[1][1].errors["attributes"] == [
            "would add 2 new attribute names to the 4 the account has (maximum is 4 per account)"
        ]
        assert sorted(a.name for a in await store.attribute_types(account)) == list("abcd")
        logged = await store.error_log(account)
        assert [e["error_type"] for e in logged] == ["invalid_event_attributes"] * 2
        counts = await store.daily_error_counts(account, "1970-01-01", "9999-12-31")
        assert [(t, n) for _, t, n in counts] == [("invalid_event_attributes", 2)]
        # A type mismatch is still named as such, bound or not.
        mismatch = await store.ingest(account, [event(a="text")])
        assert mismatch.rejected[0][1].error_type == "es_index_error"
        # Fields Trackway types by rule are no custom names.
        assert (await store.ingest(account, [event(user_agent="x", url="/")])).rejected == []
        # Another account has its own room.
        assert (await store.ingest(other, [event(e=1, f=2, g=3, h=4)])).rejected == []
        await store.reset_attribute_type(account, "d")
        assert (await store.ingest(account, [event(e=1)])).rejected == []

    async def opened() -> None:
        store = open_store(store_url, max_attribute_names=4)
        await store.open()
        try:
            await work(store)
        finally:
            await store.close()

    run(opened())


def test_attribute_types_are_listed_and_reset(store_run: Any) -> None:
    async def work(store: Store) -> None:
        account, other = await new_account(store), await new_account(store)
        before = now_ms()
        await store.ingest(
            account,
            [
                event(price=1, plan="pro", when="2024-03-01T10:00:00Z", Big=True, tags=["a"]),
                # Fields typed by Trackway's rules never enter the registry.
                event(user_agent="Mozilla/5.0", sent_at="2024-03-01T10:00:00Z", url="/", meta={}),
            ],
        )
        await store.ingest(other, [event(price="free")])
        after = now_ms()
        fixed = await store.attribute_types(account)
        assert [(a.name, a.type) for a in fixed] == [
            ("Big", "boolean"),  # code point order: upper case first
            ("meta", "object"),
            ("plan", "string"),
            ("price", "number"),
            ("tags", "array"),
            ("when", "timestamp"),
        ]
        for a in fixed:
            assert a.first_seen_ms is not None and before - 1000 <= a.first_seen_ms <= after + 1000
        assert [(a.name, a.type) for a in await store.attribute_types(other)] == [
            ("price", "string")
        ]

        refused = await store.ingest(account, [event(price="cheap")])
        assert refused.rejected[0][1].error_type == "es_index_error"
        forgotten = await store.reset_attribute_type(account, "price")
        assert forgotten is not None and (forgotten.name, forgotten.type) == ("price", "number")
        assert "price" not in [a.name for a in await store.attribute_types(account)]
        # The next event fixes it anew; the other account's type is its own.
        assert (await store.ingest(account, [event(price="cheap")])).rejected == []
        again = {a.name: a.type for a in await store.attribute_types(account)}
        assert again["price"] == "string"
        assert [(a.name, a.type) for a in await store.attribute_types(other)] == [
            ("price", "string")
        ]
        assert await store.reset_attribute_type(account, "nothing") is None
        assert await store.reset_attribute_type(account, "user_agent") is None
        assert await store.reset_attribute_type(other, "plan") is None
        assert await store.count_events(account) == 3

    store_run(work)


def test_the_migration_lists_old_types_and_forgets_built_in_ones(store_url: str) -> None:
    """From the schema before attribute types were listed: a custom name's type stays (first
    seen unknown); a type a built-in field got from first use (user_agent as a number) goes."""
    from trackway.domain.events import custom_attribute_types
    from trackway.store.queries import migration_files

    rows = "(1, 'price', 'number'), (1, 'user_agent', 'number'), (1, 'sent_at', 'string')"
    if store_url.startswith("sqlite"):
        package, last = "trackway.store.sqlite", 4
        import sqlite3

        conn = sqlite3.connect(store_url.removeprefix("sqlite:///"))
        for number, _, sql in migration_files(package):
            if number <= last:
                conn.executescript(sql)
                conn.execute(f"PRAGMA user_version = {number}")
        conn.execute("INSERT INTO accounts (uuid, name, created_ms) VALUES ('u', 'old', 1)")
        conn.execute(f"INSERT INTO attribute_types (account_id, name, type) VALUES {rows}")
        conn.commit()
        conn.close()
    else:
        import psycopg

        package, last = "trackway.store.postgres", 5
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
            pg.execute(f"INSERT INTO attribute_types (account_id, name, type) VALUES {rows}")
    # Every name the migration forgets is one the rules type now, never a custom attribute.
    forgotten = migration_files(package)[last][2].split("WHERE name IN (")[1].split(")")[0]
    names = [n.strip().strip("'") for n in forgotten.replace("\n", " ").split(",")]
    assert len(names) == 16 and all(custom_attribute_types({n: 1}) == [] for n in names)

    async def work(store: Store) -> None:
        account = await store.find_account("old")
        assert [
            (a.name, a.type, a.first_seen_ms) for a in await store.attribute_types(account)
        ] == [("price", "number", None)]
        assert (await store.ingest(account, [event(user_agent="Mozilla/5.0")])).rejected == []

    with_store(store_url, work)


def test_the_migration_keeps_old_pixel_rows_replayable(store_url: str) -> None:
    """From the schema before error-log rows said how they arrived: a pixel row (its query
    without the key) replays as the pixel's, a JSON row as JSON; new rows carry their source."""
    from trackway.errors_log import ErrorLog, error_document
    from trackway.store.base import PIXEL
    from trackway.store.queries import migration_files

    insert = "INSERT INTO error_log (account_id, received_ms, error_type, errors, raw) VALUES"
    logged = [
        (1000, "missing_identifier", b"e=legacy_view&k=old-cookie&plan=pro"),
        (1001, "parsing_error", b'{"event": "view", "cookie": '),
    ]
    if store_url.startswith("sqlite"):
        package, last = "trackway.store.sqlite", 5
        import sqlite3

        conn = sqlite3.connect(store_url.removeprefix("sqlite:///"))
        for number, _, sql in migration_files(package):
            if number <= last:
                conn.executescript(sql)
                conn.execute(f"PRAGMA user_version = {number}")
        conn.execute("INSERT INTO accounts (uuid, name, created_ms) VALUES "
                     "('7f0c3b4e-9a55-4a8e-9d7e-5b8f1e2a3c4d', 'old', 1)")  # fmt: skip
        conn.executemany(insert + " (1, ?, ?, '{}', ?)", logged)
        conn.commit()
        conn.close()
    else:
        import psycopg

        package, last = "trackway.store.postgres", 6
        with psycopg.connect(store_url, autocommit=True) as pg:
            pg.execute(
                "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,"
                " applied_ms bigint NOT NULL)"
            )
            for number, name, sql in migration_files(package):
                if number <= last:
                    pg.execute(sql.encode())  # type: ignore[arg-type]
                    pg.execute("INSERT INTO schema_migrations VALUES (%s, %s, 1)", (number, name))
            pg.execute("INSERT INTO accounts (uuid, name, created_ms) VALUES "
                       "('7f0c3b4e-9a55-4a8e-9d7e-5b8f1e2a3c4d', 'old', 1)")  # fmt: skip
            for row in logged:
                pg.execute(insert + " (1, %s, %s, '{}', %s)", row)  # type: ignore[arg-type]

    async def work(store: Store) -> None:
        from trackway.store.base import ErrorFilter

        account = await store.find_account("old")
        old = await store.error_page(account, ErrorFilter(), None, 10)
        assert [(r.source, r.context) for r in old] == [(None, None), (None, None)]
        assert [error_document(r)["source"] for r in old] == ["json", "pixel"]
        outcome = await ErrorLog(store).replay(account, ids=[r.id for r in old])
        assert [i for i, _ in outcome.replayed] == [old[1].id]
        assert [(i, r.error_type) for i, r in outcome.failed] == [(old[0].id, "parsing_error")]
        customer = await store.customer_by_identifier(account, "cookie", "old-cookie")
        assert customer is not None
        # New rows say how they came, with the pixel request's context.
        context = {"user_agent": "UA", "ip": "203.0.113.1", "referrer": None}
        rejection = Rejection(now_ms(), "missing_identifier", {"base": ["x"]}, b"e=v", PIXEL,
                              context)  # fmt: skip
        await store.ingest(account, [], [rejection, Rejection(now_ms(), "parsing_error", {}, b"{")])
        new = await store.error_page(account, ErrorFilter(start_ms=2000), None, 10)
        assert sorted((r.source, r.context) for r in new) == [  # type: ignore[type-var]
            ("json", None),
            ("pixel", context),
        ]

    with_store(store_url, work)


def test_identity_merge_and_conflict(store_run: Any) -> None:
    async def work(store: Store) -> None:
        account = await new_account(store)
        await store.ingest(account, [event(cookie="ck", event="view")])
        anonymous = await store.customer_by_identifier(account, "cookie", "ck")
        assert anonymous is not None and anonymous.customer_id is None
        await store.ingest(
            account,
            [event(cookie="ck", customer_id="7", email="A@x.io", event="identify", name="Ann")],
        )
        known = await store.customer_by_identifier(account, "customer_id", "7")
        assert known is not None and known.attributes == {"name": "Ann"}
        # The anonymous profile was taken over (or merged): its uuid answers for the customer.
        merged = await store.customer_by_uuid(account, anonymous.uuid)
        assert merged is not None and merged.uuid == known.uuid
        timeline = await store.customer_events(account, known.uuid, 0, 2**62, 100)
        assert [e.body["event"] for e in timeline] == ["identify", "view"]
        # A different customer_id with customer 7's email: never merged.
        await store.ingest(account, [event(customer_id="8", email="a@x.io")])
        eight = await store.customer_by_identifier(account, "customer_id", "8")
        assert eight is not None and eight.uuid != known.uuid
        by_email = await store.customer_by_identifier(account, "email", "a@x.io")
        assert by_email is not None and by_email.uuid == known.uuid

    store_run(work)


def test_concurrent_writers_make_one_customer(store_url: str) -> None:
    """Two stores on one database (as two processes would be) see the same new customer at
    the same moment: one customer results."""

    async def work() -> None:
        one, two = open_store(store_url), open_store(store_url)
        await one.open()
        await two.open()
        try:
            account = await new_account(one)
            for round_ in range(10):
                device = f"dev-{round_}"
                await asyncio.gather(
                    one.ingest(account, [event(device_id=device)]),
                    two.ingest(account, [event(device_id=device, email=f"{round_}@x.io")]),
                )
                a = await one.customer_by_identifier(account, "device_id", device)
                b = await two.customer_by_identifier(account, "email", f"{round_}@x.io")
                assert a is not None and b is not None and a.uuid == b.uuid
                assert len(await one.customer_events(account, a.uuid, 0, 2**62, 10)) == 2
        finally:
            await one.close()
            await two.close()

    run(work())


async def two_stores(url: str) -> tuple[Store, Store]:
    one, two = open_store(url), open_store(url)
    await one.open()
    await two.open()
    return one, two


def test_concurrent_writers_store_an_event_uuid_once(store_url: str) -> None:
    """The same event_uuid sent to two processes at the same moment is stored once."""

    async def work() -> None:
        one, two = await two_stores(store_url)
        try:
            account = await new_account(one)
            for round_ in range(10):
                sent = str(uuid.uuid4())
                results = await asyncio.gather(
                    one.ingest(account, [event(event_uuid=sent, cookie=f"a{round_}")]),
                    two.ingest(account, [event(event_uuid=sent, cookie=f"b{round_}")]),
                )
                assert sorted((r.stored, r.duplicates) for r in results) == [(0, 1), (1, 0)]
            assert await one.count_events(account) == 10
        finally:
            await one.close()
            await two.close()

    run(work())


def test_concurrent_writers_keep_both_profile_changes(store_url: str) -> None:
    """Two processes changing one known profile at once, through two of its identifiers: both
    changes are kept (neither writes over the other from a stale read)."""

    async def work() -> None:
        one, two = await two_stores(store_url)
        try:
            account = await new_account(one)
            for round_ in range(10):
                cid, device = f"k{round_}", f"d{round_}"
                await one.ingest(account, [event(customer_id=cid, device_id=device)])
                await asyncio.gather(
                    one.ingest(account, [event(event="identify", customer_id=cid, first="A")]),
                    two.ingest(account, [event(event="identify", device_id=device, last="B")]),
                )
                customer = await one.customer_by_identifier(account, "customer_id", cid)
                assert customer is not None
                assert customer.attributes == {"first": "A", "last": "B"}
                assert len(await one.customer_events(account, customer.uuid, 0, 2**62, 10)) == 3
        finally:
            await one.close()
            await two.close()

    run(work())


def test_merge_while_another_writer_uses_the_merged_profile(store_url: str) -> None:
    """One process merges an anonymous profile into a known one while another attaches a new
    identifier and an event to the anonymous profile: every identifier ends on the known
    profile, with every event."""

    async def work() -> None:
        one, two = await two_stores(store_url)
        try:
            account = await new_account(one)
            for round_ in range(10):
                cid, cookie, device = f"m{round_}", f"ck{round_}", f"dv{round_}"
                await one.ingest(account, [event(cookie=cookie), event(customer_id=cid)])
                await asyncio.gather(
                    one.ingest(account, [event(customer_id=cid, cookie=cookie)]),
                    two.ingest(account, [event(cookie=cookie, device_id=device)]),
                )
                owners = {
                    kind: await two.customer_by_identifier(account, kind, value)
                    for kind, value in (("customer_id", cid), ("cookie", cookie),
                                        ("device_id", device))
                }  # fmt: skip
                uuids = {c.uuid if c else None for c in owners.values()}
                assert len(uuids) == 1 and None not in uuids, owners
                live = uuids.pop()
                assert live is not None
                assert len(await one.customer_events(account, live, 0, 2**62, 10)) == 4
        finally:
            await one.close()
            await two.close()

    run(work())


def test_reads_order_and_limit(store_run: Any) -> None:
    async def work(store: Store) -> None:
        account = await new_account(store)
        stamps = ["2024-01-03T00:00:00Z", "2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z"]
        await store.ingest(account, [event(cookie="k", event="view", timestamp=t) for t in stamps])
        customer = await store.customer_by_identifier(account, "cookie", "k")
        assert customer is not None
        newest_two = await store.customer_events(account, customer.uuid, 0, 2**62, 2)
        assert [e.body["timestamp"] for e in newest_two] == [stamps[0], stamps[2]]
        latest = await store.latest_events(account, "view", 50)
        assert [e.body["timestamp"] for e in latest] == [stamps[0], stamps[2], stamps[1]]
        assert all(e.user_uuid == customer.uuid for e in latest)

    store_run(work)


def test_rate_windows_and_event_names(store_run: Any) -> None:
    async def work(store: Store) -> None:
        account = await new_account(store)
        counts = [await store.hit_rate_window(account, "show_events", 1000, 0) for _ in range(3)]
        assert counts == [1, 2, 3]
        assert await store.hit_rate_window(account, "show_events", 2000, 1000) == 1
        await store.ingest(account, [event(event="signup")])
        assert await store.update_event_name(account, "signup", display_name="Sign-up")
        assert await store.update_event_name(account, "signup", archived=True)
        assert not await store.update_event_name(account, "nope", archived=True)
        (entry,) = await store.event_names(account)
        assert (entry["display_name"], entry["archived"]) == ("Sign-up", True)

    store_run(work)


def test_delete_customer(store_run: Any) -> None:
    async def work(store: Store) -> None:
        account = await new_account(store)
        await store.ingest(account, [event(cookie="gone", event="view")])
        await store.ingest(account, [event(cookie="gone", email="g@x.io", event="identify")])
        await store.ingest(account, [event(cookie="stays", event="view")])
        customer = await store.customer_by_identifier(account, "email", "g@x.io")
        assert customer is not None
        assert await store.delete_customer(account, customer.uuid) == 2
        assert await store.customer_by_uuid(account, customer.uuid) is None
        assert await store.customer_by_identifier(account, "cookie", "gone") is None
        assert await store.count_events(account) == 1
        assert await store.delete_customer(account, customer.uuid) is None
        day_counts = await store.daily_event_counts(account, "1970-01-01", "9999-12-31")
        assert sum(n for _, _, n in day_counts) == 3  # the rollups keep their counts
        # The same identifiers later make a new customer.
        await store.ingest(account, [event(cookie="gone", event="view")])
        again = await store.customer_by_identifier(account, "cookie", "gone")
        assert again is not None and again.uuid != customer.uuid

    store_run(work)


def test_events_page_keyset(store_run: Any) -> None:
    async def work(store: Store) -> None:
        account, other = await new_account(store), await new_account(store)
        tie = "2024-03-01T10:00:00Z"
        views = [event(timestamp=tie, n=i) for i in range(5)]
        views += [event(timestamp="2024-03-02T00:00:00Z"), event(timestamp="2024-02-29T00:00:00Z")]
        await store.ingest(account, [*views, event(event="buy", timestamp=tie)])
        await store.ingest(other, [event(timestamp=tie)])
        rows, after = [], (0, 0)
        while page := await store.events_page(account, "view", after, 2**62, 2):
            assert len(page) <= 2
            rows += page
            after = page[-1][:2]
        assert [r[:2] for r in rows] == sorted({r[:2] for r in rows})  # (timestamp, id), once
        bodies = [msgspec.json.decode(r[2]) for r in rows]
        order = [views[6], *views[:5], views[5]]  # by timestamp, ties in the order stored
        assert [b["event_uuid"] for b in bodies] == [e.event_uuid for e in order]
        assert bodies[0] == order[0].body
        before = await store.events_page(account, "view", (0, 0), rows[-1][0], 10)
        assert len(before) == 6  # before_ms is exclusive
        assert await store.events_page(account, "view", rows[-1][:2], 2**62, 10) == []

    store_run(work)


def test_rotated_key_keeps_working_for_its_grace_period(store_run: Any) -> None:
    async def work(store: Store) -> None:
        account = await new_account(store, "graceful")
        await store.replace_key(account, "user", hash_key("u2"), grace_ms=60_000)
        old = await store.credential(hash_key("graceful-u"))
        assert old is not None and old.account == account  # still in its grace period
        assert (await store.credential(hash_key("u2"))) is not None
        await store.replace_key(account, "event", hash_key("e2"), grace_ms=0)
        assert await store.credential(hash_key("graceful-e")) is None

    store_run(work)


def test_rotation_without_grace_cuts_keys_still_in_an_earlier_grace_period(
    store_run: Any,
) -> None:
    async def work(store: Store) -> None:
        account, other = await new_account(store, "leaky"), await new_account(store)
        await store.replace_key(account, "event", hash_key("e2"), grace_ms=3_600_000)
        await store.replace_key(account, "event", hash_key("e3"), grace_ms=3_600_000)
        for key in ("leaky-e", "e2", "e3", "leaky-u"):
            assert await store.credential(hash_key(key)) is not None, key
        await store.replace_key(account, "event", hash_key("e4"), grace_ms=0)
        for key in ("leaky-e", "e2", "e3"):
            assert await store.credential(hash_key(key)) is None, key
        assert await store.credential(hash_key("e4")) is not None
        assert await store.credential(hash_key("leaky-u")) is not None  # the other kind stays
        assert await store.credential(hash_key(other.name + "-e")) is not None

        # A shorter grace bounds a longer one; a longer grace never lengthens a shorter one.
        await store.replace_key(account, "user", hash_key("u2"), grace_ms=3_600_000)
        await store.replace_key(account, "user", hash_key("u3"), grace_ms=1)
        await asyncio.sleep(0.01)
        assert await store.credential(hash_key("leaky-u")) is None
        assert await store.credential(hash_key("u2")) is None
        await store.replace_key(account, "user", hash_key("u4"), grace_ms=3_600_000)
        assert await store.credential(hash_key("u3")) is not None
        await store.replace_key(account, "user", hash_key("u5"), grace_ms=0)
        assert await store.credential(hash_key("u3")) is None

    store_run(work)


# -- finding and browsing customers -----------------------------------------------------------


def day(n: int) -> str:
    """An instant n days into 2024: far enough apart to move a profile's last activity."""
    return f"2024-02-{n:02d}T12:00:00.000Z"


def day_ms(n: int) -> int:
    from trackway.domain.timestamps import parse_timestamp

    parsed = parse_timestamp(day(n))
    assert parsed is not None
    return parsed[1]


async def uuids_found(store: Store, account: Account, q: str | None, limit: int = 50) -> list[str]:
    from trackway.domain.customers import SearchPrefix

    prefix = None if q is None else SearchPrefix.of(q)
    return [c.uuid for c in await store.search_customers(account, prefix, None, limit)]


def test_search_matches_a_prefix_of_every_identifier_kind(store_run: Any) -> None:
    async def work(store: Store) -> None:
        from trackway.domain.customers import SearchPrefix

        account, other = await new_account(store), await new_account(store)
        await store.ingest(
            account,
            [
                event(customer_id="cust-1", email="Ann.Smith@Example.com", timestamp=day(1)),
                event(device_id="dev-XY", timestamp=day(2)),
                event(cookie="ck-abc", timestamp=day(3)),
                event(cookie="ck-abd", customer_id="ck-abd9", timestamp=day(4)),
            ],
        )
        await store.ingest(other, [event(customer_id="cust-2", email="ann@example.com")])

        async def one(identifier: tuple[str, str]) -> str:
            found = await store.customer_by_identifier(account, *identifier)
            assert found is not None
            return found.uuid

        ann, dev = await one(("customer_id", "cust-1")), await one(("device_id", "dev-XY"))
        abc, abd = await one(("cookie", "ck-abc")), await one(("cookie", "ck-abd"))
        assert await uuids_found(store, account, "cust") == [ann]
        assert await uuids_found(store, account, "cust-1") == [ann]
        assert await uuids_found(store, account, "cust-12") == []
        # Emails case-insensitively, the other kinds as sent.
        assert await uuids_found(store, account, "ann.s") == [ann]
        assert await uuids_found(store, account, "ANN.SMITH@EXAMPLE") == [ann]
        assert await uuids_found(store, account, "CUST") == []
        assert await uuids_found(store, account, "dev-X") == [dev]
        assert await uuids_found(store, account, "dev-x") == []
        # Newest activity first; a prefix is never a substring.
        assert await uuids_found(store, account, "ck-ab") == [abd, abc]
        assert await uuids_found(store, account, "k-ab") == []
        assert await uuids_found(store, account, "ck-abd") == [abd]
        assert await uuids_found(store, account, "zzz") == []
        # Matched by a cookie and a customer_id: once, under the stronger kind.
        (both,) = await store.search_customers(account, SearchPrefix.of("ck-abd"), None, 50)
        assert both.uuid == abd and both.matched == ("customer_id", "ck-abd9")
        (hit,) = await store.search_customers(account, SearchPrefix.of("ck-abc"), None, 50)
        assert hit.matched == ("cookie", "ck-abc")
        (hit,) = await store.search_customers(account, SearchPrefix.of("ann"), None, 50)
        assert hit.matched == ("email", "ann.smith@example.com")
        assert (hit.customer_id, hit.email, hit.seen_ms) == (
            "cust-1",
            "ann.smith@example.com",
            day_ms(1),
        )
        # One account never sees another's.
        assert await uuids_found(store, other, "ck") == []
        assert len(await uuids_found(store, other, "ann")) == 1
        assert len(await uuids_found(store, other, None)) == 1

    store_run(work)


def test_revoke_key_cuts_one_named_key(store_run: Any) -> None:
    async def work(store: Store) -> None:
        account, other = await new_account(store, "revoking"), await new_account(store)
        await store.replace_key(account, "event", hash_key("e2"), grace_ms=3_600_000)
        assert await store.revoke_key(other, hash_key("revoking-e")) is None  # not its key
        assert await store.credential(hash_key("revoking-e")) is not None
        assert await store.revoke_key(account, hash_key("revoking-e")) == "event"
        assert await store.credential(hash_key("revoking-e")) is None
        assert await store.credential(hash_key("e2")) is not None
        assert await store.revoke_key(account, hash_key("revoking-e")) is None  # already
        assert await store.revoke_key(account, hash_key("revoking-u")) == "user"  # the current
        assert await store.credential(hash_key("revoking-u")) is None
        assert await store.revoke_key(account, hash_key("no-such-key")) is None

    store_run(work)


def test_search_prefix_bounds_in_code_point_order(store_run: Any) -> None:
    """Ranges, not LIKE: % and _ are plain characters, and an upper-case or accented letter
    sorts where its code point does whatever the database's collation."""

    async def work(store: Store) -> None:
        account = await new_account(store)
        cookies = ["a%b", "a_b", "axb", "aB", "ab", "abc", "ac", "é1", "éz", "e1", "\U0010ffffx"]
        for cookie in cookies:
            await store.ingest(account, [event(cookie=cookie)])

        async def cookies_found(q: str) -> list[str]:
            from trackway.domain.customers import SearchPrefix

            found = await store.search_customers(account, SearchPrefix.of(q), None, 50)
            return sorted(c.matched[1] for c in found if c.matched)

        assert await cookies_found("a%") == ["a%b"]
        assert await cookies_found("a_") == ["a_b"]
        assert await cookies_found("ab") == ["ab", "abc"]
        assert await cookies_found("aB") == ["aB"]
        assert await cookies_found("a") == sorted(["a%b", "a_b", "axb", "aB", "ab", "abc", "ac"])
        assert await cookies_found("é") == ["é1", "éz"]
        assert await cookies_found("\U0010ffff") == ["\U0010ffffx"]

    store_run(work)


def test_customers_newest_activity_first_in_keyset_pages(store_run: Any) -> None:
    async def work(store: Store) -> None:
        account = await new_account(store)
        # Five customers, active on days 5, 1, 4, 2, 3; then the second comes back on day 9.
        for n, d in enumerate([5, 1, 4, 2, 3]):
            await store.ingest(account, [event(customer_id=f"c{n}", timestamp=day(d))])
        await store.ingest(account, [event(customer_id="c1", timestamp=day(9))])
        # An older event moves nothing.
        await store.ingest(account, [event(customer_id="c0", timestamp=day(1))])
        pages: list[list[str | None]] = []
        before = None
        while True:
            page = await store.search_customers(account, None, before, 2)
            if not page:
                break
            pages.append([c.customer_id for c in page])
            before = (page[-1].seen_ms, page[-1].id)
        assert pages == [["c1", "c0"], ["c2", "c4"], ["c3"]]
        # Customers arriving meanwhile never shift a page already begun.
        first = await store.search_customers(account, None, None, 2)
        await store.ingest(account, [event(customer_id="c9", timestamp=day(20))])
        rest = await store.search_customers(account, None, (first[-1].seen_ms, first[-1].id), 10)
        assert [c.customer_id for c in rest] == ["c2", "c4", "c3"]
        # Ties on the last activity: by row id, newest first, across pages.
        for n in range(3):
            await store.ingest(account, [event(customer_id=f"t{n}", timestamp=day(15))])
        same = await store.search_customers(account, None, (day_ms(15) + 1, 0), 2)
        more = await store.search_customers(account, None, (same[-1].seen_ms, same[-1].id), 2)
        assert [c.customer_id for c in same + more] == ["t2", "t1", "t0", "c1"]
        # Prefix search pages the same way.
        from trackway.domain.customers import SearchPrefix

        head = await store.search_customers(account, SearchPrefix.of("c"), None, 3)
        tail = await store.search_customers(
            account, SearchPrefix.of("c"), (head[-1].seen_ms, head[-1].id), 10
        )
        assert [c.customer_id for c in head + tail] == ["c9", "c1", "c0", "c2", "c4", "c3"]

    store_run(work)


def test_merged_profiles_leave_the_list_and_explain_the_winner(store_run: Any) -> None:
    async def work(store: Store) -> None:
        account = await new_account(store)
        await store.ingest(account, [event(cookie="ck-1", timestamp=day(1))])
        await store.ingest(account, [event(device_id="dev-1", timestamp=day(2))])
        cookie = await store.customer_by_identifier(account, "cookie", "ck-1")
        device = await store.customer_by_identifier(account, "device_id", "dev-1")
        assert cookie is not None and device is not None
        await store.ingest(account, [event(email="m@x.io", customer_id="m", timestamp=day(3))])
        # One event ties the three: the identified profile takes the others over.
        await store.ingest(
            account, [event(customer_id="m", cookie="ck-1", device_id="dev-1", timestamp=day(4))]
        )
        known = await store.customer_by_identifier(account, "customer_id", "m")
        assert known is not None
        assert await uuids_found(store, account, None) == [known.uuid]
        assert await uuids_found(store, account, "ck-") == [known.uuid]
        details = await store.customer_details(account, cookie.uuid, 100)
        assert details is not None and details.customer.uuid == known.uuid
        assert details.customer.seen_ms == day_ms(4)
        assert sorted(m.uuid for m in details.merged) == sorted([cookie.uuid, device.uuid])
        assert all(m.merged_ms is not None and m.created_ms > 0 for m in details.merged)
        from trackway.domain.identity import email_hash

        kinds = [(i.kind, i.value) for i in details.identifiers]
        assert sorted(kinds) == sorted(
            [
                ("cookie", "ck-1"),
                ("device_id", "dev-1"),
                ("customer_id", "m"),
                ("email", "m@x.io"),
                ("email_hash", email_hash("m@x.io")),
            ]
        )
        # First seen: the cookie before the customer_id.
        first_seen = {i.kind: i.first_seen_ms for i in details.identifiers}
        assert first_seen["cookie"] <= first_seen["device_id"] <= first_seen["customer_id"]
        # The merged timeline answers on the winner.
        page = await store.customer_events_page(account, known.uuid, None, 10)
        assert [t.event.timestamp_ms for t in page] == [day_ms(4), day_ms(3), day_ms(2), day_ms(1)]

    store_run(work)


def test_identity_conflicts_explain_both_profiles(store_run: Any) -> None:
    async def work(store: Store) -> None:
        account = await new_account(store)
        await store.ingest(account, [event(customer_id="1", email="shared@x.io")])
        await store.ingest(account, [event(customer_id="2", email="shared@x.io")])
        one = await store.customer_by_identifier(account, "customer_id", "1")
        two = await store.customer_by_identifier(account, "customer_id", "2")
        assert one is not None and two is not None
        for uuid_ in (one.uuid, two.uuid):
            details = await store.customer_details(account, uuid_, 100)
            assert details is not None
            (conflict,) = details.conflicts
            assert (conflict.customer_uuid, conflict.other_uuid) == (two.uuid, one.uuid)
            assert (conflict.kind, conflict.value) == ("email", "shared@x.io")
        await store.ingest(account, [event(customer_id="2", email="shared@x.io")])
        details = await store.customer_details(account, two.uuid, 1)
        assert details is not None and len(details.conflicts) == 1
        details = await store.customer_details(account, two.uuid, 100)
        assert details is not None and len(details.conflicts) == 2
        assert details.conflicts[0].id > details.conflicts[1].id
        assert await store.customer_details(account, str(uuid.uuid4()), 100) is None
        other = await new_account(store)
        assert await store.customer_details(other, one.uuid, 100) is None

    store_run(work)


def test_customer_events_pages_newest_first_with_ties(store_run: Any) -> None:
    async def work(store: Store) -> None:
        account = await new_account(store)
        stamps = [day(1), day(3), day(2), day(3), day(3), day(1)]
        await store.ingest(account, [event(cookie="k", timestamp=t) for t in stamps])
        await store.ingest(account, [event(cookie="someone-else", timestamp=day(2))])
        customer = await store.customer_by_identifier(account, "cookie", "k")
        assert customer is not None
        seen: list[tuple[int, int]] = []
        before = None
        while True:
            page = await store.customer_events_page(account, customer.uuid, before, 4)
            if not page:
                break
            seen += [(t.event.timestamp_ms, t.id) for t in page]
            assert all(t.event.user_uuid == customer.uuid for t in page)
            before = seen[-1]
        assert len(seen) == 6 and len(set(seen)) == 6
        assert seen == sorted(seen, reverse=True)
        assert [ms for ms, _ in seen] == [day_ms(3)] * 3 + [day_ms(2)] + [day_ms(1)] * 2
        other = await new_account(store)
        assert await store.customer_events_page(other, customer.uuid, None, 10) == []

    store_run(work)


def test_the_migration_finds_the_last_activity_of_existing_customers(store_url: str) -> None:
    """From the schema before customer search: seen_ms from each profile's newest event."""
    from trackway.store.queries import migration_files

    customers = (
        "(1, 'u-old', 'old-1', NULL, NULL, 10, 10), (1, 'u-idle', 'idle', NULL, NULL, 77, 77),"
        " (1, 'u-gone', NULL, 'u-old', NULL, 5, 5)"
    )
    columns = "(account_id, uuid, customer_id, merged_into, email, created_ms, updated_ms)"
    identifiers = (
        "(1, 'customer_id', 'old-1', 'u-old', 10), (1, 'customer_id', 'idle', 'u-idle', 77)"
    )
    events = (
        "(1, 'e1', 'view', 'u-old', 1706788800000, 1, '{}'),"
        " (1, 'e2', 'view', 'u-old', 1706875200000, 2, '{}')"
    )
    event_columns = "(account_id, event_uuid, event, user_uuid, timestamp_ms, received_ms, body)"
    inserts = [
        "INSERT INTO accounts (uuid, name, created_ms) VALUES ('u', 'old', 1)",
        f"INSERT INTO customers {columns} VALUES {customers}",
        f"INSERT INTO identifiers VALUES {identifiers}",
    ]
    if store_url.startswith("sqlite"):
        import sqlite3

        conn = sqlite3.connect(store_url.removeprefix("sqlite:///"))
        for number, _, sql in migration_files("trackway.store.sqlite"):
            if number <= 5:
                conn.executescript(sql)
                conn.execute(f"PRAGMA user_version = {number}")
        for sql in [*inserts, f"INSERT INTO events {event_columns} VALUES {events}"]:
            conn.execute(sql)
        conn.commit()
        conn.close()
    else:
        import psycopg

        with psycopg.connect(store_url, autocommit=True) as pg:
            pg.execute(
                "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,"
                " applied_ms bigint NOT NULL)"
            )
            for number, name, sql in migration_files("trackway.store.postgres"):
                if number <= 6:
                    pg.execute(sql.encode())  # type: ignore[arg-type]
                    pg.execute("INSERT INTO schema_migrations VALUES (%s, %s, 1)", (number, name))
            pg.execute(
                "CREATE TABLE events_p202402 PARTITION OF events"
                " FOR VALUES FROM (1706745600000) TO (1709251200000)"
            )
            for sql in inserts:
                pg.execute(sql.encode())  # type: ignore[arg-type]
            pg.execute(f"INSERT INTO events {event_columns} VALUES {events}".encode())  # type: ignore[arg-type]

    async def work(store: Store) -> None:
        account = await store.find_account("old")
        found = await store.search_customers(account, None, None, 10)
        assert [(c.uuid, c.seen_ms) for c in found] == [
            ("u-old", 1706875200000),
            ("u-idle", 77),
        ]
        assert await uuids_found(store, account, "old") == ["u-old"]
        # New events move it on as before.
        await store.ingest(account, [event(customer_id="idle", timestamp=day(20))])
        assert await uuids_found(store, account, None) == ["u-idle", "u-old"]

    with_store(store_url, work)
