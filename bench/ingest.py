#!/usr/bin/env python3
"""Ingest throughput: single-event POST /api/v1/event against `trackway serve`, and the bare ASGI
ceiling (bench/bare_app.py) under the same uvicorn, in the same run. See bench/README.md."""

from __future__ import annotations

import argparse
import base64
import collections
import contextlib
import datetime
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
OUT = BENCH / "out"
BIN = Path(sys.executable).parent
WARMUP_S = 2
PYSPY_RATE = 100
CUSTOMERS_PER_THREAD = 20_000  # customers cycle: most events come from returning customers

# Each wrk thread has its own Lua state; setup() hands each one an id for its customer_ids.
LUA = """\
local next_id = 0
function setup(thread) thread:set("tid", next_id); next_id = next_id + 1 end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Basic %(auth)s"
local n = 0
request = function()
  n = n + 1
  local body = string.format('{"event":"view","customer_id":"bench-%%d-%%d",'
    .. '"product_id":"SKU-%%d","category":"shoes","price":59.9,"currency":"USD",'
    .. '"in_stock":true,"page_url":"https://shop.example.com/p/%%d?ref=home"}',
    tid, n %% %(customers)d, n %% 997, n %% 997)
  return wrk.format(nil, "/api/v1/event", nil, body)
end
"""


@dataclass
class Wrk:
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int

    @property
    def ok(self) -> int:
        return self.requests - self.non_2xx


@dataclass
class Round:
    trackway: Wrk
    bare: Wrk
    profiled: bool
    durability: tuple[int, int] | None  # (rows in events, 2xx counted by wrk), last run only
    # The request path alone: the app on a store that answers at once (bench/null_store.py).
    path: Wrk | None = None
    # CPU µs per answered request of every process of each side's server, from /proc.
    cpu_us: dict[str, float] | None = None
    # trackway's group commits over the measured run, from /metrics: (commits, events, seconds).
    commits: tuple[float, float, float] | None = None

    @property
    def ratio(self) -> float:
        return self.trackway.rps / self.bare.rps

    @property
    def path_ratio(self) -> float:
        return self.path.rps / self.bare.rps if self.path else 0.0

    def cpu_ratio(self, side: str) -> float:
        """CPU per request of `side` over the bare app's."""
        cpu = self.cpu_us or {}
        return cpu.get(side, 0.0) / cpu["bare"] if cpu.get("bare") else 0.0


TICK = os.sysconf("SC_CLK_TCK")


COMMIT_SERIES = (
    "trackway_group_commit_events_count",
    "trackway_group_commit_events_sum",
    "trackway_group_commit_seconds_sum",
)


def commit_totals(port: int) -> tuple[float, float, float]:
    """(group commits, events in them, seconds spent in them) so far, from /metrics (of the
    API worker that answers it: with --workers 1, all of them)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    found = dict.fromkeys(COMMIT_SERIES, 0.0)
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in found:
            found[name] = float(value)
    a, b, c = (found[name] for name in COMMIT_SERIES)
    return a, b, c


def group_cpu_seconds(pgid: int, only: bytes | None = None) -> float:
    """User + system CPU seconds of every live process of a process group (a server started
    in its own session: uvicorn, its workers, the SQLite writer process); with `only`, of
    those whose command line holds it."""
    ticks = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            mine = int(fields[2]) == pgid
            if mine and only is not None:
                mine = only in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:  # gone meanwhile
            continue
        if mine:  # fields: state ppid pgrp ... utime(11) stime(12)
            ticks += int(fields[11]) + int(fields[12])
    return ticks / TICK


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def to_ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def parse_wrk(text: str) -> Wrk:
    def find(pattern: str) -> re.Match[str] | None:
        return re.search(pattern, text, re.MULTILINE)

    done, rps = find(r"^\s*(\d+) requests in"), find(r"^Requests/sec:\s*([\d.]+)")
    p50, p99 = find(r"^\s*50%\s+(\S+)"), find(r"^\s*99%\s+(\S+)")
    if not (done and rps and p50 and p99):
        raise RuntimeError(f"could not parse wrk's output:\n{text}")
    non_2xx = find(r"Non-2xx or 3xx responses:\s*(\d+)")
    sock = find(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
    return Wrk(
        requests=int(done[1]),
        rps=float(rps[1]),
        p50_ms=to_ms(p50[1]),
        p99_ms=to_ms(p99[1]),
        non_2xx=int(non_2xx[1]) if non_2xx else 0,
        socket_errors=sum(int(g) for g in sock.groups()) if sock else 0,
    )


def run_wrk(port: int, lua: Path, seconds: int, connections: int) -> Wrk:
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(lua)]
    done = subprocess.run(
        [*cmd, f"http://127.0.0.1:{port}/"], capture_output=True, text=True, check=True
    )
    return parse_wrk(done.stdout)


def wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as response:
            if response.status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"server not ready after {timeout:.0f}s:\n{log.read_text()}")


@contextlib.contextmanager
def server(
    cmd: list[str],
    port: int,
    log: Path,
    cwd: Path,
    hard_stop: bool = False,
    env: dict[str, str] | None = None,
) -> Iterator[int]:
    """Run `cmd` in its own process group until the block ends; yield its pid."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=cwd, stdout=out, stderr=out, start_new_session=True, env=env
        )
    try:
        wait_ready(proc, f"http://127.0.0.1:{port}/healthz", log)
        yield proc.pid
    finally:
        stop(proc, signal.SIGKILL if hard_stop else signal.SIGINT)


def stop(proc: subprocess.Popen[bytes], how: signal.Signals) -> None:
    """Signal the whole process group (uvicorn's workers too); SIGKILL it after 15 s."""
    with contextlib.suppress(ProcessLookupError):  # gone already
        os.killpg(proc.pid, how)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def profiled(pid: int, seconds: int, workers: int, stamp: str) -> list[subprocess.Popen[bytes]]:
    """Two non-blocking samplers (they do not pause the server, so both can run at once): the
    flame graph, and raw collapsed stacks per thread for the self-time summary."""
    base = [str(BIN / "py-spy"), "record", "--pid", str(pid), "--duration", str(seconds)]
    base += ["--rate", str(PYSPY_RATE), "--nonblocking"]
    # Every process of serve: its API workers and, on SQLite, its writer process.
    base += ["--subprocesses"]
    flame = [*base, "--format", "flamegraph", "-o", str(OUT / f"flame-{stamp}.svg")]
    raw = [*base, "--threads", "--format", "raw", "-o", str(OUT / f"stacks-{stamp}.txt")]
    with (OUT / f"py-spy-{stamp}.log").open("ab") as log:
        return [subprocess.Popen(cmd, stdout=log, stderr=log) for cmd in (flame, raw)]


def thread_label(name: str) -> str:
    """py-spy names a process by its command line: its paths and ports say nothing here."""
    return re.sub(r'^(process \d+):".*"$', r"\1: trackway serve", name)


def self_time_top(stacks: Path, seconds: int, top: int = 20) -> str:
    """How busy each thread was (non-idle samples over possible samples), then per function
    (leaf frame, line numbers dropped) its share of all non-idle samples."""
    counts: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    for line in stacks.read_text().splitlines():
        path, _, count = line.rpartition(" ")
        if not (path and count.isdigit()):
            continue
        frames = path.split(";")  # with --threads, the first frame names the thread
        threads[thread_label(frames[0])] += int(count)
        counts[re.sub(r":\d+\)$", ")", frames[-1])] += int(count)
    total = sum(counts.values()) or 1
    busy = [f"{n / (PYSPY_RATE * seconds):6.1%}  {name}" for name, n in threads.most_common()]
    rows = [f"{n / total:6.1%}  {frame}" for frame, n in counts.most_common(top)]
    return "\n".join(
        [f"busy share of each thread ({PYSPY_RATE} Hz for {seconds}s):", *busy, "",
         f"self time, top {top} of {total} non-idle samples:", *rows]
    )  # fmt: skip


def bench_round(args: argparse.Namespace, index: int, tmp: Path, stamp: str) -> Round:
    workdir = Path(tempfile.mkdtemp(prefix=f"round{index}-", dir=tmp))
    database = f"sqlite:///{workdir}/bench.db"  # workdir is absolute: sqlite:////…
    trackway = str(BIN / "trackway")
    created = subprocess.run(
        [trackway, "accounts", "create", "bench", "--json", "--database", database],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    key = json.loads(created.stdout)["event_api_key"]
    lua = workdir / "event.lua"
    auth = base64.b64encode(f"{key}:".encode()).decode()
    lua.write_text(LUA % {"auth": auth, "customers": CUSTOMERS_PER_THREAD})
    last = index == args.runs
    profile = args.profile and last
    results: dict[str, Wrk] = {}

    cpu_us: dict[str, float] = {}
    commits: dict[str, tuple[float, float, float]] = {}

    def drive(name: str, cmd: list[str], port: int, cwd: Path) -> None:
        with server(cmd, port, workdir / f"{name}.log", cwd, hard_stop=last, env=env) as pid:
            warm = run_wrk(port, lua, WARMUP_S, args.connections)
            watch = profile and name == "trackway"  # py-spy watches only trackway
            samplers = profiled(pid, args.duration, args.workers, stamp) if watch else []
            cpu_before = group_cpu_seconds(pid)
            writer_before = group_cpu_seconds(pid, b"writer")
            commits_before = commit_totals(port) if name == "trackway" else None
            results[name] = run_wrk(port, lua, args.duration, args.connections)
            cpu = group_cpu_seconds(pid) - cpu_before
            if commits_before is not None:
                after = commit_totals(port)
                n, e, t = (a - b for a, b in zip(after, commits_before, strict=True))
                commits[name] = (n, e, t)
            cpu_us[name] = cpu * 1e6 / max(1, results[name].ok)
            if name == "trackway":  # the SQLite writer process's share of it
                writer = group_cpu_seconds(pid, b"writer") - writer_before
                cpu_us["writer"] = writer * 1e6 / max(1, results[name].ok)
            results[name + "-warmup"] = warm
            for sampler in samplers:
                sampler.wait(timeout=args.duration + 30)

    env = {**os.environ, "TRACKWAY_BENCH_KEY": key}
    tw_port, bare_port, path_port = free_port(), free_port(), free_port()
    tw_cmd = [trackway, "serve", "--workers", str(args.workers), "--port", str(tw_port)]
    tw_cmd += ["--database", database, "--log-level", "warning"]
    bare_cmd = [str(BIN / "uvicorn"), "bare_app:app", "--loop", "uvloop", "--http", "httptools"]
    bare_cmd += ["--no-access-log", "--no-server-header", "--log-level", "warning"]
    bare_cmd += ["--workers", str(args.workers), "--port", str(bare_port)]
    path_cmd = [sys.executable, "null_store.py", "--port", str(path_port)]
    path_cmd += ["--workers", str(args.workers)]
    # Alternate the order, so that drift of a shared machine does not always favour one side.
    plan = [("trackway", tw_cmd, tw_port, ROOT), ("bare", bare_cmd, bare_port, BENCH)]
    if args.path:
        plan.insert(1, ("path", path_cmd, path_port, BENCH))
    for name, cmd, port, cwd in plan if index % 2 else plan[::-1]:
        drive(name, cmd, port, cwd)
    tw = results["trackway"]
    if tw.non_2xx or results["trackway-warmup"].non_2xx:
        print(f"\n!!! FAILED: trackway answered {tw.non_2xx} non-2xx in round {index} !!!\n")
        print((workdir / "trackway.log").read_text()[-4000:], file=sys.stderr)
    durability = None
    if last:
        with contextlib.closing(sqlite3.connect(workdir / "bench.db")) as conn:
            rows = int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
        durability = (rows, tw.ok + results["trackway-warmup"].ok)
    return Round(
        tw, results["bare"], profile, durability, results.get("path"), cpu_us,
        commits.get("trackway"),
    )  # fmt: skip


def publish(kind: str, report: str) -> None:
    """Print a benchmark's report and keep it as bench/out/KIND-<stamp>.md."""
    print(report)
    OUT.mkdir(exist_ok=True)
    (OUT / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}.md").write_text(report + "\n")


def machine() -> str:
    mem = re.search(r"MemTotal:\s*(\d+) kB", Path("/proc/meminfo").read_text())
    gib = int(mem[1]) / 2**20 if mem else 0.0
    load = Path("/proc/loadavg").read_text().split()[:3]
    return f"{os.cpu_count()} CPUs, {gib:.1f} GiB RAM, load average {' '.join(load)} at start"


def commit() -> str:
    git = ["git", "-C", str(ROOT)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run([*git, "status", "--porcelain", "src"], capture_output=True, text=True)
    note = " (src/ has uncommitted changes)" if dirty.stdout else ""
    spec = importlib.util.find_spec("trackway")
    origin = Path(spec.origin).resolve() if spec is not None and spec.origin else None
    if origin is None or (ROOT / "src").resolve() not in origin.parents:
        note += " (trackway imported from outside this checkout)"
    return head.stdout.strip() + note


def report(rounds: list[Round], args: argparse.Namespace, load: str) -> str:
    med = statistics.median
    with_path = all(r.path is not None for r in rounds)
    head = "| run | trackway ev/s | p50 ms | p99 ms | bare req/s | p99 ms | ratio |"
    head += " trackway CPU µs/event | bare CPU µs/req | CPU ratio |"
    if with_path:
        head += " path req/s | path ratio | path CPU µs/req |"
    lines = [head, "|" + "---|" + "---:|" * (head.count("|") - 2)]

    def row(label: str, values: list[str]) -> str:
        return f"| {label} | " + " | ".join(values) + " |"

    def cells(t: Wrk, b: Wrk, ratio: float, cpu: dict[str, float], path: Wrk | None) -> list[str]:
        tw_cpu, bare_cpu = cpu.get("trackway", 0.0), cpu.get("bare", 0.0)
        out = [f"{t.rps:,.0f}", f"{t.p50_ms:.2f}", f"{t.p99_ms:.2f}", f"{b.rps:,.0f}",
               f"{b.p99_ms:.2f}", f"{ratio:.2f}x", f"{tw_cpu:.1f}", f"{bare_cpu:.1f}",
               f"{tw_cpu / bare_cpu if bare_cpu else 0:.2f}x"]  # fmt: skip
        if with_path and path is not None:
            out += [f"{path.rps:,.0f}", f"{path.rps / b.rps:.2f}x", f"{cpu.get('path', 0):.1f}"]
        return out

    for i, r in enumerate(rounds, 1):
        label = f"{i}{' (py-spy)' if r.profiled else ''}"
        lines.append(row(label, cells(r.trackway, r.bare, r.ratio, r.cpu_us or {}, r.path)))

    def median_wrk(side: str) -> Wrk:
        runs = [getattr(r, side) for r in rounds]
        return Wrk(0, *(med(getattr(w, f) for w in runs) for f in ("rps", "p50_ms", "p99_ms")),
                   0, 0)  # fmt: skip

    cpu_median = {
        side: med((r.cpu_us or {}).get(side, 0.0) for r in rounds)
        for side in ("trackway", "bare", "path", "writer")
    }
    median_cells = cells(
        median_wrk("trackway"), median_wrk("bare"), med(r.ratio for r in rounds), cpu_median,
        median_wrk("path") if with_path else None,
    )  # fmt: skip
    # Ratios are medians of each run's ratio, not ratios of the medians.
    median_cells[5] = f"{med(r.ratio for r in rounds):.2f}x"
    median_cells[8] = f"{med(r.cpu_ratio('trackway') for r in rounds):.2f}x"
    if with_path:
        median_cells[10] = f"{med(r.path_ratio for r in rounds):.2f}x"
    lines.append(row("**median**", median_cells))
    non_2xx = sum(r.trackway.non_2xx for r in rounds)
    sock = [(r.trackway.socket_errors, r.bare.socket_errors) for r in rounds]
    rows, acked = rounds[-1].durability or (0, 0)
    p99 = median_wrk("trackway").p99_ms
    lines += [
        "",
        f"- trackway non-2xx: {non_2xx}{'  **FAILED**' if non_2xx else ''}; "
        f"socket errors (trackway, bare) per run: {sock}",
        f"- durability (last run, server SIGKILLed after wrk): {rows:,} rows in events, "
        f"{acked:,} 2xx counted by wrk (warm-up + run): {'OK' if rows >= acked else '**LOST**'}",
        "- CPU: user + system time of every process of each server (from /proc) over the "
        "measured run, per answered request; of trackway's (medians), the API process(es) "
        f"{cpu_median['trackway'] - cpu_median['writer']:.1f} µs, the SQLite writer process "
        f"{cpu_median['writer']:.1f} µs",
        commit_line(rounds, args.duration),
        f"- goals (issue 14): ratio >= 0.5x (0.65x with the writer process), p99 < 20 ms, "
        f"CPU ratio <= 2.5x, path ratio >= 0.8x; here {med(r.ratio for r in rounds):.2f}x, "
        f"{p99:.2f} ms, {med(r.cpu_ratio('trackway') for r in rounds):.2f}x"
        + (f", {med(r.path_ratio for r in rounds):.2f}x" if with_path else ""),
        f"- command: `{' '.join(['.venv/bin/python', 'bench/ingest.py', *sys.argv[1:]])}` "
        f"(wrk -t2 -c{args.connections} -d{args.duration}s --latency, after {WARMUP_S}s warm-up;"
        f" --workers {args.workers})",
        f"- machine: {load}",
        f"- commit: {commit()}; date: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
    ]
    return "\n".join(lines)


def commit_line(rounds: list[Round], seconds: int) -> str:
    """What the group commits looked like: their size and length, and the share of the run
    spent in them (the writer is the pipeline's serial step: below 100%, it waits for jobs)."""
    med = statistics.median
    stats = [r.commits for r in rounds if r.commits and r.commits[0]]
    if not stats:
        return "- group commits: none reported by /metrics"
    events = med(e / n for n, e, _ in stats)
    ms = med(s * 1000 / n for n, _, s in stats)
    busy = med(s / seconds for _, _, s in stats)
    return (
        f"- group commits (from /metrics, medians of the runs): {events:.1f} events and "
        f"{ms:.2f} ms each; the writer was in a transaction {busy:.0%} of the run"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--profile", action="store_true", help="py-spy the last run's trackway")
    parser.add_argument(
        "--no-path",
        dest="path",
        action="store_false",
        help="leave out the request path alone (the app on bench/null_store.py)",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: install it with `apt-get install wrk`")
    if args.profile and not (BIN / "py-spy").exists():
        sys.exit(f"--profile needs py-spy: {BIN / 'pip'} install py-spy")
    OUT.mkdir(exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    load = machine()
    rounds = []
    with tempfile.TemporaryDirectory(prefix="trackway-bench-") as tmp:
        for index in range(1, args.runs + 1):
            print(f"run {index}/{args.runs} …", file=sys.stderr, flush=True)
            try:
                rounds.append(bench_round(args, index, Path(tmp), stamp))
            except subprocess.CalledProcessError as exc:
                sys.exit(f"{' '.join(map(str, exc.cmd))} failed:\n{exc.stdout}\n{exc.stderr}")
            except RuntimeError as exc:
                sys.exit(str(exc))
    table = report(rounds, args, load)
    print(table)
    (OUT / f"ingest-{stamp}.md").write_text(f"# bench/ingest.py, {stamp}\n\n{table}\n")
    if args.profile:
        summary = self_time_top(OUT / f"stacks-{stamp}.txt", args.duration)
        (OUT / f"profile-{stamp}.txt").write_text(summary + "\n")
        print(f"\n{summary}\n\nflame graph: {OUT / f'flame-{stamp}.svg'}")
    rows, acked = rounds[-1].durability or (0, 0)
    failed = any(r.trackway.non_2xx for r in rounds) or rows < acked
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
