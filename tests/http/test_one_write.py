"""The HTTP protocol of `trackway serve` writes a response with a Content-Length in one write
(status line, headers and body), and anything else as uvicorn does: a streamed body's headers at
once, a HEAD answer, a 100 Continue, the held headers before a close. Raw requests are fed to
the protocol itself over a transport that records each write, as `trackway serve` runs it."""

from __future__ import annotations

import asyncio
import functools
import gc
import weakref
from collections.abc import Callable, Coroutine
from typing import Any

from uvicorn.config import Config
from uvicorn.server import ServerState

from trackway.http.server import server_options
from trackway.settings import Settings

BODY = b'{"status":"OK"}'


class Recorder(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8080)}.get(
            name, default
        )

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def fixed_length(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await receive()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"15")],
        }
    )
    await send({"type": "http.response.body", "body": BODY})


class Streamed:
    """Headers, then a pause until `go` is set, then two chunks."""

    def __init__(self) -> None:
        self.go = asyncio.Event()
        self.started = asyncio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        self.started.set()
        await self.go.wait()
        await send({"type": "http.response.body", "body": b"one", "more_body": True})
        await send({"type": "http.response.body", "body": b"two"})


async def serve(app: Any, raw: bytes, turns: int = 20) -> tuple[Recorder, Any]:
    config = Config(app, lifespan="off", **server_options(Settings.from_env()))
    config.load()
    protocol = config.http_protocol_class(config=config, server_state=ServerState(), app_state={})
    transport = Recorder()
    protocol.connection_made(transport)
    protocol.data_received(raw)
    for _ in range(turns):
        await asyncio.sleep(0)
    return transport, protocol


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    @functools.wraps(test)
    def sync() -> None:
        asyncio.run(test())

    return sync


def post(extra: bytes = b"") -> bytes:
    return b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n" + extra + b"\r\n{}"


@run
async def test_a_response_of_known_length_is_one_write() -> None:
    transport, _ = await serve(fixed_length, post())
    assert len(transport.writes) == 1
    answer = transport.writes[0]
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"\r\n\r\n" + BODY)
    assert not transport.closed


@run
async def test_two_requests_on_one_connection_are_a_write_each() -> None:
    transport, protocol = await serve(fixed_length, post())
    protocol.data_received(post())
    for _ in range(20):
        await asyncio.sleep(0)
    assert len(transport.writes) == 2
    assert all(w.endswith(BODY) for w in transport.writes)


@run
async def test_held_headers_are_written_before_the_connection_closes() -> None:
    transport, _ = await serve(fixed_length, post(b"Connection: close\r\n"))
    assert transport.closed
    answer = b"".join(transport.writes)
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(BODY)
    assert b"connection: close" in answer


@run
async def test_a_head_answer_is_written_without_a_body() -> None:
    raw = b"HEAD /x HTTP/1.1\r\nHost: t\r\n\r\n"
    transport, _ = await serve(fixed_length, raw)
    assert len(transport.writes) == 1
    assert transport.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert transport.writes[0].endswith(b"\r\n\r\n")


@run
async def test_a_streamed_body_sends_its_headers_at_once() -> None:
    app = Streamed()
    transport, _ = await serve(app, post())
    assert app.started.is_set()
    # The client sees the headers while the app waits (a server-sent event stream, say).
    assert len(transport.writes) == 1
    assert transport.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"transfer-encoding: chunked" in transport.writes[0]
    app.go.set()
    for _ in range(20):
        await asyncio.sleep(0)
    assert b"".join(transport.writes[1:]) == b"3\r\none\r\n3\r\ntwo\r\n0\r\n\r\n"


@run
async def test_a_100_continue_is_written_at_once() -> None:
    raw = b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n"
    transport, protocol = await serve(fixed_length, raw)
    assert transport.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    protocol.data_received(b"{}")
    for _ in range(20):
        await asyncio.sleep(0)
    assert len(transport.writes) == 2
    assert transport.writes[1].startswith(b"HTTP/1.1 200 OK\r\n")
    assert transport.writes[1].endswith(BODY)


@run
async def test_a_finished_cycle_is_freed_without_the_garbage_collector() -> None:
    """No reference cycle between a request's cycle and its transport: with the collector off,
    the first request's objects are gone once the second one has replaced it."""
    gc.collect()
    gc.disable()
    try:
        transport, protocol = await serve(fixed_length, post())
        first = weakref.ref(protocol.cycle)
        protocol.data_received(post())
        for _ in range(20):
            await asyncio.sleep(0)
        assert len(transport.writes) == 2
        assert first() is None
    finally:
        gc.enable()
