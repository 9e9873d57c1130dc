"""The domain's exceptions: one tree, mapped to HTTP responses in one place (http/errors.py)."""

from __future__ import annotations


class TrackwayError(Exception):
    """Base of every error the domain or a store raises on purpose."""


class EventRejected(TrackwayError):
    """An event broke a rule: `errors` maps each field to its messages, `error_type` is the
    error type it is counted under (one of ERROR_TYPES)."""

    def __init__(self, error_type: str, errors: dict[str, list[str]]) -> None:
        super().__init__(f"{error_type}: {errors}")
        self.error_type = error_type
        self.errors = errors


class StoreUnavailable(TrackwayError):
    """The store cannot take or answer requests right now (locked, read-only, full, down)."""


class NotFound(TrackwayError):
    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


class AccountNotFound(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(f"Account {name!r} not found")


class AccountExists(TrackwayError):
    pass
