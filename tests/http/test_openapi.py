"""GET /openapi.json documents the whole API, and stays true: its paths and methods are exactly
the app's routes (the Starlette router and the raw ingest handler's table), and every documented
operation answers on the real server (none is a 404 or 405)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
from conftest import Account, Server, basic
from starlette.routing import Route

from trackway.http.app import create_app
from trackway.http.ingest import IngestEndpoints
from trackway.http.openapi import build_document
from trackway.settings import Settings

# The pixel is served by IngestEndpoints beside its table of JSON routes; every ingest path
# answers the CORS preflight (OPTIONS).
PIXEL = {("/unity.gif", "GET"), ("/unity.gif", "OPTIONS")}


def app_operations(tmp_path: Path) -> set[tuple[str, str]]:
    """(path, method) of every route of the app, HEAD left out (Starlette adds it to GET)."""
    app = create_app(Settings(database_url="sqlite:///" + str(tmp_path / "routes.db")))
    ingest = app
    assert isinstance(ingest, IngestEndpoints)
    operations: set[tuple[str, str]] = set(PIXEL)
    # The ingest table maps each path with and without its trailing slash: one operation.
    for path in ingest.json_routes:
        operations |= {(path.rstrip("/"), "POST"), (path.rstrip("/"), "OPTIONS")}
    for route in ingest.fallback.routes:
        assert isinstance(route, Route), f"unexpected route kind {route!r}"
        # OpenAPI writes /errors/{id} where Starlette writes /errors/{id:int}.
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)
        operations |= {(path, m) for m in route.methods or () if m != "HEAD"}
    return operations


def documented_operations(document: dict) -> set[tuple[str, str]]:
    methods = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}
    return {
        (path, method.upper())
        for path, item in document["paths"].items()
        for method in item
        if method in methods
    }


def test_document_lists_exactly_the_app_routes(tmp_path: Path) -> None:
    documented = documented_operations(build_document())
    actual = app_operations(tmp_path)
    assert documented - actual == set(), "documented but not routed"
    assert actual - documented == set(), "routed but not documented in trackway/http/openapi.py"


def test_served_document_is_openapi_3_with_basic_auth(server: Server, client: httpx.Client) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    document = response.json()
    assert document["openapi"].startswith("3.")
    assert document["components"]["securitySchemes"]["basicAuth"] == {
        "type": "http",
        "scheme": "basic",
        "description": "The API key as the username, an empty password.",
    }
    assert document["security"] == [{"basicAuth": []}]
    assert documented_operations(document) == documented_operations(build_document())
    # Every $ref points at something that exists.
    text = response.text
    for kind, name in re.findall(r'"#/components/(\w+)/([\w-]+)"', text):
        assert name in document["components"][kind], f"dangling $ref {kind}/{name}"
    # Every operation documents its answers as JSON shapes (or the pixel's GIF, the script,
    # the metrics text) and an operation id.
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            assert operation["operationId"], (path, method)
            # A CORS preflight (OPTIONS) answers 204 without a body; a redirect 302, with its
            # Location and no body.
            success = {"204"} if method == "options" else {"200", "302"}
            assert success & set(operation["responses"]), (path, method)
            for status, answer in operation["responses"].items():
                assert status in ("204", "302") or answer.get("content"), (path, method, status)


def test_every_documented_operation_is_served(client: httpx.Client) -> None:
    """Unauthenticated calls: a routed operation answers 200 or 401, never the router's 404/405."""
    document = client.get("/openapi.json").json()
    for path, method in sorted(documented_operations(document)):
        url = path.replace("{uuid}", "00000000-0000-4000-8000-000000000000")
        url = re.sub(r"\{\w+\}", "1", url)
        response = client.request(method, url)
        expected = (204,) if method == "OPTIONS" else (200, 302, 401)
        assert response.status_code in expected, (method, path, response.status_code)


def test_the_server_answers_as_the_document_says_where_they_once_disagreed(
    client: httpx.Client, account: Account
) -> None:
    """Issue 19: each of these once contradicted /openapi.json."""
    user = basic(account.user_key)
    document = client.get("/openapi.json").json()
    pattern = re.compile(
        document["paths"]["/api/v1/event/history"]["get"]["parameters"][0]["schema"]["pattern"]
    )
    for name, valid in (("0", False), ("1e5", False), ("a.b", False), ("view", True)):
        assert bool(pattern.search(name)) is valid, name
        if not valid:
            answer = client.get("/api/v1/event/history", params={"event_name": name}, headers=user)
            assert answer.status_code == 422
    # An empty bound is absent, as documented.
    summary = client.get("/api/v1/event/summary.json", params={"timestamp_start": ""}, headers=user)
    assert summary.status_code == 200
    # A query parameter under a POST body is checked too.
    both = client.post("/api/v1/event/summary.json", params={"timestamp_start": "junk"},
                       json={"timestamp_start": "2024-03-01"}, headers=user)  # fmt: skip
    assert both.status_code == 400 and "timestamp_start" in both.json()["errors"]
    named = client.post("/api/v1/event/history", params={"event_name": "0"},
                        json={"event_name": "view"}, headers=user)  # fmt: skip
    assert named.status_code == 422
    # Over 366 days: the documented 400.
    two_years = {"timestamp_start": "2020-01-01", "timestamp_end": "2022-01-01"}
    long = client.get("/api/v1/event/summary.json", params=two_years, headers=user)
    assert long.status_code == 400
    described = document["paths"]["/api/v1/event/summary.json"]["get"]["responses"]["400"]
    assert "366 days" in described["description"]
    # GET on the replay endpoint: 405, not a row named "replay".
    wrong = client.get("/api/v1/errors/replay", headers=user)
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
    # The stream's data is declared an object.
    stream = document["paths"]["/clickstream/stream"]["get"]["responses"]["200"]
    assert stream["x-message-schema"]["properties"]["data"]["type"] == "object"
