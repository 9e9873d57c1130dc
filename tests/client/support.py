"""A proxy transport for the client tests: it forwards to the real server through a real httpx
transport, records every exchange, and can play a scripted fault on the first requests (an
answer of its own, a refused connection, or an answer lost after the server stored the batch).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from conftest import Account, query


@dataclass(frozen=True)
class Reply:
    """Answer this status (and Retry-After) without forwarding: nothing reaches the server."""

    status: int
    retry_after: str | None = None


@dataclass(frozen=True)
class Refuse:
    """Raise ConnectError without forwarding: nothing reaches the server."""


@dataclass(frozen=True)
class LoseAnswer:
    """Forward to the server (which stores the batch), then raise ReadTimeout: the client
    never learns that the attempt succeeded."""


Fault = Reply | Refuse | LoseAnswer


@dataclass
class Exchange:
    at: float  # time.monotonic() when the request reached the proxy
    uuids: list[str]
    fault: Fault | None
    status: int | None = None  # what the client was answered; None when it got an exception
    server_status: int | None = None  # what the real server answered, when forwarded

    @property
    def size(self) -> int:
        return len(self.uuids)


class ProxyTransport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """Both a sync and an async httpx transport, so one class serves Client and AsyncClient."""

    def __init__(self, *faults: Fault) -> None:
        self.faults: deque[Fault] = deque(faults)
        self.exchanges: list[Exchange] = []
        self._lock = threading.Lock()
        self._sync: httpx.HTTPTransport | None = None
        self._async: httpx.AsyncHTTPTransport | None = None

    def _begin(self, request: httpx.Request) -> Exchange:
        body = json.loads(request.content)
        uuids = [event.get("event_uuid") for event in body["events"]]
        with self._lock:
            fault = self.faults.popleft() if self.faults else None
            exchange = Exchange(time.monotonic(), uuids, fault)
            self.exchanges.append(exchange)
        return exchange

    @staticmethod
    def _own_answer(exchange: Exchange, request: httpx.Request) -> httpx.Response:
        fault = exchange.fault
        if isinstance(fault, Refuse):
            raise httpx.ConnectError("connection refused (scripted)", request=request)
        assert isinstance(fault, Reply)
        exchange.status = fault.status
        headers = {"retry-after": fault.retry_after} if fault.retry_after is not None else {}
        return httpx.Response(
            fault.status, headers=headers, json={"message": "scripted"}, request=request
        )

    @staticmethod
    def _after_forward(
        exchange: Exchange, request: httpx.Request, response: httpx.Response
    ) -> httpx.Response:
        exchange.server_status = response.status_code
        if isinstance(exchange.fault, LoseAnswer):
            raise httpx.ReadTimeout("answer lost (scripted)", request=request)
        exchange.status = response.status_code
        return response

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        exchange = self._begin(request)
        if isinstance(exchange.fault, Reply | Refuse):
            return self._own_answer(exchange, request)
        if self._sync is None:
            self._sync = httpx.HTTPTransport()
        response = self._sync.handle_request(request)
        response.read()
        return self._after_forward(exchange, request, response)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        exchange = self._begin(request)
        if isinstance(exchange.fault, Reply | Refuse):
            return self._own_answer(exchange, request)
        if self._async is None:
            self._async = httpx.AsyncHTTPTransport()
        response = await self._async.handle_async_request(request)
        await response.aread()
        return self._after_forward(exchange, request, response)

    def close(self) -> None:
        if self._sync is not None:
            self._sync.close()

    async def aclose(self) -> None:
        if self._async is not None:
            await self._async.aclose()

    @property
    def sizes(self) -> list[int]:
        return [e.size for e in self.exchanges]

    @property
    def statuses(self) -> list[int | None]:
        return [e.status for e in self.exchanges]


class GiveUps:
    """An on_error callback that keeps what it is handed (from the sender thread or task)."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[dict[str, Any]], httpx.Response | BaseException]] = []
        self._lock = threading.Lock()

    def __call__(self, events: list[dict[str, Any]], reason: Any) -> None:
        with self._lock:
            self.calls.append((events, reason))

    @property
    def uuids(self) -> list[str]:
        return [e["event_uuid"] for events, _ in self.calls for e in events]


def stored_counts(account: Account) -> Counter[str]:
    """event_uuid → number of rows stored for it in the account."""
    rows = query(
        account.db_path,
        "SELECT event_uuid, COUNT(*) AS n FROM events WHERE account_id = ? GROUP BY event_uuid",
        [account.id],
    )
    return Counter({r["event_uuid"]: r["n"] for r in rows})


def assert_stored_once(account: Account, uuids: list[str]) -> None:
    """Exactly these events are stored, each in one row, and counted once in the rollup."""
    counts = stored_counts(account)
    assert set(counts) == set(uuids), (
        f"missing {len(set(uuids) - set(counts))}, unexpected {len(set(counts) - set(uuids))}"
    )
    assert max(counts.values()) == 1, f"duplicates: {[u for u, n in counts.items() if n > 1]}"
    assert sum(account.event_daily().values()) == len(uuids)


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()
