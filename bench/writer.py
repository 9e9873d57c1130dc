#!/usr/bin/env python3
"""SQLite's writer process (store/sqlite/writer_process.py), measured three ways:

workers  single-event POSTs (wrk, bench/ingest.py's load: returning customers), SQLite
         `serve --workers 1` and `--workers 2` alternately, run by run: events/s, p99, ratio
bulk     POST /api/v1/bulkevents, 100 events a call, 64 connections, --workers 1 and 2
alone    the writer process alone: validated and encoded jobs of --batch events sent over
         its socket (4 in flight) from one client; events/s and the writer's CPU per event

.venv/bin/python bench/writer.py workers --runs 3 --duration 6
.venv/bin/python bench/writer.py alone --events 200000 --batch 1000
"""

from __future__ import annotations

import argparse
import asyncio
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
    BIN,
    CUSTOMERS_PER_THREAD,
    LUA,
    ROOT,
    TICK,
    WARMUP_S,
    Wrk,
    free_port,
    group_cpu_seconds,
    run_wrk,
    server,
)

BULK_LUA = """\
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Basic %(auth)s"
local n = 0
request = function()
  local parts = {}
  for i = 1, 100 do
    n = n + 1
    parts[i] = string.format('{"event":"view","customer_id":"bulk-%%d",'
      .. '"product_id":"SKU-%%d","category":"shoes","price":59.9,"in_stock":true}',
      n %% %(customers)d, n %% 997)
  end
  local body = '{"events":[' .. table.concat(parts, ",") .. ']}'
  return wrk.format(nil, "/api/v1/bulkevents", nil, body)
end
"""


def account(database: str) -> str:
    created = subprocess.run(
        [str(BIN / "trackway"), "accounts", "create", "bench", "--json", "--database", database],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return str(json.loads(created.stdout)["event_api_key"])


def measure(lua_text: str, workers: int, args: argparse.Namespace, tmp: Path) -> tuple[Wrk, float]:
    database = f"sqlite:///{tmp}/w{workers}-{uuid.uuid4().hex[:6]}.db"
    key = account(database)
    lua = tmp / f"load-{uuid.uuid4().hex[:6]}.lua"
    auth = base64.b64encode(f"{key}:".encode()).decode()
    lua.write_text(lua_text % {"auth": auth, "customers": CUSTOMERS_PER_THREAD * 2})
    port = free_port()
    cmd = [str(BIN / "trackway"), "serve", "--workers", str(workers), "--port", str(port)]
    cmd += ["--database", database, "--log-level", "warning"]
    with server(cmd, port, tmp / "server.log", ROOT) as pid:
        run_wrk(port, lua, WARMUP_S, args.connections)
        cpu = group_cpu_seconds(pid)
        result = run_wrk(port, lua, args.duration, args.connections)
        cpu = group_cpu_seconds(pid) - cpu
    if result.non_2xx or result.socket_errors:
        print(f"!!! {result.non_2xx} non-2xx, {result.socket_errors} socket errors", flush=True)
    return result, cpu


def compare(lua_text: str, per_call: int, args: argparse.Namespace) -> None:
    rows: dict[int, list[tuple[Wrk, float]]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory(prefix="bench-writer-") as tmp:
        for run in range(args.runs):
            for workers in (1, 2):
                result, cpu = measure(lua_text, workers, args, Path(tmp))
                rows[workers].append((result, cpu))
                events = result.rps * per_call
                us = cpu / (result.requests * per_call) * 1e6 if result.requests else 0
                print(
                    f"run {run + 1} --workers {workers}: {events:,.0f} events/s, "
                    f"{result.rps:,.0f} calls/s, p50 {result.p50_ms:.1f} ms, "
                    f"p99 {result.p99_ms:.1f} ms, server CPU {us:.0f} us/event",
                    flush=True,
                )
    ratios = [b[0].rps / a[0].rps for a, b in zip(rows[1], rows[2], strict=True)]
    for workers, results in rows.items():
        median = statistics.median(r.rps for r, _ in results) * per_call
        print(
            f"--workers {workers}: median {median:,.0f} events/s, p99 "
            + ", ".join(f"{r.p99_ms:.1f}" for r, _ in results)
            + " ms"
        )
    print(f"x2 / x1 run by run: {', '.join(f'{r:.2f}' for r in ratios)}; median "
          f"{statistics.median(ratios):.2f}x")  # fmt: skip


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


async def send_all(socket_path: str, frames: list[bytes], in_flight: int) -> list[float]:
    """Send every frame, in_flight at a time; the group commits' [count, events, seconds]
    (the first job of each group commit carries its size and duration)."""
    from trackway.store.sqlite import wire

    groups = [0.0, 0.0, 0.0]
    reader, writer = await asyncio.open_unix_connection(socket_path)
    frame_reader = wire.FrameReader()
    answered = 0
    sent = 0
    while sent < min(in_flight, len(frames)):
        writer.write(frames[sent])
        sent += 1
    while answered < len(frames):
        data = await reader.read(1 << 16)
        if not data:
            raise RuntimeError("the writer went away")
        for raw in frame_reader.feed(data):
            answer = wire.answer_decoder.decode(raw)
            if answer.status != wire.STATUS_OK:
                raise RuntimeError(answer.message)
            if answer.group_events:
                groups[0] += 1
                groups[1] += answer.group_events
                groups[2] += answer.group_seconds
            answered += 1
            if sent < len(frames):
                writer.write(frames[sent])
                sent += 1
    writer.close()
    return groups


def alone(args: argparse.Namespace) -> None:
    from trackway.domain.events import validate_event
    from trackway.domain.timestamps import now_ms
    from trackway.store.sqlite import wire

    with tempfile.TemporaryDirectory(prefix="bench-writer-") as tmp:
        database = f"sqlite:///{tmp}/alone.db"
        account("sqlite:///" + tmp + "/alone.db")
        socket_path = f"{tmp}/w.sock"
        proc = subprocess.Popen(
            [str(BIN / "python"), "-m", "trackway", "writer", "--database", database,
             "--socket", socket_path, "--log-level", "warning"],
            stdin=subprocess.PIPE, cwd=ROOT,
        )  # fmt: skip
        try:
            received = now_ms()
            events = []
            for i in range(args.events):
                customer = f"c-{i % args.customers}"
                body = {"event": "view", "customer_id": customer, "price": 59.9, "in_stock": True}
                events.append(validate_event(body, received, None))
            frames = [
                wire.job_frame(n, 1, events[start : start + args.batch], [])
                for n, start in enumerate(range(0, len(events), args.batch))
            ]
            deadline = time.monotonic() + 20
            while not os.path.exists(socket_path) and time.monotonic() < deadline:
                time.sleep(0.05)
            cpu = proc_cpu(proc.pid)
            started = time.perf_counter()
            commits, grouped, in_transaction = asyncio.run(
                send_all(socket_path, frames, args.in_flight)
            )
            seconds = time.perf_counter() - started
            cpu = proc_cpu(proc.pid) - cpu
        finally:
            proc.stdin.close()  # type: ignore[union-attr]
            proc.wait(30)
    print(
        f"writer alone, {args.events:,} events in jobs of {args.batch:,} "
        f"({args.in_flight} in flight), {args.customers:,} customers: "
        f"{args.events / seconds:,.0f} events/s, "
        f"writer CPU {cpu / args.events * 1e6:.1f} us/event, "
        f"{grouped / max(commits, 1):.1f} events and "
        f"{in_transaction / max(commits, 1) * 1e3:.2f} ms a group commit"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=["workers", "bulk", "alone"])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=int, default=6, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--in-flight", type=int, default=4)
    parser.add_argument("--customers", type=int, default=40_000)
    args = parser.parse_args()
    if args.mode == "workers":
        compare(LUA, 1, args)
    elif args.mode == "bulk":
        compare(BULK_LUA, 100, args)
    else:
        alone(args)


if __name__ == "__main__":
    main()
