"""The ingest paths as a small raw ASGI handler in front of the Starlette app.

Ingest is the hot path, and a framework's per-request work costs more than validating and
storing the event (see DESIGN.md §5); so POST /api/v1/event is served here, with the same auth,
domain rules and error mapping as every other route, and all else falls through to Starlette.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from trackway.domain.errors import EventRejected, InvalidRequest, StoreUnavailable, TrackwayError
from trackway.domain.events import NUL_MESSAGE
from trackway.domain.pixel import (
    PIXEL_GIF,
    logged_query,
    pixel_body,
    pixel_key,
    pixel_parameters,
)
from trackway.domain.timestamps import now_ms
from trackway.http.auth import NotAuthorized, key_from_authorization
from trackway.http.errors import (
    MethodNotAllowed,
    RequestTimeout,
    RequestTooLarge,
    Response,
    error_response,
    internal_error,
    json_body,
)
from trackway.service import Trackway
from trackway.store.base import Credential, Rejection

log = logging.getLogger("trackway.http")

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]
Handler = Callable[[Credential, bytes], Awaitable[Response]]

_JSON_HEADERS = [(b"content-type", b"application/json")]
_OK: Response = (200, json_body({"status": "OK"}), [])
_PIXEL_HEADERS = [
    (b"content-type", b"image/gif"),
    (b"cache-control", b"no-cache, no-store, must-revalidate, private, max-age=0"),
    (b"pragma", b"no-cache"),
    (b"expires", b"0"),
]


async def read_body(receive: Any, scope: dict[str, Any], limit: int) -> bytes | None:
    """The whole request body, or RequestTooLarge as soon as it passes `limit` bytes (before
    reading it when Content-Length says so); None when the client went away."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                declared = 0
            if declared > limit:
                raise RequestTooLarge(limit)
            break
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise RequestTooLarge(limit)
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def receive_in_time(receive: Any, seconds: float) -> Any:
    """`receive` whose every wait for more of the request body is cut at `seconds` with
    RequestTimeout: uvicorn has no body timeout, so a client that stops sending mid-body would
    hold its connection and task forever. Once the body is complete, it passes through."""
    body_complete = False

    async def receive_body() -> Any:
        nonlocal body_complete
        if body_complete:
            return await receive()
        try:
            async with asyncio.timeout(seconds):
                message = await receive()
        except TimeoutError:
            raise RequestTimeout(seconds) from None
        if message["type"] != "http.request" or not message.get("more_body", False):
            body_complete = True
        return message

    return receive_body


async def _send(send: Any, status: int, payload: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(payload)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def authorization_header(scope: dict[str, Any]) -> bytes | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            return bytes(value)
    return None


class IngestEndpoints:
    def __init__(self, trackway: Trackway, fallback: ASGIApp) -> None:
        self.trackway = trackway
        self.fallback = fallback
        self.max_body_bytes = trackway.settings.max_body_bytes
        self.body_timeout = trackway.settings.body_timeout
        self.routes: dict[str, Handler] = {}
        for path, handler in (
            ("/api/v1/event", self.post_event),
            ("/api/v1/bulkevents", self.post_bulk),
        ):
            self.routes[path] = handler
            self.routes[path + "/"] = handler

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/unity.gif":
            await self.serve_pixel(scope, send)
            return
        if scope["type"] == "http":
            receive = receive_in_time(receive, self.body_timeout)
        handler = self.routes.get(scope["path"]) if scope["type"] == "http" else None
        if handler is None:
            if scope["type"] == "http" and (
                "\x00" in scope["path"] or b"%00" in scope.get("query_string", b"")
            ):
                await self.refuse_nul(scope, send)
                return
            await self.fallback(scope, receive, send)
            return
        try:
            if scope["method"] != "POST":
                raise MethodNotAllowed("POST")
            key = key_from_authorization(authorization_header(scope))
            credential = await self.trackway.credential_for_key(key) if key else None
            if credential is None:
                raise NotAuthorized()
            body = await read_body(receive, scope, self.max_body_bytes)
            if body is None:
                return
            status, payload, headers = await handler(credential, body)
        except TrackwayError as exc:
            status, payload, headers = error_response(exc) or internal_error()
        except (MethodNotAllowed, RequestTooLarge) as exc:
            status, payload, headers = error_response(exc) or internal_error()
        except Exception:
            log.exception("unexpected error on %s %s", scope["method"], scope["path"])
            status, payload, headers = internal_error()
        await _send(send, status, payload, [*_JSON_HEADERS, *headers])

    async def refuse_nul(self, scope: dict[str, Any], send: Any) -> None:
        """No stored name, uuid or identifier holds a NUL (PostgreSQL text cannot): a path with
        one names nothing (404), a query parameter with one is refused (400)."""
        headers: list[tuple[bytes, bytes]]
        if "\x00" in scope["path"]:
            status, payload, headers = 404, json_body({"message": "Not found"}), []
        else:
            refused = InvalidRequest({"query": [NUL_MESSAGE]})
            status, payload, headers = error_response(refused) or internal_error()
        await _send(send, status, payload, [*_JSON_HEADERS, *headers])

    async def post_event(self, credential: Credential, body: bytes) -> Response:
        await self.trackway.ingest_event(credential.account, body)
        return _OK

    async def pixel(self, scope: dict[str, Any]) -> None:
        """GET /unity.gif: the event rides in the query string, the key in `x`."""
        parameters = pixel_parameters(scope.get("query_string", b""))
        key = pixel_key(parameters)
        credential = await self.trackway.credential_for_key(key) if key else None
        if credential is None:
            return
        headers = {name: value for name, value in scope["headers"]}
        client = scope.get("client")
        try:
            body = pixel_body(
                parameters,
                user_agent=headers.get(b"user-agent", b"").decode("latin-1") or None,
                ip=client[0] if client else None,
                referrer=headers.get(b"referer", b"").decode("latin-1") or None,
            )
        except EventRejected as rejected:
            raw = logged_query(parameters)
            await self.trackway.log_rejections(
                credential.account,
                [Rejection(now_ms(), rejected.error_type, rejected.errors, raw)],
            )
            return
        await self.trackway.ingest_pixel(credential.account, body, logged_query(parameters))

    async def serve_pixel(self, scope: dict[str, Any], send: Any) -> None:
        if scope["method"] not in ("GET", "HEAD"):
            status, payload, headers = (
                error_response(MethodNotAllowed("GET, HEAD")) or internal_error()
            )
            await _send(send, status, payload, [*_JSON_HEADERS, *headers])
            return
        try:
            # HEAD (link checkers, prefetchers) answers like GET but records nothing.
            if scope["method"] == "GET":
                await self.pixel(scope)
        except StoreUnavailable as exc:
            log.warning("pixel event not stored: %s", exc)
        except Exception:
            log.exception("unexpected error on the pixel")
        await _send(send, 200, PIXEL_GIF, _PIXEL_HEADERS)

    async def post_bulk(self, credential: Credential, body: bytes) -> Response:
        result = await self.trackway.ingest_bulk(credential.account, body)
        if not result.errors:
            return 200, json_body({"status": "ok", "count": result.count}), []
        errors = [
            {"index": e.index, "event_uuid": e.event_uuid, "errors": e.errors}
            for e in result.errors
        ]
        payload = {"status": "partial", "count": result.count, "errors": errors}
        return 400, json_body(payload), []
