"""CORS on the three ingest paths only: a page's script may send events (the event key is
public in pages anyway); no other origin may read anything."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from conftest import Server, basic, create_account

SHOP = "https://shop.example"
PREFLIGHT = {
    "Origin": SHOP,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, content-type",
}
INGEST = [("/api/v1/event", "POST"), ("/api/v1/bulkevents", "POST"), ("/unity.gif", "GET")]


@pytest.mark.parametrize(("path", "method"), INGEST)
def test_preflight_of_an_ingest_path(client, path, method):
    response = client.options(path, headers={**PREFLIGHT, "Access-Control-Request-Method": method})
    assert response.status_code == 204, response.text
    assert response.headers["access-control-allow-origin"] == "*"
    assert method in response.headers["access-control-allow-methods"]
    listed = response.headers["access-control-allow-headers"].split(",")
    allowed = {h.strip().lower() for h in listed}
    assert {"authorization", "content-type"} <= allowed
    assert int(response.headers["access-control-max-age"]) > 0
    assert response.headers["x-request-id"]


def test_options_without_origin_says_what_is_allowed(client):
    response = client.options("/api/v1/event")
    assert response.status_code == 204
    assert response.headers["allow"] == "POST, OPTIONS"
    assert "access-control-allow-origin" not in response.headers


def test_answers_to_a_page_carry_the_origin_header(client, account):
    headers = {**basic(account.event_key), "Origin": SHOP}
    ok = client.post("/api/v1/event", json={"event": "view", "cookie": "c1"}, headers=headers)
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == "*"
    assert "x-request-id" in ok.headers["access-control-expose-headers"].lower()
    # Errors too: the page's script must be able to read why.
    bad = client.post("/api/v1/event", json={"event": "view"}, headers=headers)
    assert bad.status_code == 400
    assert bad.headers["access-control-allow-origin"] == "*"
    refused = client.post(
        "/api/v1/event", json={"event": "view", "cookie": "c1"}, headers={"Origin": SHOP}
    )
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == "*"
    bulk = client.post(
        "/api/v1/bulkevents", json={"events": [{"event": "view", "cookie": "c1"}]}, headers=headers
    )
    assert bulk.status_code == 200
    assert bulk.headers["access-control-allow-origin"] == "*"
    pixel = client.get(f"/unity.gif?x={account.event_key}&e=view&k=c1", headers={"Origin": SHOP})
    assert pixel.headers["access-control-allow-origin"] == "*"


def test_server_callers_get_no_cors_headers(client, account):
    response = client.post(
        "/api/v1/event", json={"event": "view", "cookie": "c1"}, headers=basic(account.event_key)
    )
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/customers?cookie=c1",
        "/api/v1/event/history?event_name=view",
        "/api/v1/event/summary.json",
        "/clickstream",
        "/openapi.json",
        "/metrics",
    ],
)
def test_reads_and_the_page_allow_no_other_origin(client, account, path):
    answer = client.get(path, headers={**basic(account.user_key), "Origin": SHOP})
    assert "access-control-allow-origin" not in answer.headers
    preflight = client.options(path, headers=PREFLIGHT)
    assert preflight.status_code == 405
    assert "access-control-allow-origin" not in preflight.headers


@pytest.fixture(scope="module")
def listed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("cors-listed")
    server = Server(
        directory / "trackway.db",
        directory / "server.log",
        "--cors-origins",
        f"{SHOP}, https://other.example",
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_listed_origins_only(listed: Server) -> None:
    account = create_account(listed.db_path)
    with httpx.Client(base_url=listed.url) as client:
        allowed = client.options("/api/v1/event", headers=PREFLIGHT)
        assert allowed.status_code == 204
        assert allowed.headers["access-control-allow-origin"] == SHOP
        assert allowed.headers["vary"] == "Origin"
        foreign = client.options(
            "/api/v1/event", headers={**PREFLIGHT, "Origin": "https://evil.example"}
        )
        assert foreign.status_code == 403
        assert foreign.json() == {"message": "Origin not allowed"}
        assert "access-control-allow-origin" not in foreign.headers
        body = {"event": "view", "cookie": "c1"}
        ok = client.post(
            "/api/v1/event", json=body, headers={**basic(account.event_key), "Origin": SHOP}
        )
        assert ok.headers["access-control-allow-origin"] == SHOP
        # A foreign page's request is still a request: stored (the key is valid), but its
        # script may not read the answer.
        other = client.post(
            "/api/v1/event",
            json=body,
            headers={**basic(account.event_key), "Origin": "https://evil.example"},
        )
        assert other.status_code == 200
        assert "access-control-allow-origin" not in other.headers
