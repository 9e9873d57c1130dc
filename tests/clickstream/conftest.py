"""Fixtures of the clickstream tests: a real `trackway serve` on either store backend (SQLite
always; PostgreSQL when TRACKWAY_TEST_POSTGRES_URL is set, which CI must), accounts made with
the real CLI on that database, and a reader of the Server-Sent Events stream."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import IDLE_LIMITS, Server, basic, run_cli, sqlite_url

PG_URL = os.environ.get("TRACKWAY_TEST_POSTGRES_URL")
BACKENDS = ["sqlite", "postgres"]
EVENT_URL = "/api/v1/event"
ERRORS_URL = "/api/v1/errors"
REPLAY_URL = "/api/v1/errors/replay"


class BackendServer(Server):
    """A `trackway serve` on any database URL (the shared Server class serves a SQLite file)."""

    def __init__(self, directory: Path, database_url: str, *extra_args: str) -> None:
        self._database_url = database_url
        super().__init__(directory / "unused.db", directory / "server.log", *extra_args)

    @property  # type: ignore[override]
    def database_url(self) -> str:
        return self._database_url

    @database_url.setter
    def database_url(self, value: str) -> None:
        # A newer Server may set its own in __init__; the URL given here wins.
        pass


@dataclass
class Tenant:
    name: str
    uuid: str
    event_key: str
    user_key: str
    database_url: str

    def cli(self, *args: str, check: bool = True) -> Any:
        return run_cli(*args, "--database", self.database_url, check=check)

    def verification(self, enable: bool) -> str:
        flag = "--enable" if enable else "--disable"
        return self.cli("accounts", "verification", self.name, flag).stdout.strip()


def create_tenant(database_url: str) -> Tenant:
    name = "cs-" + uuid.uuid4().hex[:10]
    created = json.loads(
        run_cli("accounts", "create", name, "--json", "--database", database_url).stdout
    )
    return Tenant(
        name,
        created["account_uuid"],
        created["event_api_key"],
        created["user_api_key"],
        database_url,
    )


def fresh_postgres_database() -> str:
    import psycopg

    assert PG_URL
    name = "trackway_cs_" + uuid.uuid4().hex[:10]
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return PG_URL.rsplit("/", 1)[0] + "/" + name


def database_for(backend: str, directory: Path) -> str:
    if backend == "sqlite":
        return sqlite_url(directory / "trackway.db")
    if not PG_URL:
        if os.environ.get("CI"):
            pytest.fail("TRACKWAY_TEST_POSTGRES_URL is not set: CI must run the PostgreSQL tests")
        pytest.skip("TRACKWAY_TEST_POSTGRES_URL is not set")
    return fresh_postgres_database()


@dataclass
class Deployment:
    backend: str
    database_url: str
    server: BackendServer
    client: httpx.Client

    def tenant(self) -> Tenant:
        return create_tenant(self.database_url)


@pytest.fixture(scope="module", params=BACKENDS)
def deployment(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    """A server on a fresh database of each backend, shared by the tests of a module."""
    directory = tmp_path_factory.mktemp(f"clickstream-{request.param}")
    database_url = database_for(request.param, directory)
    server = BackendServer(directory, database_url).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30.0, limits=IDLE_LIMITS) as client:
            yield Deployment(request.param, database_url, server, client)
    finally:
        server.stop()


def send(client: httpx.Client, tenant: Tenant, body: Any) -> httpx.Response:
    """POST one event with the event key: a dict as JSON, bytes as they are."""
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {**basic(tenant.event_key), "Content-Type": "application/json"}
    return client.post(EVENT_URL, content=content, headers=headers)


def rejected(client: httpx.Client, tenant: Tenant, body: Any) -> dict[str, list[str]]:
    """Send an event that must be refused; its field errors."""
    response = send(client, tenant, body)
    assert response.status_code == 400, response.text
    errors: dict[str, list[str]] = response.json()["errors"]
    return errors


def errors_page(client: httpx.Client, tenant: Tenant, **params: Any) -> dict[str, Any]:
    response = client.get(ERRORS_URL, params=params, headers=basic(tenant.user_key))
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


def replay(client: httpx.Client, tenant: Tenant, **body: Any) -> dict[str, Any]:
    response = client.post(REPLAY_URL, json=body, headers=basic(tenant.user_key))
    assert response.status_code == 200, response.text
    outcome: dict[str, Any] = response.json()
    return outcome


class EventStream:
    """GET /clickstream/stream read on a thread: every message lands in `messages` as
    (event name, id, data)."""

    def __init__(self, base_url: str, key: str, **params: str) -> None:
        self.messages: queue.Queue[tuple[str, int | None, Any]] = queue.Queue()
        self.status: int | None = None
        self._response: httpx.Response | None = None
        self._client = httpx.Client(base_url=base_url, timeout=httpx.Timeout(10.0, read=None))
        self._stop = threading.Event()
        self._opened = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(key, params), daemon=True)
        self._thread.start()
        assert self._opened.wait(10), "the stream did not answer"

    def _read(self, key: str, params: dict[str, str]) -> None:
        try:
            with self._client.stream(
                "GET", "/clickstream/stream", params=params, headers=basic(key)
            ) as response:
                self._response = response
                self.status = response.status_code
                self._opened.set()
                name, ident, data = "message", None, []
                for line in response.iter_lines():
                    if self._stop.is_set():
                        return
                    if line == "":
                        if data:
                            text = "\n".join(data)
                            value = json.loads(text) if text.startswith("{") else text
                            self.messages.put((name, ident, value))
                        name, ident, data = "message", None, []
                    elif line.startswith("event:"):
                        name = line[6:].strip()
                    elif line.startswith("id:"):
                        ident = int(line[3:].strip())
                    elif line.startswith("data:"):
                        data.append(line[5:].strip())
        except Exception:  # closed under the reader by close()
            pass
        finally:
            self._opened.set()

    def wait_ready(self, timeout: float = 10.0) -> list[Any]:
        """Wait for `ready`; the events sent before it (the latest ones, on connecting)."""
        backlog = []
        for name, _, data in self.iterate(timeout):
            if name == "ready":
                break
            backlog.append(data)
        else:
            raise AssertionError("no ready message")
        return backlog

    def iterate(self, timeout: float) -> Iterator[tuple[str, int | None, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                yield self.messages.get(timeout=left)
            except queue.Empty:
                return

    def events(self, count: int, timeout: float) -> list[Any]:
        found = []
        for name, _, data in self.iterate(timeout):
            if name == "message":
                found.append(data)
                if len(found) == count:
                    break
        return found

    def close(self) -> None:
        """Hang up (the server sees the disconnect and stops polling for this stream)."""
        self._stop.set()
        if self._response is not None:
            # Shut the socket under the reader's blocked read, so that both ends see it at once.
            stream = self._response.extensions.get("network_stream")
            sock = stream.get_extra_info("socket") if stream is not None else None
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        self._client.close()
        self._thread.join(5)
