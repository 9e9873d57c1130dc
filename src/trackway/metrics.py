"""Prometheus metrics, counted in every worker process and exposed together at /metrics.

With several workers, `trackway serve` points PROMETHEUS_MULTIPROC_DIR at a fresh directory
before the workers start, so that each process writes its samples there and /metrics sums
them (prometheus-client's multiprocess mode).
"""

from __future__ import annotations

import asyncio
import os
from functools import lru_cache

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

REQUESTS = Counter(
    "trackway_http_requests", "HTTP requests answered, by route and status.",
    ["route", "method", "status"],
)  # fmt: skip
EVENTS_ACCEPTED = Counter("trackway_events_accepted", "Events stored (duplicates not counted).")
EVENTS_DUPLICATE = Counter("trackway_events_duplicate", "Events answered as already stored.")
EVENTS_REJECTED = Counter(
    "trackway_events_rejected", "Events rejected, by error type.", ["error_type"]
)
COMMIT_EVENTS = Histogram(
    "trackway_group_commit_events", "Events written per group commit.",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 20000),
)  # fmt: skip
COMMIT_SECONDS = Histogram(
    "trackway_group_commit_seconds", "Duration of one group commit, lookups to fsync.",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5),
)  # fmt: skip


@lru_cache(maxsize=1024)
def request_counter(route: str, method: str, status: int) -> Counter:
    return REQUESTS.labels(route, method, str(status))


def count_request(route: str, method: str, status: int) -> None:
    request_counter(route, method, status).inc()


class RequestTally:
    """Requests answered on the ingest paths, and the events the writer process stored for
    them, tallied in dicts and added to their counters once per turn of the event loop: a
    counter's inc takes a lock (and in multiprocess mode writes the process's shared file),
    which costs more than the tally. /metrics flushes the tally of its own process first;
    another worker's is at most one loop turn behind. Called on the event loop's thread only."""

    def __init__(self) -> None:
        self.pending: dict[tuple[str, str, int], int] = {}
        self.counts: dict[Counter, int] = {}

    def add(self, route: str, method: str, status: int) -> None:
        pending = self.pending
        key = (route, method, status)
        count = pending.get(key)
        if count is None:
            if not pending and not self.counts:
                asyncio.get_running_loop().call_soon(self.flush)
            pending[key] = 1
        else:
            pending[key] = count + 1

    def count(self, counter: Counter, amount: int) -> None:
        """`counter.inc(amount)`, at the end of this turn of the loop."""
        counts = self.counts
        count = counts.get(counter)
        if count is None:
            if not counts and not self.pending:
                asyncio.get_running_loop().call_soon(self.flush)
            counts[counter] = amount
        else:
            counts[counter] = count + amount

    def flush(self) -> None:
        pending, self.pending = self.pending, {}
        for (route, method, status), count in pending.items():
            request_counter(route, method, status).inc(count)
        if self.counts:
            counts, self.counts = self.counts, {}
            for counter, amount in counts.items():
                counter.inc(amount)


REQUEST_TALLY = RequestTally()


@lru_cache(maxsize=64)
def _rejected_counter(error_type: str) -> Counter:
    return EVENTS_REJECTED.labels(error_type)


def count_rejected(error_type: str, n: int = 1) -> None:
    _rejected_counter(error_type).inc(n)


def observe_commit(events: int, stored: int, duplicates: int, seconds: float) -> None:
    COMMIT_EVENTS.observe(events)
    COMMIT_SECONDS.observe(seconds)
    if stored:
        EVENTS_ACCEPTED.inc(stored)
    if duplicates:
        EVENTS_DUPLICATE.inc(duplicates)


def exposition() -> tuple[bytes, str]:
    """The text of /metrics: every process's samples when in multiprocess mode."""
    REQUEST_TALLY.flush()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
