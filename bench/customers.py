#!/usr/bin/env python3
"""Customer search and timeline pages: p50 and p99 latency against a large store.

Loads N events (default 1,000,000) over C customers (default 100,000) into a fresh database
through the store's own ingest path (validation, identity, rollups). Every customer has a
customer_id `cust-N` and a cookie (32 hex digits); half also an email `user.N@example.com`, a
third a device_id. One customer, the "whale", has --whale-events more events, so that paging
deep into one long timeline is measured too. Then it starts `trackway serve` on the database
and times sequential requests of:

- `search first page`: `GET /api/v1/customers/search` without q, the newest 50;
- `search deep page`: the same, 20 pages in (each from the `next` cursor of the page before);
- `search customer_id`: q = a random `cust-NNN` (some 110 matches, 50 shown);
- `search email`: q = a random `USER.NNN` (upper case: emails match any case);
- `search cookie`: q = the first 6 hex digits of a random customer's cookie (about 1 match);
- `search short prefix`: q = `cust-1` (11,111 matches ordered by activity: the worst case,
  every match read from the index range and sorted);
- `timeline first page`: `GET /api/v1/customers/{uuid}/events` of a random customer;
- `timeline deep page`: the whale's timeline, a random page from up to 100 pages in.

Reports p50 and p99 (ms) per request kind, median over --runs passes.

    .venv/bin/python bench/customers.py                                 # SQLite, 1M / 100k
    scripts/with-postgres .venv/bin/python bench/customers.py --postgres
    .venv/bin/python bench/customers.py --events 200000 --customers 20000 --runs 1   # a check
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest import BIN, ROOT, commit, free_port, machine, publish, server
from reads import fresh_database, latency_rows

from trackway.domain.events import validate_event
from trackway.domain.keys import hash_key
from trackway.store import open_store

DAY_MS = 86_400_000
NAMES = ["view", "add_to_cart", "purchase", "search", "identify", "page_scrolled"]
USER_AGENT = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:126.0) Gecko/20100101 Firefox/126.0"
DEEP_SEARCH_PAGES = 20
DEEP_TIMELINE_PAGES = 100


def cookie_of(n: int) -> str:
    return random.Random(n).getrandbits(128).to_bytes(16, "big").hex()


def identifiers_of(n: int) -> dict[str, str]:
    found = {"customer_id": f"cust-{n}", "cookie": cookie_of(n)}
    if n % 2 == 0:
        found["email"] = f"user.{n}@example.com"
    if n % 3 == 0:
        found["device_id"] = f"dev-{n:08d}"
    return found


async def load(database: str, events: int, customers: int, whale_events: int, batch: int) -> float:
    """Fill the store: every customer once first (so there are `customers` profiles), then
    random customers, then the whale's events; return the load rate (events/s)."""
    store = open_store(database)
    await store.open()
    try:
        account = await store.create_account("bench", hash_key("bench-event"), hash_key("bench"))
        rng = random.Random(7)
        now = int(time.time() * 1000)
        started = time.perf_counter()
        total = events + whale_events

        def body(n: int) -> dict[str, Any]:
            return {
                "event": rng.choice(NAMES),
                **identifiers_of(n),
                "timestamp": (now - rng.randrange(90 * DAY_MS)) / 1000,
                "product_id": f"SKU-{rng.randrange(5000)}",
                "price": round(rng.uniform(1, 500), 2),
                "user_agent": USER_AGENT,
            }

        def who(i: int) -> int:
            if i >= events:
                return 0  # the whale: customer 0
            return i if i < customers else rng.randrange(customers)

        for first in range(0, total, batch):
            chunk = [
                validate_event(body(who(i)), now) for i in range(first, min(total, first + batch))
            ]
            await store.ingest(account, chunk)
            done = first + len(chunk)
            if done % (batch * 20) == 0 or done == total:
                rate = done / (time.perf_counter() - started)
                print(f"  loaded {done:,} events ({rate:,.0f}/s)", flush=True)
        return total / (time.perf_counter() - started)
    finally:
        await store.close()


def time_pages(url: str, user_key: str, customers: int, requests: int) -> dict[str, list[float]]:
    auth = {"Authorization": "Basic " + base64.b64encode(f"{user_key}:".encode()).decode()}
    rng = random.Random(11)
    timings: dict[str, list[float]] = {}
    with httpx.Client(base_url=url, headers=auth, timeout=30) as client:

        def get(path: str, **params: Any) -> dict[str, Any]:
            response = client.get(path, params=params)
            if response.status_code != 200:
                raise RuntimeError(f"{path}: {response.status_code} {response.text[:200]}")
            answer: dict[str, Any] = response.json()
            return answer

        search = "/api/v1/customers/search"
        cursors = [None]
        for _ in range(DEEP_SEARCH_PAGES):
            cursors.append(get(search, cursor=cursors[-1] or "")["next"])
        deep_search = cursors[-1]
        sample = rng.sample(range(customers), min(customers, 200))
        uuids = [
            get("/api/v1/customers", customer_id=f"cust-{n}")["customer"]["uuid"] for n in sample
        ]
        whale = get("/api/v1/customers", customer_id="cust-0")["customer"]["uuid"]
        befores = [None]
        for _ in range(DEEP_TIMELINE_PAGES):
            page = get(f"/api/v1/customers/{whale}/events", before=befores[-1] or "")
            if page["next"] is None:
                break
            befores.append(page["next"])
        print(f"  whale: {len(befores)} timeline pages of 50 measured", flush=True)

        calls: dict[str, Callable[[], dict[str, Any]]] = {
            "search first page": lambda: get(search),
            "search deep page": lambda: get(search, cursor=deep_search),
            "search customer_id": lambda: get(search, q=f"cust-{rng.randrange(100, 1000)}"),
            "search email": lambda: get(search, q=f"USER.{rng.randrange(100, 1000) * 2}"),
            "search cookie": lambda: get(search, q=cookie_of(rng.randrange(customers))[:6]),
            "search short prefix": lambda: get(search, q="cust-1"),
            "timeline first page": lambda: get(f"/api/v1/customers/{rng.choice(uuids)}/events"),
            "timeline deep page": lambda: get(
                f"/api/v1/customers/{whale}/events", before=rng.choice(befores) or ""
            ),
        }
        for name, call in calls.items():
            timings[name] = []
            for _ in range(requests):
                started = time.perf_counter()
                answer = call()
                timings[name].append((time.perf_counter() - started) * 1000)
            if name.startswith("search") and not answer["customers"]:
                raise RuntimeError(f"{name}: found nobody")
    return timings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--whale-events", type=int, default=20_000, help="customer 0's extra")
    parser.add_argument("--requests", type=int, default=300, help="per kind and pass")
    parser.add_argument("--runs", type=int, default=3, help="passes over the kinds")
    parser.add_argument("--batch", type=int, default=5_000, help="events per ingest call")
    parser.add_argument("--postgres", action="store_true", help="TRACKWAY_TEST_POSTGRES_URL")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="trackway-customers-") as tmp_name:
        tmp = Path(tmp_name)
        database = fresh_database(args.postgres, tmp)
        print(f"loading {args.events:,} events into {database.split('@')[-1]} …", flush=True)
        rate = asyncio.run(
            load(database, args.events, args.customers, args.whale_events, args.batch)
        )
        port = free_port()
        cmd = [str(BIN / "trackway"), "serve", "--port", str(port), "--database", database]
        cmd += ["--log-level", "warning"]
        passes = []
        with server(cmd, port, tmp / "server.log", ROOT):
            for run in range(args.runs):
                print(f"pass {run + 1}/{args.runs} …", flush=True)
                passes.append(
                    time_pages(f"http://127.0.0.1:{port}", "bench", args.customers, args.requests)
                )
    lines = [
        f"# Customer pages, {args.events:,} events + {args.whale_events:,} of one customer, "
        f"{args.customers:,} customers ({'PostgreSQL' if args.postgres else 'SQLite'})",
        "",
        "| request | p50 ms | p99 ms | p99 per pass | goal p99 < 50 ms |",
        "|---|---:|---:|---|---|",
    ]
    lines += latency_rows(passes)
    lines += [
        "",
        f"- load through the store's ingest path: {rate:,.0f} events/s ({args.batch:,} a call)",
        f"- {args.requests} sequential requests per kind and pass, {args.runs} passes, "
        "medians of the per-pass percentiles; 50 a page; client and server on the same machine",
        f"- command: `{' '.join(sys.argv)}`",
        f"- machine: {machine()}; commit {commit()}",
    ]
    publish("customers", "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
