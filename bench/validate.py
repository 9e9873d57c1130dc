#!/usr/bin/env python3
"""Validation and uuid generation, per event, for bench/ingest.py's body: the part of the
request path that is Trackway's own rules (issue 14's goal: at most 3 µs per event).

    .venv/bin/python bench/validate.py                  # µs per event, medians of 5 runs
    .venv/bin/python bench/validate.py --instructions   # + instructions per event (valgrind)

Each figure is the median of --runs passes over 20,000 bodies (customer ids and products
varying as wrk sends them). `--instructions` also counts CPU instructions per event with
valgrind's callgrind (the difference between a run of N events and one of none, over N):
unlike time, that count does not move with what else the machine is doing.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from ingest import commit, machine, publish  # noqa: E402

from trackway.domain import events  # noqa: E402

RECEIVED_MS = 1_764_000_000_000
BODIES = 20_000


def bench_bodies(count: int) -> list[bytes]:
    """The body bench/ingest.py's wrk script sends, with its counters."""
    return [
        (
            f'{{"event":"view","customer_id":"bench-0-{i % 20000}","product_id":"SKU-{i % 997}",'
            '"category":"shoes","price":59.9,"currency":"USD","in_stock":true,'
            f'"page_url":"https://shop.example.com/p/{i % 997}?ref=home"}}'
        ).encode()
        for i in range(count)
    ]


def parts(raw: list[bytes]) -> dict[str, Callable[[int], Any]]:
    decoded = [events.parse_json_object(b) for b in raw]
    # Run against an older checkout too (the figures before a change): it may lack the fast
    # path (every rule is then validate_event itself) and take no time for the uuid.
    check_every_rule = getattr(events, "_check_every_rule", None)

    def every_rule(i: int) -> Any:
        if check_every_rule is None:
            return events.validate_event(decoded[i], RECEIVED_MS)
        return check_every_rule(decoded[i], RECEIVED_MS, None, True, events.MAX_AHEAD_MS)

    try:
        events.new_event_uuid(RECEIVED_MS)  # type: ignore[call-arg]
        uuid = lambda i: events.new_event_uuid(RECEIVED_MS)  # type: ignore[call-arg]  # noqa: E731
    except TypeError:
        uuid = lambda i: events.new_event_uuid()  # noqa: E731

    return {
        "decode (msgspec, JSON → dict)": lambda i: events.parse_json_object(raw[i]),
        "uuid (Uuid7)": uuid,
        "validate_event (rules, typing, uuid)": lambda i: events.validate_event(
            decoded[i], RECEIVED_MS
        ),
        "every rule one by one (the full path)": every_rule,
        "decode + validate (decode_event_body)": lambda i: events.decode_event_body(
            raw[i], RECEIVED_MS
        ),
    }


def time_part(fn: Callable[[int], Any], count: int, runs: int) -> float:
    for i in range(min(count, 2000)):
        fn(i)
    passes = []
    for _ in range(runs):
        started = time.perf_counter()
        for i in range(count):
            fn(i)
        passes.append((time.perf_counter() - started) / count * 1e6)
    return statistics.median(passes)


def instructions(name: str, count: int) -> float:
    """Instructions per event of part `name` (callgrind, N events minus none)."""

    def total(n: int) -> int:
        done = subprocess.run(
            ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
             __file__, "--one", name, "--count", str(n)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        found = re.search(r"Collected : (\d+)", done.stderr)
        if found is None:
            raise RuntimeError(done.stderr[-2000:])
        return int(found[1])

    return (total(count) - total(0)) / count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--instructions", action="store_true", help="also count them (valgrind)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # one part, for --instructions
    args = parser.parse_args()
    # As many bodies whatever --count: the two runs of --instructions differ only in calls.
    raw = bench_bodies(max(args.count, BODIES))
    table = parts(raw)
    if args.one is not None:
        fn = table[args.one]
        for i in range(2000):  # the same warm-up in both runs: it cancels out
            fn(i)
        for i in range(args.count):
            fn(i)
        return 0
    load = machine()
    lines = ["| part | µs per event (median) | instructions per event |", "|---|---:|---:|"]
    for name, fn in table.items():
        micro = time_part(fn, args.count, args.runs)
        count = f"{instructions(name, 5000):,.0f}" if args.instructions else "-"
        lines.append(f"| {name} | {micro:.2f} | {count} |")
    lines += [
        "",
        "- body: bench/ingest.py's `view` event (customer_id, product, category, price, "
        "currency, a boolean, a page URL), no event_uuid",
        f"- {args.runs} passes over {args.count:,} bodies; goal (issue 14): validate_event at "
        "most 3 µs per event",
        f"- command: `{' '.join(['.venv/bin/python', 'bench/validate.py', *sys.argv[1:]])}`",
        f"- machine: {load}; python {sys.version.split()[0]}",
        f"- commit: {commit()}",
    ]
    publish("validate", "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
