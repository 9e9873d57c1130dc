"""An API worker's end of the writer socket: it hands each ingest to the writer process and
waits for its answer, which comes after COMMIT.

The connection is made at the first ingest and again after the writer went away. Waits are
bounded: connecting gives up after CONNECT_WAIT_SECONDS (the writer `serve` restarts is back
well within it), an answer after ANSWER_TIMEOUT_SECONDS; either way, and for every job in
flight when the connection drops, the caller gets StoreUnavailable (503 with Retry-After). A job
in flight when the writer died may have been committed or not: its retry is answered as a
duplicate for the events stored (event_uuid), never stored twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any, cast

from trackway import metrics
from trackway.domain.errors import StoreUnavailable
from trackway.domain.events import AcceptedEvent
from trackway.store.base import IngestResult, Rejection
from trackway.store.sqlite import wire

log = logging.getLogger("trackway.store")

CONNECT_WAIT_SECONDS = 3.0
CONNECT_RETRY_SECONDS = 0.05
ANSWER_TIMEOUT_SECONDS = 30.0
# How often a connection with jobs in flight looks for one past its deadline: one timer per
# connection, not one armed and cancelled per job (2 us each, on every single event).
WATCH_SECONDS = 1.0


class WriteFailed(Exception):
    """The writer could not write this job, alone in its transaction (not a storage fault)."""


class _Connection(asyncio.Protocol):
    def __init__(self, client: WriterClient) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None
        # job id -> (deadline on the loop's clock, the future its answer resolves), oldest
        # first: job ids and deadlines both grow.
        self.pending: dict[int, tuple[float, asyncio.Future[wire.WireAnswer]]] = {}
        self.watchdog: asyncio.TimerHandle | None = None
        self.out: list[bytes] = []
        self.reader = wire.FrameReader()
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def send(self, job_id: int, data: bytes) -> asyncio.Future[wire.WireAnswer]:
        """Queue a job's frame (written once per turn of the loop); the future of its answer."""
        loop = asyncio.get_running_loop()
        if not self.out:
            loop.call_soon(self._flush)
        self.out.append(data)
        future: asyncio.Future[wire.WireAnswer] = loop.create_future()
        self.pending[job_id] = (loop.time() + ANSWER_TIMEOUT_SECONDS, future)
        if self.watchdog is None:
            self.watchdog = loop.call_later(WATCH_SECONDS, self._watch)
        return future

    def _watch(self) -> None:
        """Fail the jobs past their deadline (the oldest come first), and look again later
        while any is in flight."""
        self.watchdog = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        expired = []
        for job_id, (deadline, _) in self.pending.items():
            if deadline > now:
                break
            expired.append(job_id)
        for job_id in expired:
            _, future = self.pending.pop(job_id)
            _time_out(future)
        if self.pending and not self.lost:
            self.watchdog = loop.call_later(WATCH_SECONDS, self._watch)

    def _flush(self) -> None:
        out, self.out = self.out, []
        if self.transport is not None and not self.lost:
            self.transport.write(b"".join(out))

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.reader.feed(data)
            for raw in frames:
                answer = wire.answer_decoder.decode(raw)
                entry = self.pending.pop(answer.id, None)
                if entry is not None and not entry[1].done():
                    entry[1].set_result(answer)
        except Exception as exc:  # a broken writer: drop the connection, fail what waits
            log.error("bad answer from the SQLite writer process: %r", exc)
            if self.transport is not None:
                self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.watchdog is not None:
            self.watchdog.cancel()
            self.watchdog = None
        if self.client.connection is self:
            self.client.connection = None
        if self.pending:
            log.warning(
                "the SQLite writer process went away with %d job(s) in flight", len(self.pending)
            )
        error = StoreUnavailable("SQLite: the writer process went away; retry")
        for _, future in self.pending.values():
            if not future.done():
                future.set_exception(error)
        self.pending.clear()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class WriterClient:
    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self.connection: _Connection | None = None
        self._dialing: asyncio.Future[_Connection] | None = None
        self._next_id = 0

    async def _connect(self) -> _Connection:
        if self._dialing is None or self._dialing.done():
            self._dialing = asyncio.ensure_future(self._dial())
        return await asyncio.shield(self._dialing)

    async def _dial(self) -> _Connection:
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + CONNECT_WAIT_SECONDS
        while True:
            try:
                _, connection = await loop.create_unix_connection(
                    lambda: _Connection(self), self.socket_path
                )
            except OSError as exc:
                if time.monotonic() >= deadline:
                    raise StoreUnavailable(
                        f"SQLite: the writer process does not answer at {self.socket_path}: "
                        f"{exc.strerror or exc}"
                    ) from None
                await asyncio.sleep(CONNECT_RETRY_SECONDS)
                continue
            self.connection = connection
            return connection

    async def ingest(
        self,
        account_id: int,
        events: Sequence[AcceptedEvent],
        rejections: Sequence[Rejection],
    ) -> IngestResult:
        connection = self.connection
        if connection is None or connection.lost:
            connection = await self._connect()
        self._next_id += 1
        job_id = self._next_id
        future = connection.send(job_id, wire.job_frame(job_id, account_id, events, rejections))
        try:
            answer = await future
        finally:
            connection.pending.pop(job_id, None)
        if answer.status == wire.STATUS_UNAVAILABLE:
            raise StoreUnavailable(answer.message)
        if answer.status != wire.STATUS_OK:
            raise WriteFailed(answer.message)
        result = wire.result_of(answer)
        _count(answer, result, rejections)
        return result

    async def close(self) -> None:
        if self._dialing is not None and not self._dialing.done():
            self._dialing.cancel()
            with contextlib.suppress(BaseException):
                await self._dialing
        if self.connection is not None:
            self.connection.close()
            self.connection = None


def _time_out(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_exception(
            StoreUnavailable(
                f"SQLite: the writer process did not answer within {ANSWER_TIMEOUT_SECONDS:g} s"
            )
        )


def _count(answer: wire.WireAnswer, result: IngestResult, rejections: Sequence[Rejection]) -> None:
    """This job's share of the metrics; the group commit itself on the job that carries it."""
    if answer.group_seconds:
        metrics.observe_commit(
            answer.group_events, result.stored, result.duplicates, answer.group_seconds
        )
    else:
        if result.stored:
            metrics.REQUEST_TALLY.count(metrics.EVENTS_ACCEPTED, result.stored)
        if result.duplicates:
            metrics.REQUEST_TALLY.count(metrics.EVENTS_DUPLICATE, result.duplicates)
    for rejection in rejections:
        metrics.count_rejected(rejection.error_type)
    for _, rejected in result.rejected:
        metrics.count_rejected(rejected.error_type)
