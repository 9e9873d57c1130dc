"""The writer process of a SQLite `trackway serve`: one per database, shared by every API worker;
killed (kill -9) under load it is started anew by serve, the API workers answer 503 with
Retry-After meanwhile (never 500, never a hang), and no acknowledged event is lost or stored
twice on retry; a job that fails inside the transaction fails alone; SIGTERM stops it after the
API workers; the commands that write keep working beside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import (
    Account,
    Server,
    basic,
    create_account,
    query,
    run_cli,
    sqlite_url,
    trackway_command,
)

from trackway.domain.errors import StoreUnavailable
from trackway.domain.events import validate_event
from trackway.domain.timestamps import now_ms
from trackway.store.sqlite import remote, wire
from trackway.store.sqlite.store import SQLiteStore

# A request must be answered within this, whatever happens to the writer.
BOUND_SECONDS = 10.0


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


def command_line(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [part.decode() for part in f.read().split(b"\0") if part]
    except OSError:
        return []


def writers(server: Server) -> list[int]:
    """The writer processes of this server: its children whose command line names `writer`."""
    assert server.process is not None
    return [
        pid
        for pid in children(server.process.pid)
        if "writer" in command_line(pid) and "trackway" in " ".join(command_line(pid))
    ]


def the_writer(server: Server, seconds: float = 10.0) -> int:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = writers(server)
        if len(found) == 1:
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"no single writer process: {writers(server)}")


def event(**extra: Any) -> dict[str, Any]:
    return {"event": "view", "cookie": f"c-{uuid.uuid4().hex[:6]}", "event_uuid": str(uuid.uuid4()),
            **extra}  # fmt: skip


class Load:
    """Threads posting single events with their own uuids; a 503 is retried (same uuid) until
    it is acknowledged, as a client following Retry-After would."""

    def __init__(self, server: Server, account: Account, threads: int = 12) -> None:
        self.server = server
        self.account = account
        self.acked: list[str] = []
        self.statuses: list[int] = []
        self.slowest = 0.0
        self.bad: list[str] = []
        self.transport_errors = 0
        self.latencies: list[float] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run) for _ in range(threads)]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)

    def run(self) -> None:
        with httpx.Client(base_url=self.server.url, timeout=30) as client:
            pending: dict[str, Any] | None = None
            while not self.stop.is_set():
                body = pending or event()
                started = time.monotonic()
                try:
                    response = client.post(
                        "/api/v1/event", json=body, headers=basic(self.account.event_key)
                    )
                except httpx.TransportError:
                    # Only while the server stops (SIGTERM): it no longer takes connections.
                    process = self.server.process
                    if process is not None and process.poll() is not None:
                        return
                    with self.lock:
                        self.transport_errors += 1
                    time.sleep(0.01)
                    continue
                took = time.monotonic() - started
                with self.lock:
                    self.slowest = max(self.slowest, took)
                    self.latencies.append(took)
                    self.statuses.append(response.status_code)
                    if response.status_code == 200:
                        self.acked.append(body["event_uuid"])
                        pending = None
                    elif response.status_code == 503 and "retry-after" in response.headers:
                        pending = body
                    else:
                        self.bad.append(f"{response.status_code} {response.text[:200]}")
                if pending is not None:
                    time.sleep(0.05)

    def count(self) -> int:
        with self.lock:
            return len(self.acked)

    def acked_after(self, count: int, more: int, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.count() >= count + more:
                return True
            time.sleep(0.02)
        return False


def check_stored(account: Account, acked: list[str]) -> None:
    rows = query(
        account.db_path,
        "SELECT count(*) AS n, count(DISTINCT event_uuid) AS d FROM events WHERE account_id = ?",
        [account.id],
    )
    assert rows[0]["n"] == rows[0]["d"], "an event stored twice"
    stored = {r["event_uuid"] for r in account.events()}
    missing = set(acked) - stored
    assert not missing, f"{len(missing)} acknowledged events lost"
    assert len(set(acked)) == len(acked)


@pytest.mark.parametrize("workers", [1, 2])
def test_writer_killed_under_load_is_restarted_and_nothing_acknowledged_is_lost(
    tmp_path: Path, workers: int
) -> None:
    db_path = tmp_path / "trackway.db"
    account = create_account(db_path)
    server = Server(db_path, tmp_path / "server.log", "--workers", str(workers)).start()
    recoveries = []
    try:
        first = the_writer(server)
        assert command_line(first)[1:4] == ["-m", "trackway", "writer"]
        with Load(server, account) as load:
            assert load.acked_after(0, 200, 30), "no load"
            writer = first
            for _ in range(2):
                os.kill(writer, signal.SIGKILL)
                killed_at = time.monotonic()
                before = load.count()
                # Writes succeed again within seconds, nobody restarting anything.
                assert load.acked_after(before, 50, 15), "no writes after the writer was killed"
                recoveries.append(time.monotonic() - killed_at)
                writer = the_writer(server)
                assert writer != first
            assert load.acked_after(load.count(), 100, 15)
        assert not load.bad, load.bad[:5]
        assert load.transport_errors == 0
        assert set(load.statuses) <= {200, 503}
        assert load.slowest < BOUND_SECONDS, load.slowest
    finally:
        server.stop()
    check_stored(account, load.acked)
    log = server.log()
    assert "Traceback" not in log, log[-5000:]
    assert log.count("was killed by SIGKILL") == 2, log[-3000:]
    print(
        f"--workers {workers}: {len(load.acked)} acknowledged (all stored once), "
        f"{load.statuses.count(503)} answered 503 and retried, writes again "
        f"{', '.join(f'{s:.2f}' for s in recoveries)} s after each kill, slowest answer "
        f"{load.slowest:.2f} s"
    )


def test_two_api_workers_share_one_writer(tmp_path: Path) -> None:
    db_path = tmp_path / "trackway.db"
    account = create_account(db_path)
    server = Server(db_path, tmp_path / "server.log", "--workers", "2").start()
    try:
        writer = the_writer(server)
        assert server.process is not None
        api_workers = [
            p for p in children(server.process.pid) if "spawn_main" in " ".join(command_line(p))
        ]
        assert len(api_workers) == 2, [command_line(p) for p in children(server.process.pid)]
        # Both API workers are connected to the one writer once each has taken an event.
        with Load(server, account, threads=16) as load:
            assert load.acked_after(0, 400, 30)
        assert set(load.statuses) == {200}
        assert writers(server) == [writer]
        sockets = os.listdir(f"/proc/{writer}/fd")
        unix_peers = [
            fd for fd in sockets if os.readlink(f"/proc/{writer}/fd/{fd}").startswith("socket:")
        ]
        # The listening socket, and one connection per API worker at least.
        assert len(unix_peers) >= 3, unix_peers
    finally:
        server.stop()
    check_stored(account, load.acked)
    assert "Traceback" not in server.log()


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_stops_the_writer_after_the_api_workers(tmp_path: Path, workers: int) -> None:
    """SIGTERM to the whole process group (as systemd or Ctrl-C do): the writer too gets it,
    and still answers every request the draining API workers hand it."""
    db_path = tmp_path / "trackway.db"
    account = create_account(db_path)
    server = Server(db_path, tmp_path / "server.log", "--workers", str(workers)).start()
    assert server.process is not None
    writer = the_writer(server)
    with Load(server, account, threads=12) as load:
        assert load.acked_after(0, 200, 30)
        os.killpg(server.process.pid, signal.SIGTERM)
        server.process.wait(30)
        load.stop.set()
    assert not Path(f"/proc/{writer}").exists() or ") Z" in Path(f"/proc/{writer}/stat").read_text()
    assert set(load.statuses) == {200}, sorted(set(load.statuses))
    check_stored(account, load.acked)
    log = server.log()
    assert "Traceback" not in log, log[-5000:]
    assert "starting a new one" not in log


@pytest.mark.parametrize("workers", [1, 2])
def test_a_request_in_flight_at_sigterm_is_stored_by_a_worker_that_had_not_written_yet(
    tmp_path: Path, workers: int
) -> None:
    """The writer gets the process group's SIGTERM as soon as the API workers do, but a worker
    still drains its requests after that, and one that had written nothing yet connects to the
    writer only then: the writer keeps listening until serve, after the workers, lets it go."""
    db_path = tmp_path / "trackway.db"
    account = create_account(db_path)
    server = Server(db_path, tmp_path / "server.log", "--workers", str(workers)).start()
    assert server.process is not None and server.port is not None
    writer = the_writer(server)
    body = json.dumps(event()).encode()
    head = (
        f"POST /api/v1/event HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: {basic(account.event_key)['Authorization']}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as conn:
        conn.sendall(head + body[:10])
        time.sleep(0.5)  # the request is in a worker, waiting for the rest of its body
        os.killpg(server.process.pid, signal.SIGTERM)
        time.sleep(1.0)  # the writer has had the signal
        assert writers(server) == [writer], "the writer stopped before the API workers"
        conn.sendall(body[10:])
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = conn.recv(65536)
            if not chunk:
                break
            answer += chunk
    server.process.wait(30)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
    assert [row["event_uuid"] for row in account.events()] == [json.loads(body)["event_uuid"]]
    log = server.log()
    assert "Traceback" not in log, log[-5000:]
    assert "starting a new one" not in log


def poison_events(db_path: Path) -> None:
    """A trigger that makes the INSERT of an event named `poison` fail inside its transaction."""
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        conn.execute(
            "CREATE TRIGGER poison BEFORE INSERT ON events WHEN NEW.event = 'poison'"
            " BEGIN SELECT RAISE(ABORT, 'poisoned event'); END"
        )
        conn.commit()


def test_a_job_failing_in_the_transaction_fails_alone(tmp_path: Path) -> None:
    """Jobs handed over in one turn of the event loop share one group commit; one whose event
    a trigger refuses fails, the others of its group are stored."""
    db_path = tmp_path / "trackway.db"
    account = create_account(db_path)
    poison_events(db_path)

    async def run() -> list[Any]:
        store = SQLiteStore(db_path)
        await store.open()
        try:
            found = await store.find_account(account.uuid)
            received = now_ms()
            jobs = []
            for i in range(20):
                name = "poison" if i in (3, 11) else "view"
                accepted = validate_event({"event": name, "cookie": f"c{i}"}, received, None)
                jobs.append(store.ingest(found, [accepted]))
            return await asyncio.gather(*jobs, return_exceptions=True)
        finally:
            await store.close()

    results = asyncio.run(run())
    failed = [i for i, r in enumerate(results) if isinstance(r, BaseException)]
    assert failed == [3, 11], results
    assert all(r.stored == 1 for i, r in enumerate(results) if i not in failed)
    assert len(account.events()) == 18


def test_a_failing_job_over_http_fails_alone(tmp_path: Path) -> None:
    db_path = tmp_path / "trackway.db"
    account = create_account(db_path)
    server = Server(db_path, tmp_path / "server.log", "--workers", "2").start()
    try:
        poison_events(db_path)
        statuses: dict[str, list[int]] = {"view": [], "poison": []}
        lock = threading.Lock()

        def send(name: str) -> None:
            with httpx.Client(base_url=server.url, timeout=30) as client:
                for _ in range(20):
                    response = client.post(
                        "/api/v1/event",
                        json=event(event=name) | {"event": name},
                        headers=basic(account.event_key),
                    )
                    with lock:
                        statuses[name].append(response.status_code)

        threads = [threading.Thread(target=send, args=("view",)) for _ in range(12)]
        threads += [threading.Thread(target=send, args=("poison",)) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    finally:
        server.stop()
    assert set(statuses["view"]) == {200}, statuses["view"]
    assert set(statuses["poison"]) == {500}
    assert len(account.events()) == len(statuses["view"])
    grouped = server.log().count("each job retried on its own")
    print(f"poisoned jobs shared a group commit with others {grouped} times; those were stored")


def test_commands_that_write_work_beside_a_running_server(tmp_path: Path) -> None:
    db_path = tmp_path / "trackway.db"
    account = create_account(db_path)
    database = sqlite_url(db_path)
    server = Server(db_path, tmp_path / "server.log", "--workers", "2").start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            response = client.post(
                "/api/v1/event",
                json={"event": "signup", "customer_id": "u-1", "event_uuid": str(uuid.uuid4())},
                headers=basic(account.event_key),
            )
            assert response.status_code == 200
        with Load(server, account, threads=8) as load:
            assert load.acked_after(0, 100, 30)
            run_cli("accounts", "create", "second", "--database", database)
            rotated = run_cli(
                "keys", "rotate", account.name, "--kind", "user", "--json", "--database", database
            )
            run_cli(
                "events", "rename", "signup", "--display-name", "Sign-up",
                "--account", account.name, "--database", database,
            )  # fmt: skip
            deleted = run_cli(
                "customers", "delete", "--account", account.name, "--customer-id", "u-1",
                "--json", "--database", database,
            )  # fmt: skip
            assert load.acked_after(load.count(), 100, 30)
        assert set(load.statuses) == {200}
        assert '"events_deleted": 1' in deleted.stdout
        new_key = rotated.stdout.split('"user_api_key": "')[1].split('"')[0]
        names = query(db_path, "SELECT display_name FROM event_names WHERE name = 'signup'")
        assert [r["display_name"] for r in names] == ["Sign-up"]
        # The running server takes the new key (its cache of keys lasts 5 s).
        deadline = time.monotonic() + 10
        with httpx.Client(base_url=server.url, timeout=30) as client:
            while True:
                status = client.get(
                    "/api/v1/customers", params={"cookie": "x"}, headers=basic(new_key)
                ).status_code
                if status == 404 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
        assert status == 404
    finally:
        server.stop()
    check_stored(account, load.acked)


# -- import beside a running server --------------------------------------------------------------


def write_lines(path: Path, count: int) -> list[str]:
    uuids = [str(uuid.uuid4()) for _ in range(count)]
    with open(path, "w") as f:
        for i, event_uuid in enumerate(uuids):
            f.write(
                f'{{"event":"imported","cookie":"i-{i % 5000}","event_uuid":"{event_uuid}",'
                f'"timestamp":"2026-01-01T00:00:00Z","n":{i}}}\n'
            )
    return uuids


def start_import(path: Path, account: Account) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKWAY_")}
    database = sqlite_url(account.db_path)
    command = ["import", str(path), "--account", account.name, "--json", "--database", database]
    return subprocess.Popen(
        [*trackway_command(), *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def imported_count(account: Account) -> int:
    rows = query(
        account.db_path,
        "SELECT count(*) AS n FROM events WHERE account_id = ? AND event = 'imported'",
        [account.id],
    )
    return int(rows[0]["n"])


def test_import_beside_live_traffic_goes_through_the_writer(tmp_path: Path) -> None:
    db_path = tmp_path / "trackway.db"
    account = create_account(db_path)
    lines = 60_000
    write_lines(tmp_path / "events.ndjson", lines)
    server = Server(db_path, tmp_path / "server.log", "--workers", "2").start()
    try:
        with Load(server, account, threads=8) as load:
            assert load.acked_after(0, 100, 30)
            with load.lock:
                load.latencies.clear()
            time.sleep(3)
            with load.lock:
                before = sorted(load.latencies)
                load.latencies.clear()
            p99_before = before[int(len(before) * 0.99)]
            load.slowest = 0.0
            importing = start_import(tmp_path / "events.ndjson", account)
            out, err = importing.communicate(timeout=300)
            during = load.slowest
            with load.lock:
                latencies = sorted(load.latencies)
            p99 = latencies[int(len(latencies) * 0.99)]
            assert load.acked_after(load.count(), 50, 30)
    finally:
        server.stop()
    assert importing.returncode == 0, err
    assert "the events go through its writer" in err
    summary = json.loads(out)
    assert summary["accepted"] == lines
    assert imported_count(account) == lines
    assert set(load.statuses) == {200}
    check_stored(account, load.acked)
    print(
        f"import of {lines:,} lines beside live traffic: {summary['events_per_second']:,} "
        f"events/s; live POSTs: p99 {p99_before * 1000:.0f} ms before, {p99 * 1000:.0f} ms "
        f"during it, slowest {during * 1000:.0f} ms"
    )
    # The live requests interleave with the import: they wait for a short group commit or two,
    # not for the import. On a quiet machine that is well under a second; on the shared test
    # machine (load 6-8 on 2 cores) p99 went to 2.8 s, hence a bound relative to the p99 of the
    # same load before the import, as well.
    assert p99 < 1.0 or p99 < 5 * p99_before, (p99, p99_before)


def test_the_writer_restarting_while_an_import_runs(tmp_path: Path) -> None:
    db_path = tmp_path / "trackway.db"
    account = create_account(db_path)
    lines = 100_000
    write_lines(tmp_path / "events.ndjson", lines)
    server = Server(db_path, tmp_path / "server.log").start()
    try:
        importing = start_import(tmp_path / "events.ndjson", account)
        deadline = time.monotonic() + 120
        while imported_count(account) < 10_000 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert importing.poll() is None, "the import ended before the writer could be killed"
        os.kill(the_writer(server), signal.SIGKILL)
        out, err = importing.communicate(timeout=300)
    finally:
        server.stop()
    assert importing.returncode == 0, err
    summary = json.loads(out)
    # What the lost attempt had committed comes back as duplicates: nothing twice, nothing lost.
    assert summary["accepted"] + summary["duplicates"] == lines
    assert imported_count(account) == lines
    rows = query(
        db_path, "SELECT count(DISTINCT event_uuid) AS d FROM events WHERE event = 'imported'"
    )
    assert rows[0]["d"] == lines
    assert "was killed by SIGKILL" in server.log()


def test_a_writer_that_does_not_answer_is_a_503_after_the_answer_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer process that takes jobs and never answers (hung, not gone): each waiting job
    fails with StoreUnavailable once past the answer timeout; jobs it does answer in time
    succeed. Over a real Unix socket, with a writer that answers only odd job ids."""
    monkeypatch.setattr(remote, "ANSWER_TIMEOUT_SECONDS", 0.6)
    monkeypatch.setattr(remote, "WATCH_SECONDS", 0.1)
    socket_path = str(tmp_path / "w.sock")

    async def run() -> tuple[list[Any], float]:
        async def writer(reader: asyncio.StreamReader, out: asyncio.StreamWriter) -> None:
            frames = wire.FrameReader()
            while data := await reader.read(65536):
                for raw in frames.feed(data):
                    job = wire.job_decoder.decode(raw)
                    if job.id % 2:
                        out.write(wire.frame(wire.WireAnswer(job.id, wire.STATUS_OK, 1)))

        server = await asyncio.start_unix_server(writer, socket_path)
        client = remote.WriterClient(socket_path)
        event = validate_event({"event": "view", "cookie": "c"}, now_ms(), None)
        started = time.monotonic()
        try:
            jobs = (client.ingest(1, [event], []) for _ in range(6))
            results = await asyncio.wait_for(asyncio.gather(*jobs, return_exceptions=True), 5)
        finally:
            await client.close()
            server.close()
        return results, time.monotonic() - started

    results, seconds = asyncio.run(run())
    assert [r.stored for r in results[0::2]] == [1, 1, 1], results  # job ids 1, 3, 5
    for unanswered in results[1::2]:
        assert isinstance(unanswered, StoreUnavailable), results
        assert "did not answer within 0.6 s" in str(unanswered)
    assert 0.6 <= seconds < 5, seconds
