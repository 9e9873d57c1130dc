#!/usr/bin/env python3
"""Import speed: `trackway import` of a generated NDJSON history into a fresh database, events/s,
median of several runs. See bench/README.md."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
OUT = BENCH / "out"
BIN = Path(sys.executable).parent
GOAL = 150_000  # events/s on SQLite (issue 9)

STANDARD = ["view", "add_to_cart", "remove_from_cart", "checkout", "purchase", "search"]
CUSTOM = [f"custom_{i:02d}" for i in range(50 - len(STANDARD) - 1)]
CATEGORIES = ["shoes", "shirts", "bags", "hats", "socks", "coats", "belts", "watches"]
DAY_MS = 86_400_000


RSS = False


def trackway() -> list[str]:
    script = BIN / "trackway"
    return [str(script)] if script.exists() else [sys.executable, "-m", "trackway.cli"]


def generate(path: Path, events: int, customers: int, days: int, seed: int = 1) -> None:
    """A realistic history: `customers` customers, 50 event names (identify, 6 standard, 43
    custom), over `days` days; each customer identifies once (customer_id, email, device), then
    most events carry customer_id, some only email or device_id. Attribute types are the same
    for a name everywhere, as a real tracker's would be. About 1 event in 4 has an event_uuid;
    the others get one derived from their line."""
    rng = random.Random(seed)
    end_ms = int(datetime.datetime(2024, 6, 1, tzinfo=datetime.UTC).timestamp() * 1000)
    start_ms = end_ms - days * DAY_MS
    names = STANDARD * 6 + CUSTOM  # standard names are the common ones
    lines = []
    for c in range(customers):
        lines.append(
            {
                "event": "identify",
                "customer_id": f"cust-{c}",
                "email": f"customer{c}@example.com",
                "device_id": f"dev-{c:06d}",
                "first_name": f"Name{c}",
                "plan": rng.choice(["free", "pro", "team"]),
                "timestamp_ms": start_ms + rng.randrange(DAY_MS),
            }
        )
    for _ in range(events - customers):
        c = rng.randrange(customers)
        name = rng.choice(names)
        ts = start_ms + rng.randrange(days * DAY_MS)
        event: dict[str, object] = {"event": name}
        who = rng.random()
        if who < 0.8:
            event["customer_id"] = f"cust-{c}"
        elif who < 0.9:
            event["email"] = f"customer{c}@example.com"
        else:
            event["device_id"] = f"dev-{c:06d}"
        if name in STANDARD:
            p = rng.randrange(5000)
            event.update(
                product_id=f"SKU-{p}",
                category=CATEGORIES[p % len(CATEGORIES)],
                price=round(5 + p % 200 + 0.99, 2),
                currency="USD",
                in_stock=p % 7 != 0,
                page_url=f"https://shop.example.com/p/{p}?ref=home",
            )
        else:
            event.update(score=rng.randrange(100), label=f"{name}-{rng.randrange(10)}")
        if rng.random() < 0.25:
            event["event_uuid"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        event["timestamp_ms"] = ts
        lines.append(event)
    # A history comes roughly in time order.
    lines.sort(key=lambda e: e["timestamp_ms"])  # type: ignore[arg-type, return-value]
    with open(path, "w") as f:
        for event in lines:
            ms = event.pop("timestamp_ms")
            assert isinstance(ms, int)
            event["timestamp"] = (
                datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).isoformat(
                    timespec="milliseconds"
                )[:-6]
                + "Z"
            )
            f.write(json.dumps(event, separators=(",", ":")) + "\n")


def fresh_database(directory: Path, run: int, postgres: str | None) -> str:
    if postgres is None:
        return "sqlite:///" + str(directory / f"run{run}" / "trackway.db")
    import psycopg

    name = f"trackway_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return postgres.rsplit("/", 1)[0] + "/" + name


def import_once(source: Path, database: str, profile: Path | None) -> tuple[dict, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKWAY_")}
    subprocess.run(
        [*trackway(), "accounts", "create", "bench", "--database", database],
        check=True,
        capture_output=True,
        env=env,
    )
    command = [*trackway(), "import", str(source), "--account", "bench"]
    command += ["--database", database, "--json"]
    if profile is not None:
        command = [str(BIN / "py-spy"), "record", "--nonblocking", "--threads", "--rate", "100",
                   "--format", "speedscope", "--output", str(profile), "--", *command]  # fmt: skip
    if RSS:
        command = ["/usr/bin/time", "-v", *command]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"trackway import exited {result.returncode}:\n{result.stderr}")
    if RSS:
        peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr)
        print(f"peak RSS (GNU time -v): {int(peak[1]) / 1024:.0f} MiB" if peak else "no RSS",
              file=sys.stderr)  # fmt: skip
    # The summary is the last JSON line (py-spy, when profiling, prints lines of its own).
    summary = json.loads([x for x in result.stdout.splitlines() if x.startswith("{")][-1])
    return summary, wall


def machine() -> str:
    mem = re.search(r"MemTotal:\s*(\d+) kB", Path("/proc/meminfo").read_text())
    gib = int(mem[1]) / 2**20 if mem else 0.0
    load = Path("/proc/loadavg").read_text().split()[:3]
    return f"{os.cpu_count()} CPUs, {gib:.1f} GiB RAM, load average {' '.join(load)} at start"


def commit() -> str:
    git = ["git", "-C", str(ROOT)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run([*git, "status", "--porcelain", "src"], capture_output=True, text=True)
    return head.stdout.strip() + (" (src/ has uncommitted changes)" if dirty.stdout else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--postgres", metavar="URL", help="import into fresh databases on this server instead"
    )
    parser.add_argument(
        "--profile", action="store_true", help="py-spy the last run (speedscope JSON in bench/out)"
    )
    parser.add_argument(
        "--rss", action="store_true", help="run each import under GNU time -v: its peak RSS"
    )
    args = parser.parse_args()
    global RSS
    RSS = args.rss
    OUT.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    header = machine()
    with tempfile.TemporaryDirectory(prefix="trackway-import-") as tmp:
        source = Path(tmp) / "history.ndjson"
        started = time.perf_counter()
        generate(source, args.events, args.customers, args.days)
        size = source.stat().st_size
        print(
            f"generated {args.events:,} events ({size / 2**20:.0f} MiB) in "
            f"{time.perf_counter() - started:.1f} s",
            file=sys.stderr,
        )
        rows = []
        for run in range(1, args.runs + 1):
            database = fresh_database(Path(tmp), run, args.postgres)
            profile = OUT / f"import-{stamp}.speedscope.json" if (
                args.profile and run == args.runs
            ) else None  # fmt: skip
            summary, wall = import_once(source, database, profile)
            if summary["accepted"] != args.events:
                sys.exit(f"run {run}: {summary['accepted']} accepted of {args.events}: {summary}")
            rows.append((summary["seconds"], summary["events_per_second"], wall))
            print(
                f"run {run}: {summary['events_per_second']:,} events/s "
                f"({summary['seconds']:.2f} s importing, {wall:.2f} s with start-up)"
                + (" (py-spy)" if profile else ""),
                file=sys.stderr,
            )
    median_rate = statistics.median(r[1] for r in rows)
    median_wall = statistics.median(args.events / r[2] for r in rows)
    backend = "PostgreSQL" if args.postgres else "SQLite"
    lines = [
        f"## trackway import, {args.events:,} events ({args.customers:,} customers, "
        f"50 event names, {args.days} days), {backend}",
        "",
        "| run | import s | events/s | events/s incl. start-up |",
        "|---|---|---|---|",
        *(
            f"| {i} | {s:.2f} | {rate:,} | {args.events / wall:,.0f} |"
            for i, (s, rate, wall) in enumerate(rows, 1)
        ),
        f"| **median** | | **{median_rate:,.0f}** | {median_wall:,.0f} |",
        "",
        f"Goal (SQLite): ≥ {GOAL:,} events/s — "
        + ("met" if median_rate >= GOAL else f"missed ({median_rate / GOAL:.2f}x the goal)"),
        "",
        f"Command: `{' '.join([Path(sys.executable).name, *sys.argv])}`  ",
        f"Machine: {header}  ",
        f"Commit: {commit()}  ",
        f"Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
    ]
    text = "\n".join(lines) + "\n"
    (OUT / f"import-{stamp}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
