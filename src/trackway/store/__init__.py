"""open_store(url): the one place that picks a backend."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from trackway.domain.batch import MAX_ATTRIBUTE_NAMES
from trackway.domain.errors import DatabaseMissing, StoreUnavailable
from trackway.store.base import (
    Account,
    AttributeType,
    Credential,
    CustomerRecord,
    IngestResult,
    Rejection,
    Store,
    StoredEvent,
)

__all__ = [
    "Account",
    "AttributeType",
    "Credential",
    "CustomerRecord",
    "IngestResult",
    "Rejection",
    "Store",
    "StoredEvent",
    "open_store",
    "require_database",
]

_HINT = "give --database or TRACKWAY_DATABASE_URL"


def open_store(url: str, *, max_attribute_names: int = MAX_ATTRIBUTE_NAMES) -> Store:
    """A store for `sqlite:///relative/path`, `sqlite:////absolute/path` or
    `postgresql://user:password@host:port/database`; not yet opened. An event that would take
    its account past `max_attribute_names` custom attribute names is refused."""
    if url.startswith("sqlite://"):
        import os

        from trackway.store.sqlite.store import SQLiteStore, path_from_url
        from trackway.store.sqlite.supervisor import SOCKET_ENV, running_writer

        path = path_from_url(url)
        # An API worker of `serve` is told its writer; a command finds a running server's.
        return SQLiteStore(
            path,
            os.environ.get(SOCKET_ENV) or running_writer(path.resolve()),
            max_attribute_names=max_attribute_names,
        )
    if url.startswith(("postgresql://", "postgres://")):
        from trackway.store.postgres.store import PostgresStore

        return PostgresStore(url, max_attribute_names=max_attribute_names)
    raise ValueError(f"unsupported database URL {url!r}: use sqlite:///PATH or postgresql://…")


def require_database(url: str) -> None:
    """Raise DatabaseMissing unless `url` names a database with Trackway's schema; create or
    change nothing (for the commands that read or change what exists: a typo in --database,
    or a command run from another directory, must not make a new empty database)."""
    if url.startswith("sqlite://"):
        from trackway.store.sqlite.store import path_from_url

        path = path_from_url(url).resolve()
        if not _sqlite_has_schema(path):
            raise DatabaseMissing(f"no Trackway database at {path} ({_HINT})")
    elif url.startswith(("postgresql://", "postgres://")):
        name = _postgres_schema_missing(url)
        if name is not None:
            raise DatabaseMissing(
                f"the PostgreSQL database {name} holds no Trackway schema ({_HINT}; "
                "`trackway serve` or `trackway accounts create` makes the schema)"
            )
    else:
        open_store(url)  # raises the same error as for any unsupported URL


def _sqlite_has_schema(path: Path) -> bool:
    if not path.is_file():
        return False
    try:
        # Read-only: opening must not create the file, nor migrate someone else's database.
        conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=10.0)
    except sqlite3.Error:
        return False
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        found = conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'accounts'"
        ).fetchone()[0]
    except sqlite3.DatabaseError:  # not a SQLite file at all
        return False
    finally:
        conn.close()
    return bool(version > 0 and found)


def _postgres_schema_missing(url: str) -> str | None:
    """The database's name when it has no Trackway schema, None when it has."""
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=10) as conn:
            row = conn.execute(
                "SELECT current_database(), to_regclass('schema_migrations') IS NOT NULL"
                " AND to_regclass('accounts') IS NOT NULL"
            ).fetchone()
    except psycopg.Error as exc:
        raise StoreUnavailable(f"PostgreSQL: {exc}") from exc
    assert row is not None
    return None if row[1] else str(row[0])
