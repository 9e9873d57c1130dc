"""open_store(url): the one place that picks a backend."""

from __future__ import annotations

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
]


def open_store(url: str) -> Store:
    """A store for `sqlite:///relative/path`, `sqlite:////absolute/path` or
    `postgresql://user:password@host:port/database`; not yet opened."""
    if url.startswith("sqlite://"):
        from trackway.store.sqlite.store import SQLiteStore, path_from_url

        return SQLiteStore(path_from_url(url))
    if url.startswith(("postgresql://", "postgres://")):
        from trackway.store.postgres.store import PostgresStore

        return PostgresStore(url)
    raise ValueError(f"unsupported database URL {url!r}: use sqlite:///PATH or postgresql://…")
