"""The outermost ASGI layer: a request id on every response, request metrics, access log."""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from trackway import metrics

access_log = logging.getLogger("trackway.access")

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]

# Routes by exact path; anything else is counted as "other" (bounded label cardinality).
KNOWN_ROUTES = frozenset(
    {
        "/api/v1/event",
        "/api/v1/bulkevents",
        "/unity.gif",
        "/trackway.js",
        "/blueshift.js",
        "/",
        "/api/v1/customers",
        "/api/v1/customer_search/show_events",
        "/api/v1/event/history",
        "/api/v1/event/summary.json",
        "/api/v1/errors",
        "/healthz",
        "/metrics",
        "/openapi.json",
        "/clickstream",
        "/clickstream/stream",
        "/clickstream/clickstream.js",
        "/clickstream/clickstream.css",
        "/api/v1/errors/replay",
    }
)


def route_of(path: str) -> str:
    if path in KNOWN_ROUTES:
        return path
    stripped = path.rstrip("/")
    if stripped in KNOWN_ROUTES:
        return stripped
    if path.startswith("/api/v1/customers/"):
        return "/api/v1/customers/{uuid}"
    if path.startswith("/api/v1/errors/"):
        return "/api/v1/errors/{id}"
    return "other"


class RequestIds:
    """Request ids: the caller's own when it is short and printable, else this process's
    prefix and a counter."""

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._ids = itertools.count(1)
        self._prefix = f"{os.getpid():x}-{int(time.time()):x}-".encode()

    def take(self, given: bytes | None) -> bytes:
        if (
            given is not None
            and 0 < len(given) <= 128
            and given.isascii()
            and given.decode("ascii").isprintable()
        ):
            return bytes(given)
        return self._prefix + b"%x" % next(self._ids)


REQUEST_IDS = RequestIds()


class RequestContext:
    """Request id, metrics and access log of the routes behind the ingest handler (which adds
    its own inline)."""

    def __init__(self, app: ASGIApp, *, log_requests: bool) -> None:
        self.app = app
        self.log_requests = log_requests

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for n, v in scope["headers"] if n == b"x-request-id"), None)
        request_id = REQUEST_IDS.take(given)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", request_id)]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = route_of(scope["path"])
            metrics.count_request(route, scope["method"], status)
            if self.log_requests:
                access_log.info(
                    "%s %s %d",
                    scope["method"],
                    scope["path"],
                    status,
                    extra={
                        "request_id": request_id.decode(),
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": status,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                        "client": (scope.get("client") or ("", 0))[0],
                    },
                )
