"""The ingest paths as a small raw ASGI handler in front of the Starlette app.

Ingest is the hot path, and a framework's per-request work costs more than validating and
storing the event (DESIGN.md §5). So POST /api/v1/event, POST /api/v1/bulkevents and
GET /unity.gif are served here, with the same auth, domain rules and error mapping as every
other route, in one pass over the request's headers and without wrapping `send`: the
credential of an Authorization value is remembered (service.Trackway.credential_for), the
response headers are built once, the request id and the request metric are added inline.
Everything else goes to Starlette through RequestContext. Body and header timeouts are the
HTTP protocol's (http/protocol.py): no timer is armed here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from trackway import metrics
from trackway.domain.errors import (
    EventRejected,
    InvalidRequest,
    StoreUnavailable,
    TrackwayError,
)
from trackway.domain.events import NUL_MESSAGE
from trackway.domain.pixel import (
    PIXEL_GIF,
    logged_query,
    pixel_body,
    pixel_key,
    pixel_parameters,
    request_context,
)
from trackway.domain.timestamps import now_ms
from trackway.http.auth import NotAuthorized, key_from_authorization
from trackway.http.errors import (
    MethodNotAllowed,
    RequestTooLarge,
    Response,
    error_response,
    internal_error,
    json_body,
)
from trackway.http.middleware import REQUEST_IDS, ASGIApp, RequestContext, access_log
from trackway.service import Trackway
from trackway.settings import Settings
from trackway.store.base import PIXEL, Credential, Rejection

log = logging.getLogger("trackway.http")

Handler = Callable[[Credential, bytes], Awaitable[Response]]
Headers = list[tuple[bytes, bytes]]

_JSON = (b"content-type", b"application/json")
_OK_PAYLOAD = json_body({"status": "OK"})
_NO_HEADERS: Headers = []
_PIXEL_HEADERS: Headers = [
    (b"content-type", b"image/gif"),
    (b"cache-control", b"no-cache, no-store, must-revalidate, private, max-age=0"),
    (b"pragma", b"no-cache"),
    (b"expires", b"0"),
    (b"content-length", str(len(PIXEL_GIF)).encode()),
]
# Headers a page's script may read from an ingest answer.
_EXPOSED = (b"access-control-expose-headers", b"X-Request-Id, Retry-After")
_ALLOWED_REQUEST_HEADERS = b"Authorization, Content-Type, X-Request-Id"
_PREFLIGHT_MAX_AGE = b"600"

EVENT_PATH = "/api/v1/event"
BULK_PATH = "/api/v1/bulkevents"
PIXEL_PATH = "/unity.gif"


class Cors:
    """Which page origins may call the ingest paths (`--cors-origins`: `*` or a list)."""

    def __init__(self, origins: str) -> None:
        names = [o.strip() for o in origins.split(",") if o.strip()]
        self.any = "*" in names
        self.origins = frozenset(o.encode("latin-1").rstrip(b"/") for o in names if o != "*")
        self._any_headers: Headers = [(b"access-control-allow-origin", b"*"), _EXPOSED]

    def allows(self, origin: bytes) -> bool:
        return self.any or origin.rstrip(b"/") in self.origins

    def response_headers(self, origin: bytes | None) -> Headers:
        """What an answer to a request from `origin` carries (nothing without an Origin)."""
        if origin is None:
            return []
        if self.any:
            return self._any_headers
        if origin.rstrip(b"/") in self.origins:
            return [(b"access-control-allow-origin", origin), (b"vary", b"Origin"), _EXPOSED]
        return [(b"vary", b"Origin")]

    def preflight(self, origin: bytes | None, methods: bytes, requested: bytes | None) -> Response:
        """OPTIONS: 204 with what the browser may send, for an allowed origin; 403 else."""
        allow = [(b"allow", methods)]
        if origin is None:
            return 204, b"", allow
        if not self.allows(origin):
            return 403, json_body({"message": "Origin not allowed"}), [(b"vary", b"Origin")]
        headers = _ALLOWED_REQUEST_HEADERS
        if requested:
            headers += b", " + requested
        return (
            204,
            b"",
            [
                *allow,
                (b"access-control-allow-origin", b"*" if self.any else origin),
                (b"access-control-allow-methods", methods),
                (b"access-control-allow-headers", headers),
                (b"access-control-max-age", _PREFLIGHT_MAX_AGE),
                *([] if self.any else [(b"vary", b"Origin")]),
            ],
        )


class IngestEndpoints:
    """The outermost ASGI app: the ingest paths here, everything else to `fallback`."""

    def __init__(self, trackway: Trackway, fallback: ASGIApp, settings: Settings) -> None:
        self.trackway = trackway
        self.fallback = fallback
        self.context = RequestContext(fallback, log_requests=settings.access_log)
        self.log_requests = settings.access_log
        self.max_body_bytes = settings.max_body_bytes
        # A Content-Length of fewer digits cannot pass the limit: no int() for it.
        self.limit_digits = len(str(settings.max_body_bytes))
        self.cors = Cors(settings.cors_origins)
        self.json_routes: dict[str, tuple[str, Handler]] = {}
        for path, handler in ((EVENT_PATH, self.post_event), (BULK_PATH, self.post_bulk)):
            self.json_routes[path] = (path, handler)
            self.json_routes[path + "/"] = (path, handler)
        self._ok_headers: Headers = [_JSON, (b"content-length", str(len(_OK_PAYLOAD)).encode())]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.fallback(scope, receive, send)
            return
        path = scope["path"]
        route = self.json_routes.get(path)
        if route is not None:
            await self.serve_json(scope, receive, send, route[0], route[1])
        elif path == PIXEL_PATH:
            await self.serve_pixel(scope, send)
        elif "\x00" in path or b"%00" in scope.get("query_string", b""):
            await self.refuse_nul(scope, send)
        else:
            await self.context(scope, receive, send)

    # -- answering -------------------------------------------------------------------------

    async def answer(
        self,
        scope: dict[str, Any],
        send: Any,
        route: str,
        status: int,
        payload: bytes,
        headers: Headers,
        request_id: bytes,
        started: float,
    ) -> None:
        headers.append((b"x-request-id", request_id))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})
        self.count(scope, route, status, request_id, started)

    def count(
        self, scope: dict[str, Any], route: str, status: int, request_id: bytes, started: float
    ) -> None:
        method = scope["method"]
        metrics.REQUEST_TALLY.add(route, method, status)
        if self.log_requests:
            access_log.info(
                "%s %s %d",
                method,
                scope["path"],
                status,
                extra={
                    "request_id": request_id.decode(),
                    "method": method,
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                    "client": (scope.get("client") or ("", 0))[0],
                },
            )

    def error_headers(self, exc: BaseException) -> Response:
        answer = error_response(exc)
        if answer is None:
            log.error("unexpected error on an ingest path", exc_info=exc)
            answer = internal_error()
        return answer

    # -- POST /api/v1/event and /api/v1/bulkevents -------------------------------------------

    async def serve_json(
        self, scope: dict[str, Any], receive: Any, send: Any, route: str, handler: Handler
    ) -> None:
        started = time.perf_counter() if self.log_requests else 0.0
        auth = length = given_id = origin = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                auth = value
            elif name == b"content-length":
                length = value
            elif name == b"x-request-id":
                given_id = value
            elif name == b"origin":
                origin = value
        request_id = REQUEST_IDS.take(given_id)
        try:
            if scope["method"] != "POST":
                if scope["method"] == "OPTIONS":
                    status, payload, extra = self.cors.preflight(
                        origin, b"POST, OPTIONS", _requested_headers(scope)
                    )
                    await self.answer(
                        scope, send, route, status, payload,
                        [_JSON, (b"content-length", str(len(payload)).encode()), *extra],
                        request_id, started,
                    )  # fmt: skip
                    return
                raise MethodNotAllowed("POST, OPTIONS")
            entry = self.trackway.credentials.get(auth)
            if entry is not None and entry[0] > time.monotonic():
                credential = entry[1]
            else:
                credential = await self.trackway.credential_for(auth, key_from_authorization)
            if credential is None:
                raise NotAuthorized()
            limit = self.max_body_bytes
            if length and len(length) >= self.limit_digits and _declared(length) > limit:
                raise RequestTooLarge(limit)
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body = message.get("body", b"")
            if message.get("more_body", False):
                body = await _rest_of_body(receive, body, limit)
                if body is None:
                    return
            elif len(body) > limit:
                raise RequestTooLarge(limit)
            if route is EVENT_PATH:  # the commonest request, without a handler call
                await self.trackway.ingest_event(credential.account, body)
                status, payload, extra = 200, _OK_PAYLOAD, _NO_HEADERS
            else:
                status, payload, extra = await handler(credential, body)
        except (TrackwayError, MethodNotAllowed, RequestTooLarge) as exc:
            status, payload, extra = self.error_headers(exc)
        except Exception:
            log.exception("unexpected error on %s %s", scope["method"], scope["path"])
            status, payload, extra = internal_error()
        if payload is _OK_PAYLOAD:
            headers = [*self._ok_headers, *self.cors.response_headers(origin)]
        else:
            headers = [
                _JSON,
                (b"content-length", str(len(payload)).encode()),
                *extra,
                *self.cors.response_headers(origin),
            ]
        await self.answer(scope, send, route, status, payload, headers, request_id, started)

    async def post_event(self, credential: Credential, body: bytes) -> Response:
        await self.trackway.ingest_event(credential.account, body)
        return 200, _OK_PAYLOAD, []

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

    # -- GET /unity.gif ------------------------------------------------------------------------

    async def serve_pixel(self, scope: dict[str, Any], send: Any) -> None:
        """The browser gets its GIF whatever happens to the event: a rejection is logged and
        counted, a storage fault logged."""
        started = time.perf_counter() if self.log_requests else 0.0
        user_agent = referrer = given_id = origin = None
        for name, value in scope["headers"]:
            if name == b"user-agent":
                user_agent = value
            elif name == b"referer":
                referrer = value
            elif name == b"x-request-id":
                given_id = value
            elif name == b"origin":
                origin = value
        request_id = REQUEST_IDS.take(given_id)
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            if method == "OPTIONS":
                status, payload, extra = self.cors.preflight(
                    origin, b"GET, HEAD, OPTIONS", _requested_headers(scope)
                )
            else:
                status, payload, extra = self.error_headers(MethodNotAllowed("GET, HEAD, OPTIONS"))
            headers = [_JSON, (b"content-length", str(len(payload)).encode()), *extra]
            await self.answer(
                scope, send, PIXEL_PATH, status, payload, headers, request_id, started
            )
            return
        try:
            # HEAD (link checkers, prefetchers) answers like GET but records nothing.
            if method == "GET":
                await self.pixel(scope, user_agent, referrer)
        except StoreUnavailable as exc:
            log.warning("pixel event not stored: %s", exc)
        except Exception:
            log.exception("unexpected error on the pixel")
        headers = [*_PIXEL_HEADERS, *self.cors.response_headers(origin)]
        await self.answer(scope, send, PIXEL_PATH, 200, PIXEL_GIF, headers, request_id, started)

    async def pixel(
        self, scope: dict[str, Any], user_agent: bytes | None, referrer: bytes | None
    ) -> None:
        """The event rides in the query string, the key in `x`."""
        parameters = pixel_parameters(scope.get("query_string", b""))
        key = pixel_key(parameters)
        if key is None:
            return
        entry = self.trackway.credentials.get(key)
        if entry is not None and entry[0] > time.monotonic():
            credential = entry[1]
        else:
            credential = await self.trackway.credential_for(key, _same)
        if credential is None:
            return
        client = scope.get("client")
        context = request_context(
            user_agent=user_agent.decode("latin-1") if user_agent else None,
            ip=client[0] if client else None,
            referrer=referrer.decode("latin-1") if referrer else None,
        )
        try:
            body = pixel_body(parameters, **context)
        except EventRejected as rejected:
            raw = logged_query(parameters)
            await self.trackway.log_rejections(
                credential.account,
                [Rejection(now_ms(), rejected.error_type, rejected.errors, raw, PIXEL, context)],
            )
            return
        await self.trackway.ingest_pixel(
            credential.account, body, logged_query(parameters), context
        )

    # -- anything else -------------------------------------------------------------------------

    async def refuse_nul(self, scope: dict[str, Any], send: Any) -> None:
        """No stored name, uuid or identifier holds a NUL (PostgreSQL text cannot): a path with
        one names nothing (404), a query parameter with one is refused (400)."""
        started = time.perf_counter() if self.log_requests else 0.0
        extra: Headers
        if "\x00" in scope["path"]:
            status, payload, extra = 404, json_body({"message": "Not found"}), []
        else:
            status, payload, extra = self.error_headers(InvalidRequest({"query": [NUL_MESSAGE]}))
        given_id = next((v for n, v in scope["headers"] if n == b"x-request-id"), None)
        headers = [_JSON, (b"content-length", str(len(payload)).encode()), *extra]
        await self.answer(
            scope, send, "other", status, payload, headers, REQUEST_IDS.take(given_id), started
        )


def _declared(length: bytes) -> int:
    try:
        return int(length)
    except ValueError:
        return 0


def _requested_headers(scope: dict[str, Any]) -> bytes | None:
    for name, value in scope["headers"]:
        if name == b"access-control-request-headers":
            return bytes(value)
    return None


async def _rest_of_body(receive: Any, first: bytes, limit: int) -> bytes | None:
    """The rest of a body that did not come in one message (None: the client went away);
    RequestTooLarge as soon as it passes `limit` bytes, the first message included (uvicorn hands
    over everything read so far, so the first may hold the whole body with more to say)."""
    size = len(first)
    if size > limit:
        raise RequestTooLarge(limit)
    chunks = [first]
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise RequestTooLarge(limit)
            chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _same(key: str) -> str:
    return key
