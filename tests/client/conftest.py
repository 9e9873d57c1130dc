"""Fixtures of the client tests. The server, accounts and database helpers come from
tests/conftest.py; this adds a server with a small body limit and the test settings."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from conftest import Account, Server, create_account

from .support import GiveUps

SMALL_BODY_BYTES = 4096


@pytest.fixture
def fast() -> dict[str, Any]:
    """Client settings that keep the tests quick: short waits, small backoff."""
    return {"flush_interval": 0.05, "backoff_base": 0.01, "backoff_max": 5.0, "timeout": 10}


@pytest.fixture
def give_ups() -> GiveUps:
    return GiveUps()


@pytest.fixture(scope="session")
def small_body_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server that refuses request bodies over SMALL_BODY_BYTES with 413."""
    directory = tmp_path_factory.mktemp("small-body-server")
    srv = Server(
        directory / "trackway.db",
        directory / "server.log",
        "--max-body-bytes",
        str(SMALL_BODY_BYTES),
    )
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def small_body_account(small_body_server: Server) -> Account:
    return create_account(small_body_server.db_path)
