#!/usr/bin/env python3
"""Read latency against a large store: history, show_events (timeline) and summary.json.

Loads N events (default 1,000,000) over 1,000 customers and 50 event names spread over 90 days
into a fresh database through the store's own ingest path (validation, identity, rollups), then
starts `trackway serve` on it and times sequential requests of each read with random
parameters, reporting p50 and p99 (ms) per endpoint, median over --runs passes.

    .venv/bin/python bench/reads.py                       # SQLite, 1M events
    scripts/with-postgres .venv/bin/python bench/reads.py --postgres --events 200000
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest import BIN, ROOT, commit, free_port, machine, publish, server

from trackway.domain.events import validate_event
from trackway.domain.keys import hash_key
from trackway.store import open_store

DAY_MS = 86_400_000
NAMES = [f"event_{i:02d}" for i in range(46)] + ["view", "add_to_cart", "purchase", "identify"]


def fresh_database(postgres: bool, tmp: Path) -> str:
    if not postgres:
        return f"sqlite:///{tmp}/reads.db"
    import psycopg

    base = os.environ["TRACKWAY_TEST_POSTGRES_URL"]
    name = "reads_" + uuid.uuid4().hex[:10]
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return base.rsplit("/", 1)[0] + "/" + name


async def load(database: str, events: int, customers: int, batch: int) -> tuple[str, float]:
    """Fill the store; return the account's user key and the load rate (events/s)."""
    store = open_store(database)
    await store.open()
    try:
        account = await store.create_account("bench", hash_key("bench-event"), hash_key("bench"))
        rng = random.Random(7)
        now = int(time.time() * 1000)
        started = time.perf_counter()
        for first in range(0, events, batch):
            chunk = []
            for _ in range(min(batch, events - first)):
                body = {
                    "event": rng.choice(NAMES),
                    "customer_id": f"cust-{rng.randrange(customers)}",
                    "timestamp": (now - rng.randrange(90 * DAY_MS)) / 1000,
                    "product_id": f"SKU-{rng.randrange(5000)}",
                    "price": round(rng.uniform(1, 500), 2),
                    "user_agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:126.0) "
                    "Gecko/20100101 Firefox/126.0",
                }
                chunk.append(validate_event(body, now))
            await store.ingest(account, chunk)
            done = first + len(chunk)
            if done % (batch * 20) == 0 or done == events:
                rate = done / (time.perf_counter() - started)
                print(f"  loaded {done:,} events ({rate:,.0f}/s)", flush=True)
        return "bench", events / (time.perf_counter() - started)
    finally:
        await store.close()


def days_ago(days: int) -> str:
    return time.strftime("%Y-%m-%dT00:00:00Z", time.gmtime(time.time() - days * 86400))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def time_reads(
    url: str,
    user_key: str,
    customers: int,
    requests: int,
    names: list[str] | None = None,
    now: float | None = None,
) -> dict[str, list[float]]:
    """Per endpoint, the latency (ms) of `requests` sequential calls. `names`: the event names
    stored (default NAMES); `now`: the end of the stored history in Unix seconds (default the
    present), so that summary's random 7-day windows fall on stored days."""
    names = names or NAMES
    now = time.time() if now is None else now
    auth = {"Authorization": "Basic " + base64.b64encode(f"{user_key}:".encode()).decode()}
    rng = random.Random(11)
    timings: dict[str, list[float]] = {"history": [], "show_events": [], "summary": []}
    with httpx.Client(base_url=url, headers=auth, timeout=30) as client:
        uuids = []
        for i in rng.sample(range(customers), min(customers, 200)):
            found = client.get("/api/v1/customers", params={"customer_id": f"cust-{i}"})
            found.raise_for_status()
            uuids.append(found.json()["customer"]["uuid"])
        calls = {
            "history": lambda: client.get(
                "/api/v1/event/history", params={"event_name": rng.choice(names)}
            ),
            "show_events": lambda: client.get(
                "/api/v1/customer_search/show_events", params={"uuid": rng.choice(uuids)}
            ),
            "summary": lambda: client.post(
                "/api/v1/event/summary.json",
                params={
                    "timestamp_start": time.strftime(
                        "%Y-%m-%dT00:00:00Z",
                        time.gmtime(now - rng.randrange(1, 90) * 86400),
                    )
                },
            ),
        }
        for name, call in calls.items():
            for _ in range(requests):
                started = time.perf_counter()
                response = call()
                elapsed = (time.perf_counter() - started) * 1000
                if response.status_code != 200:
                    raise RuntimeError(f"{name}: {response.status_code} {response.text[:200]}")
                timings[name].append(elapsed)
    return timings


def latency_rows(passes: list[dict[str, list[float]]]) -> list[str]:
    """Table rows of each request kind: medians over the passes of p50 and p99 (ms), each
    pass's p99, and the 50 ms goal."""
    rows = []
    for name in passes[0]:
        p50 = statistics.median(percentile(p[name], 0.50) for p in passes)
        p99s = [percentile(p[name], 0.99) for p in passes]
        p99 = statistics.median(p99s)
        rows.append(
            f"| {name} | {p50:.2f} | {p99:.2f} | {' / '.join(f'{v:.1f}' for v in p99s)} "
            f"| {'met' if p99 < 50 else 'MISSED'} |"
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=1_000)
    parser.add_argument("--requests", type=int, default=300, help="per endpoint and pass")
    parser.add_argument("--runs", type=int, default=3, help="passes over the endpoints")
    parser.add_argument("--batch", type=int, default=5_000, help="events per ingest call")
    parser.add_argument("--postgres", action="store_true", help="TRACKWAY_TEST_POSTGRES_URL")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="trackway-reads-") as tmp_name:
        tmp = Path(tmp_name)
        database = fresh_database(args.postgres, tmp)
        print(f"loading {args.events:,} events into {database.split('@')[-1]} …", flush=True)
        _, rate = asyncio.run(load(database, args.events, args.customers, args.batch))
        size = ""
        if not args.postgres:
            db = tmp / "reads.db"
            total = sum(p.stat().st_size for p in tmp.glob("reads.db*"))
            size = f"{total / args.events:,.0f} bytes/event ({total / 2**20:,.0f} MiB, {db.name})"
        port = free_port()
        cmd = [str(BIN / "trackway"), "serve", "--port", str(port), "--database", database]
        cmd += ["--log-level", "warning", "--show-events-per-hour", "100000000"]
        passes = []
        with server(cmd, port, tmp / "server.log", ROOT):
            for run in range(args.runs):
                print(f"pass {run + 1}/{args.runs} …", flush=True)
                passes.append(
                    time_reads(f"http://127.0.0.1:{port}", "bench", args.customers, args.requests)
                )
    lines = [
        f"# Read latency, {args.events:,} events, {args.customers:,} customers, "
        f"{len(NAMES)} names, 90 days ({'PostgreSQL' if args.postgres else 'SQLite'})",
        "",
        "| endpoint | p50 ms | p99 ms | p99 per pass | goal p99 < 50 ms |",
        "|---|---:|---:|---|---|",
    ]
    lines += latency_rows(passes)
    lines += [
        "",
        f"- load through the store's ingest path: {rate:,.0f} events/s ({args.batch:,} a call)",
        f"- database size: {size or 'n/a (PostgreSQL)'}",
        f"- {args.requests} sequential requests per endpoint and pass, {args.runs} passes, "
        "medians of the per-pass percentiles; client and server on the same machine",
        f"- command: `{' '.join(sys.argv)}`",
        f"- machine: {machine()}; commit {commit()}",
    ]
    publish("reads", "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
