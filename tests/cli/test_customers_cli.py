"""`trackway customers list|search|show`, run as a user would against the database of a running
server: tables for people, --json for scripts, bad options named."""

from __future__ import annotations

import json
import uuid

from conftest import Account, basic, database_url, run_cli


def customers_cli(account: Account, *args: str, check: bool = True):
    return run_cli(
        "customers", *args, "--account", account.name, "--database",
        database_url(account.db_path), check=check,
    )  # fmt: skip


def send(client, account: Account, **event) -> str:
    event.setdefault("event_uuid", str(uuid.uuid4()))
    response = client.post("/api/v1/event", json=event, headers=basic(account.event_key))
    assert response.status_code == 200, response.text
    return str(event["event_uuid"])


def test_list_and_search_print_pages(client, account):
    for n, day in enumerate([2, 4, 1]):
        send(client, account, event="view", customer_id=f"cli-{n}",
             timestamp=f"2024-05-0{day}T10:00:00Z")  # fmt: skip
    send(client, account, event="identify", cookie="ck-cli", email="Cli.User@Example.com",
         timestamp="2024-05-03T10:00:00Z")  # fmt: skip
    page = json.loads(customers_cli(account, "list", "--json", "--limit", "3").stdout)
    assert [c["customer_id"] for c in page["customers"]] == ["cli-1", None, "cli-0"]
    rest = json.loads(customers_cli(account, "list", "--json", "--cursor", page["next"]).stdout)
    assert [c["customer_id"] for c in rest["customers"]] == ["cli-2"] and rest["next"] is None
    # The table: a header, one customer a line, and how to get the next page.
    table = customers_cli(account, "list", "--limit", "2").stdout.splitlines()
    assert table[0].split() == ["UUID", "CUSTOMER_ID", "EMAIL", "MATCHED", "LAST_SEEN"]
    assert table[1].split()[1:] == ["cli-1", "-", "-", "2024-05-04T10:00:00.000Z"]
    assert table[3].startswith("more: --cursor ")
    found = json.loads(customers_cli(account, "search", "CLI.U", "--json").stdout)
    (user,) = found["customers"]
    assert user["matched"] == {"kind": "email", "value": "cli.user@example.com"}
    table = customers_cli(account, "search", "ck-").stdout.splitlines()
    assert len(table) == 2 and "cookie=ck-cli" in table[1]


def test_show_explains_the_profile_with_its_newest_events(client, account):
    send(client, account, event="view", cookie="show-ck", timestamp="2024-05-01T10:00:00Z")
    send(client, account, event="identify", cookie="show-ck", customer_id="show-1",
         plan="gold", timestamp="2024-05-02T10:00:00Z")  # fmt: skip
    send(client, account, event="view", customer_id="show-2", cookie="show-ck2",
         email="x@y.io")  # fmt: skip
    send(client, account, event="view", customer_id="show-1", email="x@y.io",
         timestamp="2024-05-03T10:00:00Z")  # fmt: skip
    page = json.loads(customers_cli(account, "search", "show-1", "--json").stdout)
    who = page["customers"][0]["uuid"]
    answer = json.loads(customers_cli(account, "show", who, "--json", "--events", "2").stdout)
    assert answer["customer"]["uuid"] == who
    # The events as sent (show_events' documents), newest first.
    assert [e["timestamp"] for e in answer["events"]] == [
        "2024-05-03T10:00:00Z",
        "2024-05-02T10:00:00Z",
    ]
    assert answer["next"] is not None
    assert len(answer["customer"]["conflicts"]) == 1
    text = customers_cli(account, "show", who).stdout
    assert "customer_id: show-1" in text
    for section in ("identifiers", "attributes", "identity conflicts", "events (newest first)"):
        assert f"\n{section}\n" in text
    assert "email=x@y.io" in text and '"gold"' in text


def test_bad_options_are_named(client, account):
    result = customers_cli(account, "list", "--limit", "500", check=False)
    assert result.returncode == 2 and "--limit must be between 1 and 200" in result.stderr
    result = customers_cli(account, "list", "--cursor", "garbage", check=False)
    assert result.returncode == 2 and "--cursor is not a valid cursor" in result.stderr
    missing = "01900000-0000-7000-8000-000000000000"
    result = customers_cli(account, "show", missing, check=False)
    assert result.returncode == 1 and "customer not found" in result.stderr
    send(client, account, event="view", cookie="opt-ck")
    page = json.loads(customers_cli(account, "search", "opt-ck", "--json").stdout)
    who = page["customers"][0]["uuid"]
    result = customers_cli(account, "show", who, "--events", "0", check=False)
    assert result.returncode == 2 and "--events must be between 1 and 200" in result.stderr
