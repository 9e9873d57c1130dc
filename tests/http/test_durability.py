"""A 200 means durable: SIGKILL the server under concurrent load, restart it, and find every
acknowledged event in the database."""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path

import httpx
import pytest
from conftest import Server, basic, create_account, query

EVENT_URL = "/api/v1/event"
THREADS = 16
KILL_AFTER_ACKS = 400
# Load, SIGKILL, restart and check, this many times on the same database.
ROUNDS = 2
LOAD_SECONDS = 60


class Load:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.killed = threading.Event()
        self.sent: set[str] = set()
        self.acked: list[str] = []
        self.unexpected: list[tuple[int, str]] = []
        self.in_flight_failures = 0
        self.refused = 0


def drive_until_killed(server: Server, key: str) -> Load:
    """THREADS clients post events with explicit uuids; right after the KILL_AFTER_ACKS-th 200,
    the server gets SIGKILL while the other clients wait for their answers."""
    load = Load()

    def client_thread(n: int) -> None:
        with httpx.Client(base_url=server.url, headers=basic(key), timeout=10) as client:
            while not load.killed.is_set() and not load.unexpected:
                event_uuid = str(uuid.uuid4())
                body = {
                    "event": "purchase",
                    "customer_id": f"customer-{n}",
                    "event_uuid": event_uuid,
                    "amount": n,
                }
                with load.lock:
                    load.sent.add(event_uuid)
                try:
                    response = client.post(EVENT_URL, json=body)
                except httpx.ConnectError:
                    with load.lock:
                        load.refused += 1
                    return
                except httpx.HTTPError:
                    # The server died with this request in flight.
                    with load.lock:
                        load.in_flight_failures += 1
                    return
                with load.lock:
                    if response.status_code != 200:
                        load.unexpected.append((response.status_code, response.text))
                        return
                    load.acked.append(event_uuid)
                    kill = len(load.acked) >= KILL_AFTER_ACKS and not load.killed.is_set()
                    if kill:
                        load.killed.set()
                if kill:
                    server.kill()

    threads = [threading.Thread(target=client_thread, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(LOAD_SECONDS)
        assert not thread.is_alive(), "the load did not end"
    return load


@pytest.mark.parametrize("workers", [1, 2])
def test_every_acknowledged_event_survives_sigkill(tmp_path: Path, workers: int) -> None:
    db_path = tmp_path / "trackway.db"
    server = Server(db_path, tmp_path / "server.log", "--workers", str(workers)).start()
    try:
        account = create_account(db_path)
        acked: set[str] = set()
        sent: set[str] = set()
        for _ in range(ROUNDS):
            load = drive_until_killed(server, account.event_key)
            assert load.unexpected == [], load.unexpected
            assert server.process is not None and server.process.returncode is not None
            assert len(load.acked) >= KILL_AFTER_ACKS > 100
            assert len(set(load.acked)) == len(load.acked)
            acked.update(load.acked)
            sent.update(load.sent)
            # The kill came while clients waited for answers, not after a quiet stop.
            assert load.in_flight_failures >= 1, "no request was in flight at the kill"

            # Restart on the same file (WAL recovery): every acknowledged event is there.
            server.start()
            stored = {
                row["event_uuid"]
                for row in query(
                    db_path, "SELECT event_uuid FROM events WHERE account_id = ?", [account.id]
                )
            }
            lost = acked - stored
            assert not lost, f"{len(lost)} acknowledged events lost, e.g. {sorted(lost)[:3]}"
            assert stored <= sent
            # The rollup moved in the same transactions as the events: no more, no fewer.
            (total,) = query(
                db_path,
                "SELECT coalesce(sum(count), 0) FROM event_daily WHERE account_id = ?",
                [account.id],
            )[0]
            assert total == len(stored)

        # And the restarted server takes events again.
        event_uuid = str(uuid.uuid4())
        response = httpx.post(
            server.url + EVENT_URL,
            content=json.dumps({"event": "view", "cookie": "ck", "event_uuid": event_uuid}),
            headers=basic(account.event_key),
        )
        assert response.status_code == 200
        account.stored(event_uuid)
    finally:
        server.stop()
