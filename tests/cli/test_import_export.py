"""`trackway import` and `trackway export`, run as a user would, on a real SQLite file and, when
TRACKWAY_TEST_POSTGRES_URL is set (CI always sets it), on a real PostgreSQL database.

The import goes through the API's rules (validation, identity, dedup, rollups); the export
streams what was stored; importing an export into an empty database reproduces the account.
"""

from __future__ import annotations

import asyncio
import gzip
import itertools
import json
import os
import random
import subprocess
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from conftest import sqlite_url, trackway_command

from trackway.store import Account, Store, open_store
from trackway.transfer import IMPORT_NAMESPACE, EventUuids

T = TypeVar("T")
PG_URL = os.environ.get("TRACKWAY_TEST_POSTGRES_URL")
DAY0 = datetime(2024, 3, 1, tzinfo=UTC)


# -- harness ---------------------------------------------------------------------------------


def fresh_postgres_database(base_url: str) -> str:
    import psycopg

    name = "trackway_" + uuid.uuid4().hex[:12]
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return base_url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(params=["sqlite", "postgres"])
def new_database(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], str]:
    """Makes empty databases of one backend: their URLs."""
    if request.param == "postgres" and not PG_URL:
        if os.environ.get("CI"):
            pytest.fail("TRACKWAY_TEST_POSTGRES_URL is not set: CI must run the PostgreSQL suite")
        pytest.skip("TRACKWAY_TEST_POSTGRES_URL is not set")
    numbers = itertools.count()

    def make() -> str:
        if request.param == "sqlite":
            return sqlite_url(tmp_path / f"db{next(numbers)}" / "trackway.db")
        assert PG_URL is not None
        return fresh_postgres_database(PG_URL)

    return make


@pytest.fixture
def database(new_database: Callable[[], str]) -> str:
    return new_database()


def trackway(
    *args: str | Path, stdin: bytes | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKWAY_")}
    return subprocess.run(
        [*trackway_command(), *map(str, args)],
        input=stdin,
        capture_output=True,
        env=env,
        cwd=cwd,
        timeout=300,
    )


def create_account(database: str, name: str = "shop") -> str:
    result = trackway("accounts", "create", name, "--json", "--database", database)
    assert result.returncode == 0, result.stderr.decode()
    return str(json.loads(result.stdout)["account_uuid"])


def import_file(
    database: str, source: str | Path, *, stdin: bytes | None = None, cwd: Path | None = None
) -> tuple[int, dict[str, Any], str]:
    """(exit status, the --json summary, stderr) of `trackway import`."""
    result = trackway(
        "import", source, "--account", "shop", "--database", database, "--json",
        stdin=stdin, cwd=cwd,
    )  # fmt: skip
    stderr = result.stderr.decode()
    assert result.returncode in (0, 1), stderr
    return result.returncode, json.loads(result.stdout), stderr


def export(database: str, *args: str) -> bytes:
    result = trackway("export", "--account", "shop", "--database", database, *args)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout


def with_store(database: str, work: Callable[[Store, Account], Awaitable[T]]) -> T:
    async def go() -> T:
        store = open_store(database)
        await store.open()
        try:
            return await work(store, await store.find_account("shop"))
        finally:
            await store.close()

    return asyncio.run(go())


def ndjson(events: list[Any]) -> bytes:
    return b"".join((e if isinstance(e, bytes) else json.dumps(e).encode()) + b"\n" for e in events)


def at(day: int, seconds: int = 0) -> str:
    return (DAY0 + timedelta(days=day, seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- import ----------------------------------------------------------------------------------

GOOD = 40
BAD_LINES: list[tuple[bytes, str, dict[str, list[str]]]] = [
    (b"this is not json", "parsing_error", {"body": ["is not valid JSON"]}),
    (b"[1, 2, 3]", "parsing_error", {"body": ["must be a JSON object"]}),
    (
        b'{"event": "view", "customer_id": "c1", "email": "not-an-email"}',
        "invalid_email",
        {"email": ["is not valid"]},
    ),
    (
        b'{"event": "view", "page": "/"}',
        "missing_identifier",
        {"base": ["customer_id, email, device_id or cookie must be present"]},
    ),
    (
        b'{"customer_id": "c2"}',
        "event_name_missing",
        {"event": ["can't be blank"]},
    ),
    # price is a number on every good line: the store refuses another type for it.
    (
        b'{"event": "view", "customer_id": "c3", "price": "no", "timestamp": "2024-03-02T01:00"}',
        "es_index_error",
        {"price": ["must be of type number (got string)"]},
    ),
]


def mixed_file() -> tuple[bytes, list[bytes], list[tuple[int, bytes, str, dict[str, list[str]]]]]:
    """GOOD good events (half with an event_uuid, half without), the BAD_LINES spread between
    them, and a blank line: the file, its good lines, and the (line, raw, error_type, errors)
    it must reject."""
    lines: list[bytes] = []
    good: list[bytes] = []
    rejected = []
    bad = iter(BAD_LINES)
    for i in range(GOOD):
        event: dict[str, Any] = {
            "event": "view" if i % 3 else "purchase",
            "customer_id": f"c{i % 7}",
            "price": 10 + i,
            "timestamp": at(i % 4, i),
        }
        if i % 2:
            event["event_uuid"] = str(uuid.UUID(int=i + 1))
        lines.append(json.dumps(event).encode())
        good.append(lines[-1])
        if i % 6 == 5:
            raw, error_type, errors = next(bad, (None, "", {}))
            if raw is not None:
                lines.append(raw)
                rejected.append((len(lines), raw, error_type, errors))
        if i == 20:
            lines.append(b"   ")
    return b"\n".join(lines) + b"\n", good, rejected


def test_import_counts_rejects_and_resumes(database: str, tmp_path: Path) -> None:
    create_account(database)
    content, good, expected = mixed_file()
    assert len(expected) == len(BAD_LINES)
    source = tmp_path / "events.ndjson"
    source.write_bytes(content)

    status, summary, stderr = import_file(database, source)
    assert status == 1
    assert summary["lines"] == GOOD + len(BAD_LINES)
    assert (summary["accepted"], summary["duplicates"]) == (GOOD, 0)
    assert summary["rejected"] == len(BAD_LINES)
    assert summary["rejected_by_type"] == {
        "es_index_error": 1,
        "event_name_missing": 1,
        "invalid_email": 1,
        "missing_identifier": 1,
        "parsing_error": 2,
    }
    rejected_file = tmp_path / "events.ndjson.rejected.ndjson"
    assert summary["rejected_file"] == str(rejected_file)
    assert f"accepted    {GOOD}" in stderr and "parsing_error" in stderr
    records = [json.loads(line) for line in rejected_file.read_bytes().splitlines()]
    assert records == [
        {"line": line, "error_type": error_type, "errors": errors, "raw": raw.decode()}
        for line, raw, error_type, errors in expected
    ]

    async def state(store: Store, account: Account) -> tuple[int, int, int]:
        errors = await store.daily_error_counts(account, "2000-01-01", "2100-01-01")
        events = await store.daily_event_counts(account, "2000-01-01", "2100-01-01")
        return await store.count_events(account), sum(c for *_, c in events), len(errors)

    stored, rolled_up, _ = with_store(database, state)
    assert stored == rolled_up == GOOD

    # The same file again: nothing new, every good line a duplicate (their uuids, given or
    # derived from the line, are already stored); the bad lines are rejected again.
    status, again, _ = import_file(database, source)
    assert status == 1
    assert (again["accepted"], again["duplicates"], again["rejected"]) == (
        0,
        GOOD,
        len(BAD_LINES),
    )
    assert with_store(database, state)[:2] == (GOOD, GOOD)
    assert [json.loads(line) for line in rejected_file.read_bytes().splitlines()] == records

    # A file with nothing wrong: exit 0, and no rejected file is left from the earlier runs.
    source.write_bytes(b"\n".join(good))
    status, clean, _ = import_file(database, source)
    assert (status, clean["rejected"], clean["accepted"]) == (0, 0, 0)
    assert clean["duplicates"] == GOOD
    assert not rejected_file.exists()


def test_derived_event_uuid_is_uuid5_of_account_and_line(database: str, tmp_path: Path) -> None:
    account_uuid = create_account(database)
    line = b'{"event": "signup", "email": "Ann@example.com", "plan": "pro"}'
    source = tmp_path / "one.ndjson"
    source.write_bytes(b"  " + line + b"\r\n")
    status, summary, _ = import_file(database, source)
    assert (status, summary["accepted"]) == (0, 1)
    expected = str(uuid.uuid5(IMPORT_NAMESPACE, f"{account_uuid}\n{line.decode()}"))
    assert EventUuids(account_uuid).of(line) == expected
    body = with_store(database, lambda store, account: store.event_by_uuid(account, expected))
    assert body is not None and body["plan"] == "pro" and body["event_uuid"] == expected


def test_identical_lines_without_uuids_are_events_of_their_own(
    database: str, tmp_path: Path
) -> None:
    """Three byte-identical lines without an event_uuid (three page views in one second) are
    three events; the summary says how many lines repeated an earlier one; the same file again,
    or the same lines on stdin, store nothing twice."""
    account_uuid = create_account(database)
    line = b'{"event": "view", "cookie": "same", "timestamp": "2024-03-01T10:00:00Z"}'
    other = b'{"event": "view", "cookie": "other", "timestamp": "2024-03-01T10:00:00Z"}'
    content = b"\n".join([line, other, line, b"  " + line + b"  ", other]) + b"\n"
    source = tmp_path / "views.ndjson"
    source.write_bytes(content)
    status, summary, stderr = import_file(database, source)
    assert (status, summary["accepted"], summary["duplicates"]) == (0, 5, 0)
    assert summary["repeated_lines"] == 3
    assert "3 lines without an event_uuid repeat an earlier line exactly" in stderr

    async def uuids(store: Store, account: Account) -> list[str]:
        customer = await store.customer_by_identifier(account, "cookie", "same")
        assert customer is not None
        events = await store.customer_events(account, customer.uuid, 0, 2**62, 100)
        return sorted(e.body["event_uuid"] for e in events)

    stored = with_store(database, uuids)
    assert len(set(stored)) == 3
    # The first of them keeps the uuid of the line alone (as imports before this rule gave).
    assert str(uuid.uuid5(IMPORT_NAMESPACE, f"{account_uuid}\n{line.decode()}")) in stored

    status, again, _ = import_file(database, source)
    assert (again["accepted"], again["duplicates"], again["repeated_lines"]) == (0, 5, 3)
    status, piped, _ = import_file(database, "-", stdin=gzip.compress(content), cwd=tmp_path)
    assert (piped["accepted"], piped["duplicates"]) == (0, 5)
    # One more identical line appended: only it is new.
    source.write_bytes(content + line + b"\n")
    status, grown, _ = import_file(database, source)
    assert (grown["accepted"], grown["duplicates"]) == (1, 5)
    assert with_store(database, uuids) != stored and len(with_store(database, uuids)) == 4


def test_gzip_and_stdin(database: str, tmp_path: Path) -> None:
    create_account(database)
    events = [
        {"event": "view", "cookie": f"k{i}", "timestamp": at(0, i), "n": i} for i in range(30)
    ]
    plain = ndjson(events)
    gz = tmp_path / "events.ndjson.gz"
    gz.write_bytes(gzip.compress(plain))
    status, summary, _ = import_file(database, gz)
    assert (status, summary["accepted"], summary["rejected"]) == (0, 30, 0)

    # The same lines on stdin, plain and gzipped: the uuids derive from the lines, so all are
    # duplicates; then new lines with a bad one, whose rejects land in the working directory.
    status, summary, _ = import_file(database, "-", stdin=plain, cwd=tmp_path)
    assert (status, summary["accepted"], summary["duplicates"]) == (0, 0, 30)
    status, summary, _ = import_file(database, "-", stdin=gzip.compress(plain), cwd=tmp_path)
    assert (status, summary["accepted"], summary["duplicates"]) == (0, 0, 30)
    more = ndjson([{"event": "view", "cookie": "new", "timestamp": at(1)}, b"{oops"])
    status, summary, _ = import_file(database, "-", stdin=more, cwd=tmp_path)
    assert (status, summary["accepted"], summary["rejected"]) == (1, 1, 1)
    [rejected_file] = tmp_path.glob("import-rejected-*.ndjson")
    assert summary["rejected_file"] == rejected_file.name
    assert json.loads(rejected_file.read_bytes()) == {
        "line": 2,
        "error_type": "parsing_error",
        "errors": {"body": ["is not valid JSON"]},
        "raw": "{oops",
    }
    assert with_store(database, lambda store, account: store.count_events(account)) == 31


FUTURE = {"timestamp": ["must not be more than 24 hours in the future"]}


def test_import_holds_lines_to_the_field_rules_and_the_future_bound(
    database: str, tmp_path: Path
) -> None:
    """History is received at the time of the import: a line dated more than 24 hours after it
    is refused like an API call (its timestamp is kept as given, no clock-skew correction), and
    so is a built-in field of the wrong type; neither fixes an attribute type."""
    create_account(database)
    soon = (datetime.now(UTC) + timedelta(hours=23)).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = [
        {"event": "view", "cookie": "k", "timestamp": at(0), "plan": "pro"},
        {"event": "view", "cookie": "k", "timestamp": soon},
        {"event": "view", "cookie": "k", "timestamp": "2099-01-01T00:00:00Z"},
        # A sent_at does not move an imported timestamp, into the bound or out of it.
        {
            "event": "view",
            "cookie": "k",
            "timestamp": "2099-01-01T00:00:00Z",
            "sent_at": "2099-01-01T00:00:00Z",
        },
        {"event": "view", "cookie": "k", "timestamp": at(1), "user_agent": 123},
        {"event": "view", "cookie": "k", "sent_at": "garbage"},
    ]
    source = tmp_path / "events.ndjson"
    source.write_bytes(ndjson(lines))
    status, summary, _ = import_file(database, source)
    assert (status, summary["accepted"], summary["rejected"]) == (1, 2, 4)
    assert summary["rejected_by_type"] == {"invalid_event_attributes": 4}
    records = [
        json.loads(r)
        for r in (tmp_path / "events.ndjson.rejected.ndjson").read_bytes().splitlines()
    ]
    assert [(r["line"], r["errors"]) for r in records] == [
        (3, FUTURE),
        (4, FUTURE),
        (5, {"user_agent": ["must be a string"]}),
        (6, {"sent_at": ["is not a valid ISO 8601 timestamp or Unix time"]}),
    ]

    async def fixed(store: Store, account: Account) -> list[Any]:
        return [(a.name, a.type) for a in await store.attribute_types(account)]

    assert with_store(database, fixed) == [("plan", "string")]


def test_import_with_the_bound_off_reaches_the_end_of_the_calendar(
    database: str, tmp_path: Path
) -> None:
    """--max-future-hours 0 (or TRACKWAY_MAX_FUTURE_HOURS=0) imports scheduled or far-future
    events as given, up to the last instant a timestamp may have (PostgreSQL keeps it in the
    partition of December 9999); export gives them back."""
    create_account(database)
    lines = [
        {"event": "launch", "cookie": "k", "timestamp": "2099-01-01T00:00:00Z"},
        {"event": "launch", "cookie": "k", "timestamp": "9999-12-31T23:59:59.999Z"},
    ]
    source = tmp_path / "far.ndjson"
    source.write_bytes(ndjson(lines))
    status, summary, _ = import_file(database, source)
    assert (status, summary["rejected"]) == (1, 2)
    result = trackway(
        "import", source, "--account", "shop", "--database", database, "--max-future-hours", "0"
    )
    assert result.returncode == 0, result.stderr.decode()
    exported = [json.loads(line) for line in export(database).splitlines()]
    assert [e["timestamp"] for e in exported] == [
        "2099-01-01T00:00:00Z",
        "9999-12-31T23:59:59.999Z",
    ]
    # The variable does the same (the flag wins when both are given).
    more = tmp_path / "more.ndjson"
    more.write_bytes(
        ndjson([{"event": "launch", "cookie": "k", "timestamp": "2500-06-01T00:00:00Z"}])
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKWAY_")}
    env["TRACKWAY_MAX_FUTURE_HOURS"] = "0"
    command = [
        *trackway_command(),
        "import",
        str(more),
        "--account",
        "shop",
        "--database",
        database,
    ]
    assert subprocess.run(command, env=env, capture_output=True, timeout=120).returncode == 0
    command += ["--max-future-hours", "24"]
    assert subprocess.run(command, env=env, capture_output=True, timeout=120).returncode == 1


def test_usage_errors_exit_2(database: str, tmp_path: Path) -> None:
    create_account(database)
    source = tmp_path / "e.ndjson"
    source.write_bytes(b"{}\n")
    missing_account = trackway("import", source, "--account", "nobody", "--database", database)
    assert missing_account.returncode == 2
    assert b"account not found: nobody" in missing_account.stderr
    missing_file = trackway(
        "import", tmp_path / "nope", "--account", "shop", "--database", database
    )
    assert missing_file.returncode == 2
    bad_since = trackway(
        "export", "--account", "shop", "--since", "yesterday", "--database", database
    )
    assert bad_since.returncode == 2
    help_text = trackway("import", "--help").stdout.decode()
    assert "1 some lines rejected" in help_text


# -- round trip ------------------------------------------------------------------------------


def history(customers: int = 12, days: int = 5, seed: int = 7) -> list[dict[str, Any]]:
    """Several customers over several days: anonymous views on a device, then identify (which
    merges the device's profile into the customer), views, carts, purchases and custom events,
    all with explicit timestamps; many events share a second."""
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    for c in range(customers):
        cid, device = f"cust-{c}", f"dev-{c}"
        start = rng.randrange(0, 3600)
        for i in range(3):
            events.append(
                {"event": "view", "device_id": device, "product_id": f"p{i}", "price": 9.5,
                 "timestamp": at(0, start + i)}
            )  # fmt: skip
        events.append(
            {"event": "identify", "customer_id": cid, "device_id": device,
             "email": f"Cust{c}@Example.com", "first_name": f"N{c}", "timestamp": at(0, start + 5),
             "sent_at": at(0, start + 5)}
        )  # fmt: skip
        for day in range(days):
            for i in range(rng.randrange(3, 9)):
                second = rng.choice([0, 60, 600, rng.randrange(86_000)])
                kind = rng.choice(["view", "add_to_cart", "purchase", "wishlist_share", "quiz"])
                event: dict[str, Any] = {"event": kind, "timestamp": at(day, second)}
                event["customer_id" if i % 2 else "email"] = (
                    cid if i % 2 else f"cust{c}@example.com"
                )
                if kind in ("view", "add_to_cart", "purchase"):
                    event.update(product_id=f"p{rng.randrange(20)}", price=rng.randrange(1, 99))
                else:
                    event.update(score=rng.randrange(10), tags=["a", "b"], meta={"v": day})
                if rng.random() < 0.5:
                    event["event_uuid"] = str(uuid.UUID(int=rng.getrandbits(128)))
                events.append(event)
    rng.shuffle(events)
    # Arrival order roughly follows time, as a tracker's history would.
    events.sort(key=lambda e: e["timestamp"][:13])
    return events


def account_state(database: str, customers: int) -> dict[str, Any]:
    async def read(store: Store, account: Account) -> dict[str, Any]:
        timelines = {}
        for c in range(customers):
            customer = await store.customer_by_identifier(account, "customer_id", f"cust-{c}")
            assert customer is not None
            events = await store.customer_events(account, customer.uuid, 0, 2**62, 10_000)
            timelines[c] = [(e.timestamp_ms, e.body) for e in events]
            assert len(timelines[c]) > 3
        names = [(n["name"], n["type"]) for n in await store.event_names(account)]
        return {
            "count": await store.count_events(account),
            "daily": await store.daily_event_counts(account, "2000-01-01", "2100-01-01"),
            "names": names,
            "timelines": timelines,
            "latest_views": [e.body for e in await store.latest_events(account, "view", 50)],
        }

    return with_store(database, read)


def test_round_trip_reproduces_history_timelines_and_summary(
    new_database: Callable[[], str], tmp_path: Path
) -> None:
    customers = 12
    events = history(customers)
    # Two names with many events in the same millisecond: pages of the export split ties.
    same_ms = at(2, 4321)
    for i in range(2500):
        events.append(
            {"event": "view" if i % 2 else "tick", "cookie": f"t{i}", "timestamp": same_ms}
        )
    a, b = new_database(), new_database()
    create_account(a)
    create_account(b)
    source = tmp_path / "history.ndjson"
    source.write_bytes(ndjson(events))
    status, summary, _ = import_file(a, source)
    assert (status, summary["accepted"], summary["rejected"]) == (0, len(events), 0)

    exported = export(a)
    lines = exported.splitlines()
    assert len(lines) == len(events)
    bodies = [json.loads(line) for line in lines]
    stamps = [b["timestamp"] for b in bodies]
    assert stamps == sorted(stamps, key=lambda s: datetime.fromisoformat(s))
    assert len({b["event_uuid"] for b in bodies}) == len(events)
    # Every timestamp as given (sent_at does not move history on import).
    assert sorted((b["event"], b["timestamp"]) for b in bodies) == sorted(
        (e["event"], e["timestamp"]) for e in events
    )
    assert sum("sent_at" in b for b in bodies) == customers

    dump = tmp_path / "export.ndjson"
    dump.write_bytes(exported)
    status, summary, _ = import_file(b, dump)
    assert (status, summary["accepted"], summary["duplicates"]) == (0, len(events), 0)
    assert export(b) == exported
    state_a, state_b = account_state(a, customers), account_state(b, customers)
    assert state_a["count"] == state_b["count"] == len(events)
    assert state_a["daily"] == state_b["daily"]
    assert state_a["names"] == state_b["names"]
    assert state_a["latest_views"] == state_b["latest_views"]
    for c in range(customers):
        assert state_a["timelines"][c] == state_b["timelines"][c], f"customer {c}"

    # Importing the export into the account it came from stores nothing.
    status, summary, _ = import_file(a, dump)
    assert (summary["accepted"], summary["duplicates"]) == (0, len(events))


def test_export_filters(database: str, tmp_path: Path) -> None:
    create_account(database)
    events = [
        {"event": name, "customer_id": f"c{i % 3}", "timestamp": at(day, i * 100)}
        for day in range(4)
        for i, name in enumerate(["view", "purchase", "view", "signup", "view"])
    ]
    source = tmp_path / "e.ndjson"
    source.write_bytes(ndjson(events))
    assert import_file(database, source)[0] == 0

    def timestamps(*args: str) -> list[str]:
        return [json.loads(line)["timestamp"] for line in export(database, *args).splitlines()]

    everything = timestamps()
    assert everything == sorted(e["timestamp"] for e in events)
    # --since inclusive, --until exclusive; a day means its midnight UTC.
    assert timestamps("--since", at(1), "--until", "2024-03-03") == sorted(
        e["timestamp"] for e in events if at(1) <= e["timestamp"] < at(2)
    )
    assert timestamps("--since", at(3, 100)) == sorted(
        e["timestamp"] for e in events if e["timestamp"] >= at(3, 100)
    )
    assert timestamps("--until", at(0, 200)) == [at(0, 0), at(0, 100)]
    views = [json.loads(line) for line in export(database, "--event", "view").splitlines()]
    assert [v["timestamp"] for v in views] == sorted(
        e["timestamp"] for e in events if e["event"] == "view"
    )
    assert {v["event"] for v in views} == {"view"}
    assert (
        export(database, "--event", "view", "--since", at(3), "--until", at(3, 201)).count(b"\n")
        == 2
    )
    assert export(database, "--event", "never_sent") == b""
