"""`trackway events list|rename|archive|unarchive --account NAME`, run as a user would, against
the database of a running server; the effect is checked through summary.json."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from conftest import Account, basic, create_account, database_url, run_cli

SUMMARY_URL = "/api/v1/event/summary.json"
RANGE = {"timestamp_start": "2024-02-01T00:00:00Z", "timestamp_end": "2024-02-02T23:59:59Z"}


def events_cli(account: Account, *args: str, check: bool = True):
    return run_cli("events", *args, "--database", database_url(account.db_path), check=check)


def summary(client, account: Account) -> dict[str, Any]:
    response = client.post(SUMMARY_URL, params=RANGE, headers=basic(account.user_key))
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


@pytest.fixture
def with_events(client, account) -> Account:
    """An account with 2 signup (custom) and 1 purchase (standard) on 2024-02-01, 1 view
    on 2024-02-02."""
    events = [
        {"event": "signup", "customer_id": "c-1", "timestamp": "2024-02-01T10:00:00Z"},
        {"event": "signup", "customer_id": "c-2", "timestamp": "2024-02-01T11:00:00Z"},
        {"event": "purchase", "customer_id": "c-1", "timestamp": "2024-02-01T12:00:00Z"},
        {"event": "view", "customer_id": "c-1", "timestamp": "2024-02-02T12:00:00Z"},
    ]
    for event in events:
        response = client.post(
            "/api/v1/event",
            json={**event, "event_uuid": str(uuid.uuid4())},
            headers=basic(account.event_key),
        )
        assert response.status_code == 200, response.text
    return account


def test_list_prints_every_name_with_type_display_name_and_archived(with_events):
    result = events_cli(with_events, "list", "--account", with_events.name, "--json")
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines == [
        {"name": "purchase", "display_name": "purchase", "type": "standard", "archived": False},
        {"name": "signup", "display_name": "signup", "type": "custom_event", "archived": False},
        {"name": "view", "display_name": "view", "type": "standard", "archived": False},
    ]
    # By account uuid as well, and as text.
    result = events_cli(with_events, "list", "--account", with_events.uuid)
    text = result.stdout.splitlines()
    assert len(text) == 3
    assert text[1].split()[:2] == ["signup", "custom_event"]


def test_list_of_an_account_without_events_is_empty(server):
    account = create_account(server.db_path)
    assert events_cli(account, "list", "--account", account.name, "--json").stdout == ""


def test_rename_changes_the_display_name_in_summary(client, with_events):
    events_cli(
        with_events, "rename", "signup", "--display-name", "Sign up", "--account", with_events.name
    )
    document = summary(client, with_events)
    assert document["stats"]["signup"] == {
        "archived": False,
        "count": 2,
        "display_name": "Sign up",
        "type": "custom_event",
    }
    # The series keeps the event's name; the other names are untouched.
    assert document["events_chart_stats"][0]["events"] == {
        "purchase": [1, 0],
        "signup": [2, 0],
        "view": [0, 1],
    }
    assert document["stats"]["view"]["display_name"] == "view"


def test_archive_moves_the_series_under_archives_and_unarchive_brings_it_back(client, with_events):
    events_cli(with_events, "archive", "signup", "--account", with_events.name)
    chart = summary(client, with_events)["events_chart_stats"][0]
    assert chart["archives"] == {"signup": [2, 0]}
    assert chart["events"] == {"purchase": [1, 0], "view": [0, 1]}
    document = summary(client, with_events)
    assert document["stats"]["signup"] == {
        "archived": True,
        "count": 2,
        "display_name": "signup",
        "type": "custom_event",
    }
    listed = events_cli(with_events, "list", "--account", with_events.name, "--json").stdout
    assert {
        json.loads(line)["name"]: json.loads(line)["archived"] for line in listed.splitlines()
    } == {
        "purchase": False,
        "signup": True,
        "view": False,
    }

    events_cli(with_events, "unarchive", "signup", "--account", with_events.uuid)
    document = summary(client, with_events)
    chart = document["events_chart_stats"][0]
    assert chart["archives"] == {}
    assert chart["events"] == {"purchase": [1, 0], "signup": [2, 0], "view": [0, 1]}
    assert document["stats"]["signup"]["archived"] is False


def test_archived_events_are_still_counted_when_they_keep_arriving(client, with_events):
    events_cli(with_events, "archive", "view", "--account", with_events.name)
    response = client.post(
        "/api/v1/event",
        json={"event": "view", "customer_id": "c-9", "timestamp": "2024-02-02T13:00:00Z"},
        headers=basic(with_events.event_key),
    )
    assert response.status_code == 200
    document = summary(client, with_events)
    assert document["events_chart_stats"][0]["archives"] == {"view": [0, 2]}
    assert document["stats"]["view"]["count"] == 2
    assert document["stats"]["view"]["archived"] is True


@pytest.mark.parametrize(
    "args",
    [
        ("rename", "never_sent", "--display-name", "X"),
        ("archive", "never_sent"),
        ("unarchive", "never_sent"),
    ],
    ids=["rename", "archive", "unarchive"],
)
def test_unknown_event_name_fails(with_events, args):
    result = events_cli(with_events, *args, "--account", with_events.name, check=False)
    assert result.returncode != 0
    assert "never_sent" in result.stderr
    # Nothing was registered by the attempt.
    names = events_cli(with_events, "list", "--account", with_events.name, "--json").stdout
    assert [json.loads(line)["name"] for line in names.splitlines()] == [
        "purchase",
        "signup",
        "view",
    ]


def test_unknown_account_fails(with_events):
    result = events_cli(with_events, "list", "--account", "no-such-account", check=False)
    assert result.returncode != 0
    assert "no-such-account" in result.stderr
    result = events_cli(
        with_events, "archive", "signup", "--account", "no-such-account", check=False
    )
    assert result.returncode != 0


def test_renaming_in_one_account_leaves_another_alone(client, server, with_events):
    other = create_account(server.db_path)
    response = client.post(
        "/api/v1/event",
        json={"event": "signup", "customer_id": "c-1", "timestamp": "2024-02-01T10:00:00Z"},
        headers=basic(other.event_key),
    )
    assert response.status_code == 200
    events_cli(
        with_events, "rename", "signup", "--display-name", "Joined", "--account", with_events.name
    )
    events_cli(with_events, "archive", "signup", "--account", with_events.name)
    assert summary(client, other)["stats"]["signup"] == {
        "archived": False,
        "count": 1,
        "display_name": "signup",
        "type": "custom_event",
    }
    assert summary(client, with_events)["stats"]["signup"]["display_name"] == "Joined"
