"""Domain exceptions → status codes and the documented JSON bodies, in one place."""

from __future__ import annotations

from typing import Any

import msgspec

from trackway.domain.errors import (
    EventRejected,
    InvalidRequest,
    NotFound,
    RateLimited,
    StoreUnavailable,
    TooManyEvents,
    TrackwayError,
)
from trackway.http.auth import CHALLENGE, NotAuthorized, PermissionDenied

INTERNAL_ERROR = "Internal Server Error - Please contact support for more information."
UNAVAILABLE = "Service Unavailable - The service is temporarily unavailable. Try again later."
RETRY_AFTER_SECONDS = 1

_encode = msgspec.json.Encoder().encode


class RequestTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.limit = limit


class RequestTimeout(TrackwayError):
    """The client paused longer than --body-timeout while sending the request body, or took
    longer than --header-timeout to send its headers (`part`)."""

    def __init__(self, seconds: float, part: str = "body") -> None:
        super().__init__(seconds)
        self.seconds = seconds
        self.part = part


class MethodNotAllowed(TrackwayError):
    """An answer on purpose (405 with Allow), so a TrackwayError: raised from a Starlette
    route as any other Exception, Starlette's error middleware re-raises it after the answer
    and uvicorn then logs a traceback and closes the client's keep-alive connection."""

    def __init__(self, allowed: str) -> None:
        super().__init__(allowed)
        self.allowed = allowed


Response = tuple[int, bytes, list[tuple[bytes, bytes]]]


def json_body(payload: Any) -> bytes:
    return _encode(payload)


def error_response(exc: BaseException) -> Response | None:
    """(status, JSON body, extra headers) for an exception we answer on purpose; None for an
    unexpected one (the caller logs it and answers 500)."""
    if isinstance(exc, EventRejected):
        return 400, _encode({"errors": exc.errors}), []
    if isinstance(exc, InvalidRequest):
        return exc.status, _encode({"errors": exc.errors}), []
    if isinstance(exc, NotAuthorized):
        challenge = [(b"www-authenticate", CHALLENGE.encode())] if exc.challenge else []
        return 401, _encode({"message": "Not authorized"}), challenge
    if isinstance(exc, PermissionDenied):
        return 403, _encode({"message": "Permission denied"}), []
    if isinstance(exc, NotFound):
        return 404, _encode({"message": exc.what}), []
    if isinstance(exc, RateLimited):
        return (
            429,
            _encode({"message": "Rate limit exceeded"}),
            [(b"retry-after", str(exc.retry_after).encode())],
        )
    if isinstance(exc, MethodNotAllowed):
        return 405, _encode({"message": "Method not allowed"}), [(b"allow", exc.allowed.encode())]
    if isinstance(exc, RequestTooLarge):
        message = f"Request body is too large (maximum is {exc.limit} bytes)"
        return 413, _encode({"message": message}), [(b"connection", b"close")]
    if isinstance(exc, RequestTimeout):
        if exc.part == "headers":
            message = f"Request headers not received in time (within {exc.seconds:g} s)"
        else:
            message = (
                f"Request body not received in time (the client paused over {exc.seconds:g} s)"
            )
        return 408, _encode({"message": message}), [(b"connection", b"close")]
    if isinstance(exc, TooManyEvents):
        return 413, _encode({"message": str(exc)}), []
    if isinstance(exc, StoreUnavailable):
        return (
            503,
            _encode({"message": UNAVAILABLE}),
            [(b"retry-after", str(RETRY_AFTER_SECONDS).encode())],
        )
    return None


def internal_error() -> Response:
    return 500, _encode({"message": INTERNAL_ERROR}), []
