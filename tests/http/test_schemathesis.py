"""Property-based fuzzing of a real server from its own /openapi.json (schemathesis): for every
documented operation, valid and invalid requests with a valid key; no 5xx, and every answer has
a documented status code, content type, headers and JSON shape.

Besides what schemathesis makes up, part of the cases name a customer and an event name that
exist, so that the 200 shapes of the reads are checked too."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

schemathesis = pytest.importorskip("schemathesis")

from conftest import Account, Server, basic, create_account  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    ignored_auth,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from trackway.http.openapi import build_document  # noqa: E402

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    ignored_auth,
]
EXAMPLES = 40
INGEST_PATHS = ("/api/v1/event", "/api/v1/bulkevents")
# Collected from the document in this process; each is then fuzzed from the served one.
# An endless Server-Sent Events stream (tests/clickstream/test_live_stream.py covers it).
STREAMS = {("/clickstream/stream", "get")}
OPERATIONS = sorted(
    (path, method)
    for path, item in build_document()["paths"].items()
    for method in item
    if method != "parameters" and (path, method) not in STREAMS
)


class Fuzzed:
    def __init__(self, server: Server, account: Account) -> None:
        self.server = server
        self.account = account
        self.schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
        self.customer = self.seed("fuzz-known")
        self.victim = self.seed("fuzz-victim")

    def seed(self, cookie: str) -> str:
        """A customer with a few `view` events; its uuid."""
        with httpx.Client(base_url=self.server.url, timeout=30) as client:
            for n in range(3):
                event = {"event": "view", "cookie": cookie, "product_id": f"p{n}"}
                answer = client.post(
                    "/api/v1/event", json=event, headers=basic(self.account.event_key)
                )
                assert answer.status_code == 200, answer.text
            answer = client.get(
                "/api/v1/customers", params={"cookie": cookie}, headers=basic(self.account.user_key)
            )
            assert answer.status_code == 200, answer.text
            return str(answer.json()["customer"]["uuid"])

    def known(self, path: str, method: str) -> dict[str, Any] | None:
        """as_strategy() arguments that name existing data, for the reads."""
        if path == "/api/v1/customers/{uuid}":
            uuid = self.victim if method == "delete" else self.customer
            return {"path_parameters": {"uuid": uuid}}
        if path == "/api/v1/customers/{uuid}/events":
            return {"path_parameters": {"uuid": self.customer}}
        if path == "/api/v1/customers/search":
            return {"query": {"q": "fuzz"}}
        if path == "/api/v1/customer_search/show_events":
            return {"query": {"uuid": self.customer}}
        if path == "/api/v1/customers":
            return {"query": {"cookie": "fuzz-known"}}
        if path == "/api/v1/event/history":
            return {"query": {"event_name": "view"}}
        if path == "/api/v1/attributes/{name}":
            return {"path_parameters": {"name": "product_id"}}
        return None


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    """A server of its own: show_events is not rate-limited here, so that the fuzz reaches it."""
    directory: Path = tmp_path_factory.mktemp("fuzz")
    server = Server(
        directory / "trackway.db", directory / "server.log", "--show-events-per-hour", "1000000"
    )
    server.start()
    try:
        yield Fuzzed(server, create_account(server.db_path))
    finally:
        server.stop()
    log = server.log()
    assert "Traceback" not in log, log[-5000:]


@pytest.mark.parametrize(
    ("path", "method"), OPERATIONS, ids=[f"{m.upper()} {p}" for p, m in OPERATIONS]
)
def test_operation_conforms_to_the_document(fuzzed: Fuzzed, path: str, method: str) -> None:
    operation = fuzzed.schema[path][method]
    strategies = [
        operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
        operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
    ]
    known = fuzzed.known(path, method)
    if known is not None:
        strategies.append(operation.as_strategy(generation_mode=GenerationMode.POSITIVE, **known))
    account = fuzzed.account
    key = account.event_key if path in INGEST_PATHS else account.user_key

    @given(case=st.one_of(strategies))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def fuzz(case: Any) -> None:
        if path == "/unity.gif" and isinstance(case.query, dict):
            case.query["x"] = account.event_key
        case.call_and_validate(
            base_url=fuzzed.server.url, headers=basic(key), checks=CHECKS, timeout=30
        )
        assert fuzzed.server.process is not None and fuzzed.server.process.poll() is None

    fuzz()
