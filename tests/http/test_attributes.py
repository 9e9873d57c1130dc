"""GET /api/v1/attributes and DELETE /api/v1/attributes/{name}: the types first use fixed for
an account's custom attributes, and their reset; `trackway attributes list|reset` does the
same from the command line, on the database of the running server."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from conftest import Account, basic, database_url, run_cli
from support import ISO_MS_RE, NOT_AUTHORIZED, PERMISSION_DENIED, epoch_ms, now_ms

ATTRIBUTES_URL = "/api/v1/attributes"
NOT_FOUND = {"message": "Attribute not found"}


def attributes(client: httpx.Client, account: Account) -> list[dict[str, Any]]:
    response = client.get(ATTRIBUTES_URL, headers=basic(account.user_key))
    assert response.status_code == 200, response.text
    assert list(response.json()) == ["attributes"]
    found: list[dict[str, Any]] = response.json()["attributes"]
    return found


def reset(client: httpx.Client, account: Account, name: str) -> httpx.Response:
    return client.delete(
        f"{ATTRIBUTES_URL}/{quote(name, safe='')}", headers=basic(account.user_key)
    )


def test_the_list_holds_each_name_its_type_and_when_it_was_fixed(
    client: httpx.Client, post: Any, account: Account
) -> None:
    assert attributes(client, account) == []
    before = now_ms()
    body = {"event": "view", "cookie": "c", "price": 9.5, "plan": "pro", "paid": True,
            "renews": "2030-01-01T00:00:00Z", "cart": ["p1"], "meta": {"a": 1},
            "user_agent": "Mozilla/5.0", "url": "/", "nothing": None}  # fmt: skip
    assert post(body).status_code == 200
    listed = attributes(client, account)
    assert [(a["name"], a["type"]) for a in listed] == [
        ("cart", "array"),
        ("meta", "object"),
        ("paid", "boolean"),
        ("plan", "string"),
        ("price", "number"),
        ("renews", "timestamp"),
    ]
    for a in listed:
        assert ISO_MS_RE.fullmatch(a["first_seen_at"])
        assert before - 2000 <= epoch_ms(a["first_seen_at"]) <= now_ms() + 2000
    # The first type stays: a later event of another type does not change the list.
    assert post({"event": "view", "cookie": "c", "plan": 3}).status_code == 400
    assert attributes(client, account) == listed


def test_a_reset_lets_the_next_event_fix_the_type_anew(
    client: httpx.Client, post: Any, account: Account
) -> None:
    """The issue's fifth report: a wrong first type fixed a name forever."""
    assert post({"event": "view", "cookie": "c", "zip": 12345}).status_code == 200
    refused = post({"event": "view", "cookie": "c", "zip": "02134"})
    assert refused.json() == {"errors": {"zip": ["must be of type number (got string)"]}}
    response = reset(client, account, "zip")
    assert response.status_code == 200
    answer = response.json()
    assert (answer["status"], answer["name"], answer["type"]) == ("ok", "zip", "number")
    assert ISO_MS_RE.fullmatch(answer["first_seen_at"])
    assert attributes(client, account) == []
    assert post({"event": "view", "cookie": "c", "zip": "02134"}).status_code == 200
    assert [(a["name"], a["type"]) for a in attributes(client, account)] == [("zip", "string")]
    # Stored events keep their values: both zips are in the timeline.
    assert [json.loads(r["body"])["zip"] for r in account.events()] == [12345, "02134"]
    assert (reset(client, account, "zip").status_code, reset(client, account, "x").json()) == (
        200,
        NOT_FOUND,
    )


@pytest.mark.parametrize("name", ["a/b", "with space", "ключ", "100%", "a?b#c"])
def test_any_name_can_be_reset(
    client: httpx.Client, post: Any, account: Account, name: str
) -> None:
    assert post({"event": "view", "cookie": "c", name: 1}).status_code == 200
    assert [a["name"] for a in attributes(client, account)] == [name]
    response = reset(client, account, name)
    assert (response.status_code, response.json()["name"]) == (200, name)
    assert attributes(client, account) == []


def test_unknown_and_built_in_names_are_404(client: httpx.Client, account: Account) -> None:
    for name in ("never-sent", "user_agent", "timestamp"):
        response = reset(client, account, name)
        assert (response.status_code, response.json()) == (404, NOT_FOUND)


def test_each_account_has_its_own_types(
    client: httpx.Client, account: Account, account_supply: Any
) -> None:
    other = account_supply.take()
    for who, value in ((account, 1), (other, "one")):
        response = client.post(
            "/api/v1/event",
            json={"event": "view", "cookie": "c", "level": value},
            headers=basic(who.event_key),
        )
        assert response.status_code == 200
    assert [a["type"] for a in attributes(client, account)] == ["number"]
    assert [a["type"] for a in attributes(client, other)] == ["string"]
    assert reset(client, other, "level").status_code == 200
    assert [a["type"] for a in attributes(client, account)] == ["number"]


def test_reads_need_the_user_key(client: httpx.Client, account: Account) -> None:
    for method, path in (("GET", ATTRIBUTES_URL), ("DELETE", ATTRIBUTES_URL + "/x")):
        response = client.request(method, path, headers=basic(account.event_key))
        assert (response.status_code, response.json()) == (403, PERMISSION_DENIED)
        response = client.request(method, path)
        assert (response.status_code, response.json()) == (401, NOT_AUTHORIZED)


def attributes_cli(account: Account, *args: str, check: bool = True) -> Any:
    return run_cli(
        "attributes", *args, "--account", account.name,
        "--database", database_url(account.db_path), check=check,
    )  # fmt: skip


def test_the_command_line_lists_and_resets(
    client: httpx.Client, post: Any, account: Account
) -> None:
    assert post({"event": "view", "cookie": "c", "size": 42, "color": "red"}).status_code == 200
    lines = [
        json.loads(line) for line in attributes_cli(account, "list", "--json").stdout.splitlines()
    ]
    assert lines == attributes(client, account)
    assert [(line["name"], line["type"]) for line in lines] == [
        ("color", "string"),
        ("size", "number"),
    ]
    text = attributes_cli(account, "list").stdout.splitlines()
    assert [line.split()[:2] for line in text] == [["color", "string"], ["size", "number"]]

    result = attributes_cli(account, "reset", "size")
    assert "number" in result.stdout
    # The running server sees it at once: the next event fixes the name anew.
    assert post({"event": "view", "cookie": "c", "size": "XL"}).status_code == 200
    assert [(a["name"], a["type"]) for a in attributes(client, account)] == [
        ("color", "string"),
        ("size", "string"),
    ]
    missing = attributes_cli(account, "reset", "nope", check=False)
    assert missing.returncode == 1 and "no type fixed for 'nope'" in missing.stderr
