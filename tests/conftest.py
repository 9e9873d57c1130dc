"""Shared fixtures: a real `trackway serve` process on a real database, accounts made with the
real CLI, and read-only looks into the database. No mocks anywhere.

The shared `server` runs once on a SQLite file and once on PostgreSQL (a fresh database on the
server TRACKWAY_TEST_POSTGRES_URL names), so every test that uses it runs on both backends.
Without that variable the PostgreSQL half is skipped, except in CI (CI set), where it fails.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

STARTUP_SECONDS = 20.0
# The server closes a connection after 5 s idle (--keep-alive-timeout) and httpx keeps an idle
# one for 5 s too: a request sent on it just as the server closes it meets "Server disconnected
# without sending a response". Clients that outlive one test drop idle connections sooner.
IDLE_LIMITS = httpx.Limits(keepalive_expiry=1.0)
PG_URL = os.environ.get("TRACKWAY_TEST_POSTGRES_URL")

# Where a test database lives: a SQLite file, or a postgresql:// URL.
Target = Path | str


def is_postgres(target: Target) -> bool:
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


def database_url(target: Target) -> str:
    return target if is_postgres(target) else sqlite_url(Path(target))


def require_postgres() -> str:
    """The test server's URL; skips (fails in CI) without one."""
    if not PG_URL:
        if os.environ.get("CI"):
            pytest.fail("TRACKWAY_TEST_POSTGRES_URL is not set: CI must run the PostgreSQL tests")
        pytest.skip("TRACKWAY_TEST_POSTGRES_URL is not set (scripts/with-postgres sets it)")
    return PG_URL


def fresh_postgres_database(base_url: str) -> str:
    """A new, empty database on the test server; its URL."""
    import psycopg

    name = "trackway_" + uuid.uuid4().hex[:12]
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return base_url.rsplit("/", 1)[0] + "/" + name


def trackway_command() -> list[str]:
    """The `trackway` console script next to this interpreter, or `python -m trackway.cli`."""
    script = Path(sys.executable).parent / "trackway"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "trackway.cli"]


def sqlite_url(path: Path) -> str:
    return "sqlite:///" + str(path.resolve())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_cli(
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKWAY_")}
    full_env.update(env or {})
    result = subprocess.run(
        [*trackway_command(), *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=60,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"trackway {' '.join(args)} exited {result.returncode}\n"
            f"stdout: {result.stdout}\nstderr: {result.stderr}"
        )
    return result


def basic(key: str) -> dict[str, str]:
    """The documented header: `Basic base64(key:)`."""
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def read_only(db_path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
    conn.row_factory = sqlite3.Row
    return conn


class Row(tuple):  # type: ignore[type-arg]
    """A row by position or by column name, whichever the backend."""

    names: dict[str, int]

    def __new__(cls, values: Sequence[Any], names: dict[str, int]) -> Row:
        row = super().__new__(cls, values)
        row.names = names
        return row

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        if isinstance(key, str):
            return tuple.__getitem__(self, self.names[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self.names)


def _postgres_value(value: Any) -> Any:
    # As SQLite hands them over: JSON as text, bytes as bytes.
    if isinstance(value, dict | list):
        return json.dumps(value)
    if isinstance(value, memoryview):
        return bytes(value)
    return value


def query(target: Target, sql: str, params: Sequence[Any] = ()) -> list[Any]:
    """Rows of one query, on a fresh connection (so it sees every commit so far). SQL is
    written for SQLite (`?` placeholders); on PostgreSQL it is translated."""
    if is_postgres(target):
        import psycopg

        pg_sql = sql.replace("?", "%s").replace("body LIKE", "body::text LIKE")
        with psycopg.connect(str(target), autocommit=True) as conn:
            cursor = conn.execute(pg_sql, tuple(params))
            if cursor.description is None:
                return []
            names = {column.name: i for i, column in enumerate(cursor.description)}
            return [Row([_postgres_value(v) for v in row], names) for row in cursor.fetchall()]
    conn = read_only(Path(target))
    try:
        return conn.execute(sql, tuple(params)).fetchall()
    finally:
        conn.close()


@dataclass
class Account:
    db_path: Target
    name: str
    uuid: str
    event_key: str
    user_key: str
    id: int

    def events(self) -> list[sqlite3.Row]:
        return query(
            self.db_path, "SELECT * FROM events WHERE account_id = ? ORDER BY id", [self.id]
        )

    def stored(self, event_uuid: str) -> tuple[sqlite3.Row, dict[str, Any]]:
        """The one events row of that uuid and its decoded body."""
        rows = query(
            self.db_path,
            "SELECT * FROM events WHERE account_id = ? AND event_uuid = ?",
            [self.id, event_uuid],
        )
        assert len(rows) == 1, f"expected one stored event {event_uuid}, found {len(rows)}"
        return rows[0], json.loads(rows[0]["body"])

    def only_event(self) -> tuple[sqlite3.Row, dict[str, Any]]:
        rows = self.events()
        assert len(rows) == 1, f"expected exactly one stored event, found {len(rows)}"
        return rows[0], json.loads(rows[0]["body"])

    def event_daily(self) -> dict[tuple[str, str], int]:
        rows = query(
            self.db_path,
            # On PostgreSQL the rollup is kept in shards (added up here, as summary.json does).
            "SELECT day, event, CAST(sum(count) AS BIGINT) AS count FROM event_daily"
            " WHERE account_id = ? GROUP BY day, event",
            [self.id],
        )
        return {(r["day"], r["event"]): r["count"] for r in rows}

    def error_daily(self) -> dict[tuple[str, str], int]:
        rows = query(
            self.db_path,
            "SELECT day, error_type, count FROM error_daily WHERE account_id = ?",
            [self.id],
        )
        return {(r["day"], r["error_type"]): r["count"] for r in rows}

    def error_log(self) -> list[sqlite3.Row]:
        return query(
            self.db_path, "SELECT * FROM error_log WHERE account_id = ? ORDER BY id", [self.id]
        )

    def event_names(self) -> dict[str, sqlite3.Row]:
        rows = query(self.db_path, "SELECT * FROM event_names WHERE account_id = ?", [self.id])
        return {r["name"]: r for r in rows}


def create_account(db_path: Target, name: str | None = None) -> Account:
    name = name or f"acct-{uuid.uuid4().hex[:12]}"
    result = run_cli("accounts", "create", name, "--json", "--database", database_url(db_path))
    created = json.loads(result.stdout)
    rows = query(db_path, "SELECT id FROM accounts WHERE uuid = ?", [created["account_uuid"]])
    assert len(rows) == 1
    return Account(
        db_path=db_path,
        name=name,
        uuid=created["account_uuid"],
        event_key=created["event_api_key"],
        user_key=created["user_api_key"],
        id=rows[0]["id"],
    )


class Server:
    """A `trackway serve` subprocess on its own port, in its own process group."""

    def __init__(
        self, db_path: Target, log_path: Path, *extra_args: str, env: dict[str, str] | None = None
    ) -> None:
        self.db_path = db_path
        self.log_path = log_path
        self.extra_args = extra_args
        # TRACKWAY_* variables of its own (those of the test run are not passed on).
        self.env = env or {}
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def database_url(self) -> str:
        return database_url(self.db_path)

    @property
    def backend(self) -> str:
        return "postgres" if is_postgres(self.db_path) else "sqlite"

    def start(self) -> Server:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKWAY_")}
        env.update(self.env)
        args = [
            *trackway_command(),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--database",
            self.database_url,
            "--log-level",
            "warning",
            *self.extra_args,
        ]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        self.wait_ready()
        return self

    def wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited {self.process.returncode}:\n{self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/healthz", timeout=1.0).status_code == 200:
                    return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server did not answer /healthz in {STARTUP_SECONDS}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL, no goodbye: what a power cut or the OOM killer does to the process."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not go within 10 s."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """The shared server of the HTTP and CLI tests: on a fresh SQLite file, then on a fresh
    PostgreSQL database."""
    directory = tmp_path_factory.mktemp(f"server-{request.param}")
    target: Target = directory / "trackway.db"
    if request.param == "postgres":
        target = fresh_postgres_database(require_postgres())
    srv = Server(target, directory / "server.log")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
    # No request of the whole suite may have ended in an unhandled exception (a 500, or an
    # answer followed by a closed connection).
    log = srv.log()
    if "Exception in ASGI application" in log:
        at = log.index("Exception in ASGI application")
        pytest.fail(
            f"the shared {request.param} server logged an exception:\n{log[at : at + 4000]}"
        )


@pytest.fixture(scope="session")
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30.0, limits=IDLE_LIMITS) as c:
        yield c


class AccountSupply:
    """Fresh accounts, each made by its own `trackway accounts create` run, a few made ahead on
    two threads so that tests do not wait for the CLI to start. Each is handed out once."""

    def __init__(self, db_path: Target, ahead: int = 4) -> None:
        self.db_path = db_path
        self.pool = ThreadPoolExecutor(2, thread_name_prefix="accounts")
        self.ready: deque[Future[Account]] = deque(
            self.pool.submit(create_account, db_path) for _ in range(ahead)
        )

    def take(self) -> Account:
        future = self.ready.popleft()
        self.ready.append(self.pool.submit(create_account, self.db_path))
        return future.result()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(scope="session")
def account_supply(server: Server) -> Iterator[AccountSupply]:
    supply = AccountSupply(server.db_path)
    try:
        yield supply
    finally:
        supply.close()


@pytest.fixture
def account(account_supply: AccountSupply) -> Account:
    """A fresh account (own uuid and keys) on the shared server's database, per test."""
    return account_supply.take()


@pytest.fixture
def post(client: httpx.Client, account: Account):
    """POST /api/v1/event as `account` (its event key, the documented header): a dict is sent
    as JSON, bytes as they are."""

    def send(body: Any, key: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = basic(key or account.event_key)
        headers["Content-Type"] = "application/json"
        headers.update(kwargs.pop("headers", {}))
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return client.post("/api/v1/event", content=content, headers=headers, **kwargs)

    return send
