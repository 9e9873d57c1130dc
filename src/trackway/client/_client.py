"""Client: a background thread that sends queued events in batches."""

from __future__ import annotations

import atexit
import threading
import time
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


class Client:
    """Send events to a Trackway server in batches, from a background thread.

    `track()` and `identify()` only queue the event (stamped with an `event_uuid` and a
    `timestamp` unless given) and return at once. A daemon thread POSTs up to `batch_size`
    queued events to `/api/v1/bulkevents` as soon as that many are waiting, and at the latest
    `flush_interval` seconds after the oldest waiting event was queued.

    Failures:

    - Connection errors, timeouts, 429 and 5xx are retried up to `max_retries` times, after
      `backoff_base * 2**attempt` seconds with full jitter (capped at `backoff_max`), or after
      the server's `Retry-After` (also capped at `backoff_max`). A retry sends the same events
      with the same event_uuid, so an attempt that was stored but whose answer was lost is not
      stored twice.
    - A 400 partial answer is not retried: the accepted events are stored, the rejected ones
      are handed to `on_error(events, response)`.
    - A 413 (batch over the server's limits) splits the batch in halves and sends each.
    - Any other 4xx (401 bad key, 403, ...) is not retried.
    - Whatever is given up goes to `on_error(events, response_or_exception)`; `events` are the
      event dicts as sent. Without `on_error` it is logged at WARNING on the
      `trackway.client` logger. Nothing is dropped silently. `on_error` runs on the sender
      thread; exceptions it raises are logged.

    Full queue policy: at most `max_queue` events wait to be sent (the batch in flight does not
    count). When it is full, `on_full="raise"` (the default) makes `track()` raise
    `QueueFullError` and the caller decides; `on_full="drop"` drops the new event, counts it
    in `dropped`, logs a warning, and `track()` returns None.

    `flush()` blocks until every event queued before it is sent or given up. `close()` flushes,
    stops the thread and closes the connection pool; the client is also a context manager, and
    a client left open is closed at interpreter exit (waiting at most `timeout` seconds).

    Counters: `sent` (events stored), `failed` (events given up), `dropped` (refused by a full
    queue with on_full="drop"), `retries` (requests sent again).

    `transport` is any httpx transport (e.g. `httpx.MockTransport`) to use instead of the
    network.
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
        transport: httpx.BaseTransport | None = None,
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
        self._http = httpx.Client(
            transport=transport, timeout=httpx.Timeout(timeout), headers=self._config.headers
        )
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self.retries = 0

        # One lock; the sender waits on `_wake`, flush() on `_progress`.
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._progress = threading.Condition(self._lock)
        self._queue: deque[bytes] = deque()
        self._enqueued = 0  # events ever queued
        self._taken = 0  # events ever taken by the sender
        self._settled = 0  # events ever sent or given up (a prefix: one sender, FIFO)
        self._flush_upto = 0  # send without waiting until _taken reaches this
        self._oldest: float | None = None  # when the oldest waiting event was queued
        self._closed = False
        self._stopping = False
        self._abort = threading.Event()  # close() ran out of time: give up, do not wait

        self._thread = threading.Thread(target=self._run, name="trackway-client", daemon=True)
        self._thread.start()
        atexit.register(self._close_at_exit)

    # --- the caller's side ---------------------------------------------------------------

    def track(self, event: str, **fields: Any) -> str | None:
        """Queue one event; return its event_uuid (None if dropped by on_full="drop").

        Raises QueueFullError (on_full="raise") when `max_queue` events are waiting,
        TrackwayClientError after close(), TypeError/ValueError for a value that is not JSON.
        """
        event_uuid, data = encode_event(event, fields)
        with self._lock:
            if self._closed:
                raise TrackwayClientError("the client is closed")
            if len(self._queue) >= self._config.max_queue:
                if self._config.on_full == "raise":
                    raise QueueFullError(
                        f"{len(self._queue)} events are waiting to be sent (max_queue)"
                    )
                self.dropped += 1
                dropped = self.dropped
            else:
                self._queue.append(data)
                self._enqueued += 1
                if self._oldest is None:
                    self._oldest = time.monotonic()
                    self._wake.notify()  # the sender starts the flush_interval clock
                elif len(self._queue) >= self._config.batch_size:
                    self._wake.notify()
                return event_uuid
        log_drop(dropped, self._config.max_queue)
        return None

    def identify(self, **fields: Any) -> str | None:
        """Queue an `identify` event: the identifiers and attributes of a customer."""
        return self.track("identify", **fields)

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything queued so far now; block until it is sent or given up. Return
        False if `timeout` seconds passed first (the events stay queued)."""
        self._not_on_sender("flush()")
        with self._lock:
            target = self._enqueued
            if self._settled >= target:
                return True
            self._flush_upto = max(self._flush_upto, target)
            self._wake.notify()
            return self._progress.wait_for(lambda: self._settled >= target, timeout)

    def close(self, timeout: float | None = None) -> None:
        """Flush, then stop the sender thread and close the connections. If `timeout` seconds
        pass first, what is still unsent is given up (to on_error, or logged)."""
        self._not_on_sender("close()")
        with self._lock:
            if self._closed:
                already = True
            else:
                already = False
                self._closed = True
        if not already:
            if not self.flush(timeout):
                self._abort.set()
            with self._lock:
                self._stopping = True
                self._wake.notify()
        self._thread.join()
        self._http.close()
        atexit.unregister(self._close_at_exit)

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"<Client {self._config.url} sent={self.sent} failed={self.failed} "
            f"dropped={self.dropped} retries={self.retries} queued={len(self._queue)}>"
        )

    def _close_at_exit(self) -> None:
        self.close(timeout=self._config.timeout)

    def _not_on_sender(self, what: str) -> None:
        if threading.current_thread() is self._thread:
            raise TrackwayClientError(f"{what} cannot be called from on_error")

    # --- the sender thread ---------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._lock:
                batch = self._next_batch()
            if batch is None:
                return
            try:
                if self._abort.is_set():
                    self._give_up(decode_events(batch), CLOSED)
                else:
                    self._deliver(batch)
            except Exception as exc:  # the thread must outlive any bug; the events are reported
                log.exception("unexpected error while sending %d event(s)", len(batch))
                self._give_up(decode_events(batch), exc)
            finally:
                with self._lock:
                    self._settled += len(batch)
                    self._progress.notify_all()

    def _next_batch(self) -> list[bytes] | None:
        """Wait (holding the lock) until a batch is due; None when stopped and drained."""
        config = self._config
        while True:
            waiting = len(self._queue)
            if waiting:
                due = (
                    waiting >= config.batch_size
                    or self._stopping
                    or self._abort.is_set()
                    or self._flush_upto > self._taken
                )
                assert self._oldest is not None
                remaining = self._oldest + config.flush_interval - time.monotonic()
                if due or remaining <= 0:
                    size = min(waiting, config.batch_size)
                    batch = [self._queue.popleft() for _ in range(size)]
                    self._taken += size
                    if not self._queue:
                        self._oldest = None
                    return batch
                self._wake.wait(remaining)
            elif self._stopping:
                return None
            else:
                self._wake.wait()

    def _deliver(self, batch: list[bytes]) -> None:
        steps = delivery(batch, self._config.policy)
        reply: Any = None
        while True:
            try:
                step = steps.send(reply)
            except StopIteration:
                return
            reply = None
            if isinstance(step, Send):
                reply = self._post(step.body)
            elif isinstance(step, Wait):
                reply = self._abort.wait(step.seconds)
                if not reply:
                    self.retries += 1
            elif isinstance(step, Delivered):
                self.sent += step.count
            elif isinstance(step, GiveUp):
                self._give_up(step.events, step.reason)

    def _post(self, body: bytes) -> httpx.Response | BaseException:
        if self._abort.is_set():
            return CLOSED
        try:
            return self._http.post(self._config.url, content=body)
        except Exception as exc:
            return exc

    def _give_up(self, events: list[Any], reason: httpx.Response | BaseException) -> None:
        self.failed += len(events)
        if self._on_error is None:
            log_give_up(events, reason)
            return
        try:
            self._on_error(events, reason)
        except Exception:
            log.exception("on_error raised; %d event(s) given up", len(events))
