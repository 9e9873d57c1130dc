"""uvicorn's httptools protocol with the timeouts and the connection cap it lacks, writing each
response in one piece.

- **Header timeout** (`--header-timeout`): a connection that has not sent complete request
  headers this many seconds after it opened, or after the first byte of its next request, is
  closed (with a 408 when part of a request came). uvicorn with httptools has none: a socket
  that sends nothing, or a header line every 2 s, stays open for ever.
- **Body timeout** (`--body-timeout`): a client that pauses longer than this while sending a
  request body gets a 408 and the connection is closed.
- **Connection cap** (`--max-connections`, per worker process): at the cap, a new connection
  takes the place of the oldest one that is waiting for request headers (idle keep-alive or
  slow); when every connection is in a request, the new one gets a 503 and is closed. The
  file-descriptor limit is never reached, so `/healthz` keeps answering.
- **One write per response** of known length (_OneWrite): the header block goes out with the
  body, one send instead of two.
- Between requests, uvicorn's keep-alive timeout (`--keep-alive-timeout`) closes idle
  connections.

No timer is armed for a request whose headers and body arrive in the first read (almost all
of them): the header timer of a connection runs from its opening until its first request's
headers are in, and later ones are armed only when a read ends inside a request's headers or
body. This relies on uvicorn's HttpToolsProtocol callbacks (on_message_begin,
on_headers_complete, on_message_complete); tests/hostile covers each case over real sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from functools import cache
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from trackway import metrics
from trackway.http.errors import RequestTimeout, error_response
from trackway.http.middleware import REQUEST_IDS, route_of
from trackway.settings import Settings

log = logging.getLogger("trackway.http")

_HEADERS, _BODY, _DONE = 0, 1, 2  # where a connection stands


@cache
def _limits() -> tuple[float, float, int]:
    """(header timeout, body timeout, connection cap) of this worker, from TRACKWAY_*."""
    settings = Settings.from_env()
    return float(settings.header_timeout), float(settings.body_timeout), effective_cap(settings)


def effective_cap(settings: Settings) -> int:
    """The connection cap, kept below this process's file-descriptor limit (with room for the
    database files, the listening socket and the writer's socket)."""
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return settings.max_connections
    return max(16, min(settings.max_connections, soft - 100))


def raise_file_limit() -> None:
    """The soft file-descriptor limit up to the hard one, so that the cap, not the limit, is
    what a flood of connections meets."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _raw_response(status: bytes, payload: bytes, request_id: bytes) -> bytes:
    return b"".join(
        [
            b"HTTP/1.1 ", status, b"\r\n",
            b"content-type: application/json\r\n",
            b"content-length: ", str(len(payload)).encode(), b"\r\n",
            b"x-request-id: ", request_id, b"\r\n",
            b"connection: close\r\n\r\n",
            payload,
        ]
    )  # fmt: skip


class _OneWrite:
    """The transport of one request's response: when the response has a Content-Length, its
    status line and headers are held and go out with the first body chunk, in one write (one
    send syscall, one TCP segment) instead of uvicorn's two; those two writes were a fifth of
    an API worker's samples under single events. Anything else (a 100 Continue, a chunked or
    streamed body, a HEAD answer) is written at once, and close() writes what is held first.

    It lets go of its cycle as soon as it has seen the header block: a cycle that pointed at
    its transport and back would be freed by the garbage collector only, not when its request
    ends, and every request's objects piling up for it made collections long (p99 2-3x)."""

    __slots__ = ("_cycle", "_held", "_transport")

    def __init__(self, transport: asyncio.Transport, cycle: Any) -> None:
        self._transport = transport
        # Until the header block: what uvicorn decided about the body's length is read there.
        self._cycle = cycle if cycle.scope["method"] != "HEAD" else None
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held + data)
            return
        cycle = self._cycle
        if cycle is not None:
            chunked = cycle.chunked_encoding
            if chunked is not None:  # the header block (a 100 Continue comes before it)
                self._cycle = None
                if chunked is False:
                    self._held = data
                    return
        self._transport.write(data)

    def close(self) -> None:
        self._cycle = None
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held)
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class TrackwayHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timeout, self._body_timeout, self._cap = _limits()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_for = _DONE
        self._opened = 0.0

    # -- connections ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._opened = self.loop.time()
        if len(self.connections) > self._cap and not self._make_room():
            log.warning("connection cap (%d) reached: new connection refused", self._cap)
            payload = b'{"message":"Too many connections"}'
            answer = _raw_response(b"503 Service Unavailable", payload, REQUEST_IDS.take(None))
            transport.write(answer)
            transport.close()
            return
        self._arm(_HEADERS, self._header_timeout)

    def _make_room(self) -> bool:
        """Close the oldest connection waiting for request headers; False when there is none."""
        oldest: TrackwayHttpToolsProtocol | None = None
        for other in self.connections:
            if (
                other is not self
                and isinstance(other, TrackwayHttpToolsProtocol)
                and other._phase() == _HEADERS
                and (oldest is None or other._opened < oldest._opened)
            ):
                oldest = other
        if oldest is None:
            return False
        oldest.transport.close()
        oldest.connections.discard(oldest)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        cycle = self.cycle
        # The cycle uvicorn just made (its task has not run yet) writes through _OneWrite.
        if cycle is not None and cycle.scope is self.scope and cycle.transport is self.transport:
            cycle.transport = _OneWrite(self.transport, cycle)  # type: ignore[assignment]

    # -- where the connection stands, after each read ------------------------------------------

    def _phase(self) -> int:
        """_HEADERS: waiting for a request's headers (none begun, or some in); _BODY: its
        headers are in, its body is not; _DONE: a request is being answered."""
        cycle = self.cycle
        if cycle is None or cycle.scope is not self.scope:
            # No request yet, or the parser began a new one (on_message_begin made a scope).
            return _HEADERS
        if cycle.more_body:
            return _BODY if not cycle.response_complete else _HEADERS
        return _DONE if not cycle.response_complete else _HEADERS

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        cycle = self.cycle
        if cycle is not None and cycle.scope is self.scope and not cycle.more_body:
            # The commonest case: the whole request came in (this read or earlier).
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            return
        if self.transport.is_closing():
            return
        phase = self._phase()
        if phase == _BODY:
            # The client may pause this long between two reads of a body.
            self._arm(_BODY, self._body_timeout)
        elif (
            phase == _HEADERS
            and self.scope is not None
            and (self._timer is None or self._timer_for != _HEADERS)
        ):
            # Some of a request's headers came: they must all be in within the timeout.
            self._arm(_HEADERS, self._header_timeout)

    def _arm(self, phase: int, seconds: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_for = phase
        handler = self._headers_too_slow if phase == _HEADERS else self._body_too_slow
        self._timer = self.loop.call_later(seconds, handler)

    # -- timeouts ------------------------------------------------------------------------------

    def _headers_too_slow(self) -> None:
        self._timer = None
        if self.transport.is_closing() or self._phase() != _HEADERS:
            return
        cycle = self.cycle
        begun = self.scope is not None and (cycle is None or cycle.scope is not self.scope)
        if begun:
            payload = error_response(RequestTimeout(self._header_timeout, "headers"))
            assert payload is not None
            self.transport.write(
                _raw_response(b"408 Request Timeout", payload[1], REQUEST_IDS.take(None))
            )
            metrics.count_request("other", "-", 408)
        self.transport.close()

    def _body_too_slow(self) -> None:
        self._timer = None
        if self.transport.is_closing() or self._phase() != _BODY:
            return
        cycle = self.cycle
        if not cycle.response_started:
            payload = error_response(RequestTimeout(self._body_timeout))
            assert payload is not None
            given = next((v for n, v in cycle.scope["headers"] if n == b"x-request-id"), None)
            self.transport.write(
                _raw_response(b"408 Request Timeout", payload[1], REQUEST_IDS.take(given))
            )
            metrics.count_request(route_of(cycle.scope["path"]), cycle.scope["method"], 408)
        # The app, waiting for the rest of the body, learns that the client is gone.
        self.transport.close()
