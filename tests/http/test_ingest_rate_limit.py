"""--ingest-rate-limit: over N events a second per account, 429 with Retry-After."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.conftest import Server, basic, create_account


def test_ingest_rate_limit_per_account(tmp_path: Path) -> None:
    server = Server(tmp_path / "t.db", tmp_path / "server.log", "--ingest-rate-limit", "5")
    server.start()
    try:
        one, two = create_account(server.db_path), create_account(server.db_path)
        with httpx.Client(base_url=server.url) as client:
            answers = [
                client.post("/api/v1/event", json={"event": "view", "cookie": "c"},
                            headers=basic(one.event_key))
                for _ in range(12)
            ]  # fmt: skip
            statuses = [a.status_code for a in answers]
            # A burst of one second's worth, then refused (a few may refill meanwhile).
            assert statuses[:5] == [200] * 5
            assert statuses.count(429) >= 5
            refused = answers[statuses.index(429)]
            assert refused.json() == {"message": "Rate limit exceeded"}
            assert int(refused.headers["retry-after"]) >= 1
            # Another account has its own allowance.
            other = client.post("/api/v1/event", json={"event": "view", "cookie": "c"},
                                headers=basic(two.event_key))  # fmt: skip
            assert other.status_code == 200
            # A bulk call counts its events.
            bulk = client.post(
                "/api/v1/bulkevents",
                json={"events": [{"event": "view", "cookie": "c"}] * 10},
                headers=basic(two.event_key),
            )
            assert bulk.status_code == 429
        stored = len(one.events())
        assert stored == statuses.count(200)
    finally:
        server.stop()
