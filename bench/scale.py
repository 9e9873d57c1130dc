#!/usr/bin/env python3
"""Ingest throughput by backend and worker count, in one run: SQLite with 1 worker, PostgreSQL
with 1, 2 and 4 workers, and the bare ASGI ceiling with 1. Single-event POSTs from wrk, as in
bench/ingest.py (whose helpers this reuses).

Needs a PostgreSQL server: run it under scripts/with-postgres, which sets
TRACKWAY_TEST_POSTGRES_URL; each configuration gets a fresh database on that server.

    scripts/with-postgres .venv/bin/python bench/scale.py --runs 3 --duration 8
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest import (
    BENCH,
    BIN,
    CUSTOMERS_PER_THREAD,
    LUA,
    ROOT,
    WARMUP_S,
    Wrk,
    commit,
    free_port,
    machine,
    publish,
    run_wrk,
    server,
)


def fresh_postgres(base_url: str) -> str:
    import psycopg

    name = "bench_" + uuid.uuid4().hex[:10]
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return base_url.rsplit("/", 1)[0] + "/" + name


def measure(database: str, workers: int, args: argparse.Namespace, tmp: Path) -> Wrk:
    trackway = str(BIN / "trackway")
    created = subprocess.run(
        [trackway, "accounts", "create", "bench", "--json", "--database", database],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    key = json.loads(created.stdout)["event_api_key"]
    lua = tmp / f"event-{uuid.uuid4().hex[:6]}.lua"
    auth = base64.b64encode(f"{key}:".encode()).decode()
    lua.write_text(LUA % {"auth": auth, "customers": CUSTOMERS_PER_THREAD})
    port = free_port()
    cmd = [trackway, "serve", "--workers", str(workers), "--port", str(port)]
    cmd += ["--database", database, "--log-level", "warning"]
    with server(cmd, port, tmp / "server.log", ROOT):
        run_wrk(port, lua, WARMUP_S, args.connections)
        result = run_wrk(port, lua, args.duration, args.connections)
    if result.non_2xx:
        print(f"!!! {result.non_2xx} non-2xx answers from {database} x{workers}", file=sys.stderr)
    return result


def measure_bare(args: argparse.Namespace, tmp: Path) -> Wrk:
    lua = tmp / "bare.lua"
    lua.write_text(LUA % {"auth": "", "customers": CUSTOMERS_PER_THREAD})
    port = free_port()
    cmd = [str(BIN / "uvicorn"), "bare_app:app", "--loop", "uvloop", "--http", "httptools"]
    cmd += ["--no-access-log", "--no-server-header", "--log-level", "warning", "--port", str(port)]
    with server(cmd, port, tmp / "bare.log", BENCH):
        run_wrk(port, lua, WARMUP_S, args.connections)
        return run_wrk(port, lua, args.duration, args.connections)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=int, default=8, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    pg = os.environ.get("TRACKWAY_TEST_POSTGRES_URL")
    if not pg:
        print("run under scripts/with-postgres (TRACKWAY_TEST_POSTGRES_URL is not set)")
        return 2
    configs = [("bare ASGI", None, 1), ("SQLite", "sqlite", 1)]
    configs += [("PostgreSQL", "postgresql", n) for n in (1, 2, 4)]
    results: dict[tuple[str, int], list[Wrk]] = {(name, n): [] for name, _, n in configs}
    with tempfile.TemporaryDirectory(prefix="trackway-scale-") as tmp_name:
        tmp = Path(tmp_name)
        for run in range(1, args.runs + 1):
            for name, backend, workers in configs:
                print(f"run {run}/{args.runs}: {name} x{workers} …", flush=True)
                work = Path(tempfile.mkdtemp(dir=tmp))
                if backend is None:
                    results[(name, workers)].append(measure_bare(args, work))
                    continue
                database = (
                    f"sqlite:///{work}/bench.db" if backend == "sqlite" else fresh_postgres(pg)
                )
                results[(name, workers)].append(measure(database, workers, args, work))
    bare = statistics.median(w.rps for w in results[("bare ASGI", 1)])
    sqlite1 = statistics.median(w.rps for w in results[("SQLite", 1)])
    lines = [
        f"# Ingest by backend and workers, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        "| backend | workers | events/s (median) | runs | p50 ms | p99 ms | vs bare "
        "| vs SQLite x1 |",
        "|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for (name, workers), runs in results.items():
        rps = statistics.median(w.rps for w in runs)
        lines.append(
            f"| {name} | {workers} | {rps:,.0f} | {' / '.join(f'{w.rps:,.0f}' for w in runs)} "
            f"| {statistics.median(w.p50_ms for w in runs):.2f} "
            f"| {statistics.median(w.p99_ms for w in runs):.2f} "
            f"| {rps / bare:.2f}x | {rps / sqlite1:.2f}x |"
        )
    non_2xx = sum(w.non_2xx for runs in results.values() for w in runs)
    # Within one run the two are measured a minute apart: on a shared machine whose speed drifts,
    # their ratio run by run is steadier than the ratio of the medians.
    ratios = [
        pg.rps / lite.rps
        for pg, lite in zip(results[("PostgreSQL", 2)], results[("SQLite", 1)], strict=True)
    ]
    lines += [
        "",
        f"- PostgreSQL x2 / SQLite x1, run by run: {' / '.join(f'{r:.2f}x' for r in ratios)} "
        f"(median {statistics.median(ratios):.2f}x)",
        f"- non-2xx answers: {non_2xx}",
        f"- command: `scripts/with-postgres .venv/bin/python bench/scale.py --runs {args.runs} "
        f"--duration {args.duration}` (wrk -t2 -c{args.connections}, single-event POSTs, "
        f"{WARMUP_S}s warm-up)",
        f"- machine: {machine()}; wrk runs on the same machine",
        f"- commit: {commit()}",
    ]
    publish("scale", "\n".join(lines))
    return 1 if non_2xx else 0


if __name__ == "__main__":
    sys.exit(main())
