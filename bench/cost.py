#!/usr/bin/env python3
"""What each part costs per event: CPU time of the API processes, of PostgreSQL's and of the
whole machine (wrk included) during a single-event ingest run, divided by the events stored.
Same load as bench/scale.py (wrk, 64 connections, single-event POSTs).

    scripts/with-postgres .venv/bin/python bench/cost.py --runs 2 sqlite:1 postgresql:2

Each argument is BACKEND:WORKERS; PostgreSQL configurations get a fresh database on the server
of TRACKWAY_TEST_POSTGRES_URL. The figures are CPU microseconds per event: times 10,000 they are
the CPU seconds per second, so cores, that 10k events/s cost.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
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
    WARMUP_S,
    commit,
    free_port,
    machine,
    publish,
    run_wrk,
    server,
)
from scale import fresh_postgres

TICK = os.sysconf("SC_CLK_TCK")


def process_times() -> dict[tuple[str, str], int]:
    """CPU ticks (user + system) of every process, by (pid, group)."""
    times = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            command = Path(f"/proc/{pid}/cmdline").read_text()
        except OSError:  # gone meanwhile
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if command.startswith("postgres") or "postgresql" in command.split("\0")[0]:
            group = "postgres"
        elif "trackway" in command or "multiprocessing" in command:
            group = "api"
        else:
            group = "other"
        times[(pid, group)] = int(fields[11]) + int(fields[12])
    return times


def machine_busy_ticks() -> tuple[int, int]:
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(values), values[3] + values[4]  # all, idle + iowait


def measure(database: str, workers: int, seconds: int, tmp: Path) -> dict[str, float]:
    trackway = str(BIN / "trackway")
    created = subprocess.run(
        [trackway, "accounts", "create", "bench", "--json", "--database", database],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    auth = base64.b64encode(f"{json.loads(created.stdout)['event_api_key']}:".encode()).decode()
    lua = tmp / f"event-{uuid.uuid4().hex[:6]}.lua"
    lua.write_text(LUA % {"auth": auth, "customers": CUSTOMERS_PER_THREAD})
    port = free_port()
    cmd = [trackway, "serve", "--workers", str(workers), "--port", str(port)]
    cmd += ["--database", database, "--log-level", "warning"]
    with server(cmd, port, tmp / "server.log", ROOT):
        run_wrk(port, lua, WARMUP_S, 64)
        before, machine_before = process_times(), machine_busy_ticks()
        result = run_wrk(port, lua, seconds, 64)
        after, machine_after = process_times(), machine_busy_ticks()
    events = result.rps * seconds
    spent: dict[str, float] = {"api": 0.0, "postgres": 0.0}
    for key, ticks in after.items():
        if key[1] in spent:
            spent[key[1]] += ticks - before.get(key, 0)
    total = machine_after[0] - machine_before[0]
    busy = total - (machine_after[1] - machine_before[1])
    return {
        "events/s": result.rps,
        "busy": busy / total,
        "api": spent["api"] / TICK / events * 1e6,
        "postgres": spent["postgres"] / TICK / events * 1e6,
        "machine": busy / TICK / events * 1e6,
        "non_2xx": result.non_2xx,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("configs", nargs="+", help="BACKEND:WORKERS, e.g. sqlite:1 postgresql:2")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--duration", type=int, default=8, help="seconds per wrk run")
    args = parser.parse_args()
    pg = os.environ.get("TRACKWAY_TEST_POSTGRES_URL")
    lines = [
        f"# CPU per event by part, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        "| backend | workers | run | events/s | machine busy | API processes us/event "
        "| PostgreSQL us/event | whole machine us/event |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    with tempfile.TemporaryDirectory(prefix="trackway-cost-") as tmp_name:
        for run in range(1, args.runs + 1):
            for config in args.configs:
                backend, workers = config.split(":")
                work = Path(tempfile.mkdtemp(dir=tmp_name))
                if backend == "sqlite":
                    database = f"sqlite:///{work}/bench.db"
                elif pg:
                    database = fresh_postgres(pg)
                else:
                    print("run under scripts/with-postgres (TRACKWAY_TEST_POSTGRES_URL unset)")
                    return 2
                print(f"run {run}/{args.runs}: {config} …", flush=True)
                m = measure(database, int(workers), args.duration, work)
                lines.append(
                    f"| {backend} | {workers} | {run} | {m['events/s']:,.0f} | {m['busy']:.0%} "
                    f"| {m['api']:.0f} | {m['postgres']:.0f} | {m['machine']:.0f} |"
                )
                if m["non_2xx"]:
                    print(f"!!! {m['non_2xx']} non-2xx answers", file=sys.stderr)
    lines += [
        "",
        "- whole machine: every CPU's busy time (wrk, the kernel's loopback traffic, other work "
        "on the machine included) per event",
        f"- command: `scripts/with-postgres .venv/bin/python bench/cost.py --runs {args.runs} "
        f"--duration {args.duration} {' '.join(args.configs)}`",
        f"- machine: {machine()}; wrk runs on the same machine",
        f"- commit: {commit()}",
    ]
    publish("cost", "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
