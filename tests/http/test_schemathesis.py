"""Property-based fuzzing of a real server from its own /openapi.json (schemathesis): for every
documented operation, valid and invalid requests with a valid key, under every check
schemathesis has (no 5xx; documented status codes, content types, headers and JSON shapes;
schema-valid requests accepted and schema-invalid ones refused; other methods answered 405;
auth not ignored; ...).

Where a rule cannot be said in a schema, the check is told (EXPECTED), never switched off:
whether an event is stored depends on the account's state (the type an attribute name has, its
bound of names, the time now), a customer lookup needs one of several optional parameters, a
range's end must not be before its start (and summary.json's range is at most 366 days), a
replay names ids or a filter, a page cursor is one the server gave (opaque); there a
schema-valid request may get a 400 that names the rule.
The pixel answers its GIF whatever it is given (a browser must never see an error).

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
from schemathesis.config import SchemathesisConfig  # noqa: E402
from schemathesis.generation.meta import negated_parameters  # noqa: E402

from trackway.http.openapi import build_document  # noqa: E402

# What a schema-valid request may get besides schemathesis' defaults (2xx, 3xx, 401, 403, 404,
# 409, 429, 5xx), and why (see above).
ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]
RULES_BEYOND_THE_SCHEMA = {
    "/api/v1/event": "the account's state: attribute types and names, the time now",
    "/api/v1/bulkevents": "the account's state: attribute types and names, the time now",
    "/api/v1/customers": "one of several optional identifiers",
    "/api/v1/customer_search/show_events": "the end not before the start",
    "/api/v1/event/summary.json": "the end not before the start, at most 366 days",
    "/api/v1/event/history": "event_name in the query or the body (POST)",
    "/api/v1/errors/replay": "ids, or a type, day or all",
    "/api/v1/customers/search": "a cursor is the `next` of an earlier page, not made up",
    "/api/v1/customers/{uuid}/events": "`before` is the `next` of an earlier page, not made up",
}
CONFIG = SchemathesisConfig.from_dict(
    {
        "operations": [
            *(
                {
                    "include-path": path,
                    "checks": {"positive_data_acceptance": {"expected-statuses": [*ACCEPTED, 400]}},
                }
                for path in RULES_BEYOND_THE_SCHEMA
            ),
            {
                "include-path": "/unity.gif",
                "checks": {"negative_data_rejection": {"expected-statuses": [200]}},
            },
        ]
    }
)
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
        self.schema = schemathesis.openapi.from_url(server.url + "/openapi.json", config=CONFIG)
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
        # A case that drops or spoils the credentials must reach the server so.
        negated = {name.lower() for name, _ in negated_parameters(case.meta)}
        headers = {} if "authorization" in negated else basic(key)
        case.call_and_validate(base_url=fuzzed.server.url, headers=headers, timeout=30)
        assert fuzzed.server.process is not None and fuzzed.server.process.poll() is None

    fuzz()
