#!/usr/bin/env python3
"""The whole benchmark suite in one run (`bench/run`): builds data sets with `trackway import`,
measures the figures of every issue, and writes bench/RESULTS.md with plots next to it.

    bench/run --quick                                   # small sets, 1 run: checks the script
    bench/run                                           # 1M events, 3 runs
    scripts/with-postgres bench/run --postgres          # + PostgreSQL import, reads, 1/2/4 workers
    scripts/with-postgres bench/run --postgres --full   # + the 10M set

It reuses the single benchmarks (ingest.py, import_speed.py, reads.py, scale.py): see
bench/README.md for what each one measures.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import datetime
import fcntl
import json
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import import_speed
import reads
import scale
from ingest import (
    BENCH,
    BIN,
    CUSTOMERS_PER_THREAD,
    LUA,
    OUT,
    PYSPY_RATE,
    ROOT,
    WARMUP_S,
    Wrk,
    bench_round,
    commit,
    free_port,
    profiled,
    run_wrk,
    self_time_top,
    server,
    thread_label,
)

# The goals of the issues.
GOAL_IMPORT = import_speed.GOAL  # events/s on SQLite (issue 9)
GOAL_RATIO, GOAL_INGEST_P99 = 0.65, 20.0  # single-event ingest vs the bare app (issue 3)
GOAL_BULK = 100_000  # events/s durable, SQLite, one worker, 100 events a call (issue 6)
GOAL_READ_P99 = 50.0  # ms, history / show_events / summary (issues 4 and 9)
GOAL_BYTES = 1024  # database bytes per stored event (issue 9)
BULK_EVENTS = 100
LOADED = 1.0  # a 1-minute load average at or over this before a measurement: "under load"

# import_speed.generate's history ends here (its fixed end), with these 50 event names.
HISTORY_END = datetime.datetime(2024, 6, 1, tzinfo=datetime.UTC).timestamp()
NAMES = [*import_speed.STANDARD, *import_speed.CUSTOM, "identify"]
ENDPOINTS = ("history", "show_events", "summary")

# 100 events a call, each a realistic `view` as in ingest.py's LUA, customer ids per wrk thread.
BULK_LUA = """\
local next_id = 0
function setup(thread) thread:set("tid", next_id); next_id = next_id + 1 end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Basic %(auth)s"
local n = 0
request = function()
  local parts = {}
  for i = 1, %(batch)d do
    n = n + 1
    parts[i] = string.format('{"event":"view","customer_id":"bulk-%%d-%%d",'
      .. '"product_id":"SKU-%%d","category":"shoes","price":59.9,"currency":"USD",'
      .. '"in_stock":true,"page_url":"https://shop.example.com/p/%%d?ref=home"}',
      tid, n %% %(customers)d, n %% 997, n %% 997)
  end
  local body = '{"events":[' .. table.concat(parts, ",") .. ']}'
  return wrk.format(nil, "/api/v1/bulkevents", nil, body)
end
"""


@dataclasses.dataclass(frozen=True)
class Mode:
    name: str
    sets: tuple[tuple[str, int, int], ...]  # (label, events, import runs)
    customers: int
    runs: int
    duration: int
    requests: int  # per read endpoint and pass


MODES = {
    "quick": Mode("quick", (("20k", 20_000, 1),), 2_000, 1, 3, 30),
    "default": Mode("default", (("1M", 1_000_000, 3),), 100_000, 3, 10, 300),
    # The 10M import is done once: at this machine's rate one run takes many minutes.
    "full": Mode("full", (("1M", 1_000_000, 3), ("10M", 10_000_000, 1)), 100_000, 3, 10, 300),
}


# -- the machine -----------------------------------------------------------------------------


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def cpu_busy(seconds: float = 1.0) -> float:
    """The machine's CPU use over `seconds` while this suite runs nothing: other people's load."""

    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields[:8]), idle

    total0, idle0 = sample()
    time.sleep(seconds)
    total1, idle1 = sample()
    return 1.0 - (idle1 - idle0) / max(1, total1 - total0)


def conditions() -> dict[str, Any]:
    """Taken before each measurement (the suite is idle during the 1 s sample)."""
    return {"busy": round(cpu_busy(), 3), "load": loadavg()}


PG_MAX_EVENTS = 1_000_000
# --lock FILE: held exclusively during each measurement.
LOCK: Path | None = None


@contextlib.contextmanager
def measuring() -> Iterator[dict[str, Any]]:
    """Around one measurement; yields the conditions before it. With `--lock FILE` it first
    takes an exclusive flock on FILE and holds it to the end: on a shared machine, other work
    that takes the same file shared (`flock -s FILE make test`) waits for the measurement,
    and the measurement waits for it, while the two still interleave between measurements."""
    with contextlib.ExitStack() as stack:
        if LOCK is not None:
            handle = stack.enter_context(open(LOCK, "a"))
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield conditions()


def machine_info() -> dict[str, Any]:
    mem = re.search(r"MemTotal:\s*(\d+) kB", Path("/proc/meminfo").read_text())
    model = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model[1].strip() if model else "?",
        "mem_gib": round(int(mem[1]) / 2**20, 1) if mem else 0.0,
        "kernel": os.uname().release,
        "python": sys.version.split()[0],
        "sqlite": sqlite3.sqlite_version,
    }


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- data sets -------------------------------------------------------------------------------


def data_set(events: int, customers: int, seed: int) -> tuple[Path, float | None]:
    """The generated NDJSON (import_speed.generate), cached in bench/out/data by its parameters;
    made in a child process, so that its memory (about 0.8 KB an event) is given back."""
    directory = OUT / "data"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"events-{events}-c{customers}-d90-s{seed}.ndjson"
    if path.exists():
        return path, None
    partial = path.with_suffix(".partial")
    code = (
        "import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]);"
        "from import_speed import generate;"
        "generate(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), 90, seed=int(sys.argv[5]))"
    )
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            str(BENCH),
            str(partial),
            str(events),
            str(customers),
            str(seed),
        ],
        check=True,
    )
    partial.rename(path)
    return path, time.perf_counter() - started


def sqlite_file(database: str) -> Path:
    return Path(urllib.parse.urlparse(database).path.removeprefix("/"))


def drop_database(database: str) -> None:
    if database.startswith("sqlite"):
        shutil.rmtree(sqlite_file(database).parent, ignore_errors=True)
        return
    import psycopg

    base, name = os.environ["TRACKWAY_TEST_POSTGRES_URL"], database.rsplit("/", 1)[1]
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def storage(database: str) -> dict[str, Any]:
    """Stored events, the database's size, and (SQLite) the size of each table and index."""
    if database.startswith("sqlite"):
        path = sqlite_file(database)
        size = sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
        with contextlib.closing(sqlite3.connect(path)) as conn:
            stored = int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
            try:
                parts = conn.execute(
                    "SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC"
                ).fetchall()
            except sqlite3.Error:
                parts = []
        return {"stored": stored, "bytes": size, "parts": [list(p) for p in parts]}
    import psycopg

    with psycopg.connect(database) as conn:
        stored = int(conn.execute("SELECT count(*) FROM events").fetchone()[0])  # type: ignore[index]
        size = int(conn.execute("SELECT pg_database_size(current_database())").fetchone()[0])  # type: ignore[index]
        parts = conn.execute(PG_PARTS).fetchall()
    return {"stored": stored, "bytes": size, "parts": [[n, int(b)] for n, b in parts]}


# Each table (with its TOAST) and index of the public schema, partitions one by one.
PG_PARTS = """
SELECT relname, CASE WHEN relkind = 'r' THEN pg_table_size(oid) ELSE pg_relation_size(oid) END
FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'i')
ORDER BY 2 DESC
"""


# -- measurements ----------------------------------------------------------------------------


def measure_imports(
    label: str, events: int, runs: int, source: Path, pg: str | None, tmp: Path
) -> tuple[dict[str, Any], str]:
    """`trackway import` of `source` into `runs` fresh databases (import_speed.import_once); the
    last database is kept for the reads and returned with the results."""
    backend = "PostgreSQL" if pg else "SQLite"
    result: dict[str, Any] = {"label": label, "backend": backend, "events": events, "runs": []}
    database = ""
    for run in range(1, runs + 1):
        if database:
            drop_database(database)
        database = import_speed.fresh_database(tmp / f"import-{label}", run, pg)
        with measuring() as before:
            log(f"import {label} into {backend}, run {run}/{runs} (load {before['load'][0]}) …")
            summary, wall = import_speed.import_once(source, database, None)
        result["runs"].append({**before, "summary": summary, "wall": wall})
        log(f"  {summary['events_per_second']:,} events/s ({summary['seconds']:.1f} s)")
    result["storage"] = storage(database)
    return result, database


def account_key(database: str, kind: str = "event") -> str:
    trackway = str(BIN / "trackway")
    if kind == "event":
        cmd = [trackway, "accounts", "create", "bench", "--json", "--database", database]
    else:  # the account exists (made by the import): a fresh user key
        cmd = [trackway, "keys", "rotate", "bench", "--kind", "user", "--json"]
        cmd += ["--database", database]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)[f"{kind}_api_key"]


def serve_cmd(database: str, port: int, workers: int = 1) -> list[str]:
    cmd = [str(BIN / "trackway"), "serve", "--workers", str(workers), "--port", str(port)]
    return [*cmd, "--database", database, "--log-level", "warning"]


def measure_reads(
    label: str, backend: str, database: str, mode: Mode, passes: int, tmp: Path
) -> dict[str, Any]:
    """reads.time_reads against `trackway serve` on an imported database: `passes` passes."""
    key = account_key(database, "user")
    port = free_port()
    cmd = [*serve_cmd(database, port), "--show-events-per-hour", "100000000"]
    result: dict[str, Any] = {"label": label, "backend": backend, "passes": []}
    with server(cmd, port, tmp / f"reads-{label}-{backend}.log", ROOT):
        for index in range(passes):
            with measuring() as before:
                log(f"reads {label} {backend}, pass {index + 1}/{passes} "
                    f"(load {before['load'][0]}) …")  # fmt: skip
                started = time.perf_counter()
                timings = reads.time_reads(
                    f"http://127.0.0.1:{port}", key, mode.customers, mode.requests, NAMES,
                    HISTORY_END,
                )  # fmt: skip
            result["passes"].append(
                {**before, "seconds": time.perf_counter() - started, "timings": timings}
            )
    return result


def profile_reads(database: str, mode: Mode, seconds: float, tmp: Path, stamp: str) -> str:
    """One more pass of reads.time_reads with py-spy sampling the server throughout."""
    key = account_key(database, "user")
    port = free_port()
    cmd = [*serve_cmd(database, port), "--show-events-per-hour", "100000000"]
    duration = max(2, round(seconds))
    with server(cmd, port, tmp / f"reads-profile-{stamp}.log", ROOT) as pid:
        samplers = profiled(pid, duration, 1, stamp)
        reads.time_reads(
            f"http://127.0.0.1:{port}", key, mode.customers, mode.requests, NAMES, HISTORY_END
        )
        for sampler in samplers:
            sampler.wait(timeout=duration + 60)
    return self_time_top(OUT / f"stacks-{stamp}.txt", duration)


def write_lua(path: Path, template: str, key: str) -> Path:
    auth = base64.b64encode(f"{key}:".encode()).decode()
    path.write_text(
        template % {"auth": auth, "customers": CUSTOMERS_PER_THREAD, "batch": BULK_EVENTS}
    )
    return path


def bulk_round(args: argparse.Namespace, run: int, tmp: Path) -> dict[str, Any]:
    """wrk with BULK_LUA against a fresh SQLite database with one worker; the server is then
    SIGKILLed and its rows counted against the events of every 2xx answer."""
    work = Path(tempfile.mkdtemp(prefix=f"bulk{run}-", dir=tmp))
    database = f"sqlite:///{work}/bench.db"
    lua = write_lua(work / "bulk.lua", BULK_LUA, account_key(database))
    port = free_port()
    with server(serve_cmd(database, port), port, work / "server.log", ROOT, hard_stop=True):
        warm = run_wrk(port, lua, WARMUP_S, args.connections)
        measured = run_wrk(port, lua, args.duration, args.connections)
    with contextlib.closing(sqlite3.connect(work / "bench.db")) as conn:
        rows = int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
    shutil.rmtree(work, ignore_errors=True)
    acked = (warm.ok + measured.ok) * BULK_EVENTS
    return {
        "wrk": dataclasses.asdict(measured),
        "warm_non_2xx": warm.non_2xx,
        "rows": rows,
        "acked": acked,
    }


def profile_load(
    args: argparse.Namespace, database: str, workers: int, template: str, stamp: str, tmp: Path
) -> dict[str, Any]:
    """The load of a measurement once more, with py-spy sampling the server (ingest.profiled)
    for the measured window: the self-time summary, and wrk's figures under the sampler."""
    work = Path(tempfile.mkdtemp(prefix=f"profile-{stamp}-", dir=tmp))
    lua = write_lua(work / "load.lua", template, account_key(database))
    port = free_port()
    with server(serve_cmd(database, port, workers), port, work / "server.log", ROOT) as pid:
        run_wrk(port, lua, WARMUP_S, args.connections)
        samplers = profiled(pid, args.duration, workers, stamp)
        measured = run_wrk(port, lua, args.duration, args.connections)
        for sampler in samplers:
            sampler.wait(timeout=args.duration + 30)
    return {
        "text": self_time_top(OUT / f"stacks-{stamp}.txt", args.duration),
        "wrk": dataclasses.asdict(measured),
    }


def speedscope_top(path: Path, seconds: float, top: int = 20) -> str:
    """ingest.self_time_top's summary, from the speedscope JSON import_speed writes."""
    data = json.loads(path.read_text())
    frames = data["shared"]["frames"]
    counts: dict[str, float] = {}
    busy = []
    for profile in data["profiles"]:
        busy.append((len(profile["samples"]), thread_label(profile.get("name", "?"))))
        for stack in profile["samples"]:  # one sample each (py-spy's weights are 1/rate s)
            if not stack:
                continue
            frame = frames[stack[-1]]
            where = re.sub(r"^.*/(site-packages|src|lib/python[\d.]+)/", "", frame.get("file", ""))
            name = f"{frame['name']} ({where})"
            counts[name] = counts.get(name, 0) + 1
    total = sum(counts.values()) or 1
    rows = sorted(counts.items(), key=lambda item: -item[1])[:top]
    return "\n".join(
        [
            f"busy share of each thread ({PYSPY_RATE} Hz for {seconds:.0f}s):",
            *(
                f"{n / (PYSPY_RATE * seconds):6.1%}  {name}"
                for n, name in sorted(busy, reverse=True)
            ),
            "",
            f"self time, top {top} of {total:.0f} non-idle samples:",
            *(f"{n / total:6.1%}  {frame}" for frame, n in rows),
        ]
    )


def profile_import(source: Path, tmp: Path, stamp: str) -> dict[str, Any]:
    database = import_speed.fresh_database(tmp / "import-profile", 1, None)
    path = OUT / f"import-{stamp}.speedscope.json"
    summary, wall = import_speed.import_once(source, database, path)
    drop_database(database)
    return {"text": speedscope_top(path, wall), "summary": summary}


# -- medians and goals -----------------------------------------------------------------------

med = statistics.median


def wrk_of(d: dict[str, Any]) -> Wrk:
    return Wrk(**d)


def import_rate(result: dict[str, Any]) -> float:
    return med(r["summary"]["events_per_second"] for r in result["runs"])


def read_figures(result: dict[str, Any]) -> dict[str, tuple[float, float, list[float]]]:
    """Per endpoint: median p50, median p99 and the p99 of each pass (reads.percentile)."""
    out = {}
    for name in ENDPOINTS:
        p50 = med(reads.percentile(p["timings"][name], 0.5) for p in result["passes"])
        p99s = [reads.percentile(p["timings"][name], 0.99) for p in result["passes"]]
        out[name] = (p50, med(p99s), p99s)
    return out


def ingest_figures(res: dict[str, Any]) -> dict[str, float]:
    runs = res["ingest"]["runs"]
    tw = [wrk_of(r["trackway"]) for r in runs]
    bare = [wrk_of(r["bare"]) for r in runs]
    return {
        "rps": med(w.rps for w in tw),
        "p50": med(w.p50_ms for w in tw),
        "p99": med(w.p99_ms for w in tw),
        "bare": med(w.rps for w in bare),
        "bare_p50": med(w.p50_ms for w in bare),
        "bare_p99": med(w.p99_ms for w in bare),
        "ratio": med(t.rps / b.rps for t, b in zip(tw, bare, strict=True)),
    }


def goals(res: dict[str, Any]) -> list[dict[str, Any]]:
    """Every goal: what, the figure measured, met or not, and the profile key when missed."""
    out: list[dict[str, Any]] = []
    for imp in res["imports"]:
        if imp["backend"] == "SQLite":
            rate = import_rate(imp)
            out.append(
                {
                    "key": f"import-{imp['label']}",
                    "goal": f"import {imp['label']} ≥ {GOAL_IMPORT:,} events/s (SQLite)",
                    "measured": f"{rate:,.0f} events/s",
                    "met": rate >= GOAL_IMPORT,
                }
            )
    for imp in res["imports"]:
        if imp["backend"] != "SQLite":  # the goal is the SQLite file's; PostgreSQL for reference
            continue
        per = imp["storage"]["bytes"] / max(1, imp["storage"]["stored"])
        out.append(
            {
                "key": f"size-{imp['label']}-{imp['backend']}",
                "goal": f"SQLite database < 1 KB per stored event ({imp['label']})",
                "measured": f"{per:,.0f} bytes/event",
                "met": per < GOAL_BYTES,
            }
        )
    if res.get("ingest"):
        f = ingest_figures(res)
        durable = res["ingest"]["durability"][0] >= res["ingest"]["durability"][1]
        non_2xx = sum(wrk_of(r["trackway"]).non_2xx for r in res["ingest"]["runs"])
        out.append(
            {
                "key": "ingest",
                "goal": f"single-event ingest ≥ {GOAL_RATIO}x the bare "
                f"ASGI app, p99 < {GOAL_INGEST_P99:.0f} ms, durable",
                "measured": f"{f['ratio']:.2f}x, p99 {f['p99']:.1f} ms"
                + ("" if durable and not non_2xx else ", NOT durable or non-2xx"),
                "met": f["ratio"] >= GOAL_RATIO
                and f["p99"] < GOAL_INGEST_P99
                and durable
                and not non_2xx,
            }
        )
    if res.get("bulk"):
        runs = res["bulk"]["runs"]
        rate = med(wrk_of(r["wrk"]).rps * BULK_EVENTS for r in runs)
        durable = all(r["rows"] >= r["acked"] for r in runs)
        clean = not any(wrk_of(r["wrk"]).non_2xx or r["warm_non_2xx"] for r in runs)
        out.append(
            {
                "key": "bulk",
                "goal": f"bulk ingest ≥ {GOAL_BULK:,} events/s durable "
                f"(SQLite, 1 worker, {BULK_EVENTS} a call)",
                "measured": f"{rate:,.0f} events/s"
                + ("" if durable and clean else ", NOT durable or non-2xx"),
                "met": rate >= GOAL_BULK and durable and clean,
            }
        )
    for rd in res["reads"]:
        figures = read_figures(rd)
        worst = max(ENDPOINTS, key=lambda n: figures[n][1])
        out.append(
            {
                "key": f"reads-{rd['label']}-{rd['backend']}",
                "goal": f"reads p99 < {GOAL_READ_P99:.0f} ms ({rd['label']}, {rd['backend']})",
                "measured": ", ".join(f"{n} {figures[n][1]:.1f}" for n in ENDPOINTS) + " ms",
                "met": figures[worst][1] < GOAL_READ_P99,
                "worst": worst,
            }
        )
    if res.get("scale") and res.get("ingest"):
        pg2 = med(wrk_of(w["wrk"]).rps for w in res["scale"]["2"])
        sqlite1 = ingest_figures(res)["rps"]
        out.append(
            {
                "key": "scale",
                "goal": "PostgreSQL with 2 workers ≥ SQLite with 1 (single-event ingest)",
                "measured": f"{pg2:,.0f} vs {sqlite1:,.0f} events/s ({pg2 / sqlite1:.2f}x)",
                "met": pg2 >= sqlite1,
            }
        )
    return out


# -- the report ------------------------------------------------------------------------------


def cond(c: dict[str, Any]) -> str:
    return f"{c['load'][0]:.2f} / {c['busy']:.0%}"


def wrk_cmd(args: dict[str, Any], script: str) -> str:
    return f"wrk -t2 -c{args['connections']} -d{args['duration']}s --latency -s {script}"


def render(res: dict[str, Any]) -> str:
    meta, m = res["meta"], res["meta"]["machine"]
    all_conditions = list(iter_conditions(res))
    peak = max((c["load"][0] for c in all_conditions), default=0.0)
    busiest = max((c["busy"] for c in all_conditions), default=0.0)
    loaded = meta["load_start"][0] >= LOADED or busiest >= 0.25
    lines = [
        "# Benchmark results",
        "",
        f"Measured by `{meta['command']}` ({meta['mode']} mode) on {meta['date']}, "
        f"in {meta['elapsed_s'] / 60:.0f} min.",
        "",
        f"- **machine**: {m['cpus']} cores ({m['cpu_model']}), {m['mem_gib']} GiB RAM, Linux "
        f"{m['kernel']}, Python {m['python']}, SQLite {m['sqlite']}; the load generator (wrk) "
        "and the client run on the same machine",
        f"- **load average** at start: {' '.join(f'{x:.2f}' for x in meta['load_start'])}; "
        f"highest 1-minute load before a measurement: {peak:.2f}; "
        f"highest CPU use in the idle second before a measurement: {busiest:.0%}",
        f"- **commit**: {meta['commit']}",
        f"- **runs**: {meta['runs']} per figure, medians. `load / busy` in the tables, taken "
        "just before each measurement: the 1-minute load average (it also carries the tail of "
        "this suite's previous measurement), and the share of the CPUs busy during one second "
        "in which the suite itself runs nothing (other people's work, or background work left "
        "by the previous measurement such as PostgreSQL's checkpoints)",
    ]
    if loaded and "--lock" in meta["command"] and busiest < 0.25:
        lines += [
            "",
            "> Other work shared this machine between measurements (load average "
            f"{meta['load_start'][0]:.2f} at start); each measurement held `--lock`, which that "
            f"work waited for, and at most {busiest:.0%} of the CPUs were busy in the idle second "
            "before a measurement.",
        ]
    elif loaded:
        lines += [
            "",
            f"> **Measured under load.** Other work was running on this {m['cpus']}-core machine "
            f"(load average {meta['load_start'][0]:.2f} at start, up to {busiest:.0%} of "
            "the CPUs busy just before a measurement). Throughput figures are lower "
            "and latencies higher than on an idle machine; the ratios measured in the same run "
            "are the figures to compare.",
        ]
    lines += ["", "## Goals", "", "| goal | measured | |", "|---|---|---|"]
    for g in goals(res):
        lines.append(f"| {g['goal']} | {g['measured']} | {'met' if g['met'] else '**MISSED**'} |")
    if not any(s[0] == "10M" for s in meta["sets"]):
        measured = " and ".join(f"{s[0]} events" for s in meta["sets"])
        lines += [
            "",
            "The 10M-event set was **not measured** in this run (it needs `bench/run --full`, "
            f"and this run alone took {meta['elapsed_s'] / 60:.0f} min on this machine); "
            f"the import, read and size figures above are at {measured}. The issue states the "
            "read goal at 10M events; nothing here is extrapolated to it.",
        ]
    lines += [""]
    lines += render_imports(res)
    lines += render_size(res)
    lines += render_ingest(res)
    lines += render_bulk(res)
    lines += render_scale(res)
    lines += render_reads(res)
    lines += render_profiles(res)
    lines += [
        "## Data sets",
        "",
        "Generated by `import_speed.generate` (seed "
        f"{meta['seed']}): {meta['customers']:,} customers who each identify once, 50 event "
        "names, 90 days ending 2024-06-01, about 1 event in 4 with an `event_uuid`; NDJSON in "
        "the body format of `POST /api/v1/event`, cached in `bench/out/data/`.",
        "",
        "| set | events | NDJSON MiB | generated in |",
        "|---|---:|---:|---:|",
    ]
    for g in res["generate"]:
        took = f"{g['seconds']:.0f} s" if g["seconds"] is not None else "cached"
        lines.append(f"| {g['label']} | {g['events']:,} | {g['bytes'] / 2**20:,.0f} | {took} |")
    lines += [""]
    return "\n".join(lines) + "\n"


def iter_conditions(res: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for imp in res["imports"]:
        yield from imp["runs"]
    for rd in res["reads"]:
        yield from rd["passes"]
    if res.get("ingest"):
        yield from res["ingest"]["runs"]
    if res.get("bulk"):
        yield from res["bulk"]["runs"]
    for runs in (res.get("scale") or {}).values():
        yield from runs


def verdict(met: bool) -> str:
    return "met" if met else "**MISSED** (profile below)"


def render_imports(res: dict[str, Any]) -> list[str]:
    lines = ["## Import (`trackway import`)", ""]
    for imp in res["imports"]:
        rate = import_rate(imp)
        lines += [
            f"### {imp['label']} events into {imp['backend']}",
            "",
            "| run | load / busy | import s | events/s | events/s incl. start-up | accepted "
            "| duplicates | rejected |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for i, r in enumerate(imp["runs"], 1):
            s = r["summary"]
            lines.append(
                f"| {i} | {cond(r)} | {s['seconds']:.1f} | {s['events_per_second']:,} | "
                f"{imp['events'] / r['wall']:,.0f} | {s['accepted']:,} | {s['duplicates']:,} "
                f"| {s['rejected']:,} |"
            )
        wall = med(imp["events"] / r["wall"] for r in imp["runs"])
        lines += [f"| **median** | | | **{rate:,.0f}** | {wall:,.0f} | | | |", ""]
        if imp["backend"] == "SQLite":
            lines += [
                f"Goal: ≥ {GOAL_IMPORT:,} events/s on SQLite: {verdict(rate >= GOAL_IMPORT)}"
                + ("" if rate >= GOAL_IMPORT else f" ({rate / GOAL_IMPORT:.2f}x the goal)."),
                "",
            ]
        lines += [
            "events/s: lines over the time from the first line read to the last commit, as "
            "the import's `--json` summary reports it; with start-up: including process start "
            "and migrations. Each run into a fresh database.",
            "",
            f"Command: `trackway import {imp['label']}.ndjson --account bench --database "
            f"{'sqlite:///…/trackway.db' if imp['backend'] == 'SQLite' else 'postgresql://…'}"
            " --json` (as `bench/import_speed.py --events N --customers "
            f"{res['meta']['customers']}"
            f"{' --postgres URL' if imp['backend'] != 'SQLite' else ''}` does)",
            "",
        ]
    return lines


def render_size(res: dict[str, Any]) -> list[str]:
    lines = [
        "## Database size per stored event",
        "",
        "| set | backend | stored events | database MiB | bytes/event | goal < 1 KB (SQLite) |",
        "|---|---|---:|---:|---:|---|",
    ]
    for imp in res["imports"]:
        st = imp["storage"]
        per = st["bytes"] / max(1, st["stored"])
        verdict = "met" if per < GOAL_BYTES else "**MISSED**"
        if imp["backend"] != "SQLite":
            verdict = "for reference" + (", over 1 KB" if per >= GOAL_BYTES else "")
        lines.append(
            f"| {imp['label']} | {imp['backend']} | {st['stored']:,} | {st['bytes'] / 2**20:,.0f} "
            f"| {per:,.0f} | {verdict} |"
        )
    lines += [
        "",
        "SQLite: the database file with its -wal and -shm after the last import run (the goal "
        "is this file's); PostgreSQL: `pg_database_size` of that run's database, which includes "
        "about 7 MiB of catalog.",
        "",
    ]
    for imp in res["imports"]:
        parts = imp["storage"]["parts"]
        if parts:
            total = imp["storage"]["bytes"] or 1
            stored = max(1, imp["storage"]["stored"])
            source = (
                "`dbstat`" if imp["backend"] == "SQLite" else "`pg_table_size` / `pg_relation_size`"
            )
            lines += [
                f"Where the bytes go ({imp['label']}, {imp['backend']}, {source}, largest 8; share "
                "of the whole database):",
                "",
                "| table or index | MiB | bytes/event | share |",
                "|---|---:|---:|---:|",
                *(
                    f"| {name} | {size / 2**20:,.0f} | {size / stored:,.0f} | {size / total:.0%} |"
                    for name, size in parts[:8]
                ),
                "",
            ]
    return lines


def render_ingest(res: dict[str, Any]) -> list[str]:
    if not res.get("ingest"):
        return []
    a = res["meta"]
    f = ingest_figures(res)
    rows, acked = res["ingest"]["durability"]
    lines = [
        "## Single-event ingest against the bare ASGI ceiling",
        "",
        "| run | load / busy | trackway ev/s | p50 ms | p99 ms | bare req/s | p50 ms | p99 ms "
        "| ratio |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for i, r in enumerate(res["ingest"]["runs"], 1):
        t, b = wrk_of(r["trackway"]), wrk_of(r["bare"])
        lines.append(
            f"| {i} | {cond(r)} | {t.rps:,.0f} | {t.p50_ms:.2f} | {t.p99_ms:.2f} | {b.rps:,.0f} "
            f"| {b.p50_ms:.2f} | {b.p99_ms:.2f} | {t.rps / b.rps:.2f}x |"
        )
    met = f["ratio"] >= GOAL_RATIO and f["p99"] < GOAL_INGEST_P99
    non_2xx = sum(wrk_of(r["trackway"]).non_2xx for r in res["ingest"]["runs"])
    lines += [
        f"| **median** | | {f['rps']:,.0f} | {f['p50']:.2f} | {f['p99']:.2f} | {f['bare']:,.0f} "
        f"| {f['bare_p50']:.2f} | {f['bare_p99']:.2f} | **{f['ratio']:.2f}x** |",
        "",
        f"Goal: ≥ {GOAL_RATIO}x the bare app and p99 < {GOAL_INGEST_P99:.0f} ms: {verdict(met)}. "
        f"Non-2xx: {non_2xx}. Durability (last run, server SIGKILLed after wrk): {rows:,} rows, "
        f"{acked:,} events answered 2xx: {'OK' if rows >= acked else '**LOST**'}.",
        "",
        f"Command: `{wrk_cmd(a, 'event.lua')}` (after {WARMUP_S} s of warm-up) against "
        "`trackway serve --workers 1` on a fresh SQLite database and against `uvicorn "
        "bare_app:app` with the same options, alternating which goes first: "
        f"`bench/ingest.py --runs {a['runs']} --duration {a['duration']}` (`ingest.bench_round`).",
        "",
    ]
    return lines


def render_bulk(res: dict[str, Any]) -> list[str]:
    if not res.get("bulk"):
        return []
    a = res["meta"]
    runs = res["bulk"]["runs"]
    lines = [
        f"## Bulk ingest ({BULK_EVENTS} events a call, SQLite, 1 worker)",
        "",
        "| run | load / busy | calls/s | events/s | p50 ms | p99 ms | non-2xx "
        "| rows after SIGKILL / events answered 2xx |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for i, r in enumerate(runs, 1):
        w = wrk_of(r["wrk"])
        ok = "OK" if r["rows"] >= r["acked"] else "**LOST**"
        lines.append(
            f"| {i} | {cond(r)} | {w.rps:,.0f} | {w.rps * BULK_EVENTS:,.0f} | {w.p50_ms:.1f} "
            f"| {w.p99_ms:.1f} | {w.non_2xx + r['warm_non_2xx']} | {r['rows']:,} / "
            f"{r['acked']:,} {ok} |"
        )
    rate = med(wrk_of(r["wrk"]).rps * BULK_EVENTS for r in runs)
    lines += [
        f"| **median** | | {rate / BULK_EVENTS:,.0f} | **{rate:,.0f}** | "
        f"{med(wrk_of(r['wrk']).p50_ms for r in runs):.1f} | "
        f"{med(wrk_of(r['wrk']).p99_ms for r in runs):.1f} | | |",
        "",
        f"Goal: ≥ {GOAL_BULK:,} events/s durable: {verdict(rate >= GOAL_BULK)}"
        + ("" if rate >= GOAL_BULK else f" ({rate / GOAL_BULK:.2f}x the goal)")
        + ".",
        "",
        f"Command: `{wrk_cmd(a, 'bulk.lua')}` (after {WARMUP_S} s of warm-up; each call "
        f"`POST /api/v1/bulkevents` with {BULK_EVENTS} `view` events, the body of ingest.py's) "
        "against `trackway serve --workers 1` on a fresh SQLite database each run; the server is "
        "SIGKILLed after wrk and the `events` rows counted (`bench/suite.py`'s `bulk_round`).",
        "",
    ]
    return lines


def scale_rows(res: dict[str, Any]) -> list[tuple[str, int, list[Wrk], list[dict[str, Any]]]]:
    ingest = res["ingest"]["runs"]
    rows = [
        ("bare ASGI", 1, [wrk_of(r["bare"]) for r in ingest], ingest),
        ("SQLite", 1, [wrk_of(r["trackway"]) for r in ingest], ingest),
    ]
    for workers, runs in (res.get("scale") or {}).items():
        rows.append(("PostgreSQL", int(workers), [wrk_of(r["wrk"]) for r in runs], runs))
    return rows


def render_scale(res: dict[str, Any]) -> list[str]:
    if not res.get("ingest"):
        return []
    a = res["meta"]
    rows = scale_rows(res)
    bare = med(w.rps for w in rows[0][2])
    sqlite1 = med(w.rps for w in rows[1][2])
    lines = [
        "## Single-event ingest by backend and worker count",
        "",
        "![throughput against worker count](throughput-workers.png)",
        "",
        "| backend | workers | events/s (median) | runs | p50 ms | p99 ms | vs bare | vs SQLite x1 "
        "| load / busy per run |",
        "|---|---:|---:|---|---:|---:|---:|---:|---|",
    ]
    for name, workers, runs, conds in rows:
        rps = med(w.rps for w in runs)
        lines.append(
            f"| {name} | {workers} | {rps:,.0f} | {' / '.join(f'{w.rps:,.0f}' for w in runs)} "
            f"| {med(w.p50_ms for w in runs):.2f} | {med(w.p99_ms for w in runs):.2f} "
            f"| {rps / bare:.2f}x | {rps / sqlite1:.2f}x | {', '.join(cond(c) for c in conds)} |"
        )
    lines.append("")
    if res.get("scale"):
        pg2 = med(wrk_of(r["wrk"]).rps for r in res["scale"]["2"])
        non_2xx = sum(wrk_of(r["wrk"]).non_2xx for runs in res["scale"].values() for r in runs)
        lines += [
            f"Goal: PostgreSQL with 2 workers ≥ SQLite with 1: {verdict(pg2 >= sqlite1)} "
            f"({pg2 / sqlite1:.2f}x). PostgreSQL non-2xx: {non_2xx}. The PostgreSQL server "
            "(`scripts/with-postgres`, default settings) runs on the same 2 cores.",
            "",
        ]
    else:
        lines += [
            "PostgreSQL was not measured in this run (`scripts/with-postgres bench/run "
            "--postgres`).",
            "",
        ]
    lines += [
        f"Command: `{wrk_cmd(a, 'event.lua')}`, single-event POSTs; the bare and SQLite rows are "
        "the runs of the table above; PostgreSQL: a fresh database per run and worker count on "
        "the `scripts/with-postgres` server, `trackway serve --workers N` "
        f"(`bench/scale.py --runs {a['runs']} --duration {a['duration']}`, `scale.measure`).",
        "",
    ]
    return lines


def render_reads(res: dict[str, Any]) -> list[str]:
    if not res["reads"]:
        return []
    a = res["meta"]
    lines = [
        "## Read latency",
        "",
        "![read latency per endpoint](read-latency.png)",
        "",
        "| set | backend | endpoint | p50 ms | p99 ms | p99 per pass | goal p99 < 50 ms |",
        "|---|---|---|---:|---:|---|---|",
    ]
    for rd in res["reads"]:
        for name, (p50, p99, p99s) in read_figures(rd).items():
            lines.append(
                f"| {rd['label']} | {rd['backend']} | {name} | {p50:.2f} | {p99:.2f} | "
                f"{' / '.join(f'{v:.1f}' for v in p99s)} | "
                f"{'met' if p99 < GOAL_READ_P99 else '**MISSED**'} |"
            )
    lines.append("")
    for rd in res["reads"]:
        lines.append(
            f"- {rd['label']} {rd['backend']}: load / busy before each pass: "
            + ", ".join(cond(p) for p in rd["passes"])
            + "; seconds per pass: "
            + ", ".join(f"{p['seconds']:.0f}" for p in rd["passes"])
        )
    per = "about " + ", ".join(
        f"{events // a['customers']:,} events per customer at {label}"
        for label, events, _ in a["sets"]
    )
    lines += [
        "",
        f"Each pass: {a['requests']} sequential requests per endpoint with random parameters "
        "(`reads.time_reads`), one client on the same machine, against `trackway serve "
        "--workers 1 --show-events-per-hour 100000000` on the database of the last import run: "
        "`history` (latest 50 of a random name), `show_events` (a random customer's timeline, "
        f"default limit 1,000; {a['customers']:,} customers, so {per}), `summary.json` "
        "(a random 7-day window within the 90 days). "
        "Medians of the per-pass percentiles.",
        "",
    ]
    return lines


def render_profiles(res: dict[str, Any]) -> list[str]:
    if not res["profiles"]:
        missed = [g for g in goals(res) if not g["met"] and not g["key"].startswith("size-")]
        why = "(`--no-profile`, or py-spy missing)" if missed else "(every goal met)"
        return ["## Profiles", "", f"No profile was taken {why}.", ""]
    lines = [
        "## Profiles of the missed goals",
        "",
        "Each missed goal's measurement was run once more with py-spy (100 Hz, non-blocking) "
        "sampling the server (the import process for the import) during the measured window: "
        "how busy each thread was, then the functions with the most self time (leaf frames; "
        "`Runner.run` is the event loop's own native work, native calls show under the Python "
        "function that made them). The sampler takes CPU of its own, so these runs are not in "
        "the tables.",
        "",
    ]
    for p in res["profiles"].values():
        lines += [f"### {p['title']}", "", p.get("note", ""), "", "```", p["text"], "```", ""]
    return lines


# -- plots -----------------------------------------------------------------------------------


def plot(res: dict[str, Any], out: Path) -> list[Path]:
    """throughput-workers.png and read-latency.png, from the results."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import StrMethodFormatter

    meta = res["meta"]
    when = meta["date"]
    made = []
    if res.get("ingest"):
        rows = scale_rows(res)
        fig, ax = plt.subplots(figsize=(9, 5.5), dpi=110)
        bare = med(w.rps for w in rows[0][2])
        sqlite1 = med(w.rps for w in rows[1][2])
        ax.axhline(bare, color="dimgrey", linestyle="--", linewidth=1.5)
        ax.annotate(
            f"bare ASGI ceiling (1 worker): {bare:,.0f} req/s",
            (4.6, bare),
            textcoords="offset points",
            xytext=(0, 4),
            color="dimgrey",
            ha="right",
        )
        ax.axhline(sqlite1, color="tab:blue", linestyle=":", linewidth=1)
        ax.annotate(
            "SQLite x1: PostgreSQL x2's goal",
            (4.6, sqlite1),
            textcoords="offset points",
            xytext=(0, 4),
            color="tab:blue",
            ha="right",
            fontsize=9,
        )
        for name, marker, color in (("SQLite", "s", "tab:blue"), ("PostgreSQL", "o", "tab:orange")):
            points = [(w, runs) for n, w, runs, _ in rows if n == name]
            if not points:
                continue
            # Dodged a little apart, so that the min-max bars at 1 worker do not overlap.
            xs = [w * (0.97 if name == "SQLite" else 1.03) for w, _ in points]
            ys = [med(r.rps for r in runs) for _, runs in points]
            lo = [y - min(r.rps for r in runs) for y, (_, runs) in zip(ys, points, strict=True)]
            hi = [max(r.rps for r in runs) - y for y, (_, runs) in zip(ys, points, strict=True)]
            ax.errorbar(
                xs,
                ys,
                yerr=[lo, hi],
                marker=marker,
                markersize=8,
                capsize=4,
                color=color,
                linewidth=2,
                label=f"trackway on {name}",
            )
            for x, y in zip(xs, ys, strict=True):
                ax.annotate(
                    f"{y:,.0f}",
                    (x, y),
                    textcoords="offset points",
                    xytext=(9, 5),
                    ha="left",
                    color=color,
                    fontweight="bold",
                )
        ax.set_xscale("log", base=2)
        ax.set_xticks([1, 2, 4], ["1", "2", "4"])
        ax.set_xlim(0.8, 5)
        ax.set_ylim(0, bare * 1.15)
        ax.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
        ax.set_xlabel("worker processes (trackway serve --workers N)")
        ax.set_ylabel("events stored per second (bare app: requests/s)")
        ax.set_title(
            "Single-event ingest throughput against worker count\n"
            f"POST /api/v1/event from wrk ({meta['connections']} connections) on the same "
            f"machine\nmedian of {meta['runs']} run(s), bars from min to max; {when}",
            fontsize=10,
        )
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(loc="center right")
        fig.tight_layout()
        path = out / "throughput-workers.png"
        fig.savefig(path)
        plt.close(fig)
        made.append(path)
    if res["reads"]:
        fig, ax = plt.subplots(figsize=(10, 5.5), dpi=110)
        groups = [
            (f"{rd['label']} events, {rd['backend']}", read_figures(rd)) for rd in res["reads"]
        ]
        width = 0.8 / (2 * len(groups))
        colors = ["tab:blue", "tab:orange", "tab:green", "tab:red"]
        top = 0.0
        for g, (label, figures) in enumerate(groups):
            for q, (quantile, alpha) in enumerate((("p50", 0.45), ("p99", 1.0))):
                xs = [i - 0.4 + width * (2 * g + q + 0.5) for i in range(len(ENDPOINTS))]
                ys = [figures[n][q] for n in ENDPOINTS]
                top = max(top, *ys)
                bars = ax.bar(
                    xs,
                    ys,
                    width,
                    color=colors[g % len(colors)],
                    alpha=alpha,
                    label=f"{label}: {quantile}",
                )
                ax.bar_label(bars, fmt="%.1f", fontsize=8, padding=2)
        ax.axhline(
            GOAL_READ_P99,
            color="red",
            linestyle="--",
            linewidth=1.2,
            label=f"goal: p99 < {GOAL_READ_P99:.0f} ms",
        )
        ax.set_xticks(range(len(ENDPOINTS)), ["history", "show_events", "summary.json"])
        ax.set_xlim(-0.5, len(ENDPOINTS) - 0.5)
        ax.set_ylim(0, max(top, GOAL_READ_P99) * 1.15)
        ax.set_xlabel("read endpoint")
        ax.set_ylabel("latency per request (ms)")
        ax.set_title(
            "Read latency per endpoint: p50 (light) and p99 (dark)\n"
            f"{meta['requests']} sequential requests per endpoint and pass, one client on the "
            f"same machine\nmedian of {meta['runs']} pass(es); {when}",
            fontsize=10,
        )
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
        fig.tight_layout()
        path = out / "read-latency.png"
        fig.savefig(path)
        plt.close(fig)
        made.append(path)
    return made


# -- the run ---------------------------------------------------------------------------------


def public_args(argv: list[str]) -> list[str]:
    """The command line as RESULTS.md shows it: the lock file's path as FILE."""
    out = list(argv)
    for i, arg in enumerate(out):
        if arg == "--lock" and i + 1 < len(out):
            out[i + 1] = "FILE"
        elif arg.startswith("--lock="):
            out[i] = "--lock=FILE"
    return out


def run(args: argparse.Namespace, mode: Mode, pg: str | None) -> dict[str, Any]:
    started = time.perf_counter()
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    res: dict[str, Any] = {
        "meta": {
            "command": " ".join(["bench/run", *public_args(sys.argv[1:])]),
            "mode": mode.name,
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": machine_info(),
            "load_start": loadavg(),
            "commit": commit(),
            "runs": args.runs,
            "duration": args.duration,
            "connections": args.connections,
            "customers": mode.customers,
            "requests": mode.requests,
            "seed": args.seed,
            "sets": [list(s) for s in mode.sets],
        },
        "generate": [],
        "imports": [],
        "reads": [],
        "profiles": {},
    }
    wrk_args = argparse.Namespace(
        runs=args.runs,
        duration=args.duration,
        connections=args.connections,
        workers=1,
        profile=False,
    )
    sources: dict[str, Path] = {}
    databases: dict[tuple[str, str], str] = {}  # (set, backend): the last import's, kept
    with tempfile.TemporaryDirectory(prefix="trackway-suite-") as tmp_name:
        tmp = Path(tmp_name)
        # 1. The data sets, imported; 2. reads against the imported databases.
        for label, events, runs in mode.sets:
            log(f"data set {label}: {events:,} events, {mode.customers:,} customers …")
            source, seconds = data_set(events, mode.customers, args.seed)
            sources[label] = source
            res["generate"].append(
                {
                    "label": label,
                    "events": events,
                    "seconds": seconds,
                    "bytes": source.stat().st_size,
                }
            )
            import_runs = min(runs, args.runs)
            # PostgreSQL takes the sets up to 1M: its 10M import alone would take most of an
            # hour here; the 10M read goal is measured on SQLite, the default backend.
            for backend_pg in [None, pg] if pg and events <= PG_MAX_EVENTS else [None]:
                imp, database = measure_imports(label, events, import_runs, source, backend_pg, tmp)
                res["imports"].append(imp)
                databases[(label, imp["backend"])] = database
                res["reads"].append(
                    measure_reads(label, imp["backend"], database, mode, args.runs, tmp)
                )
        # 3. Ingest: single events against the bare app, bulk, and PostgreSQL x1/x2/x4,
        # interleaved run by run so that drift of a shared machine touches them all alike.
        res["ingest"] = {"runs": [], "durability": [0, 0]}
        res["bulk"] = {"runs": []}
        res["scale"] = {str(n): [] for n in (1, 2, 4)} if pg else {}
        for index in range(1, args.runs + 1):
            with measuring() as before:
                log(f"single-event ingest and bare app, run {index}/{args.runs} …")
                rnd = bench_round(wrk_args, index, tmp, stamp)
            res["ingest"]["runs"].append(
                {
                    **before,
                    "trackway": dataclasses.asdict(rnd.trackway),
                    "bare": dataclasses.asdict(rnd.bare),
                }
            )
            if rnd.durability:
                res["ingest"]["durability"] = list(rnd.durability)
            with measuring() as before:
                log(f"bulk ingest, run {index}/{args.runs} …")
                res["bulk"]["runs"].append({**before, **bulk_round(args, index, tmp)})
            for workers in (1, 2, 4) if pg else ():
                work = Path(tempfile.mkdtemp(dir=tmp))
                database = scale.fresh_postgres(pg)  # type: ignore[arg-type]
                with measuring() as before:
                    log(f"PostgreSQL x{workers}, run {index}/{args.runs} …")
                    wrk = scale.measure(database, workers, wrk_args, work)
                res["scale"][str(workers)].append({**before, "wrk": dataclasses.asdict(wrk)})
                drop_database(database)
        # 4. A profile for every missed goal.
        if args.no_profile:
            log("--no-profile: no profiles")
        elif not (BIN / "py-spy").exists():
            log("py-spy is not installed: no profiles")
        else:
            profile_missed(res, args, mode, sources, databases, pg, tmp, stamp)
        for database in databases.values():
            drop_database(database)
    res["meta"]["elapsed_s"] = time.perf_counter() - started
    return res


def missed_goals(res: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The missed goals that get a profile, each yielded inside `measuring()`: the caller's
    profile run holds the lock."""
    for goal in goals(res):
        # size: the dbstat breakdown in the size section is its profile.
        if goal["met"] or goal["key"].startswith("size-"):
            continue
        with measuring():
            log(f"profile: {goal['goal']} …")
            yield goal


def profile_missed(
    res: dict[str, Any],
    args: argparse.Namespace,
    mode: Mode,
    sources: dict[str, Path],
    databases: dict[tuple[str, str], str],
    pg: str | None,
    tmp: Path,
    stamp: str,
) -> None:
    wrk_args = argparse.Namespace(duration=args.duration, connections=args.connections)
    profiles = res["profiles"]
    for goal in missed_goals(res):
        key = goal["key"]
        if key.startswith("import-"):
            label = key.removeprefix("import-")
            p = profile_import(sources[label], tmp, f"{stamp}-{key}")
            profiles[key] = {
                "title": f"Import of {label} events into SQLite",
                "note": f"`py-spy record --threads` around `trackway import` "
                f"(this run: {p['summary']['events_per_second']:,} events/s under "
                f"the sampler).",
                "text": p["text"],
            }
        elif key == "ingest":
            database = f"sqlite:///{tempfile.mkdtemp(dir=tmp)}/bench.db"
            p = profile_load(wrk_args, database, 1, LUA, f"{stamp}-ingest", tmp)
            profiles[key] = {
                "title": "Single-event ingest, SQLite, 1 worker",
                "note": f"(this run: {p['wrk']['rps']:,.0f} events/s, p99 "
                f"{p['wrk']['p99_ms']:.1f} ms under the sampler)",
                "text": p["text"],
            }
        elif key == "bulk":
            database = f"sqlite:///{tempfile.mkdtemp(dir=tmp)}/bench.db"
            p = profile_load(wrk_args, database, 1, BULK_LUA, f"{stamp}-bulk", tmp)
            profiles[key] = {
                "title": f"Bulk ingest, {BULK_EVENTS} events a call, SQLite, 1 worker",
                "note": f"(this run: {p['wrk']['rps'] * BULK_EVENTS:,.0f} events/s "
                "under the sampler)",
                "text": p["text"],
            }
        elif key == "scale" and pg:
            database = scale.fresh_postgres(pg)
            p = profile_load(wrk_args, database, 2, LUA, f"{stamp}-pg2", tmp)
            drop_database(database)
            profiles[key] = {
                "title": "Single-event ingest, PostgreSQL, 2 workers",
                "note": f"py-spy follows both worker processes (`--subprocesses`); "
                f"this run: {p['wrk']['rps']:,.0f} events/s under the sampler",
                "text": p["text"],
            }
        elif key.startswith("reads-"):
            _, label, backend = key.split("-")
            rd = next(r for r in res["reads"] if (r["label"], r["backend"]) == (label, backend))
            seconds = med(p["seconds"] for p in rd["passes"])
            text = profile_reads(databases[(label, backend)], mode, seconds, tmp, f"{stamp}-{key}")
            profiles[key] = {
                "title": f"Reads on {label} events, {backend} (worst: {goal['worst']})",
                "note": "One more pass (200 customer look-ups, then history, "
                "show_events and summary) with the server sampled throughout; the "
                "requests are sequential, so the server is idle between them.",
                "text": text,
            }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small set, 1 run, short runs")
    size.add_argument("--full", action="store_true", help="also the 10M-event set")
    parser.add_argument(
        "--postgres", action="store_true", help="also PostgreSQL (needs TRACKWAY_TEST_POSTGRES_URL)"
    )
    parser.add_argument("--runs", type=int, help="runs per figure (default 3; --quick 1)")
    parser.add_argument("--duration", type=int, help="seconds per wrk run (default 10; --quick 3)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seed", type=int, default=1, help="of the generated data sets")
    parser.add_argument("--no-profile", action="store_true", help="no py-spy profiles")
    parser.add_argument(
        "--lock",
        type=Path,
        metavar="FILE",
        help="hold an exclusive flock on FILE during each measurement (a shared machine's "
        "other work waits for it by taking FILE shared)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="directory of RESULTS.md and the PNGs (default bench/; --quick: bench/out/quick)",
    )
    parser.add_argument(
        "--render",
        type=Path,
        metavar="JSON",
        help="only write RESULTS.md and the PNGs from a run's saved results",
    )
    args = parser.parse_args()
    global LOCK
    LOCK = args.lock
    mode = MODES["quick" if args.quick else "full" if args.full else "default"]
    args.runs = args.runs or mode.runs
    args.duration = args.duration or mode.duration
    out = args.out or (OUT / "quick" if args.quick else BENCH)
    if args.render:
        res = json.loads(args.render.read_text())
    else:
        pg = os.environ.get("TRACKWAY_TEST_POSTGRES_URL") if args.postgres else None
        if args.postgres and not pg:
            sys.exit("--postgres needs TRACKWAY_TEST_POSTGRES_URL: scripts/with-postgres bench/run")
        if shutil.which("wrk") is None:
            sys.exit("wrk not found: install it with `apt-get install wrk`")
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            sys.exit(f"matplotlib is missing: {BIN / 'pip'} install -e '.[bench]'")
        OUT.mkdir(exist_ok=True)
        res = run(args, mode, pg)
        saved = OUT / f"suite-{time.strftime('%Y%m%d-%H%M%S')}.json"
        saved.write_text(json.dumps(res, indent=1))
        log(f"results saved to {saved} (re-render: bench/run --render {saved})")
    out.mkdir(parents=True, exist_ok=True)
    (out / "RESULTS.md").write_text(render(res))
    for path in plot(res, out):
        log(f"wrote {path}")
    log(f"wrote {out / 'RESULTS.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
