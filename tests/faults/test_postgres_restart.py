"""PostgreSQL stopped and started under load: ingest answers 503 with Retry-After (never a 500,
never a hang) while it is down, and the same server process recovers by itself."""

from __future__ import annotations

import os
import subprocess
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server, basic, create_account, fresh_postgres_database

PG_URL = os.environ.get("TRACKWAY_TEST_POSTGRES_URL")
PG_BIN = os.environ.get("TRACKWAY_TEST_PG_BIN")
PG_DATA = os.environ.get("TRACKWAY_TEST_PG_DATA")

pytestmark = pytest.mark.skipif(
    not (PG_URL and PG_BIN and PG_DATA) and not os.environ.get("CI"),
    reason="needs the throwaway PostgreSQL of scripts/with-postgres",
)


def pg_ctl(*args: str) -> None:
    command = [f"{PG_BIN}/pg_ctl", "-D", str(PG_DATA), "-w", "-t", "60", *args]
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    subprocess.run(command, check=True, capture_output=True, timeout=90)


def test_ingest_survives_a_postgres_restart(tmp_path: Path) -> None:
    assert PG_URL and PG_BIN and PG_DATA, "CI must run this test against PostgreSQL"
    database = fresh_postgres_database(PG_URL)
    server = Server(database, tmp_path / "server.log")
    server.start()
    account = create_account(database)
    statuses: list[int] = []
    slow: list[float] = []
    acked: list[str] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=server.url, timeout=15) as client:
            while not stop.is_set():
                event_uuid = str(uuid.uuid4())
                started = time.monotonic()
                try:
                    response = client.post(
                        "/api/v1/event",
                        json={"event": "view", "cookie": "c1", "event_uuid": event_uuid},
                        headers=basic(account.event_key),
                    )
                except httpx.HTTPError:
                    statuses.append(-1)
                    continue
                elapsed = time.monotonic() - started
                if elapsed > 5:
                    slow.append(elapsed)
                statuses.append(response.status_code)
                if response.status_code == 200:
                    acked.append(event_uuid)
                else:
                    assert response.status_code == 503, response.text
                    assert response.json()["message"].startswith("Service Unavailable")
                    assert int(response.headers["retry-after"]) >= 1
                    time.sleep(0.05)

    workers = [threading.Thread(target=load) for _ in range(4)]
    try:
        for worker in workers:
            worker.start()
        time.sleep(1.0)
        before = len(acked)
        pg_ctl("stop", "-m", "fast")
        time.sleep(3.0)
        down = statuses.count(503)
        pg_ctl("start", "-l", str(Path(PG_DATA).parent / "server.log"))
        deadline = time.monotonic() + 30
        recovered_from = len(acked)
        while time.monotonic() < deadline and len(acked) < recovered_from + 50:
            time.sleep(0.2)
    finally:
        stop.set()
        for worker in workers:
            worker.join(30)
        server.stop()
    assert before > 0
    assert down > 0, "no 503 while PostgreSQL was down"
    assert len(acked) >= recovered_from + 50, "ingest did not recover after PostgreSQL came back"
    assert set(statuses) <= {200, 503, -1}, sorted(set(statuses))
    assert not slow, f"requests hung while PostgreSQL was down: {slow}"
    assert "Traceback" not in server.log()
    # Every acknowledged event is stored, once.
    import psycopg

    with psycopg.connect(database) as conn:
        rows = conn.execute(
            "SELECT event_uuid FROM events e JOIN accounts a ON a.id = e.account_id "
            "WHERE a.uuid = %s",
            (account.uuid,),
        ).fetchall()
    stored = [r[0] for r in rows]
    assert len(stored) == len(set(stored))
    assert set(acked) <= set(stored)
