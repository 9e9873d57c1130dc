"""SQLite storage failures answer 503 with Retry-After and recover by themselves, without a
restart; SIGTERM drains: every acknowledged event is stored, nothing is answered 5xx.

- read-only: the database file and its directory made read-only while the server runs. As root,
  file modes do not stop a process, so the server runs as root without CAP_DAC_OVERRIDE
  (setpriv); a non-root user needs nothing. What a mode change cannot do is take away a file
  already open for writing: the writer keeps the one it has, and that is asserted too.
- disk full: the database on a small tmpfs (mounting needs root), filled up, then freed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import stat
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import conftest
import httpx
import pytest
from conftest import Account, Server, basic, create_account, query

UNAVAILABLE_PREFIX = "Service Unavailable"


def send_event(client: httpx.Client, account: Account, **extra: Any) -> tuple[str, httpx.Response]:
    event_uuid = str(uuid.uuid4())
    event = {"event": "view", "cookie": "c-fault", "event_uuid": event_uuid, **extra}
    return event_uuid, client.post("/api/v1/event", json=event, headers=basic(account.event_key))


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["message"].startswith(UNAVAILABLE_PREFIX)
    assert int(response.headers["retry-after"]) >= 1


def stored_uuids(account: Account) -> set[str]:
    return {row["event_uuid"] for row in account.events()}


def until(predicate: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


# -- the database made read-only -------------------------------------------------------------------

DROP_DAC = "-dac_override,-dac_read_search"


def unprivileged_command() -> list[str]:
    """A prefix that makes file modes bind the server: none for a normal user; for root, setpriv
    dropping the capabilities that bypass them."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: file modes would not bind the server")
    return [setpriv, f"--inh-caps={DROP_DAC}", f"--bounding-set={DROP_DAC}", "--"]


@contextlib.contextmanager
def read_only(directory: Path) -> Iterator[None]:
    files = [p for p in directory.iterdir() if p.name.startswith("trackway.db")]
    modes = {p: stat.S_IMODE(p.stat().st_mode) for p in [directory, *files]}
    for path in files:
        path.chmod(0o444)
    directory.chmod(0o555)
    try:
        yield
    finally:
        for path, mode in modes.items():
            path.chmod(mode)


def test_read_only_database_answers_503_and_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = unprivileged_command()
    directory = tmp_path / "data"
    directory.mkdir()
    db_path = directory / "trackway.db"
    account = create_account(db_path)
    plain_command = conftest.trackway_command
    monkeypatch.setattr(conftest, "trackway_command", lambda: [*prefix, *plain_command()])
    server = Server(db_path, tmp_path / "server.log").start()
    acked: list[str] = []
    try:
        with httpx.Client(base_url=server.url, timeout=15) as client:
            # The writer opens the file at its first write: here, while it is read-only.
            with read_only(directory):
                for _ in range(3):
                    started = time.monotonic()
                    _, response = send_event(client, account)
                    assert_unavailable(response)
                    assert time.monotonic() - started < 5
                # Reads still answer from the connections they have.
                assert client.get("/healthz").status_code == 200
                bulk = client.post(
                    "/api/v1/bulkevents",
                    json={"events": [{"event": "view", "cookie": "c"}]},
                    headers=basic(account.event_key),
                )
                assert_unavailable(bulk)
            # Writable again: writes succeed within seconds, nobody restarting anything. The
            # writer process died opening the read-only file, so serve starts a new one after
            # its back-off (at most MAX_BACKOFF_SECONDS); until then each answer is a 503.
            deadline = time.monotonic() + 10
            while True:
                event_uuid, response = send_event(client, account)
                if response.status_code == 200 or time.monotonic() > deadline:
                    break
                assert_unavailable(response)
                time.sleep(0.2)
            assert response.status_code == 200, response.text
            acked.append(event_uuid)
            # Made read-only with the writer's file open: the open file stays writable (the OS
            # checks modes at open), so events go on being stored, durably.
            open_file_statuses = []
            with read_only(directory):
                for _ in range(5):
                    event_uuid, response = send_event(client, account)
                    open_file_statuses.append(response.status_code)
                    assert response.status_code in (200, 503), response.text
                    if response.status_code == 200:
                        acked.append(event_uuid)
                    else:
                        assert_unavailable(response)
            event_uuid, response = send_event(client, account)
            assert response.status_code == 200
            acked.append(event_uuid)
    finally:
        server.stop()
    assert set(acked) <= stored_uuids(account)
    log = server.log()
    assert "Traceback" not in log, log[-5000:]
    assert "attempt to write a readonly database" in log
    print(
        "read-only database: 503 with Retry-After while the writer had to open it, 200 again "
        f"once writable; with its file already open: {open_file_statuses}"
    )


# -- disk full ---------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A directory on an 8 MB tmpfs of its own."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m,mode=0755", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the disk-full test (as root): {mounted.stderr.strip()}")
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


def fill(directory: Path) -> Path:
    """A file that takes every free byte of the file system."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for size in (1 << 20, 1 << 16, 1 << 12, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    assert shutil.disk_usage(directory).free < 64 * 1024
    return filler


def test_disk_full_answers_503_and_recovers(tmp_path: Path, small_disk: Path) -> None:
    db_path = small_disk / "trackway.db"
    account = create_account(db_path)
    server = Server(db_path, tmp_path / "server.log").start()
    acked: list[str] = []
    statuses: list[int] = []
    # Big enough that the write-ahead log must grow: no reuse of space it already has.
    padding = "p" * 32_000
    try:
        with httpx.Client(base_url=server.url, timeout=15) as client:
            for _ in range(5):
                event_uuid, response = send_event(client, account, padding=padding)
                assert response.status_code == 200
                acked.append(event_uuid)
            filler = fill(small_disk)

            def refused() -> bool:
                event_uuid, response = send_event(client, account, padding=padding)
                statuses.append(response.status_code)
                if response.status_code == 200:
                    acked.append(event_uuid)
                    return False
                assert_unavailable(response)
                return True

            assert until(refused, 30), f"never refused on a full disk: {statuses}"
            # Full, it keeps refusing, quickly; reads and /healthz still answer.
            for _ in range(3):
                started = time.monotonic()
                assert refused()
                assert time.monotonic() - started < 5
            assert client.get("/healthz").status_code == 200
            assert (
                client.get(
                    "/api/v1/customers",
                    params={"cookie": "c-fault"},
                    headers=basic(account.user_key),
                ).status_code
                == 200
            )
            filler.unlink()

            def accepted() -> bool:
                return not refused()

            assert until(accepted, 10), f"no recovery after space came back: {statuses[-10:]}"
            for _ in range(5):
                event_uuid, response = send_event(client, account, padding=padding)
                assert response.status_code == 200
                acked.append(event_uuid)
    finally:
        server.stop()
    assert set(statuses) <= {200, 503}
    assert set(acked) <= stored_uuids(account)
    log = server.log()
    assert "Traceback" not in log, log[-5000:]
    assert "database or disk is full" in log
    print(
        f"disk full: {statuses.count(503)} answered 503 with Retry-After, "
        f"{len(acked)} acknowledged (all stored), recovered without a restart"
    )


# -- SIGTERM under load ------------------------------------------------------------------------


def test_sigterm_drains_under_load(tmp_path: Path) -> None:
    db_path = tmp_path / "trackway.db"
    account = create_account(db_path)
    server = Server(db_path, tmp_path / "server.log").start()
    assert server.process is not None
    acked: list[str] = []
    statuses: list[int] = []
    connection_errors: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=server.url, timeout=20) as client:
            while not stop.is_set():
                try:
                    event_uuid, response = send_event(client, account)
                except httpx.TransportError as exc:
                    with lock:
                        connection_errors.append(type(exc).__name__)
                    if server.process is not None and server.process.poll() is not None:
                        return
                    time.sleep(0.01)
                    continue
                with lock:
                    statuses.append(response.status_code)
                    if response.status_code == 200:
                        acked.append(event_uuid)

    workers = [threading.Thread(target=load) for _ in range(16)]
    for worker in workers:
        worker.start()
    try:
        assert until(lambda: len(acked) > 200, 20), "no load"
        before = len(acked)
        signalled = time.monotonic()
        os.killpg(server.process.pid, signal.SIGTERM)
        server.process.wait(20)
        exit_seconds = time.monotonic() - signalled
    finally:
        stop.set()
        for worker in workers:
            worker.join(30)
        server.stop()
    assert exit_seconds < 15
    # uvicorn re-raises the signal once it has shut down cleanly.
    assert server.process.returncode in (0, -signal.SIGTERM), server.log()[-3000:]
    assert set(statuses) == {200}, sorted(set(statuses))
    stored = stored_uuids(account)
    assert set(acked) <= stored
    assert len(acked) >= before
    rows = query(db_path, "SELECT count(*) AS n FROM events WHERE account_id = ?", [account.id])
    assert rows[0]["n"] == len(stored)
    log = server.log()
    assert "Traceback" not in log, log[-5000:]
    print(
        f"SIGTERM under load: {len(acked)} acknowledged (all stored), "
        f"{len(connection_errors)} connection errors, exit in {exit_seconds:.1f}s"
    )
