"""The outermost ASGI layer: a request id on every response, request metrics, access log."""

from __future__ import annotations

import itertools
import logging
import os
import time
from typing import Any

from trackway import metrics
from trackway.http.ingest import ASGIApp

access_log = logging.getLogger("trackway.access")

# Routes by exact path; anything else is counted as "other" (bounded label cardinality).
KNOWN_ROUTES = frozenset(
    {
        "/api/v1/event",
        "/api/v1/bulkevents",
        "/unity.gif",
        "/trackway.js",
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


class RequestContext:
    def __init__(self, app: ASGIApp, *, log_requests: bool) -> None:
        self.app = app
        self.log_requests = log_requests
        self._ids = itertools.count(1)
        self._prefix = f"{os.getpid():x}-{int(time.time()):x}-"

    def request_id(self, scope: dict[str, Any]) -> bytes:
        for name, value in scope["headers"]:
            # A caller's own id is kept when it is short and printable.
            if name == b"x-request-id" and 0 < len(value) <= 128 and value.isascii():
                text = value.decode("ascii")
                if text.isprintable():
                    return bytes(value)
        return (self._prefix + format(next(self._ids), "x")).encode()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = self.request_id(scope)
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
