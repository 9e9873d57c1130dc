"""Bounds of what one event may carry, over HTTP on both backends: fields per event
(--max-event-attributes), subscription group ids (255 characters), and custom attribute names
per account (--max-attribute-names). Over a bound is a 400 naming it, logged and counted as
invalid_event_attributes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import (
    Account,
    Server,
    basic,
    create_account,
    fresh_postgres_database,
    require_postgres,
)

EVENT_URL = "/api/v1/event"
BULK_URL = "/api/v1/bulkevents"
MAX_FIELDS = 20
MAX_NAMES = 6


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def bounded(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp(f"bounds-{request.param}")
    target: Any = directory / "trackway.db"
    if request.param == "postgres":
        target = fresh_postgres_database(require_postgres())
    args = ("--max-event-attributes", str(MAX_FIELDS), "--max-attribute-names", str(MAX_NAMES))
    server = Server(target, directory / "server.log", *args).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def client(bounded: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=bounded.url, timeout=30.0) as c:
        yield c


@pytest.fixture
def account(bounded: Server) -> Account:
    return create_account(bounded.db_path)


def post(client: httpx.Client, account: Account, body: dict[str, Any]) -> httpx.Response:
    return client.post(EVENT_URL, json=body, headers=basic(account.event_key))


def fields(count: int, prefix: str = "a") -> dict[str, Any]:
    body: dict[str, Any] = {"event": "view", "cookie": "k"}
    body.update({f"{prefix}{i}": i for i in range(count - 2)})
    return body


def logged_types(account: Account) -> list[str]:
    return [row["error_type"] for row in account.error_log()]


def test_fields_per_event_over_the_setting_are_a_400_naming_it(
    client: httpx.Client, account: Account
) -> None:
    # Known fields count too; 20 in all passes (its 18 custom names exceed the account's 6).
    assert post(client, account, fields(MAX_FIELDS, "x")).status_code == 400
    over = post(client, account, fields(MAX_FIELDS + 1))
    assert over.status_code == 400
    assert over.json() == {
        "errors": {"attributes": [f"are too many: 21 fields (maximum is {MAX_FIELDS} per event)"]}
    }
    huge = post(client, account, fields(50_000))
    assert huge.status_code == 400 and "maximum is 20 per event" in huge.text
    assert logged_types(account) == ["invalid_event_attributes"] * 3
    assert sum(account.error_daily().values()) == 3
    assert [a["name"] for a in client.get("/api/v1/attributes",
            headers=basic(account.user_key)).json()["attributes"]] == []  # fmt: skip


def test_attribute_names_per_account_over_the_setting_are_a_400_naming_it(
    client: httpx.Client, account: Account
) -> None:
    assert (
        post(client, account, {"event": "view", "cookie": "k", "a": 1, "b": 2}).status_code == 200
    )
    four_more = {"event": "view", "cookie": "k", "c": 1, "d": 2, "e": 3, "f": 4}
    assert post(client, account, four_more).status_code == 200  # 6: the bound exactly
    over = post(client, account, {"event": "view", "cookie": "k", "a": 5, "g": 1})
    assert over.status_code == 400
    assert over.json() == {
        "errors": {
            "attributes": [
                "would add 1 new attribute name to the 6 the account has "
                f"(maximum is {MAX_NAMES} per account)"
            ]
        }
    }
    # Known names still pass; another account has room of its own.
    assert post(client, account, {"event": "buy", "cookie": "k", "a": 9, "f": 0}).status_code == 200
    other = create_account(account.db_path)
    assert post(client, other, {"event": "view", "cookie": "k", "g": 1}).status_code == 200
    # In bulk, the refused event is named by its index; the others are stored.
    events = [{"event": "view", "cookie": "k", "a": 1}, {"event": "view", "cookie": "k", "z": 1}]
    answer = client.post(BULK_URL, content=json.dumps({"events": events}),
                         headers={**basic(account.event_key),
                                  "Content-Type": "application/json"})  # fmt: skip
    document = answer.json()
    assert document["count"] == 1 and [e["index"] for e in document["errors"]] == [1]
    assert "maximum is 6 per account" in json.dumps(document["errors"][0])
    assert logged_types(account) == ["invalid_event_attributes"] * 2
    assert sum(n for (_, t), n in account.error_daily().items()
               if t == "invalid_event_attributes") == 2  # fmt: skip


def test_a_subscription_group_id_over_255_characters_is_a_400(
    client: httpx.Client, account: Account
) -> None:
    groups = [{"id": "g" * 100_000, "subscribed": True}]
    over = post(client, account, {"event": "subscription_update", "cookie": "k",
                                  "subscription_groups": groups})  # fmt: skip
    assert over.status_code == 400
    assert over.json() == {
        "errors": {"subscription_groups": ["id is too long (maximum is 255 characters)"]}
    }
    assert logged_types(account) == ["invalid_event_attributes"]
    fine = [{"id": "g" * 255, "subscribed": True}]
    assert post(client, account, {"event": "subscription_update", "cookie": "k",
                                  "subscription_groups": fine}).status_code == 200  # fmt: skip


def test_the_bounds_are_settings_of_serve(tmp_path: Path) -> None:
    from conftest import run_cli

    help_text = run_cli("serve", "--help").stdout
    assert "TRACKWAY_MAX_EVENT_ATTRIBUTES" in help_text
    assert "TRACKWAY_MAX_ATTRIBUTE_NAMES" in help_text
