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


class DatabaseMissing(TrackwayError):
    """No Trackway database where the URL points (a command that must not create one)."""


class NotFound(TrackwayError):
    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


class AccountNotFound(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(f"Account {name!r} not found")


class AccountExists(TrackwayError):
    pass


class InvalidRequest(TrackwayError):
    """A read's parameters are wrong: {field: [messages]}, answered with `status`."""

    def __init__(self, errors: dict[str, list[str]], status: int = 400) -> None:
        super().__init__(errors)
        self.errors = errors
        self.status = status


class RateLimited(TrackwayError):
    def __init__(self, retry_after: int) -> None:
        super().__init__(f"rate limit exceeded; retry after {retry_after} s")
        self.retry_after = retry_after


class TooManyEvents(TrackwayError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"A bulk call carries at most {limit} events")
        self.limit = limit
