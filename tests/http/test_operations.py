"""Operations endpoints: /healthz, /metrics (summed over workers), X-Request-Id."""

from __future__ import annotations

import http.client
import re
from pathlib import Path

import httpx

from tests.conftest import Account, Server, basic, create_account


def metric(text: str, name: str, labels: str = "") -> float:
    pattern = rf"^{re.escape(name)}{re.escape(labels)} ([0-9.e+]+)$"
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_healthz(client: httpx.Client) -> None:
    answer = client.get("/healthz")
    assert (answer.status_code, answer.json()) == (200, {"status": "ok"})


def test_metrics_count_requests_events_and_rejections(
    client: httpx.Client, account: Account
) -> None:
    before = client.get("/metrics").text
    ok = '{method="POST",route="/api/v1/event",status="200"}'
    bad = '{error_type="event_name_missing"}'
    for _ in range(3):
        client.post("/api/v1/event", json={"event": "view", "cookie": "m"},
                    headers=basic(account.event_key))  # fmt: skip
    client.post("/api/v1/event", json={"event": "", "cookie": "m"},
                headers=basic(account.event_key))  # fmt: skip
    after = client.get("/metrics")
    assert after.status_code == 200
    assert after.headers["content-type"].startswith("text/plain")
    text = after.text
    assert (
        metric(text, "trackway_http_requests_total", ok)
        - metric(before, "trackway_http_requests_total", ok)
        == 3
    )
    assert (
        metric(text, "trackway_events_accepted_total")
        - metric(before, "trackway_events_accepted_total")
        >= 3
    )
    assert (
        metric(text, "trackway_events_rejected_total", bad)
        - metric(before, "trackway_events_rejected_total", bad)
        == 1
    )
    assert metric(text, "trackway_group_commit_seconds_count") > 0


def test_an_error_answer_keeps_the_connection(server: Server, account: Account) -> None:
    """Each answer on purpose (401, 404, 405, 422, 400) leaves the keep-alive connection open
    for the next request, and logs no traceback. GET /api/v1/errors/replay once answered its
    405 and then closed the connection, so a client's next request on it met a reset."""
    user = basic(account.user_key)
    asks = [
        ("GET", "/api/v1/errors/replay", user, 405),
        ("DELETE", "/api/v1/event", user, 405),
        ("GET", "/nowhere", user, 404),
        ("GET", "/api/v1/errors/999999", user, 404),
        ("GET", "/api/v1/event/history?event_name=0", user, 422),
        ("GET", "/api/v1/event/summary.json?timestamp_start=junk", user, 400),
        ("GET", "/api/v1/errors", {}, 401),
    ]
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        for method, path, headers, status in asks:
            connection.request(method, path, headers=headers)
            answer = connection.getresponse()
            answer.read()
            assert answer.status == status, (method, path)
            assert answer.getheader("connection") != "close", (method, path)
            connection.request("GET", "/healthz")
            health = connection.getresponse()
            assert (health.status, health.read()) == (200, b'{"status":"ok"}'), (method, path)
    finally:
        connection.close()
    assert "Exception in ASGI application" not in server.log()


def test_request_id_on_every_response(client: httpx.Client, account: Account) -> None:
    ids = set()
    for response in (
        client.get("/healthz"),
        client.get("/nope"),
        client.post(
            "/api/v1/event", json={"event": "v", "cookie": "c"}, headers=basic(account.event_key)
        ),
        client.get("/unity.gif"),
    ):
        assert response.headers["x-request-id"]
        ids.add(response.headers["x-request-id"])
    assert len(ids) == 4
    echoed = client.get("/healthz", headers={"X-Request-Id": "trace-123"})
    assert echoed.headers["x-request-id"] == "trace-123"
    refused = client.get("/healthz", headers={"X-Request-Id": "x" * 500})
    assert refused.headers["x-request-id"] != "x" * 500


def test_metrics_are_summed_over_worker_processes(tmp_path: Path) -> None:
    server = Server(tmp_path / "m.db", tmp_path / "server.log", "--workers", "2")
    server.start()
    try:
        account = create_account(server.db_path)
        pids = set()
        for _ in range(40):
            # A fresh connection each time, so that both workers answer some.
            with httpx.Client(base_url=server.url) as client:
                answer = client.post("/api/v1/event", json={"event": "v", "cookie": "c"},
                                     headers=basic(account.event_key))  # fmt: skip
                assert answer.status_code == 200
                pids.add(answer.headers["x-request-id"].split("-")[0])
        text = httpx.get(server.url + "/metrics").text
        ok = '{method="POST",route="/api/v1/event",status="200"}'
        assert metric(text, "trackway_http_requests_total", ok) == 40
        assert metric(text, "trackway_events_accepted_total") == 40
        assert len(pids) == 2, "one worker answered everything; the sum proves nothing"
    finally:
        server.stop()


def test_the_server_address_leads_to_the_clickstream_page(
    client: httpx.Client, account: Account
) -> None:
    for method in ("GET", "HEAD"):
        answer = client.request(method, "/")
        assert answer.status_code == 302, (method, answer.text)
        assert answer.headers["location"] == "/clickstream"
    # A browser that follows it is asked to sign in, and with the user key gets the page.
    followed = client.get("/", follow_redirects=True)
    assert (followed.url.path, followed.status_code) == ("/clickstream", 401)
    assert followed.headers["www-authenticate"] == 'Basic realm="Trackway"'
    signed_in = client.get("/", headers=basic(account.user_key), follow_redirects=True)
    assert signed_in.status_code == 200
    assert "Clickstream" in signed_in.text
    # Only the root: other unknown paths stay a 404.
    assert client.get("/nowhere").status_code == 404
