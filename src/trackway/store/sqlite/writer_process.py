"""The writer process of a SQLite database (`trackway writer`, started and watched by `trackway
serve`): the one process that writes its events.

It listens on a Unix socket. API workers (and `trackway import` beside a running server) send
it jobs (store/sqlite/wire.py); every job that arrives while a transaction commits joins the
next one, whichever process sent it (the group commit of writer.py, now across processes), and
each is answered after COMMIT.

Stopping: started by `serve` (stdin is a pipe from it), it stops when that pipe ends: serve
closes it after its API workers have exited (or serve is gone, even killed). A SIGTERM or SIGINT
alone does not stop it at once: a SIGTERM to the process group (systemd, Ctrl-C) reaches it
together with the API workers, which still drain their requests, and a worker that had written
nothing yet connects to it only then; so it keeps listening until the pipe ends, or for
STOP_WAIT_SECONDS at most. Run by hand (stdin no pipe), a signal makes it stop once no client
is connected any more. Either way, what it has received is committed and answered before it
exits.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import signal
import sqlite3
import stat
import sys
from pathlib import Path
from typing import Any, cast

from trackway.domain.batch import MAX_ATTRIBUTE_NAMES
from trackway.domain.errors import StoreUnavailable
from trackway.store.sqlite import wire
from trackway.store.sqlite.store import SQLiteStore
from trackway.store.sqlite.writer import Ingest, Writer

log = logging.getLogger("trackway.writer")

STOP_WAIT_SECONDS = 30.0


class _RemoteJob(Ingest):
    """A client's job: answered on its connection, under its id, after COMMIT."""

    __slots__ = ("client", "id")

    def __init__(self, client: _Client, job: wire.WireJob) -> None:
        super().__init__(job.account_id, wire.accepted_events(job), job.rejections)
        self.client = client
        self.id = job.id


class _Client(asyncio.Protocol):
    def __init__(self, server: WriterServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.reader = wire.FrameReader()
        self.out: list[bytes] = []
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.server.clients.add(self)

    def data_received(self, data: bytes) -> None:
        jobs: list[_RemoteJob] = []
        try:
            for raw in self.reader.feed(data):
                jobs.append(_RemoteJob(self, wire.job_decoder.decode(raw)))
        except Exception as exc:
            log.error("bad job from a client, connection dropped: %r", exc)
            if self.transport is not None:
                self.transport.abort()
        if jobs:
            self.server.add(jobs)

    def answer(self, job: _RemoteJob, result: Any, error: BaseException | None) -> None:
        if error is None:
            answer = wire.ok_answer(job.id, result, job.group)
        elif isinstance(error, StoreUnavailable):
            answer = wire.WireAnswer(job.id, wire.STATUS_UNAVAILABLE, message=str(error))
        else:
            log.error("job failed on its own: %r", error)
            answer = wire.WireAnswer(job.id, wire.STATUS_FAILED, message=repr(error))
        if not self.closed:
            self.out.append(wire.frame(answer))

    def flush(self) -> None:
        out, self.out = self.out, []
        if out and self.transport is not None and not self.closed:
            self.transport.write(b"".join(out))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.clients.discard(self)
        self.server.client_gone.set()


class WriterServer:
    """The group commit on the event loop: the jobs that arrived while a transaction ran are
    read in the loop's next turn (the kernel holds them meanwhile) and written together in
    the turn after, up to the writer's group size; each client's answers go in one write."""

    def __init__(self, store: SQLiteStore, loop: asyncio.AbstractEventLoop) -> None:
        self.store = store
        self.loop = loop
        assert store._writer is not None
        self.writer: Writer = store._writer
        self.clients: set[_Client] = set()
        self.client_gone = asyncio.Event()
        self.pending: collections.deque[_RemoteJob] = collections.deque()
        self.scheduled = False

    def add(self, jobs: list[_RemoteJob]) -> None:
        self.pending.extend(jobs)
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self.write_pending)

    def take(self) -> list[_RemoteJob]:
        """The next group: pending jobs up to the group size (at least one)."""
        batch: list[_RemoteJob] = []
        size = 0
        pending = self.pending
        while pending and size < self.writer.max_batch_events:
            job = pending.popleft()
            batch.append(job)
            size += len(job.events) + 1
        return batch

    def write_pending(self) -> None:
        """Write one group and answer it; what is left waits for the next turn, after the
        jobs that arrived meanwhile have been read."""
        self.scheduled = False
        batch = self.take()
        if not batch:
            return
        clients: set[_Client] = set()
        for job, result, error in self.writer.write_batch(batch):
            job.client.answer(job, result, error)
            clients.add(job.client)
        for client in clients:
            client.flush()
        if self.pending and not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self.write_pending)

    def drain(self) -> None:
        """Write and answer every job received (at stop)."""
        while self.pending:
            self.write_pending()


async def serve_writer(
    database_path: Path, socket_path: str, max_attribute_names: int = MAX_ATTRIBUTE_NAMES
) -> None:
    loop = asyncio.get_running_loop()
    store = SQLiteStore(database_path, serves_others=True, max_attribute_names=max_attribute_names)
    await store.open()
    server_state = WriterServer(store, loop)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(socket_path)
    server = await loop.create_unix_server(lambda: _Client(server_state), socket_path)
    os.chmod(socket_path, 0o600)
    log.info("writer %d of %s listening on %s", os.getpid(), database_path, socket_path)

    stop_asked = asyncio.Event()
    serve_gone = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_asked.set)
    watching_stdin = False
    with contextlib.suppress(OSError, ValueError):
        fd = sys.stdin.fileno()
        # A pipe from `serve`: its end means serve is gone.
        if stat.S_ISFIFO(os.fstat(fd).st_mode):

            def stdin_readable() -> None:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    data = b""
                if not data:
                    loop.remove_reader(fd)
                    serve_gone.set()
                    stop_asked.set()

            loop.add_reader(fd, stdin_readable)
            watching_stdin = True

    await stop_asked.wait()
    if watching_stdin and not serve_gone.is_set():
        log.info("writer %d: stop asked, serving until serve's API workers are done", os.getpid())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(serve_gone.wait(), STOP_WAIT_SECONDS)
    server.close()
    deadline = loop.time() + STOP_WAIT_SECONDS
    while server_state.clients and loop.time() < deadline:
        server_state.client_gone.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server_state.client_gone.wait(), deadline - loop.time())
    if server_state.clients:
        log.warning("stopping with %d client(s) still connected", len(server_state.clients))
    # Commit and answer what was received.
    server_state.drain()
    await store.close()
    for client in list(server_state.clients):
        client.flush()
        if client.transport is not None:
            client.transport.close()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(socket_path)
    if watching_stdin:
        with contextlib.suppress(Exception):
            loop.remove_reader(sys.stdin.fileno())
    log.info("writer %d stopped", os.getpid())


def run_writer(
    database_path: Path, socket_path: str, max_attribute_names: int = MAX_ATTRIBUTE_NAMES
) -> None:
    try:
        try:
            import uvloop

            uvloop.run(serve_writer(database_path, socket_path, max_attribute_names))
        except ImportError:
            asyncio.run(serve_writer(database_path, socket_path, max_attribute_names))
    except (sqlite3.Error, OSError) as exc:
        # A file it cannot write (read-only, disk full): one line, and serve starts another
        # writer after its back-off.
        log.error("the writer cannot write %s: %s", database_path, exc)
        raise SystemExit(1) from None
