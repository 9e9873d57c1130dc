"""AsyncClient: the asyncio twin of Client, with a task instead of a thread."""

from __future__ import annotations

import asyncio
import inspect
from collections import deque
from types import TracebackType
from typing import Any

import httpx

from trackway.client._batch import (
    CLOSED,
    Delivered,
    GiveUp,
    Send,
    Wait,
    decode_events,
    delivery,
    encode_event,
)
from trackway.client._config import OnError, OnFull, log, log_drop, log_give_up, make_config
from trackway.client._exceptions import QueueFullError, TrackwayClientError


class AsyncClient:
    """Send events to a Trackway server in batches, from an asyncio task.

    The same batching, retry, give-up and full-queue rules as `Client` (see its docstring):
    `await track()` / `await identify()` queue an event and return its event_uuid (None when
    dropped by `on_full="drop"`; `QueueFullError` with the default `on_full="raise"`);
    `await flush()` waits until everything queued before it is sent or given up;
    `await aclose()` flushes and stops the task; `async with AsyncClient(...) as client:`.

    `on_error(events, response_or_exception)` may be a plain function or a coroutine
    function. The sender task starts on first use, in the running event loop; use the client
    from that loop only. `transport` is any httpx async transport.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        batch_size: int = 100,
        flush_interval: float = 1.0,
        max_queue: int = 10000,
        timeout: float | None = 10,
        max_retries: int = 5,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        on_error: OnError | None = None,
        on_full: OnFull = "raise",
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._config = make_config(
            base_url,
            api_key,
            batch_size=batch_size,
            flush_interval=flush_interval,
            max_queue=max_queue,
            timeout=timeout,
            max_retries=max_retries,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            on_full=on_full,
        )
        self._on_error = on_error
        self._http = httpx.AsyncClient(
            transport=transport, timeout=httpx.Timeout(timeout), headers=self._config.headers
        )
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self.retries = 0

        self._queue: deque[bytes] = deque()
        self._enqueued = 0
        self._taken = 0
        self._settled = 0
        self._flush_upto = 0
        self._oldest: float | None = None
        self._closed = False
        self._stopping = False
        self._wake = asyncio.Event()
        self._progress = asyncio.Condition()
        self._abort = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # --- the caller's side ---------------------------------------------------------------

    async def track(self, event: str, **fields: Any) -> str | None:
        """Queue one event; return its event_uuid (None if dropped by on_full="drop")."""
        event_uuid, data = encode_event(event, fields)
        if self._closed:
            raise TrackwayClientError("the client is closed")
        self._start()
        if len(self._queue) >= self._config.max_queue:
            if self._config.on_full == "raise":
                waiting = len(self._queue)
                raise QueueFullError(f"{waiting} events are waiting to be sent (max_queue)")
            self.dropped += 1
            log_drop(self.dropped, self._config.max_queue)
            return None
        self._queue.append(data)
        self._enqueued += 1
        if self._oldest is None:
            self._oldest = asyncio.get_running_loop().time()
            self._wake.set()  # the sender starts the flush_interval clock
        elif len(self._queue) >= self._config.batch_size:
            self._wake.set()
        return event_uuid

    async def identify(self, **fields: Any) -> str | None:
        """Queue an `identify` event."""
        return await self.track("identify", **fields)

    async def flush(self, timeout: float | None = None) -> bool:
        """Send everything queued so far now; wait until it is sent or given up. Return False
        if `timeout` seconds passed first."""
        self._not_on_sender("flush()")
        target = self._enqueued
        if self._settled >= target:
            return True
        self._start()
        self._flush_upto = max(self._flush_upto, target)
        self._wake.set()
        try:
            async with asyncio.timeout(timeout), self._progress:
                await self._progress.wait_for(lambda: self._settled >= target)
        except TimeoutError:
            return False
        return True

    async def aclose(self, timeout: float | None = None) -> None:
        """Flush, then stop the sender task and close the connections. If `timeout` seconds
        pass first, what is still unsent is given up (to on_error, or logged)."""
        self._not_on_sender("aclose()")
        if not self._closed:
            self._closed = True
            if not await self.flush(timeout):
                self._abort.set()
            self._stopping = True
            self._wake.set()
        if self._task is not None:
            await asyncio.shield(self._task)
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        self._start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return (
            f"<AsyncClient {self._config.url} sent={self.sent} failed={self.failed} "
            f"dropped={self.dropped} retries={self.retries} queued={len(self._queue)}>"
        )

    def _start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="trackway-client")

    def _not_on_sender(self, what: str) -> None:
        if self._task is not None and asyncio.current_task() is self._task:
            raise TrackwayClientError(f"{what} cannot be called from on_error")

    # --- the sender task -----------------------------------------------------------------

    async def _run(self) -> None:
        batch: list[bytes] = []
        try:
            while True:
                batch = await self._next_batch() or []
                if not batch:
                    return
                try:
                    if self._abort.is_set():
                        await self._give_up(decode_events(batch), CLOSED)
                    else:
                        await self._deliver(batch)
                except Exception as exc:  # the task must outlive any bug; events are reported
                    log.exception("unexpected error while sending %d event(s)", len(batch))
                    await self._give_up(decode_events(batch), exc)
                finally:
                    self._settled += len(batch)
                    async with self._progress:
                        self._progress.notify_all()
                batch = []
        except asyncio.CancelledError:
            # The loop is going away under us: say what is lost rather than lose it quietly.
            lost = [*batch, *self._queue]
            if lost:
                self.failed += len(lost)
                log_give_up(decode_events(lost), asyncio.CancelledError())
            self._settled += len(self._queue)
            self._queue.clear()
            raise

    async def _next_batch(self) -> list[bytes] | None:
        config = self._config
        loop = asyncio.get_running_loop()
        while True:
            waiting = len(self._queue)
            remaining: float | None = None
            if waiting:
                due = (
                    waiting >= config.batch_size
                    or self._stopping
                    or self._abort.is_set()
                    or self._flush_upto > self._taken
                )
                assert self._oldest is not None
                remaining = self._oldest + config.flush_interval - loop.time()
                if due or remaining <= 0:
                    size = min(waiting, config.batch_size)
                    batch = [self._queue.popleft() for _ in range(size)]
                    self._taken += size
                    if not self._queue:
                        self._oldest = None
                    return batch
            elif self._stopping:
                return None
            self._wake.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def _deliver(self, batch: list[bytes]) -> None:
        steps = delivery(batch, self._config.policy)
        reply: Any = None
        while True:
            try:
                step = steps.send(reply)
            except StopIteration:
                return
            reply = None
            if isinstance(step, Send):
                reply = await self._post(step.body)
            elif isinstance(step, Wait):
                reply = await self._sleep_unless_aborted(step.seconds)
                if not reply:
                    self.retries += 1
            elif isinstance(step, Delivered):
                self.sent += step.count
            elif isinstance(step, GiveUp):
                await self._give_up(step.events, step.reason)

    async def _sleep_unless_aborted(self, seconds: float) -> bool:
        try:
            async with asyncio.timeout(seconds):
                await self._abort.wait()
        except TimeoutError:
            return False
        return True

    async def _post(self, body: bytes) -> httpx.Response | BaseException:
        if self._abort.is_set():
            return CLOSED
        try:
            return await self._http.post(self._config.url, content=body)
        except Exception as exc:
            return exc

    async def _give_up(self, events: list[Any], reason: httpx.Response | BaseException) -> None:
        self.failed += len(events)
        if self._on_error is None:
            log_give_up(events, reason)
            return
        try:
            result = self._on_error(events, reason)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("on_error raised; %d event(s) given up", len(events))
