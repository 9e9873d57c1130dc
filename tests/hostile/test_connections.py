"""Connections that never finish, over real sockets: the header timeout, the keep-alive timeout
and the connection cap of `trackway serve` (http/protocol.py). The HTTP server does not depend
on the backend, so these run on SQLite only."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import Server, basic, create_account, free_port, sqlite_url, trackway_command

HEADER_TIMEOUT = 2
KEEP_ALIVE = 1
CAP = 40


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("connections")
    server = Server(
        directory / "trackway.db",
        directory / "server.log",
        "--header-timeout", str(HEADER_TIMEOUT),
        "--keep-alive-timeout", str(KEEP_ALIVE),
        "--max-connections", str(CAP),
        "--body-timeout", "30",
    )  # fmt: skip
    server.start()
    try:
        yield server
    finally:
        server.stop()


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=15)
    return sock


def read_until_closed(sock: socket.socket, limit: float = 15) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and when it closed (seconds from now)."""
    started = time.monotonic()
    sock.settimeout(limit)
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
    return data, time.monotonic() - started


def read_response(sock: socket.socket) -> bytes:
    """One whole response (headers, then Content-Length bytes of body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def healthy(server: Server) -> float:
    started = time.monotonic()
    assert httpx.get(server.url + "/healthz", timeout=5).status_code == 200
    return time.monotonic() - started


def test_a_socket_that_sends_nothing_is_closed(capped: Server) -> None:
    with connect(capped.port) as sock:
        data, seconds = read_until_closed(sock)
    assert data == b""
    assert HEADER_TIMEOUT - 0.5 < seconds < HEADER_TIMEOUT + 2


def test_headers_dripped_slowly_are_cut_at_the_header_timeout(capped: Server) -> None:
    """A header line every 0.5 s keeps the connection busy, but not beyond the timeout."""
    sock = connect(capped.port)
    stop = threading.Event()

    def drip() -> None:
        with contextlib.suppress(OSError):
            sock.sendall(b"POST /api/v1/event HTTP/1.1\r\nHost: x\r\n")
            n = 0
            while not stop.wait(0.5):
                sock.sendall(f"X-Slow-{n}: a\r\n".encode())
                n += 1

    dripper = threading.Thread(target=drip)
    started = time.monotonic()
    dripper.start()
    try:
        data, _ = read_until_closed(sock)
        seconds = time.monotonic() - started
    finally:
        stop.set()
        dripper.join()
        sock.close()
    assert data.startswith(b"HTTP/1.1 408 "), data
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"connection: close" in head.lower()
    assert b"x-request-id: " in head.lower()
    assert json.loads(body)["message"].startswith("Request headers not received in time")
    assert HEADER_TIMEOUT - 0.5 < seconds < HEADER_TIMEOUT + 2


def test_a_request_that_comes_at_once_is_answered_and_the_idle_connection_closed(
    capped: Server,
) -> None:
    account = create_account(capped.db_path)
    body = b'{"event": "view", "cookie": "c1"}'
    auth = basic(account.event_key)["Authorization"].encode()
    request = (
        b"POST /api/v1/event HTTP/1.1\r\nHost: x\r\nAuthorization: " + auth + b"\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    with connect(capped.port) as sock:
        # Two requests on one keep-alive connection, the second after a pause shorter than
        # the keep-alive timeout but longer than nothing.
        sock.sendall(request)
        first = read_response(sock)
        assert first.startswith(b"HTTP/1.1 200 "), first
        time.sleep(KEEP_ALIVE / 2)
        sock.sendall(request)
        second = read_response(sock)
        assert second.startswith(b"HTTP/1.1 200 "), second
        data, seconds = read_until_closed(sock)
    assert data == b""
    assert seconds < KEEP_ALIVE + 2


def test_a_flood_of_idle_connections_leaves_room_for_new_ones(capped: Server) -> None:
    """Three times the cap of silent sockets: each new one takes the place of the oldest
    idle one, so /healthz still answers at once, and no more than the cap stay open."""
    sockets = [connect(capped.port) for _ in range(3 * CAP)]
    try:
        time.sleep(0.3)
        for _ in range(5):
            assert healthy(capped) < 1
        closed = 0
        for sock in sockets:
            sock.setblocking(False)
            try:
                closed += sock.recv(1) == b""
            except BlockingIOError:
                pass
            except ConnectionResetError:
                closed += 1
        assert closed >= 2 * CAP - 5
    finally:
        for sock in sockets:
            sock.close()


def test_at_the_cap_with_every_connection_in_a_request_a_new_one_gets_503(capped: Server) -> None:
    account = create_account(capped.db_path)
    auth = basic(account.event_key)["Authorization"].encode()
    head = (
        b"POST /api/v1/event HTTP/1.1\r\nHost: x\r\nAuthorization: " + auth + b"\r\n"
        b"Content-Length: 1000\r\n\r\n{"
    )
    busy = []
    try:
        for _ in range(CAP + 2):
            sock = connect(capped.port)
            sock.sendall(head)
            busy.append(sock)
        time.sleep(0.3)
        with connect(capped.port) as extra:
            extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            data, _ = read_until_closed(extra)
        assert data.startswith(b"HTTP/1.1 503 "), data
        assert json.loads(data.partition(b"\r\n\r\n")[2]) == {"message": "Too many connections"}
    finally:
        for sock in busy:
            sock.close()
    time.sleep(0.3)
    assert healthy(capped) < 1


def test_the_file_descriptor_limit_is_never_reached(tmp_path: Path) -> None:
    """Under `ulimit -n 256`, 400 silent sockets: the cap stays below the limit, /healthz
    answers throughout, nothing in the log about running out of file descriptors."""
    database = tmp_path / "trackway.db"
    port = free_port()
    log = tmp_path / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKWAY_")}

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    with log.open("wb") as out:
        process = subprocess.Popen(
            [*trackway_command(), "serve", "--port", str(port), "--database",
             sqlite_url(database), "--header-timeout", "30"],
            stdout=out, stderr=subprocess.STDOUT, env=env, preexec_fn=low_limit,
            start_new_session=True,
        )  # fmt: skip
    server = Server(database, log)
    server.port, server.process = port, process
    sockets: list[socket.socket] = []
    try:
        server.wait_ready()
        for _ in range(400):
            sockets.append(connect(port))
            if len(sockets) % 100 == 0:
                assert healthy(server) < 1
        assert healthy(server) < 1
    finally:
        for sock in sockets:
            sock.close()
        server.stop()
    text = log.read_text()
    assert "Too many open files" not in text, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
